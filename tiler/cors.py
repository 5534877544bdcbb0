"""CORS on every response of the render server, and the preflight answered (IIIF Image API 3.0 section 7.1).

Every response carries ``Access-Control-Allow-Origin: *`` (tiles and IIIF documents are public, never
credentialed), and the headers a viewer on another origin reads are exposed. An ``OPTIONS`` request is a
preflight: 204 with the methods and headers allowed, cached by the browser for a day.
"""

from __future__ import annotations

ALLOW_ORIGIN = (b"access-control-allow-origin", b"*")
EXPOSE = (b"access-control-expose-headers", b"ETag, Last-Modified, Link, X-Tile-Version, Retry-After")
ALLOW_METHODS = b"GET, HEAD, OPTIONS"
MAX_AGE = b"86400"


class CorsMiddleware:
    def __init__(self, app):
        self.app = app
        self.state = getattr(app, "state", None)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["method"] == "OPTIONS":
            await self._preflight(scope, send)
            return

        async def with_cors(message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), ALLOW_ORIGIN, EXPOSE]
            await send(message)

        await self.app(scope, receive, with_cors)

    async def _preflight(self, scope, send) -> None:
        asked = b""
        for name, value in scope["headers"]:
            if name == b"access-control-request-headers":
                asked = value
        headers = [ALLOW_ORIGIN, (b"access-control-allow-methods", ALLOW_METHODS),
                   (b"access-control-max-age", MAX_AGE), (b"allow", ALLOW_METHODS), (b"content-length", b"0")]
        if asked and all(c in b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_, " for c in asked):
            headers.append((b"access-control-allow-headers", asked))
        await send({"type": "http.response.start", "status": 204, "headers": headers})
        await send({"type": "http.response.body", "body": b""})
