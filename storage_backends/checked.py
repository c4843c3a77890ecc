"""Every driver call, checked and timed: the one wrapper production puts around a driver.

Drivers stay small and dumb. This wrapper refuses unsafe paths before a driver sees them
(so that a bug above can never escape a driver's root or reach its own files, such as the
filesystem's ``.tmp`` or the S3 ``@upload`` sidecars), and tells an optional observer how
long each call took (``registry/metrics.py`` is one). ``storage_backends.factory``
returns drivers wrapped; a driver used bare checks nothing.

It sits on the path of every small request, so it stays cheap: the methods are plain
functions that check the path and hand back the driver's own coroutine, and only with an
observer is a call wrapped in a timing coroutine.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from time import perf_counter
from typing import Any, TypeVar

from storage_backends.base import (
    DirectRead,
    DirectReads,
    Driver,
    ExpectingWriter,
    FileInfo,
    FileWriter,
    Folders,
    GatheringWriter,
    InvalidOffsetError,
    InvalidPathError,
    PathNotFoundError,
)

T = TypeVar("T")

Observer = Callable[[str, str, float, bool], None]
"""Called once per driver call with (driver name, operation, seconds, failed). A ``read``
is timed until its first bytes. ``failed`` means the backend failed: a missing path or an
append at the wrong offset is an answer, not a failure."""

# One component: no leading '.', which also refuses '.' and '..'. Drivers keep their own
# files under such names (the filesystem's ``.tmp``), and S3 sidecars end in '@', which no
# component may hold. fullmatch: '$' would let a trailing newline through.
_COMPONENT = r"[A-Za-z0-9_:!+=-][A-Za-z0-9_.:!+=-]*"
_PATH = re.compile(f"{_COMPONENT}(?:/{_COMPONENT})*")
_ANSWERS = (PathNotFoundError, InvalidOffsetError)


def check_path(path: str) -> str:
    """Return ``path`` if it is a safe relative key, else raise InvalidPathError."""
    if _PATH.fullmatch(path) is None:
        raise InvalidPathError(f"invalid path: {path!r}")
    return path


def check_prefix(prefix: str) -> str:
    """Like check_path, for a directory prefix; the empty prefix is the root."""
    return check_path(prefix) if prefix else prefix


def check_paths(paths: Sequence[str]) -> list[str]:
    """``paths`` as a list if every one passes check_path, else raise InvalidPathError.
    A lone string is a TypeError: as a sequence it is its characters, valid paths all."""
    if isinstance(paths, str):
        raise TypeError(f"expected a sequence of paths, got the string {paths!r}")
    return [check_path(p) for p in paths]


class _Timer:
    """Reports calls of one driver to the observer."""

    __slots__ = ("driver", "observer")

    def __init__(self, driver: str, observer: Observer) -> None:
        self.driver = driver
        self.observer = observer

    async def time(self, operation: str, call: Coroutine[Any, Any, T]) -> T:
        started = perf_counter()
        failed = False
        try:
            return await call
        except _ANSWERS:
            raise
        except Exception:
            failed = True
            raise
        finally:
            self.observer(self.driver, operation, perf_counter() - started, failed)


class TimedWriter:
    """A writer whose calls are reported like the driver's."""

    def __init__(self, inner: FileWriter, timer: _Timer) -> None:
        self._inner = inner
        self._timer = timer

    @property
    def size(self) -> int:
        return self._inner.size

    def write(self, data: bytes) -> Coroutine[Any, Any, None]:
        return self._timer.time("write", self._inner.write(data))

    def write_pieces(self, pieces: Sequence[bytes]) -> Coroutine[Any, Any, None]:
        inner = self._inner
        if isinstance(inner, GatheringWriter):
            return self._timer.time("write", inner.write_pieces(pieces))
        return self.write(b"".join(pieces))

    def expect(self, length: int) -> None:
        if isinstance(self._inner, ExpectingWriter):
            self._inner.expect(length)

    def commit(self) -> Coroutine[Any, Any, None]:
        return self._timer.time("commit", self._inner.commit())

    def close(self) -> Coroutine[Any, Any, None]:
        return self._timer.time("close", self._inner.close())

    def cancel(self) -> Coroutine[Any, Any, None]:
        return self._timer.time("cancel", self._inner.cancel())


class CheckedDriver:
    """``inner`` with every path checked and, given an observer, every call timed.

    A path is refused when the method is called, before any I/O and before timing: a
    refused path is no storage operation."""

    def __init__(self, inner: Driver, observer: Observer | None = None) -> None:
        self.inner = inner
        self.name = inner.name
        self._timer = None if observer is None else _Timer(inner.name, observer)

    def get(self, path: str) -> Coroutine[Any, Any, bytes]:
        call = self.inner.get(check_path(path))
        return call if self._timer is None else self._timer.time("get", call)

    def put(self, path: str, data: bytes) -> Coroutine[Any, Any, None]:
        call = self.inner.put(check_path(path), data)
        return call if self._timer is None else self._timer.time("put", call)

    def read(self, path: str, offset: int = 0, length: int | None = None) -> AsyncIterator[bytes]:
        chunks = self.inner.read(check_path(path), offset, length)
        return chunks if self._timer is None else self._timed_read(chunks, self._timer)

    async def _timed_read(
        self, chunks: AsyncIterator[bytes], timer: _Timer
    ) -> AsyncIterator[bytes]:
        # Reported once, when the stream ends, with the time its first bytes took: a
        # stream that fails later still counts as one failed read.
        started = perf_counter()
        first: float | None = None
        failed = False
        try:
            async for chunk in chunks:
                if first is None:
                    first = perf_counter() - started
                yield chunk
        except _ANSWERS:
            raise
        except Exception:
            failed = True
            raise
        finally:
            seconds = perf_counter() - started if first is None else first
            timer.observer(timer.driver, "read", seconds, failed)
            # A consumer that stops early closes this generator: close the driver's now,
            # so that it releases its file or connection at once.
            aclose = getattr(chunks, "aclose", None)
            if aclose is not None:
                await aclose()

    def writer(self, path: str, append: bool = False) -> Coroutine[Any, Any, FileWriter]:
        call = self.inner.writer(check_path(path), append)
        return call if self._timer is None else self._timed_writer(call, self._timer)

    async def _timed_writer(
        self, call: Coroutine[Any, Any, FileWriter], timer: _Timer
    ) -> FileWriter:
        return TimedWriter(await timer.time("writer", call), timer)

    def stat(self, path: str) -> Coroutine[Any, Any, FileInfo]:
        call = self.inner.stat(check_path(path))
        return call if self._timer is None else self._timer.time("stat", call)

    def list(
        self,
        prefix: str,
        *,
        start_after: str | None = None,
        limit: int | None = None,
        recursive: bool = False,
    ) -> Coroutine[Any, Any, list[str]]:
        call = self.inner.list(
            check_prefix(prefix), start_after=start_after, limit=limit, recursive=recursive
        )
        return call if self._timer is None else self._timer.time("list", call)

    def move(self, src: str, dst: str) -> Coroutine[Any, Any, None]:
        call = self.inner.move(check_path(src), check_path(dst))
        return call if self._timer is None else self._timer.time("move", call)

    def delete(self, path: str) -> Coroutine[Any, Any, None]:
        call = self.inner.delete(check_path(path))
        return call if self._timer is None else self._timer.time("delete", call)

    def delete_many(self, paths: Sequence[str]) -> Coroutine[Any, Any, None]:
        call = self.inner.delete_many(check_paths(paths))
        return call if self._timer is None else self._timer.time("delete_many", call)

    def remove_folder(self, path: str) -> Coroutine[Any, Any, None]:
        """The inner driver's ``remove_folder`` (storage_backends.base.Folders); nothing
        when its folders go with their last file."""
        check_path(path)
        if not isinstance(self.inner, Folders):
            return _nothing()
        call = self.inner.remove_folder(path)
        return call if self._timer is None else self._timer.time("delete", call)

    def open_direct(
        self, path: str, offset: int, length: int
    ) -> Coroutine[Any, Any, DirectRead | None]:
        """The inner driver's ``open_direct`` (storage_backends.base.DirectReads); None
        when it has none."""
        check_path(path)
        if not isinstance(self.inner, DirectReads):
            return _nothing()
        call = self.inner.open_direct(path, offset, length)
        # Reported as a read: it starts one (the server sends the bytes), and dashboards
        # of read latency should not lose the reads that go this way.
        return call if self._timer is None else self._timer.time("read", call)

    def url_for(self, path: str, expires_in: int = 1200) -> Coroutine[Any, Any, str | None]:
        call = self.inner.url_for(check_path(path), expires_in)
        return call if self._timer is None else self._timer.time("url_for", call)

    def close(self) -> Coroutine[Any, Any, None]:
        return self.inner.close()


async def _nothing() -> None:
    return None
