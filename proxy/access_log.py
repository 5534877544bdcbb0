"""The access log: one key=value line per request, handed to the ``proxy.access`` logger in batches.

A ``logging`` call costs about 10 µs, a third of a cache hit's whole budget at 30,000 requests/s; so lines
are formatted here (about 1 µs) and passed on as one record of up to ``max_lines`` lines, at least once a
second (``flush`` is called by the app's clock). Each line carries its own ``time=``.
"""

from __future__ import annotations

import logging
import time

LOGGER = logging.getLogger("proxy.access")


def loggable(raw: bytes) -> str:
    """``raw`` for a key=value line: at most 300 bytes, non-printables and spaces escaped."""
    return repr(raw[:300])[2:-1].replace(" ", "\\x20")


class AccessLog:
    def __init__(self, logger: logging.Logger = LOGGER, max_lines: int = 256):
        self.logger = logger
        self.max_lines = max_lines
        self.lines: list[str] = []
        self._second = -1
        self._stamp = ""

    @property
    def enabled(self) -> bool:
        return self.logger.isEnabledFor(logging.INFO)

    def add(self, method: str, target: bytes, status: int, cache: str, size: int, seconds: float, backend: str,
            client: str) -> None:
        now = int(time.time())
        if now != self._second:
            self._second, self._stamp = now, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))
        self.lines.append(f"time={self._stamp} method={method} path={loggable(target)} status={status} "
                          f"cache={cache} bytes={size} ms={seconds * 1e3:.2f} backend={backend} client={client}")
        if len(self.lines) >= self.max_lines:
            self.flush()

    def flush(self) -> None:
        if self.lines:
            lines, self.lines = self.lines, []
            self.logger.info("\n".join(lines))
