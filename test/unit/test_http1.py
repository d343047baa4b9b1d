"""The lean HTTP/1.1 server over a real loopback socket, spoken to in raw bytes, so what
is asserted is what a client reads on the wire."""

from __future__ import annotations

import asyncio
import gzip
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from core.http1 import HTTP1Server, Reply, Request, StreamReply, json_reply

Handler = Callable[[Request], Awaitable[Reply]]


@asynccontextmanager
async def serving(handler: Handler, max_body: int = 1024) -> AsyncIterator[HTTP1Server]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = HTTP1Server(handler, sock, max_body=max_body)
    await server.start()
    try:
        yield server
    finally:
        await server.shutdown(1.0)


async def exchange(port: int, data: bytes, until_close: bool = True,
                   replies: int = 1) -> bytes:
    """Sends ``data``; reads until the server closes (or ``replies`` answers arrived)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    received = b""
    try:
        while True:
            chunk = await asyncio.wait_for(reader.read(65536), 5)
            if not chunk:
                break
            received += chunk
            if not until_close and _complete(received, replies):
                break
    finally:
        writer.close()
    return received


def split_responses(data: bytes) -> list[bytes]:
    """The bodies of the whole responses in ``data`` (by Content-Length), in order."""
    bodies = []
    while True:
        head, sep, rest = data.partition(b"\r\n\r\n")
        if not sep:
            return bodies
        length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                       if line.lower().startswith(b"content-length:")), 0)
        if len(rest) < length:
            return bodies
        bodies.append(rest[:length])
        data = rest[length:]


def _complete(data: bytes, replies: int) -> bool:
    return len(split_responses(data)) >= replies


async def echo(request: Request) -> Reply:
    return json_reply(200, {"method": request.method, "path": request.path,
                            "url": request.raw_path, "query": request.query,
                            "body": request.body.decode(errors="replace"),
                            "error": request.error.reason if request.error else None,
                            "type": request.header("content-type")})


def body_of(response: bytes) -> bytes:
    return response.partition(b"\r\n\r\n")[2]


def test_request_fields_and_keep_alive() -> None:
    async def main() -> None:
        async with serving(echo) as server:
            request = (b"POST /a%20b/c?x=1&x=2&y=+z HTTP/1.1\r\nHost: h\r\n"
                       b"Content-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello")
            out = await exchange(server.port, request, until_close=False)
            assert out.startswith(b"HTTP/1.1 200 OK\r\n")
            assert b"Connection: close" not in out and b"\r\nDate: " in out
            seen = json.loads(body_of(out))
            assert seen == {"method": "POST", "path": "/a b/c", "url": "/a%20b/c?x=1&x=2&y=+z",
                            "query": {"x": "1", "y": " z"}, "body": "hello", "error": None,
                            "type": "text/plain"}
            # HTTP/1.0 without keep-alive: answered, then closed.
            out = await exchange(server.port, b"GET / HTTP/1.0\r\n\r\n")
            assert out.startswith(b"HTTP/1.1 200 OK") and b"Connection: close" in out
    asyncio.run(main())


def test_pipelined_requests_are_answered_in_order() -> None:
    async def slow_first(request: Request) -> Reply:
        await asyncio.sleep(0.2 if request.path == "/1" else 0)
        return Reply(200, request.path.encode(), {"Content-Type": "text/plain"})

    async def main() -> None:
        async with serving(slow_first) as server:
            data = b"".join(f"GET /{i} HTTP/1.1\r\nHost: h\r\n\r\n".encode() for i in range(1, 13))
            out = await exchange(server.port, data, until_close=False, replies=12)
            assert split_responses(out) == [f"/{i}".encode() for i in range(1, 13)]
    asyncio.run(main())


def test_bodies_over_the_limit_and_encodings() -> None:
    async def main() -> None:
        async with serving(echo, max_body=100) as server:
            # Declared too large: refused before the body is read, then closed.
            out = await exchange(server.port, b"POST / HTTP/1.1\r\nContent-Length: 500\r\n\r\n"
                                 + b"x" * 500)
            assert json.loads(body_of(out))["error"] == "body_too_large"
            assert b"Connection: close" in out
            # Chunked, too large only once read.
            chunks = b"".join(b"%x\r\n%s\r\n" % (60, b"y" * 60) for _ in range(2)) + b"0\r\n\r\n"
            out = await exchange(server.port, b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked"
                                 b"\r\n\r\n" + chunks, until_close=False)
            assert json.loads(body_of(out))["error"] == "body_too_large"
            # gzip decoded; not gzip: bad_encoding; expands too far: body_too_large.
            for raw, expected in ((gzip.compress(b"z" * 90), ("z" * 90, None)),
                                  (b"not gzip", ("", "bad_encoding")),
                                  (gzip.compress(b"z" * 200), ("", "body_too_large"))):
                out = await exchange(server.port, b"POST / HTTP/1.1\r\nContent-Encoding: gzip\r\n"
                                     b"Content-Length: %d\r\n\r\n" % len(raw) + raw,
                                     until_close=False)
                seen = json.loads(body_of(out))
                assert (seen["body"] if seen["error"] is None else "", seen["error"]) == expected
    asyncio.run(main())


def test_continue_head_and_garbage() -> None:
    async def main() -> None:
        async with serving(echo) as server:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(b"POST / HTTP/1.1\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n")
            assert await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5) == \
                b"HTTP/1.1 100 Continue\r\n\r\n"
            writer.write(b"abc")
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            assert head.startswith(b"HTTP/1.1 200 OK")
            writer.close()
            out = await exchange(server.port, b"HEAD / HTTP/1.1\r\nConnection: close\r\n\r\n")
            assert b"Content-Length: " in out and body_of(out) == b""
            # An Upgrade is answered as a plain request, then the connection closes; with a
            # body (which llhttp would hand over as the new protocol's bytes) it is refused.
            upgrade = b"Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
            out = await exchange(server.port, b"GET /u HTTP/1.1\r\n" + upgrade + b"\r\n")
            assert out.startswith(b"HTTP/1.1 200 OK") and b"Connection: close" in out
            out = await exchange(server.port, b"POST /u HTTP/1.1\r\nContent-Length: 2\r\n"
                                 + upgrade + b"\r\nab")
            assert out.startswith(b"HTTP/1.1 200 OK") and b"Connection: close" in out
            assert json.loads(body_of(out))["error"] == "upgrade_with_body"
            out = await exchange(server.port, b"NOT HTTP AT ALL\r\n\r\n")
            assert out.startswith(b"HTTP/1.1 400 Bad Request")
            # The server is still serving.
            out = await exchange(server.port, b"GET / HTTP/1.1\r\n\r\n", until_close=False)
            assert out.startswith(b"HTTP/1.1 200 OK")
    asyncio.run(main())


def test_shutdown_closes_idle_and_lets_busy_finish() -> None:
    async def slow(request: Request) -> Reply:
        await asyncio.sleep(0.3)
        return Reply(200, b"done")

    async def main() -> None:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        server = HTTP1Server(slow, sock)
        await server.start()
        idle_reader, idle_writer = await asyncio.open_connection("127.0.0.1", server.port)
        busy = asyncio.ensure_future(exchange(server.port, b"GET / HTTP/1.1\r\n\r\n"))
        await asyncio.sleep(0.1)
        await server.shutdown(2.0)
        assert await asyncio.wait_for(idle_reader.read(), 5) == b""  # closed, nothing owed
        out = await busy
        assert out.startswith(b"HTTP/1.1 200") and b"Connection: close" in out
        assert body_of(out) == b"done"
        idle_writer.close()
    asyncio.run(main())


def test_streamed_reply_is_chunked_and_its_producer_closed() -> None:
    closed: list[str] = []

    async def ticks(count: int) -> AsyncIterator[bytes]:
        try:
            for i in range(count):
                yield f"tick {i}\n".encode()
                await asyncio.sleep(0.01)
        finally:
            closed.append(f"{count}")

    async def stream(request: Request) -> Reply:
        return StreamReply(ticks(3 if request.path == "/short" else 1000),
                           {"Content-Type": "text/plain"})

    async def main() -> None:
        async with serving(stream) as server:
            out = await exchange(server.port, b"GET /short HTTP/1.1\r\nConnection: close\r\n\r\n")
            head, _, body = out.partition(b"\r\n\r\n")
            assert b"Transfer-Encoding: chunked" in head and b"Content-Length" not in head
            assert body == b"".join(b"7\r\ntick %d\n\r\n" % i for i in range(3)) + b"0\r\n\r\n"
            # A client that leaves mid-stream: the producer is closed, the server serves on.
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(b"GET /long HTTP/1.1\r\n\r\n")
            await asyncio.wait_for(reader.readuntil(b"tick 1\n"), 5)
            writer.close()
            for _ in range(100):
                if "1000" in closed:
                    break
                await asyncio.sleep(0.02)
            assert closed == ["3", "1000"]
    asyncio.run(main())
