"""Blob pulls the server sends itself: ASGI's zero-copy send extension, both ends.

``DirectSendResponse`` (the application's end) hands the server what the storage driver
opened for it (storage_backends.DirectRead) instead of the bytes: a file with an offset
and a byte count (``http.response.zerocopysend``), or a socket the bytes arrive on.
``ZeroCopyCycle`` (the server's end, on uvicorn's request/response cycle) sends them.

A file is sent from the event loop whenever the socket has room, as nginx does, as much
as the socket takes. To a peer on another machine it goes with ``sendfile``, from the
page cache, which spares the process a copy. To a peer on this machine (loopback: a
reverse proxy, a sidecar, a client on the host) it is read into one 256 KiB buffer per
worker (``pread``) and written to the socket: there the receiver's side of TCP runs on
the same cores, and sendfile cost more there than the two copies do. Measured on
loopback (kernel 6.18, 2 cores): one 1 GiB pull cost the worker 0.17-0.20 s of CPU per
GiB through the buffer against 0.24-0.41 s with sendfile, and pulls ran 1.2-1.4x faster;
but 200 clients reading at 1 MB/s, whose receivers wait between reads, cost 0.34 s per
GiB through the buffer against 0.13 s with sendfile, so a remote peer, whose receiver is
not on our cores, keeps sendfile (not measured: there is no second machine here). What a
full socket did not take waits in the buffer for that transfer's next turn; if another
transfer needed the buffer meanwhile it is read again, from the page cache. Either way
the process holds no more of a blob than that buffer, whatever its size and however slow
the client. A read that waited for the disk (it read from the disk, and it took long)
hands the rest of that file to threads, which ``sendfile`` it, so that a cold blob does
not hold up the event loop for long, and a slow client holds no thread either way. A
read that only took long (the machine is busy) stays on the event loop: threads would
cost a hop per call for nothing.

A socket (the S3 store's answer to a GET, storage_backends/socket_get.py) goes with
``splice`` through a pipe: the kernel moves the bytes from one socket to the other, on
the event loop, with no thread and no buffer in the process. A store that ends early
cuts the response: the client sees an incomplete body, never a complete wrong one.

Plain HTTP only: with TLS the bytes must pass through the process, and the server does
not offer the extension (nor does an in-process test client): routes then stream as
before.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import ipaddress
import logging
import os
import resource
import stat
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from starlette.responses import Response
from starlette.types import Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import RequestResponseCycle

from registry.aborts import abort
from registry.request_log import ZERO_COPY
from storage_backends import DirectRead

log = logging.getLogger(__name__)

# One sendfile call moves at most this much: what the socket has room for is usually
# less; the cap only bounds how long one call can take.
SENDFILE_MAX = 16 * 1024 * 1024
# The buffer a worker reads files into for peers on this machine: one read, one write.
COPY_SIZE = 256 * 1024
# A read that read from the disk and took longer waited for it.
FROM_DISK = 0.004
# The pipe between a store's socket and a client's: the most one splice call moves.
PIPE_SIZE = 256 * 1024
# A store's socket that sends nothing for this long while the client waits has failed.
SOURCE_IDLE = 60.0
_SHORT_FILE = "the file is shorter than the response says"
F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)
F_GETPIPE_SZ = getattr(fcntl, "F_GETPIPE_SZ", 1032)
_SPLICE_FLAGS = os.SPLICE_F_MOVE | os.SPLICE_F_NONBLOCK


def offers_zero_copy(scope: Scope) -> bool:
    return ZERO_COPY in scope.get("extensions", ())


class DirectSendResponse(Response):
    """A stored object's bytes (storage_backends.DirectRead) sent by the server: a file
    from the page cache, a socket with splice. The response closes the read. A store that
    ends its bytes early cuts the response (the client sees an incomplete body)."""

    def __init__(
        self,
        read: DirectRead,
        status_code: int = 200,
        headers: Mapping[str, str] | None = None,
        media_type: str | None = None,
    ) -> None:
        self.read = read
        self.status_code = status_code
        self.media_type = media_type
        self.background = None
        self.init_headers(headers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        read = self.read
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": self.status_code,
                    "headers": self.raw_headers,
                }
            )
            if read.head:
                await send({"type": "http.response.body", "body": read.head, "more_body": True})
            await send(
                {
                    "type": ZERO_COPY,
                    "file": read.source.fileno(),
                    "offset": read.offset,
                    "count": read.count,
                    "more_body": False,
                }
            )
        except SourceEnded as e:
            log.warning("response cut short: %s", e)
            await abort(scope, send)
        finally:
            read.close()


class ConnectionGone(Exception):
    """The connection closed while a response's bytes were being sent."""


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
        fd = message["file"]
        fd = fd if isinstance(fd, int) else fd.fileno()
        offset, count = message.get("offset"), message.get("count")
        st = os.fstat(fd)
        from_socket = stat.S_ISSOCK(st.st_mode)
        if from_socket:
            if count is None:
                raise RuntimeError("A zero-copy send from a socket needs a count.")
        else:
            if offset is None:
                offset = os.lseek(fd, 0, os.SEEK_CUR)
            if count is None:
                count = st.st_size - offset
        if self.scope["method"] != "HEAD" and not self.disconnected and count:
            if count > self.expected_content_length:
                raise RuntimeError("Response content longer than Content-Length")
            try:
                if from_socket:
                    await self._splice(fd, count)
                else:
                    await self._send_file(fd, offset, count)
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

    async def _send_file(self, fd: int, offset: int, count: int) -> None:
        loop = asyncio.get_running_loop()
        with self._client_socket() as out:
            copy = _on_this_machine(self.transport.get_extra_info("peername"))
            transfer = _Transfer(self, loop, out, fd, offset, count, copy=copy)
            self._waiter = transfer.done
            loop.add_writer(out, transfer.on_room)
            try:
                await transfer.done
            finally:
                loop.remove_writer(out)
                self._waiter = None
                transfer.buffer.release(transfer)
            if transfer.count:  # the file is not in the page cache: go on in threads
                await self._sendfile_in_threads(loop, out, fd, transfer.offset, transfer.count)

    async def _splice(self, source: int, count: int) -> None:
        loop = asyncio.get_running_loop()
        with self._client_socket() as out, _Splice(self, loop, source, out, count) as splice:
            self._waiter = splice.done
            try:
                splice.step()
                await splice.done
            finally:
                self._waiter = None

    @contextlib.contextmanager
    def _client_socket(self) -> Iterator[int]:
        """The client's socket, duplicated: uvloop refuses to poll a descriptor its
        transport owns, so a duplicate (the same socket) is polled for room and written."""
        if self.transport.is_closing():
            raise ConnectionGone()
        out = os.dup(self.transport.get_extra_info("socket").fileno())
        try:
            yield out
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
                raise RuntimeError(_SHORT_FILE)
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
    """A file sent from the event loop: whenever the socket has room, as much as it takes,
    through the worker's buffer (``copy``) or with sendfile; no system call wasted on
    waiting. A read that took long read from the disk; the rest then goes through
    threads, so that the event loop waits for no disk more than once per transfer."""

    def __init__(
        self,
        cycle: ZeroCopyCycle,
        loop: asyncio.AbstractEventLoop,
        out: int,
        fd: int,
        offset: int,
        count: int,
        *,
        copy: bool,
    ) -> None:
        self.cycle = cycle
        self.out = out
        self.copy = copy
        self.fd = fd
        self.offset = offset
        self.count = count
        self.cold = False
        self.buffer = _CopyBuffer.of_this_thread()
        self.done: asyncio.Future[None] = loop.create_future()

    def on_room(self) -> None:
        if self.done.done() or self.cycle.transport.get_write_buffer_size():
            return  # finished, or uvloop still holds the head: it goes first
        try:
            while self.count and not self.cold:
                sent, asked = self._copy() if self.copy else self._sendfile()
                self.offset += sent
                self.count -= sent
                if sent < asked:
                    return  # the socket is full: called again when it has room
        except BlockingIOError:
            return
        except Exception as exc:
            self.done.set_exception(exc)
            return
        self.done.set_result(None)

    def _copy(self) -> tuple[int, int]:
        """Through the worker's buffer: bytes sent, bytes offered."""
        pending = self.buffer.take(self)
        if pending is None:
            room = self.buffer.room(min(self.count, COPY_SIZE))
            pending = room[: self._from_file(lambda: os.preadv(self.fd, [room], self.offset))]
        try:
            sent = os.write(self.out, pending)
        except BlockingIOError:
            self.buffer.hold(self, pending)
            raise
        if sent < len(pending):
            self.buffer.hold(self, pending[sent:])
        return sent, len(pending)

    def _sendfile(self) -> tuple[int, int]:
        """By the kernel, from the page cache: bytes sent, bytes offered."""
        want = min(self.count, SENDFILE_MAX)
        return self._from_file(lambda: os.sendfile(self.out, self.fd, self.offset, want)), want

    def _from_file(self, call: Callable[[], int]) -> int:
        """``call`` (bytes moved from the file at the offset); a call that waited for the
        disk makes the transfer cold."""
        reads = _disk_reads()
        started = time.perf_counter()
        moved = call()
        if moved == 0:
            raise RuntimeError(_SHORT_FILE)
        self.cold = _waited_for_disk(started, reads)
        return moved


class _CopyBuffer:
    """The buffer one event loop's file transfers read into, one at a time. What a full
    socket did not take stays in it for its transfer, until another transfer reads."""

    _local = threading.local()

    def __init__(self) -> None:
        self.view = memoryview(bytearray(COPY_SIZE))
        self.holder: _Transfer | None = None
        self.tail = self.view[:0]

    @classmethod
    def of_this_thread(cls) -> _CopyBuffer:
        buffer: _CopyBuffer | None = getattr(cls._local, "buffer", None)
        if buffer is None:
            buffer = cls._local.buffer = cls()
        return buffer

    def room(self, count: int) -> memoryview:
        """The first ``count`` bytes of the buffer, to read into: what it held goes."""
        self.holder = None
        return self.view[:count]

    def take(self, transfer: _Transfer) -> memoryview | None:
        """What ``transfer`` left in the buffer, if no other transfer read since."""
        if self.holder is not transfer:
            return None
        self.holder = None
        return self.tail

    def hold(self, transfer: _Transfer, tail: memoryview) -> None:
        self.holder = transfer
        self.tail = tail

    def release(self, transfer: _Transfer) -> None:
        if self.holder is transfer:
            self.holder = None


class SourceEnded(Exception):
    """The socket a response's bytes came from failed or ended before all of them."""


class _Splice:
    """Bytes from a socket (the store's) to the client's through a pipe, on the event
    loop: the kernel moves them, the process never holds them. Read while the pipe has
    room, written while the client's socket has room: each side waits for the other
    through the pipe's size, so a slow client slows the store's socket (back-pressure),
    and memory stays at one pipe, outside the process."""

    def __init__(
        self,
        cycle: ZeroCopyCycle,
        loop: asyncio.AbstractEventLoop,
        source: int,
        out: int,
        count: int,
    ) -> None:
        self.cycle = cycle
        self.loop = loop
        self.source = source
        self.out = out
        self.to_read = count
        self.in_pipe = 0
        self.done: asyncio.Future[None] = loop.create_future()
        self.pipe_r, self.pipe_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        with contextlib.suppress(OSError):  # at most /proc/sys/fs/pipe-max-size
            fcntl.fcntl(self.pipe_w, F_SETPIPE_SZ, PIPE_SIZE)
        self.room = fcntl.fcntl(self.pipe_w, F_GETPIPE_SZ)
        self.pipe_full = False
        self.reading = self.writing = False
        self.idle = loop.call_later(SOURCE_IDLE, self._idle)
        self.last_read = loop.time()

    def __enter__(self) -> _Splice:
        return self

    def __exit__(self, *_: object) -> None:
        self.idle.cancel()
        self._watch(read=False, write=False)
        os.close(self.pipe_r)
        os.close(self.pipe_w)

    def step(self) -> None:
        """Move what can be moved now, then wait for whichever side can go on."""
        if self.done.done():
            return
        try:
            moved = True
            while moved:
                moved = self._fill() | self._drain()
            if not self.to_read and not self.in_pipe:
                self.done.set_result(None)
                return
        except Exception as exc:
            self.done.set_exception(exc)
            return
        self._watch(
            read=bool(self.to_read) and not self.pipe_full and self.in_pipe < self.room,
            write=bool(self.in_pipe),
        )

    def _fill(self) -> bool:
        if not self.to_read or self.in_pipe >= self.room:
            return False
        want = min(self.to_read, self.room - self.in_pipe)
        try:
            got = os.splice(self.source, self.pipe_w, want, flags=_SPLICE_FLAGS)
        except BlockingIOError:
            # Nothing to read, or the pipe is full: a pipe holds one piece of a socket's
            # buffers per page of its size, however small the pieces, so it can be full
            # below its size in bytes. With bytes in it, wait for the client to take
            # some before reading again: waiting on the store's socket would wake at
            # once, and again, for nothing.
            self.pipe_full = self.in_pipe > 0
            return False
        except OSError as e:
            raise SourceEnded(f"the store's connection failed: {e}") from e
        if got == 0:
            raise SourceEnded(f"the store's connection ended {self.to_read} bytes early")
        self.to_read -= got
        self.in_pipe += got
        self.last_read = self.loop.time()
        return True

    def _drain(self) -> bool:
        if not self.in_pipe or self.cycle.transport.get_write_buffer_size():
            return False  # nothing to send, or uvloop still holds the head: it goes first
        try:
            sent = os.splice(self.pipe_r, self.out, self.in_pipe, flags=_SPLICE_FLAGS)
        except BlockingIOError:
            return False
        self.in_pipe -= sent
        self.pipe_full = False
        return sent > 0

    def _watch(self, read: bool, write: bool) -> None:
        if read != self.reading:
            if read:
                self.last_read = self.loop.time()  # the store's silence counts from now
                self.loop.add_reader(self.source, self.step)
            else:
                self.loop.remove_reader(self.source)
            self.reading = read
        if write != self.writing:
            if write:
                self.loop.add_writer(self.out, self.step)
            else:
                self.loop.remove_writer(self.out)
            self.writing = write

    def _idle(self) -> None:
        """The store sent nothing for SOURCE_IDLE seconds while it could have: give up
        (a client that reads slowly is not the store's silence)."""
        if self.done.done():
            return
        waited = self.loop.time() - self.last_read
        if self.reading and waited >= SOURCE_IDLE:
            self.done.set_exception(SourceEnded(f"the store sent nothing for {waited:.0f} s"))
            return
        self.idle = self.loop.call_later(SOURCE_IDLE, self._idle)


def _on_this_machine(peer: Any) -> bool:
    """Whether a connection's peer address is a loopback address (IPv4, IPv6, or IPv4
    mapped into IPv6)."""
    try:
        ip = ipaddress.ip_address(peer[0])
    except (TypeError, IndexError, ValueError):
        return False
    mapped = getattr(ip, "ipv4_mapped", None)
    return (mapped or ip).is_loopback


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
