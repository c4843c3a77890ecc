"""Files in memory: the driver for fast tests, with the filesystem and S3 drivers' semantics.

Several drivers may share one ``MemoryStore``, as several processes share a bucket.
Modification times come from each driver's ``clock``, so that a test moves time instead
of sleeping (the collector compares them with a grace period). Where the two real drivers
differ, this one takes the stricter side: written data becomes a readable, listable file
only on ``commit`` (as on S3), and ``move`` keeps the modification time (as a rename
does), so that nothing looks newer than it would on disk.
"""

from __future__ import annotations

import bisect
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass

from storage_backends.base import FileInfo, PathNotFoundError, StorageError

READ_CHUNK = 1 << 20
# The character after '/': the keys below folder "a" are those from "a/" up to "a0".
_AFTER_SLASH = chr(ord("/") + 1)


@dataclass(frozen=True)
class _File:
    data: bytes
    modified: float


class MemoryStore:
    """What the drivers of one store share: committed files, in byte order of their
    paths, and the data of writers closed before their commit."""

    def __init__(self) -> None:
        self.files: dict[str, _File] = {}
        self.unfinished: dict[str, bytes] = {}
        self._paths: list[str] = []  # sorted, for listings
        # Drivers of one store may run on several event loops (threads); each operation
        # holds the lock for its few dictionary steps.
        self.lock = threading.Lock()

    def set(self, path: str, file: _File) -> None:
        if path not in self.files:
            bisect.insort(self._paths, path)
        self.files[path] = file

    def remove(self, path: str) -> None:
        if self.files.pop(path, None) is not None:
            del self._paths[bisect.bisect_left(self._paths, path)]

    def remove_below(self, folder: str) -> None:
        start, end = self.span(folder + "/")
        for path in self._paths[start:end]:
            del self.files[path]
        del self._paths[start:end]
        for path in [p for p in self.unfinished if p.startswith(folder + "/")]:
            del self.unfinished[path]

    def span(self, folder: str, after: str | None = None) -> tuple[int, int]:
        """Indexes of the sorted paths below ``folder`` ("" or ending in '/'), and only
        those after ``after`` when given."""
        start = bisect.bisect_left(self._paths, folder)
        if after is not None:
            start = max(start, bisect.bisect_right(self._paths, after))
        if not folder:
            return start, len(self._paths)
        end = bisect.bisect_left(self._paths, folder[:-1] + _AFTER_SLASH, lo=start)
        return start, end

    def path_at(self, index: int) -> str:
        return self._paths[index]


class MemoryWriter:
    """Holds its data until ``close`` (kept for a later append) or ``commit``."""

    def __init__(self, driver: MemoryDriver, path: str, data: bytes) -> None:
        self._driver = driver
        self._path = path
        self._buf = bytearray(data)
        self._dirty = False
        self._closed = False

    @property
    def size(self) -> int:
        return len(self._buf)

    def _check_open(self) -> None:
        if self._closed:
            raise StorageError(f"writer for {self._path} is closed")

    async def write(self, data: bytes) -> None:
        self._check_open()
        if data:
            self._buf += data
            self._dirty = True

    async def commit(self) -> None:
        self._check_open()
        self._closed = True
        store = self._driver.store
        with store.lock:
            store.set(self._path, _File(bytes(self._buf), self._driver.clock()))
            store.unfinished.pop(self._path, None)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._dirty:
            store = self._driver.store
            with store.lock:
                store.unfinished[self._path] = bytes(self._buf)

    async def cancel(self) -> None:
        self._closed = True
        store = self._driver.store
        with store.lock:
            store.unfinished.pop(self._path, None)
            store.remove(self._path)


class MemoryDriver:
    name = "memory"

    def __init__(
        self, store: MemoryStore | None = None, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.store = MemoryStore() if store is None else store
        self.clock = clock

    def _file(self, path: str) -> _File:
        file = self.store.files.get(path)
        if file is None:
            raise PathNotFoundError(path)
        return file

    async def get(self, path: str) -> bytes:
        return self._file(path).data

    async def put(self, path: str, data: bytes) -> None:
        with self.store.lock:
            self.store.set(path, _File(bytes(data), self.clock()))

    async def read(
        self, path: str, offset: int = 0, length: int | None = None
    ) -> AsyncIterator[bytes]:
        data = self._file(path).data  # bytes never change: a put during the read is unseen
        end = len(data) if length is None else min(len(data), offset + length)
        for start in range(offset, end, READ_CHUNK):
            yield data[start : min(start + READ_CHUNK, end)]

    async def writer(self, path: str, append: bool = False) -> MemoryWriter:
        store = self.store
        with store.lock:
            if not append:
                store.unfinished.pop(path, None)
                return MemoryWriter(self, path, b"")
            data = store.unfinished.get(path)
            if data is None:
                file = store.files.get(path)
                data = b"" if file is None else file.data
        return MemoryWriter(self, path, data)

    async def stat(self, path: str) -> FileInfo:
        store = self.store
        with store.lock:
            file = store.files.get(path)
            if file is not None:
                return FileInfo(path, len(file.data), file.modified)
            start, end = store.span(path + "/")
            if start == end:
                raise PathNotFoundError(path)
            first = store.files[store.path_at(start)]
        return FileInfo(path, 0, first.modified, is_dir=True)

    async def list(
        self,
        prefix: str,
        *,
        start_after: str | None = None,
        limit: int | None = None,
        recursive: bool = False,
    ) -> list[str]:
        if limit is not None and limit <= 0:
            return []
        base = f"{prefix}/" if prefix else ""
        after = None if start_after is None else base + start_after
        store = self.store
        names: list[str] = []
        with store.lock:
            index, end = store.span(base, after)
            if recursive:  # relative paths sort as the full ones: a slice
                stop = end if limit is None else min(end, index + limit)
                return [store.path_at(i)[len(base) :] for i in range(index, stop)]
            # Each child once: a folder's paths are skipped at once.
            while index < end:
                name, slash, _ = store.path_at(index)[len(base) :].partition("/")
                if start_after is None or name > start_after:
                    names.append(name)
                if slash:
                    index = store.span(base + name + "/")[1]
                else:
                    index += 1
        # A folder "f" came after "f-g" and "f.txt" (its paths start "f/"); by name it
        # comes first.
        names.sort()
        return names if limit is None else names[:limit]

    async def move(self, src: str, dst: str) -> None:
        store = self.store
        with store.lock:
            file = self._file(src)
            if src == dst:
                return
            store.set(dst, file)
            store.remove(src)
            store.unfinished.pop(src, None)

    async def delete(self, path: str) -> None:
        store = self.store
        with store.lock:
            store.remove(path)
            store.unfinished.pop(path, None)
            store.remove_below(path)

    async def delete_many(self, paths: Sequence[str]) -> None:
        store = self.store
        with store.lock:
            for path in paths:
                store.remove(path)

    async def url_for(self, path: str, expires_in: int = 1200) -> str | None:
        return None

    async def close(self) -> None:
        return None
