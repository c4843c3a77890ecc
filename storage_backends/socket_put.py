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

from storage_backends.socket_get import GetFailed, connect, read_head

BODY_LIMIT = 64 * 1024  # of an answer's body read: an error message, or nothing
EARLY_ANSWER_WAIT = 1.0  # s: for an answer sent before the body ended, once sending failed


class PutFailed(Exception):
    """The PUT could not be sent, or its answer was not HTTP. ``status``: the store's
    answer, when it answered before the body ended (a refusal) and then closed."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


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
            answer = await self._early_answer()
            if answer is not None:
                status, body = answer
                raise PutFailed(f"{status} before the body ended: {body!r}", status) from e
            raise PutFailed(f"PUT {self._parts.netloc}: {e or 'no progress'}") from e
        self.remaining -= len(data)

    async def _early_answer(self) -> tuple[int, bytes] | None:
        """What the store answered before it closed, if it did (a refusal)."""
        if self._sock is None:
            return None
        try:
            async with asyncio.timeout(EARLY_ANSWER_WAIT):
                status, _, body = await self._answer()
        except (PutFailed, TimeoutError):
            return None
        return status, body[:300]

    async def finish(self) -> tuple[int, dict[str, str], bytes]:
        """The answer to the whole body: status, headers (lower-case names), and its
        body up to BODY_LIMIT bytes (an error's message)."""
        if self.remaining:
            raise ValueError(f"{self.remaining} bytes of the body were not sent")
        if self._sock is None:
            await self.send(b"")
        assert self._sock is not None
        try:
            async with asyncio.timeout(self._timeout):
                return await self._answer()
        except TimeoutError:
            why = f"no answer in {self._timeout:.0f} s"
            raise PutFailed(f"PUT {self._parts.netloc}: {why}") from None
        finally:
            self.abort()

    async def _answer(self) -> tuple[int, dict[str, str], bytes]:
        assert self._sock is not None
        loop = asyncio.get_running_loop()
        try:
            status, headers, body = await read_head(self._sock)
            length = headers.get("content-length", "0")
            wanted = min(int(length) if length.isdigit() else 0, BODY_LIMIT)
            while len(body) < wanted and (more := await loop.sock_recv(self._sock, 65536)):
                body += more
        except GetFailed as e:  # before OSError, which it is
            raise PutFailed(f"PUT {self._parts.netloc}: {e}") from None
        except OSError as e:
            raise PutFailed(f"PUT {self._parts.netloc}: {e}") from e
        return status, headers, body[:BODY_LIMIT]

    def abort(self) -> None:
        if self._sock is not None:
            self._sock.close()
