"""Blob pulls without copies: ASGI's zero-copy send extension, both ends.

``FileSendResponse`` (the application's end) hands the server an open file, an offset
and a byte count (``http.response.zerocopysend``) instead of the bytes. ``ZeroCopyCycle``
(the server's end, on uvicorn's request/response cycle) sends them with ``sendfile``:
from the page cache to the socket, so that the process holds no part of the blob,
whatever its size and however slow the client. The event loop calls it whenever the
socket has room, as nginx does; a call that waited for the disk (it read from the disk,
and it took long) hands the rest of that file to threads, so that a cold blob does not
hold up the event loop for long, and a slow client holds no thread either way. A call
that only took long (the machine is busy: on loopback one call also runs the receiver's
side of TCP) stays on the event loop: threads would cost a hop per call for nothing.
Plain HTTP only: with TLS the bytes must pass through the process, and the server does
not offer the extension (nor does an in-process test client): routes then stream as
before.
"""

from __future__ import annotations

import asyncio
import os
import resource
import time
from collections.abc import Mapping
from typing import Any, BinaryIO

from starlette.background import BackgroundTask
from starlette.responses import Response
from starlette.types import Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import RequestResponseCycle

from registry.request_log import ZERO_COPY

# One sendfile call moves at most this much: what the socket has room for is usually
# less; the cap only bounds how long one call can take.
SENDFILE_MAX = 16 * 1024 * 1024
# A sendfile call that read from the disk and took longer waited for it.
FROM_DISK = 0.004


def offers_zero_copy(scope: Scope) -> bool:
    return ZERO_COPY in scope.get("extensions", ())


class FileSendResponse(Response):
    """``length`` bytes of ``file`` from ``offset``, sent by the server; the response
    closes the file."""

    def __init__(
        self,
        file: BinaryIO,
        offset: int,
        length: int,
        status_code: int = 200,
        headers: Mapping[str, str] | None = None,
        media_type: str | None = None,
        background: BackgroundTask | None = None,
    ) -> None:
        self.file = file
        self.offset = offset
        self.length = length
        self.status_code = status_code
        self.media_type = media_type
        self.background = background
        self.init_headers(headers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": self.status_code,
                    "headers": self.raw_headers,
                }
            )
            await send(
                {
                    "type": ZERO_COPY,
                    "file": self.file,
                    "offset": self.offset,
                    "count": self.length,
                    "more_body": False,
                }
            )
        finally:
            self.file.close()
        if self.background is not None:
            await self.background()


class ConnectionGone(Exception):
    """The connection closed while a file was being sent."""


class ZeroCopyCycle(RequestResponseCycle):
    """uvicorn's cycle, plus ``http.response.zerocopysend`` (the protocol in
    registry/server.py makes its cycles of this class on plain-HTTP connections)."""

    _waiter: asyncio.Future[None] | None = None

    async def send(self, message: Any) -> None:
        if message["type"] != ZERO_COPY:
            await super().send(message)
            return
        if not self.response_started or self.response_complete:
            raise RuntimeError(f"Unexpected ASGI message '{ZERO_COPY}'.")
        if self.chunked_encoding:
            raise RuntimeError("A zero-copy send needs a Content-Length.")
        file = message["file"]
        fd = file if isinstance(file, int) else file.fileno()
        offset = message.get("offset")
        if offset is None:
            offset = os.lseek(fd, 0, os.SEEK_CUR)
        count = message.get("count")
        if count is None:
            count = os.fstat(fd).st_size - offset
        if self.scope["method"] != "HEAD" and not self.disconnected and count:
            if count > self.expected_content_length:
                raise RuntimeError("Response content longer than Content-Length")
            try:
                await self._sendfile(fd, offset, count)
            except (ConnectionGone, OSError):
                # What uvicorn does when a client leaves: stop sending, say nothing.
                self.disconnected = True
                self.transport.close()
                return
            self.expected_content_length -= count
        await super().send(
            {
                "type": "http.response.body",
                "body": b"",
                "more_body": message.get("more_body", False),
            }
        )

    def connection_lost(self) -> None:
        """The protocol's word that the connection closed: stop a send waiting for room."""
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(ConnectionGone())

    async def _sendfile(self, fd: int, offset: int, count: int) -> None:
        loop = asyncio.get_running_loop()
        # uvloop refuses to poll a descriptor its transport owns: poll a duplicate (the
        # same socket) for room, and send through it.
        if self.transport.is_closing():
            raise ConnectionGone()
        out = os.dup(self.transport.get_extra_info("socket").fileno())
        try:
            transfer = _Transfer(self, loop, out, fd, offset, count)
            self._waiter = transfer.done
            loop.add_writer(out, transfer.on_room)
            try:
                await transfer.done
            finally:
                loop.remove_writer(out)
                self._waiter = None
            if transfer.count:  # the file is not in the page cache: go on in threads
                await self._sendfile_in_threads(loop, out, fd, transfer.offset, transfer.count)
        finally:
            os.close(out)

    async def _sendfile_in_threads(
        self, loop: asyncio.AbstractEventLoop, out: int, fd: int, offset: int, count: int
    ) -> None:
        while count:
            want = min(count, SENDFILE_MAX)
            try:
                sent = await loop.run_in_executor(None, os.sendfile, out, fd, offset, want)
            except BlockingIOError:
                await self._room(loop, out)
                continue
            if sent == 0:
                raise RuntimeError("the file is shorter than the response says")
            offset += sent
            count -= sent
            if self.disconnected:
                raise ConnectionGone()
            if sent < want:  # the socket is full: wait for room before the next call
                await self._room(loop, out)

    async def _room(self, loop: asyncio.AbstractEventLoop, out: int) -> None:
        if self.disconnected:
            raise ConnectionGone()
        waiter: asyncio.Future[None] = loop.create_future()
        self._waiter = waiter
        loop.add_writer(out, _wake, waiter)
        try:
            await waiter
        finally:
            loop.remove_writer(out)
            self._waiter = None


class _Transfer:
    """A file sent from the event loop: whenever the socket has room, as much as it takes
    (a copy from the page cache, no system call wasted on waiting). A call that took
    long read from the disk; the rest then goes through threads, so that the event loop
    waits for no disk more than once per transfer."""

    def __init__(
        self,
        cycle: ZeroCopyCycle,
        loop: asyncio.AbstractEventLoop,
        out: int,
        fd: int,
        offset: int,
        count: int,
    ) -> None:
        self.cycle = cycle
        self.out = out
        self.fd = fd
        self.offset = offset
        self.count = count
        self.done: asyncio.Future[None] = loop.create_future()

    def on_room(self) -> None:
        if self.done.done() or self.cycle.transport.get_write_buffer_size():
            return  # finished, or uvloop still holds the head: it goes first
        try:
            while self.count:
                want = min(self.count, SENDFILE_MAX)
                reads = _disk_reads()
                started = time.perf_counter()
                sent = os.sendfile(self.out, self.fd, self.offset, want)
                if sent == 0:
                    raise RuntimeError("the file is shorter than the response says")
                self.offset += sent
                self.count -= sent
                if _waited_for_disk(started, reads):
                    break
                if sent < want:
                    return  # the socket is full: called again when it has room
        except BlockingIOError:
            return
        except Exception as exc:
            self.done.set_exception(exc)
            return
        self.done.set_result(None)


def _waited_for_disk(started: float, reads: int) -> bool:
    """The call begun at ``started``, when this thread had made ``reads`` disk reads, read
    from the disk and took long."""
    return time.perf_counter() - started > FROM_DISK and _disk_reads() > reads


def _disk_reads() -> int:
    """Blocks this thread has read from a disk so far (reads the page cache served
    are not counted)."""
    return resource.getrusage(resource.RUSAGE_THREAD).ru_inblock


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)
