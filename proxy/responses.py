"""Sending ASGI responses: the few shapes the proxy answers with."""

from __future__ import annotations

from gigaformat.errors import GigatileError
from proxy.entry import CORS
from proxy.errors import BadTarget, MethodNotAllowed, NoBackend, NoRoute, TargetTooLong

# The one place an error becomes a status; the first matching type wins (subclasses before their bases).
STATUS_CODES: tuple[tuple[type[Exception], int], ...] = (
    (TargetTooLong, 414),
    (BadTarget, 400),
    (MethodNotAllowed, 405),
    (NoRoute, 404),
    (NoBackend, 502),
    (GigatileError, 500),
)


def status_of(exc: Exception) -> int:
    return next(code for kind, code in STATUS_CODES if isinstance(exc, kind))

Headers = list[tuple[bytes, bytes]]
Send = object  # the ASGI send callable


async def send_response(send, status: int, headers: Headers, body: bytes, head: bool = False) -> None:
    """``headers`` must already carry Content-Length (HEAD keeps it and sends no body)."""
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if head else body})


async def send_text(send, status: int, text: str, head: bool = False,
                    content_type: bytes = b"text/plain; charset=utf-8") -> int:
    body = text.encode()
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode()),
               (b"cache-control", b"no-store"), *CORS]
    await send_response(send, status, headers, body, head)
    return len(body)


async def send_error(send, exc: GigatileError, head: bool = False) -> int:
    """A one-line reason, never cached, with the status ``STATUS_CODES`` gives it."""
    return await send_text(send, status_of(exc), str(exc) + "\n", head)


PREFLIGHT = [*CORS, (b"access-control-allow-methods", b"GET, HEAD, OPTIONS"), (b"access-control-max-age", b"86400"),
             (b"allow", b"GET, HEAD, OPTIONS"), (b"content-length", b"0")]


async def send_preflight(send, requested_headers: bytes) -> int:
    """204 to a CORS preflight (any path: everything here is public and uncredentialed)."""
    headers = PREFLIGHT
    if requested_headers and all(c in b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_, "
                                 for c in requested_headers):
        headers = [*PREFLIGHT, (b"access-control-allow-headers", requested_headers)]
    await send_response(send, 204, headers, b"", True)
    return 0


def etag_matches(if_none_match: bytes, etag: bytes) -> bool:
    """True when an ``If-None-Match`` value names ``etag`` (strong or weak) or ``*``."""
    if not etag:
        return False
    for tag in if_none_match.split(b","):
        tag = tag.strip()
        if tag == etag or tag == b"*" or tag == b"W/" + etag:
            return True
    return False
