"""storage_backends/socket_get.py: the response head parser (hypothesis), and GETs
against a small server on 127.0.0.1 that answers what each test needs."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from storage_backends.socket_get import HEAD_LIMIT, GetFailed, get, parse_head

pytestmark = pytest.mark.anyio

token = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyz-ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789",
    min_size=1,
    max_size=20,
)
value = st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=40)


@given(status=st.integers(100, 599), headers=st.dictionaries(token, value, max_size=8))
def test_a_head_parses_to_its_status_and_headers(status: int, headers: dict[str, str]) -> None:
    lines = [f"HTTP/1.1 {status} Whatever Reason"]
    lines += [f"{name}:  {v} " for name, v in headers.items()]
    parsed_status, parsed = parse_head("\r\n".join(lines).encode())
    assert parsed_status == status
    expected: dict[str, str] = {}
    for name, v in headers.items():
        expected[name.lower()] = v.strip()
    assert parsed == expected


@pytest.mark.parametrize(
    "head",
    [
        b"",
        b"HTTP/2 200 OK",
        b"SSH-2.0-OpenSSH",
        b"HTTP/1.1 2x0 OK",
        b"HTTP/1.1 200 OK\r\nno colon here",
        b"HTTP/1.1 200 OK\r\n: empty name",
        b"HTTP/1.1 200 OK\r\n folded: header",
    ],
)
def test_what_is_not_an_http1_head_is_refused(head: bytes) -> None:
    with pytest.raises(GetFailed):
        parse_head(head)


@contextlib.asynccontextmanager
async def answering(answer: bytes) -> AsyncIterator[str]:
    """A server that reads one request head, writes ``answer`` and closes."""
    requests: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        requests.append(await reader.readuntil(b"\r\n\r\n"))
        writer.write(answer)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/bucket/key?X-Amz-Signature=abc"
    finally:
        server.close()
        await server.wait_closed()


async def test_the_body_stays_on_the_socket_after_what_came_with_the_head() -> None:
    body = b"x" * 100_000
    answer = b"HTTP/1.1 206 Partial Content\r\nContent-Length: 100000\r\n\r\n" + body
    async with answering(answer) as url:
        resp = await get(url, {"Range": "bytes=0-99999"})
        try:
            assert resp.status == 206 and resp.length == len(body)
            rest = bytearray(resp.body_start)
            loop = asyncio.get_running_loop()
            while more := await loop.sock_recv(resp.sock, 65536):
                rest += more
            assert bytes(rest) == body
        finally:
            resp.close()


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\n\r\nno length",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\ntoo long",
        b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: many\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Le",  # closed before the head ended
        b"HTTP/1.1 200 OK\r\n" + b"X-Big: " + b"a" * HEAD_LIMIT + b"\r\n\r\n",
    ],
)
async def test_an_answer_whose_body_is_not_exactly_the_socket_is_refused(answer: bytes) -> None:
    async with answering(answer) as url:
        with pytest.raises(GetFailed):
            await get(url, {})


async def test_a_refused_connection_is_a_get_failed() -> None:
    async with answering(b"") as url:
        pass  # closed: nothing listens on the port any more
    with pytest.raises(GetFailed):
        await get(url, {})


async def test_only_plain_http_urls_are_taken() -> None:
    with pytest.raises(ValueError, match="plain-HTTP"):
        await get("https://127.0.0.1:1/b/k", {})
