"""The bootstrap package's expected failures (each a ``GigatileError``), with a message a user can act on."""

from __future__ import annotations

from gigaformat.errors import GigatileError


class BootstrapError(GigatileError):
    """A node could not be brought up, updated, launched or released; the message says why and what to do."""


class ImdsError(BootstrapError):
    """The instance metadata service did not answer as IMDSv2 should."""
