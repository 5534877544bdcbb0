"""The pooled upstream client against a scripted in-process server: bodies, keep-alive, failures."""

from __future__ import annotations

import asyncio

import pytest

from proxy.upstream import MAX_BODY, Pool, UpstreamFailure

CHUNKED = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nETag: \"e\"\r\n\r\n4\r\ntile\r\n3;x=1\r\n-42\r\n0\r\n\r\n"
PLAIN = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Type: image/png\r\n\r\nhello"
HUGE = b"HTTP/1.1 200 OK\r\nContent-Length: " + str(MAX_BODY + 1).encode() + b"\r\n\r\n"


async def serve(answers: list[bytes], close_after: int = 0):
    """A server answering each request on a connection with the next answer; closes after ``close_after``."""
    accepted = []

    async def handle(reader, writer):
        accepted.append(writer)
        served = 0
        try:
            while await reader.readuntil(b"\r\n\r\n"):
                writer.write(answers[min(served, len(answers) - 1)])
                await writer.drain()
                served += 1
                if close_after and served >= close_after:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, f"127.0.0.1:{port}", accepted


def test_chunked_and_plain_bodies_on_one_kept_alive_connection():
    async def main():
        server, backend, accepted = await serve([CHUNKED, PLAIN])
        pool = Pool(1.0, 5.0)
        status, headers, body = await pool.get(backend, f"http://{backend}", b"/tiles/a.png")
        assert (status, body, headers[b"etag"]) == (200, b"tile-42", b'"e"')
        status, headers, body = await pool.get(backend, f"http://{backend}", b"/tiles/b.png")
        assert (status, body, headers[b"content-type"]) == (200, b"hello", b"image/png")
        assert len(accepted) == 1  # the second request reused the connection
        pool.close()
        server.close()

    asyncio.run(main())


def test_a_connection_closed_while_idle_is_replaced_without_failing():
    async def main():
        server, backend, accepted = await serve([PLAIN], close_after=1)
        pool = Pool(1.0, 5.0)
        for _ in range(3):
            assert (await pool.get(backend, f"http://{backend}", b"/x"))[2] == b"hello"
            await asyncio.sleep(0.05)  # the server closes its side meanwhile
        assert len(accepted) == 3
        pool.close()
        server.close()

    asyncio.run(main())


def test_refused_garbled_and_oversized_answers_fail_cleanly():
    async def main():
        pool = Pool(1.0, 2.0)
        server, backend, _ = await serve([HUGE])
        with pytest.raises(UpstreamFailure, match="refused"):
            await pool.get(backend, f"http://{backend}", b"/x")
        server.close()
        server, backend, _ = await serve([b"SMTP ready\r\n\r\n"])
        with pytest.raises(UpstreamFailure, match="not an HTTP"):
            await pool.get(backend, f"http://{backend}", b"/x")
        server.close()
        await server.wait_closed()
        with pytest.raises(OSError):
            await pool.get(backend, f"http://{backend}", b"/x")  # nobody listens there any more
        pool.close()

    asyncio.run(main())
