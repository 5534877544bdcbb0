"""tile-proxy's expected failures: what went wrong, never which HTTP status (``responses.STATUS_CODES``)."""

from __future__ import annotations

from gigaformat.errors import GigatileError


class ProxyError(GigatileError):
    """A failure a user or operator can act on: a bad URL, no live backend, a bad flag."""


class BadTarget(ProxyError):
    """A request target (path or query) the proxy refuses to forward."""


class TargetTooLong(BadTarget):
    """A path or query longer than any valid one."""


class MethodNotAllowed(ProxyError):
    """Only GET and HEAD are served."""


class NoRoute(ProxyError):
    """No backend claims the path, and the viewer has no such file."""


class NoBackend(ProxyError):
    """No live backend could answer (none registered fresh and healthy, or every attempt failed)."""
