"""The tiler package's expected failures: what went wrong, never which HTTP status (``app.STATUS_CODES``).

The CLI prints any of them without a traceback (``gigaformat.commandline``); the HTTP edge maps each type
to a status in one table.
"""

from __future__ import annotations

from gigaformat.errors import GigatileError


class TilerError(GigatileError):
    """A failure a user can act on: bad input, a missing file, an unreachable bucket."""


class InvalidSource(TilerError):
    """A source folder that does not follow the source format; the message names the file and row."""


class BadRequest(TilerError):
    """A request the server cannot parse or will not serve as asked."""


class PathTooLong(BadRequest):
    """A request path longer than any valid one."""


class NotImplementedFeature(BadRequest):
    """A valid request for a feature this server does not offer (IIIF: upscaling, arbitrary rotation, tif)."""


class NotFound(TilerError):
    """No such dataset, level, tile or path."""


class NotReady(TilerError):
    """A dataset this server is asked to serve is still replicating or loading: come back shortly."""


class Busy(TilerError):
    """Too many renders are waiting: come back shortly."""


class CorruptData(TilerError):
    """Data on the node's disk does not hold what its state says (boxlink verified it; the disk changed)."""
