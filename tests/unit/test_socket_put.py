"""storage_backends/socket_put.py against small servers on 127.0.0.1: the body arrives
whole with its length, the answer is read; a store that refuses before the body ended is
heard; one that never answers is given up on."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from storage_backends.socket_put import Put, PutFailed

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def serving(handler: Handler) -> tuple[asyncio.Server, str]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, f"http://127.0.0.1:{port}/bucket/key?partNumber=1&X-Amz-Signature=abc"


def test_the_body_arrives_with_its_length_and_the_answer_is_read() -> None:
    got: dict[str, bytes] = {}

    async def store(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
        got["head"], got["body"] = head, await reader.readexactly(length)
        writer.write(b'HTTP/1.1 200 OK\r\nETag: "e1"\r\nContent-Length: 0\r\n\r\n')
        await writer.drain()
        writer.close()

    async def main() -> tuple[int, dict[str, str], bytes]:
        server, url = await serving(store)
        async with server:
            put = Put(url, 10, timeout=5)
            for piece in (b"abc", memoryview(b"defghij")):
                await put.send(piece)
            return await put.finish()

    status, headers, body = asyncio.run(main())
    assert (status, headers["etag"], body) == (200, '"e1"', b"")
    assert got["body"] == b"abcdefghij"
    assert got["head"].startswith(b"PUT /bucket/key?partNumber=1&X-Amz-Signature=abc HTTP/1.1\r\n")


def test_a_refusal_before_the_body_ended_is_heard() -> None:
    """The store answers 403 after the head and closes (as RGW does for a bad
    signature): sending fails, and the failure carries the store's status."""

    async def store(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        refusal = b"<Error><Code>SignatureDoesNotMatch</Code></Error>"
        writer.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: %d\r\n\r\n" % len(refusal))
        writer.write(refusal)
        await writer.drain()
        writer.close()

    async def main() -> PutFailed:
        server, url = await serving(store)
        async with server:
            put = Put(url, 64 << 20, timeout=5)
            with pytest.raises(PutFailed) as failed:
                for _ in range(64):
                    await put.send(bytes(1 << 20))
                    await asyncio.sleep(0.01)
            put.abort()
            return failed.value

    failure = asyncio.run(main())
    assert failure.status == 403 and "SignatureDoesNotMatch" in str(failure)


def test_a_store_that_never_answers_is_given_up_on() -> None:
    async def store(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(10)

    async def main() -> None:
        server, url = await serving(store)
        async with server:
            put = Put(url, 3, timeout=0.2)
            await put.send(b"abc")
            with pytest.raises(PutFailed, match="no answer"):
                await put.finish()

    asyncio.run(main())


def test_more_bytes_than_said_are_refused_before_they_are_sent() -> None:
    put = Put("http://127.0.0.1:9/k", 2, timeout=1)
    with pytest.raises(ValueError):
        asyncio.run(put.send(b"abc"))
    with pytest.raises(ValueError):
        Put("https://s3.example/k", 2, timeout=1)
