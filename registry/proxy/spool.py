"""A blob being fetched, spooled to a local temporary file that its readers follow.

One upstream GET feeds every client of a blob: the fill appends what arrives to the
spool and tells the readers; each reader reads the file at its own offset and pace, so
a slow client neither slows the fill nor costs memory, and a client that comes late
starts at byte 0 from the file. The file is scratch space of this host, not state:
the blob's home is the store, and the spool goes when the fill and its last reader are
done. Processes of one host share the spool folder, so a worker process can follow
the spool of another worker's fill (``SpoolFile``).

Appends are batched: while one write runs in a thread, the pieces that arrive meanwhile
gather and go in the next write, so a reader waits for at most one write, and a fast
upstream costs few thread hops. Memory stays at about ``MAX_PENDING``.

Reads are made on the event loop: what a reader asks for was written moments ago and
is in the page cache, so a read is a copy from memory, cheaper than a hop to a thread
and back. A read that took long came from the disk (a reader far behind on a blob
larger than the cache): that spool's reads then go to threads, as a file's sends do in
registry/zerocopy.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
import time

READ_MAX = 256 * 1024  # bytes a reader takes from the file at once
MAX_PENDING = 8 * 1024 * 1024  # bytes gathered before the fill waits for the disk
# A read that took longer came from the disk, not from the page cache.
FROM_DISK = 0.004


class _Preads:
    """Reads of one spool file: on the event loop while they are fast, in threads once
    one was slow."""

    def __init__(self) -> None:
        self.threaded = False

    async def pread(self, fd: int, n: int, offset: int) -> bytes:
        if self.threaded:
            return await asyncio.to_thread(os.pread, fd, n, offset)
        started = time.perf_counter()
        data = os.pread(fd, n, offset)
        if time.perf_counter() - started > FROM_DISK:
            self.threaded = True
        return data


class Spool:
    """The writer's side, and readers in this process (``read``)."""

    def __init__(self, directory: str | None = None) -> None:
        if directory is not None:
            os.makedirs(directory, exist_ok=True)
        self.fd, self.path = tempfile.mkstemp(prefix="blob-", suffix=".spool", dir=directory)
        self.written = 0  # bytes readable from the file
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self._writer: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()
        self._users = 1  # the writer; readers add themselves
        self._unlinked = False
        self._failed: BaseException | None = None
        self._preads = _Preads()

    # ------------------------------------------------------------------ writing

    async def append(self, data: bytes) -> None:
        if self._failed is not None:
            raise self._failed
        self._pending.append(data)
        self._pending_bytes += len(data)
        if self._writer is None or self._writer.done():
            self._writer = asyncio.ensure_future(self._write_pending())
        if self._pending_bytes >= MAX_PENDING:
            await self.flush()

    async def flush(self) -> None:
        while self._writer is not None and not self._writer.done():
            await asyncio.shield(self._writer)
        if self._failed is not None:
            raise self._failed

    async def _write_pending(self) -> None:
        try:
            while self._pending:
                block = b"".join(self._pending) if len(self._pending) > 1 else self._pending[0]
                self._pending, self._pending_bytes = [], 0
                await asyncio.to_thread(_pwrite_all, self.fd, block, self.written)
                self.written += len(block)
                self._notify()
        except OSError as exc:  # the spool's disk is full or gone
            self._failed = exc
            self._notify()

    def wake(self) -> None:
        """Wake the readers (the fill's state changed)."""
        self._notify()

    def _notify(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    def changed(self) -> asyncio.Event:
        """An event set at the next change (bytes written, or the end)."""
        return self._changed

    def ended(self) -> None:
        """The writer is done (whatever the outcome): wake every reader, and remove the
        file's name (readers keep their descriptors)."""
        self._notify()
        self._unlink()
        self.release()

    # ------------------------------------------------------------------ reading

    def acquire(self) -> None:
        self._users += 1

    def release(self) -> None:
        self._users -= 1
        if self._users == 0:
            self._unlink()
            with contextlib.suppress(OSError):
                os.close(self.fd)

    async def read(self, offset: int, limit: int = READ_MAX) -> bytes:
        """Up to ``limit`` bytes at ``offset`` of what is written (b"" at its end)."""
        n = min(limit, self.written - offset)
        if n <= 0:
            return b""
        return await self._preads.pread(self.fd, n, offset)

    def _unlink(self) -> None:
        if not self._unlinked:
            self._unlinked = True
            with contextlib.suppress(OSError):
                os.unlink(self.path)


def _pwrite_all(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, offset)
        view, offset = view[n:], offset + n


class SpoolFile:
    """Another process's spool, opened by its path: a follower reads what is there."""

    def __init__(self, path: str) -> None:
        self.fd = os.open(path, os.O_RDONLY)  # FileNotFoundError: that fill is over
        self._preads = _Preads()

    def size(self) -> int:
        return os.fstat(self.fd).st_size

    async def read(self, offset: int, limit: int = READ_MAX) -> bytes:
        return await self._preads.pread(self.fd, limit, offset)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)
