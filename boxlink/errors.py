"""boxlink's expected failures (each a ``GigatileError``)."""

from __future__ import annotations

import errno
from pathlib import Path

from gigaformat.errors import GigatileError


class BoxlinkError(GigatileError):
    """A failure an operator can act on: S3 unreachable, an object that does not match its manifest,
    a full disk. The CLI prints the message without a traceback and exits non-zero; ``run`` records it
    in the dataset's status file and tries again later.
    """


class Cancelled(BoxlinkError):
    """The work was abandoned on request (SIGTERM/SIGINT); nothing half-done was kept."""


class DiskError(BoxlinkError):
    """Writing a file failed (a full disk, a read-only file system): fetching again would not help."""


def disk_error(exc: OSError, path: Path) -> DiskError:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return DiskError(f"disk full: cannot write {path} ({exc.strerror}); free space under "
                         f"{path.parent} and run again (the last good generation is still served)")
    return DiskError(f"cannot write {path} ({exc.strerror or exc})")
