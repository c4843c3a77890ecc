"""The embedded default: files below a root folder.

Small operations (links, session state, manifests; a few hundred bytes each) run
directly on the event loop: on a local disk they take microseconds, far less than a hop
to a thread. Blob data moves in threads (the default executor), a block per hop:
``write_pieces`` writes what a push gathered with one ``writev`` (no join), ``read``
reads 1 MiB at a time with one read ahead, and GETs of blobs do not read at all: they
``open_direct`` and the server sends the file (registry/zerocopy.py). Every replacement is
a write to a temporary file under ``<root>/.tmp`` followed by ``os.replace``, so a reader
sees the old file or the new one, never a part.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import errno
import functools
import os
import shutil
import stat
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

from storage_backends import malloc
from storage_backends.base import DirectRead, FileInfo, PathNotFoundError, StorageError

# Streamed reads (what the server does not send itself: TLS): small enough that a
# transfer in flight holds a few MiB at most (this, the read ahead, what the socket has
# not taken).
READ_CHUNK = 256 << 10
# delete_many unlinks up to this many files on the event loop, like other small
# operations; more would hold the loop for milliseconds, so they go to a thread.
INLINE_UNLINKS = 64
# A put of at most this many bytes that the file holds already only refreshes its
# modification time (what a rewrite would do for readers, who see the same bytes): no
# temporary file, and no replacing rename, which on ext4 flushes the new file
# (auto_da_alloc) -- milliseconds on a busy disk, for a link rewritten with its digest.
SAME_CONTENT_MAX = 4096
# A write of at most this much goes to the page cache from the event loop, like the
# small files: a hop to a thread and back costs more (a 4 KiB layer, a chunk's tail).
INLINE_WRITE = 64 * 1024
# Unlinking a file frees its pages: above this size, in a thread, not on the loop.
INLINE_UNLINK_SIZE = 1 << 20
_IOV_MAX = os.sysconf("SC_IOV_MAX") if hasattr(os, "sysconf") else 1024
# What keep_freed_memory sets glibc's thresholds to.
TRIM_THRESHOLD = 16 << 20
MMAP_THRESHOLD = 4 << 20


@functools.cache  # once per process
def keep_freed_memory() -> None:
    """Let the process keep what a push frees for its next pieces (glibc; elsewhere a
    no-op). Called by the first writer, not at start: what start-up freed is returned
    to the system as before.

    A push passes through the process as the pieces the server received (up to 256 KB
    each), freed a step (up to 2 MiB) at a time once written and hashed. glibc gives
    memory at the top of its heap back to the system once more than its trim threshold
    is free there, and its threshold follows the largest block ever freed: here twice a
    piece. So every step's pieces were returned and the next ones faulted in again (a
    page fault per 4 KiB received: 155,000 per GiB, 40% of the event loop's CPU). Up to
    TRIM_THRESHOLD of freed heap is kept instead; blocks above MMAP_THRESHOLD (fixed
    with it) still go back to the system as soon as they are freed. On S3 glibc reaches
    such thresholds by itself (parts of 16 MiB)."""
    malloc.set_option(malloc.M_MMAP_THRESHOLD, MMAP_THRESHOLD)
    malloc.set_option(malloc.M_TRIM_THRESHOLD, TRIM_THRESHOLD)


def _write_all(fd: int, pieces: Sequence[bytes]) -> None:
    """Write every byte of ``pieces`` in order: writev, again after a short write."""
    views = [memoryview(p) for p in pieces if p]
    while views:
        written = os.writev(fd, views[:_IOV_MAX])
        while views and written >= len(views[0]):
            written -= len(views[0])
            views.pop(0)
        if written:
            views[0] = views[0][written:]


def _refresh_if_same(path: str, data: bytes) -> bool:
    """If the file at ``path`` holds exactly ``data``, touch it and say so."""
    try:
        with open(path, "rb", buffering=0) as f:
            if f.read(len(data) + 1) != data:
                return False
        os.utime(path)
    except OSError:  # missing (perhaps deleted meanwhile), a folder: write it
        return False
    return True


# A large directory's sorted names are kept while the directory is unchanged, so that a
# page of it (a repository's 5,000 tags) costs a stat and the page, not a listing and a
# sort of everything. They are trusted only when the directory was last modified more
# than STABLE_NS ago: a change within one tick of its timestamp cannot then go unseen.
LISTING_CACHED_FROM = 512  # entries
LISTINGS_CACHED = 64  # directories
STABLE_NS = 2_000_000_000


class _SortedListings:
    def __init__(self) -> None:
        self._items: OrderedDict[tuple[str, bool], tuple[int, list[str]]] = OrderedDict()
        self._lock = threading.Lock()

    def names(self, folder: str, *, mark_folders: bool = False) -> list[str]:
        """The sorted names in ``folder`` (not to be modified); with ``mark_folders``
        a folder's name ends in "/" and sorts so. Raises like os.scandir."""
        key = (folder, mark_folders)
        modified = os.stat(folder).st_mtime_ns
        with self._lock:
            hit = self._items.get(key)
            if hit is not None and hit[0] == modified:
                self._items.move_to_end(key)
                return hit[1]
        with os.scandir(folder) as it:
            names = sorted(
                e.name + "/" if mark_folders and e.is_dir(follow_symlinks=False) else e.name
                for e in it
                if not e.name.startswith(".")
            )
        if len(names) >= LISTING_CACHED_FROM and time.time_ns() - modified > STABLE_NS:
            with self._lock:
                self._items[key] = (modified, names)
                self._items.move_to_end(key)
                while len(self._items) > LISTINGS_CACHED:
                    self._items.popitem(last=False)
        return names


class FilesystemWriter:
    def __init__(self, fd: int, path: Path, size: int) -> None:
        self._fd = fd
        self._path = path
        self._size = size
        self._closed = False
        self._writing: asyncio.Future[None] | None = None

    @property
    def size(self) -> int:
        return self._size

    async def write(self, data: bytes) -> None:
        await self.write_pieces((data,))

    async def write_pieces(self, pieces: Sequence[bytes]) -> None:
        if self._closed:  # its descriptor may be another file's by now
            raise StorageError(f"writer for {self._path} is closed")
        size = sum(map(len, pieces))
        if size <= INLINE_WRITE:
            _write_all(self._fd, pieces)  # see the module doc: small operations
            self._size += size
            return
        loop = asyncio.get_running_loop()
        self._writing = loop.run_in_executor(None, _write_all, self._fd, pieces)
        await self._writing
        self._size += size

    async def commit(self) -> None:
        await self.close()

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            writing, fd = self._writing, self._fd
            if writing is not None and not writing.done():
                # A cancelled caller left a write running in its thread: close after it.
                writing.add_done_callback(lambda _: os.close(fd))
            else:
                os.close(fd)

    async def cancel(self) -> None:
        await self.close()
        self._path.unlink(missing_ok=True)


class FilesystemDriver:
    name = "filesystem"

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).resolve()
        self._prefix = f"{self.root}{os.sep}"
        self._tmp = self.root / ".tmp"
        self._tmp_prefix = f"{self._tmp}{os.sep}"
        self._tmp.mkdir(parents=True, exist_ok=True)
        self._listings = _SortedListings()

    def _full(self, path: str) -> Path:
        return self.root / path

    def _full_str(self, path: str) -> str:
        # Plain strings on the hot paths (get, stat): pathlib costs more than the I/O.
        return self._prefix + path

    async def get(self, path: str) -> bytes:
        try:
            # Unbuffered: a buffered file asks whether it is a terminal, then seeks.
            with open(self._full_str(path), "rb", buffering=0) as f:  # noqa: ASYNC230
                return f.readall()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise PathNotFoundError(path) from None

    async def put(self, path: str, data: bytes) -> None:
        full = self._prefix + path
        if len(data) <= SAME_CONTENT_MAX and _refresh_if_same(full, data):
            return
        tmp = f"{self._tmp_prefix}{os.urandom(16).hex()}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        try:
            _write_all(fd, (data,))
        finally:
            os.close(fd)
        try:
            try:
                os.replace(tmp, full)
            except FileNotFoundError:  # the first file of its folder
                os.makedirs(os.path.dirname(full), exist_ok=True)
                os.replace(tmp, full)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise

    async def read(
        self, path: str, offset: int = 0, length: int | None = None
    ) -> AsyncIterator[bytes]:
        try:
            fd = os.open(self._full_str(path), os.O_RDONLY)
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise PathNotFoundError(path) from None
        loop = asyncio.get_running_loop()
        end = None if length is None else offset + length
        # Read ahead: the next chunk is read in a thread while the caller sends this one.
        pending: asyncio.Future[bytes] | None = None
        try:

            def next_read(at: int) -> asyncio.Future[bytes] | None:
                want = READ_CHUNK if end is None else min(READ_CHUNK, end - at)
                return None if want <= 0 else loop.run_in_executor(None, os.pread, fd, want, at)

            pending = next_read(offset)
            while pending is not None:
                chunk = await pending
                pending = None
                if not chunk:
                    break
                offset += len(chunk)
                pending = next_read(offset)
                yield chunk
        finally:
            if pending is not None:  # the caller stopped early: let the read finish
                with contextlib.suppress(Exception):
                    await pending
            os.close(fd)

    async def open_direct(self, path: str, offset: int, length: int) -> DirectRead:
        try:
            file = open(self._full_str(path), "rb", buffering=0)  # noqa: ASYNC230, SIM115
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise PathNotFoundError(path) from None
        return DirectRead(file, offset, length)

    async def writer(self, path: str, append: bool = False) -> FilesystemWriter:
        keep_freed_memory()
        full = self._prefix + path
        flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if append else os.O_TRUNC)
        try:
            fd = os.open(full, flags, 0o666)
        except FileNotFoundError:  # the first file of its folder
            os.makedirs(os.path.dirname(full), exist_ok=True)
            fd = os.open(full, flags, 0o666)
        size = os.fstat(fd).st_size if append else 0
        return FilesystemWriter(fd, Path(full), size)

    async def stat(self, path: str) -> FileInfo:
        try:
            st = os.stat(self._full_str(path))
        except (FileNotFoundError, NotADirectoryError):
            raise PathNotFoundError(path) from None
        is_dir = stat.S_ISDIR(st.st_mode)
        return FileInfo(path, 0 if is_dir else st.st_size, st.st_mtime, is_dir)

    async def list(
        self,
        prefix: str,
        *,
        start_after: str | None = None,
        limit: int | None = None,
        recursive: bool = False,
    ) -> list[str]:
        if recursive:
            return await asyncio.to_thread(
                _walk_files, self.root / prefix, start_after, limit, self._listings
            )
        try:
            names = self._listings.names(self._prefix + prefix)
        except (FileNotFoundError, NotADirectoryError):
            return []
        start = 0 if start_after is None else bisect.bisect_right(names, start_after)
        return names[start:] if limit is None else names[start : start + limit]

    async def move(self, src: str, dst: str) -> None:
        s, d = self._full(src), self._full(dst)
        try:
            try:
                os.replace(s, d)
            except FileNotFoundError:
                if not s.exists():
                    raise
                d.parent.mkdir(parents=True, exist_ok=True)  # the first file of its folder
                os.replace(s, d)
        except (FileNotFoundError, NotADirectoryError):
            if not s.exists():
                raise PathNotFoundError(src) from None
            raise

    async def delete(self, path: str) -> None:
        full = self._full(path)
        try:
            if os.stat(full).st_size > INLINE_UNLINK_SIZE:
                await asyncio.to_thread(full.unlink)
            else:
                full.unlink()
        except (FileNotFoundError, NotADirectoryError):
            pass
        except IsADirectoryError:
            # Renaming first makes the removal atomic for readers.
            doomed = self._tmp / uuid.uuid4().hex
            try:
                os.replace(full, doomed)
            except FileNotFoundError:
                return
            await asyncio.to_thread(shutil.rmtree, doomed, True)

    async def delete_many(self, paths: Sequence[str]) -> None:
        full = [self._prefix + p for p in paths]
        if len(full) <= INLINE_UNLINKS:
            _unlink_files(full)
        else:
            await asyncio.to_thread(_unlink_files, full)

    async def remove_folder(self, path: str) -> None:
        # rmdir removes only an empty folder: what another request wrote there stays.
        try:
            os.rmdir(self._prefix + path)
        except (FileNotFoundError, NotADirectoryError):
            pass
        except OSError as exc:
            if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise

    async def url_for(self, path: str, expires_in: int = 1200) -> str | None:
        return None

    async def close(self) -> None:
        return None


def _unlink_files(paths: list[str]) -> None:
    # Missing, or a directory: delete_many deletes files only.
    skipped = (FileNotFoundError, NotADirectoryError, IsADirectoryError)
    for path in paths:
        with contextlib.suppress(*skipped):
            os.unlink(path)


def _walk_files(
    base: Path, start_after: str | None, limit: int | None, listings: _SortedListings
) -> list[str]:
    """The files below ``base`` in byte order of their relative paths, after
    ``start_after``, at most ``limit``: a walk in that order that skips whole folders
    before ``start_after`` and stops at the limit, so that a page costs what it returns
    (and the folders on its way), not the whole tree."""
    out: list[str] = []
    if limit is not None and limit <= 0:
        return out

    def walk(folder: str, rel: str) -> bool:
        """Append what ``folder`` (``rel``: its path with a trailing '/') holds; False
        once the limit is reached."""
        try:
            # A folder "f" sorts as "f/", after "f-g" and "f.txt": byte order of paths.
            keys = listings.names(folder, mark_folders=True)
        except (FileNotFoundError, NotADirectoryError):
            return True
        first = 0
        if start_after is not None and start_after.startswith(rel):
            # Names before start_after's own first component here come before it.
            first = bisect.bisect_left(keys, start_after[len(rel) :].split("/")[0])
        for key in keys[first:]:
            name = rel + key
            if key.endswith("/"):
                # Every path below starts with name: all of them are before start_after
                # when name is, unless start_after itself lies below.
                if (
                    start_after is not None
                    and name < start_after
                    and not start_after.startswith(name)
                ):
                    continue
                if not walk(f"{folder}/{key[:-1]}", name):
                    return False
            elif start_after is None or name > start_after:
                out.append(name)
                if limit is not None and len(out) >= limit:
                    return False
        return True

    walk(str(base), "")
    return out
