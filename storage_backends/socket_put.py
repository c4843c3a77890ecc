"""An HTTP PUT whose body is sent as it arrives, for an S3 part whose bytes are still
coming from the client (storage_backends/s3.py): the process holds none of it.

Plain HTTP only, one connection per PUT (``Connection: close``), the length said up
front. A body cut short (``abort``) leaves the store nothing: it keeps a part only once
all of its bytes came.
"""

from __future__ import annotations

import asyncio
import socket
from urllib.parse import urlsplit

from storage_backends.socket_get import HEAD_LIMIT, GetFailed, connect, parse_head

BODY_LIMIT = 64 * 1024  # of an answer's body read: an error message, or nothing


class PutFailed(Exception):
    """The PUT could not be sent, or its answer was not HTTP."""


class Put:
    """A PUT of ``length`` bytes: ``send`` its pieces, then ``finish`` for the answer;
    ``abort`` closes the connection before the body ended."""

    def __init__(self, url: str, length: int, timeout: float) -> None:
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"not a plain-HTTP URL: {parts.scheme}://{parts.hostname}")
        self._parts = parts
        self.remaining = length
        self._timeout = timeout
        self._sock: socket.socket | None = None
        target = (parts.path or "/") + ("?" + parts.query if parts.query else "")
        self._head = (
            f"PUT {target} HTTP/1.1\r\nHost: {parts.netloc}\r\nConnection: close\r\n"
            f"Content-Length: {length}\r\n\r\n"
        ).encode("latin-1")

    async def send(self, data: bytes | memoryview) -> None:
        """Send the next ``data`` of the body (the head with the first)."""
        if len(data) > self.remaining:
            raise ValueError(f"{len(data)} bytes where {self.remaining} are left")
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self._timeout):
                if self._sock is None:
                    parts = self._parts
                    self._sock = await connect(parts.hostname or "", parts.port or 80)
                    await loop.sock_sendall(self._sock, self._head)
                await loop.sock_sendall(self._sock, data)
        except (OSError, TimeoutError) as e:
            raise PutFailed(f"PUT {self._parts.netloc}: {e or 'no progress'}") from e
        self.remaining -= len(data)

    async def finish(self) -> tuple[int, dict[str, str], bytes]:
        """The answer to the whole body: status, headers (lower-case names), and its
        body up to BODY_LIMIT bytes (an error's message)."""
        if self.remaining:
            raise ValueError(f"{self.remaining} bytes of the body were not sent")
        if self._sock is None:
            await self.send(b"")
        assert self._sock is not None
        loop = asyncio.get_running_loop()
        received = b""
        try:
            async with asyncio.timeout(self._timeout):
                while (end := received.find(b"\r\n\r\n")) < 0:
                    if len(received) > HEAD_LIMIT:
                        raise PutFailed(f"an answer head over {HEAD_LIMIT} bytes")
                    more = await loop.sock_recv(self._sock, 65536)
                    if not more:
                        raise PutFailed("the connection closed before the answer's head ended")
                    received += more
                status, headers = parse_head(received[:end])
                body = received[end + 4 :]
                length = headers.get("content-length", "0")
                wanted = min(int(length) if length.isdigit() else 0, BODY_LIMIT)
                while len(body) < wanted and (more := await loop.sock_recv(self._sock, 65536)):
                    body += more
        except GetFailed as e:  # before OSError, which it is
            raise PutFailed(f"PUT {self._parts.netloc}: {e}") from None
        except (OSError, TimeoutError) as e:
            raise PutFailed(f"PUT {self._parts.netloc}: {e or 'no answer'}") from e
        finally:
            self.abort()
        return status, headers, body[:BODY_LIMIT]

    def abort(self) -> None:
        if self._sock is not None:
            self._sock.close()
