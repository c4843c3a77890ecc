"""An HTTP GET whose body stays on its socket, for the server to splice to a client
(registry/zerocopy.py) instead of reading it through the process.

Plain HTTP only: bytes under TLS must be decrypted by the process. One connection per
GET (``Connection: close``): the caller closes the socket when it has taken the body.
Only the response head is read and parsed here; body bytes that arrived with it come
back with the socket. A response without a Content-Length (chunked) is refused: the
socket's bytes must be the body and nothing else.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

HEAD_LIMIT = 64 * 1024  # a response head larger than this is not a store's


class GetFailed(ConnectionError):
    """No usable response: the connection failed, or the answer was not HTTP/1.1 with a
    Content-Length."""


@dataclass(eq=False)
class Response:
    status: int
    headers: dict[str, str]  # names in lower case
    sock: socket.socket  # non-blocking; the rest of the body waits on it
    body_start: bytes  # the body's first bytes, received with the head
    length: int  # the body's length (Content-Length)

    def close(self) -> None:
        self.sock.close()


async def get(url: str, headers: Mapping[str, str]) -> Response:
    """GET ``url`` (http://) with ``headers``, and read the response's head (the caller
    bounds the wait: a cancelled GET closes its socket)."""
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise ValueError(f"not a plain-HTTP URL: {parts.scheme}://{parts.hostname}")
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    lines = [f"GET {target} HTTP/1.1", f"Host: {parts.netloc}", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    request = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    try:
        sock = await connect(parts.hostname, parts.port or 80)
        try:
            return await _exchange(sock, request)
        except BaseException:
            sock.close()
            raise
    except GetFailed:
        raise
    except OSError as e:
        raise GetFailed(f"GET {parts.netloc}: {e}") from e


async def connect(host: str, port: int) -> socket.socket:
    loop = asyncio.get_running_loop()
    found: list[tuple[socket.AddressFamily, tuple[str, int]]]
    try:
        ip = ipaddress.ip_address(host)
        found = [(socket.AF_INET6 if ip.version == 6 else socket.AF_INET, (host, port))]
    except ValueError:  # a name: resolved for each GET, as the store's DNS may change
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        found = [(family, (str(a[0]), int(a[1]))) for family, _, _, _, a in infos]
    error: OSError = OSError(f"{host} resolves to nothing")
    for family, address in found:
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            await loop.sock_connect(sock, address)
            return sock
        except OSError as e:
            sock.close()
            error = e
        except BaseException:
            sock.close()
            raise
    raise error


async def _exchange(sock: socket.socket, request: bytes) -> Response:
    await asyncio.get_running_loop().sock_sendall(sock, request)
    status, headers, body_start = await read_head(sock)
    if "transfer-encoding" in headers or "content-length" not in headers:
        raise GetFailed("a response without a Content-Length")
    try:
        length = int(headers["content-length"])
    except ValueError:
        raise GetFailed(f"Content-Length {headers['content-length']!r}") from None
    if length < 0 or len(body_start) > length:
        raise GetFailed("a response with more bytes than its Content-Length")
    return Response(status, headers, sock, body_start, length)


async def read_head(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """Read a response's head from ``sock``: its status, its headers (names in lower
    case) and the body bytes that came with it."""
    loop = asyncio.get_running_loop()
    received = b""
    while (end := received.find(b"\r\n\r\n")) < 0:
        if len(received) > HEAD_LIMIT:
            raise GetFailed(f"a response head over {HEAD_LIMIT} bytes")
        more = await loop.sock_recv(sock, 65536)
        if not more:
            raise GetFailed("the connection closed before the response head ended")
        received += more
    status, headers = parse_head(received[:end])
    return status, headers, received[end + 4 :]


def parse_head(head: bytes) -> tuple[int, dict[str, str]]:
    """The status and headers (names in lower case) of an HTTP/1.x response head."""
    status_line, *lines = head.decode("latin-1").split("\r\n")
    version, _, rest = status_line.partition(" ")
    code = rest[:3]
    if not version.startswith("HTTP/1.") or not code.isdigit() or len(code) != 3:
        raise GetFailed(f"not an HTTP/1 response: {status_line[:80]!r}")
    headers: dict[str, str] = {}
    for line in lines:
        name, colon, value = line.partition(":")
        if not colon or not name or name != name.strip():
            raise GetFailed(f"a malformed header line: {line[:80]!r}")
        headers[name.lower()] = value.strip()
    return int(code), headers
