"""The one exception type of the bootstrap package (expected failures, with a message a user can act on)."""

from __future__ import annotations


class BootstrapError(Exception):
    """A node could not be brought up, updated, launched or released; the message says why and what to do."""


class ImdsError(BootstrapError):
    """The instance metadata service did not answer as IMDSv2 should."""
