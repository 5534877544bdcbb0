"""boxlink's expected failures (each a ``GigatileError``)."""

from __future__ import annotations

from gigaformat.errors import GigatileError


class BoxlinkError(GigatileError):
    """A failure an operator can act on: S3 unreachable, an object that does not match its manifest,
    a full disk. The CLI prints the message without a traceback and exits non-zero; ``run`` records it
    in the dataset's status file and tries again later.
    """


class Cancelled(BoxlinkError):
    """The work was abandoned on request (SIGTERM/SIGINT); nothing half-done was kept."""
