"""Time that tests move instead of waiting for, and a driver whose modification times
follow it.

* ``ShiftedClock``: the real clocks, with the wall clock moved forward by hand
  (``advance``). Sleeps are real (tests that force interleavings need them), but what is
  stored looks as much older as the clock was moved.
* ``VirtualClock``: time that passes only when every task waits for it. A sleep returns
  as soon as nothing else can run (and no storage operation is in flight), with the
  clock moved to its deadline, so a lease's settle time or a TTL costs nothing. Its
  wall clock can also jump (``jump``), as ShiftedClock's does.
* ``ClockedDriver``: wraps any driver; the files written through it get their
  modification times from a clock's ``time()``, as a storage server's own clock would
  stamp them.

Both clocks satisfy ``registry.store.Clock``.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any, Protocol

from storage_backends import Driver, FileInfo, FileWriter

# Turns of the event loop a VirtualClock waits for, with nothing happening, before it
# decides that every task waits for time.
_IDLE_TURNS = 20


class StampingClock(Protocol):
    def time(self) -> float: ...

    def busy(self) -> contextlib.AbstractContextManager[None]: ...


class ShiftedClock:
    def __init__(self, shift: float = 0.0) -> None:
        self.shift = shift

    def advance(self, seconds: float) -> None:
        self.shift += seconds

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    def time(self) -> float:
        return time.time() + self.shift

    def busy(self) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()


class VirtualClock:
    def __init__(self, start: float | None = None) -> None:
        self.now = 0.0
        self.epoch = time.time() if start is None else start
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()
        self._jumper: asyncio.Task[None] | None = None
        self._in_flight = 0
        self._activity = 0

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return self.epoch + self.now

    async def sleep(self, seconds: float) -> None:
        future = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self.now + max(seconds, 0.0), next(self._order), future))
        self._activity += 1
        if self._jumper is None or self._jumper.done():
            self._jumper = asyncio.create_task(self._jump())
        await future

    async def advance(self, seconds: float) -> None:
        """Let ``seconds`` pass for the calling test (others wake on the way)."""
        await self.sleep(seconds)

    def jump(self, seconds: float) -> None:
        """Move the wall clock on by ``seconds`` at once, and nothing else: what is
        stored looks that much older; sleepers and the monotonic clock do not notice."""
        self.epoch += seconds

    @contextlib.contextmanager
    def busy(self) -> Iterator[None]:
        """Time does not move while a storage operation is in flight."""
        self._in_flight += 1
        self._activity += 1
        try:
            yield
        finally:
            self._in_flight -= 1
            self._activity += 1

    async def _jump(self) -> None:
        while self._sleepers:
            await self._wait_idle()
            deadline, _, future = heapq.heappop(self._sleepers)
            if future.done():  # the sleeper was cancelled
                continue
            self.now = max(self.now, deadline)
            future.set_result(None)

    async def _wait_idle(self) -> None:
        loop = asyncio.get_running_loop()
        quiet = 0
        while quiet < _IDLE_TURNS:
            seen = self._activity
            await asyncio.sleep(0 if not self._in_flight else 0.001)
            idle = seen == self._activity and not self._in_flight and not _runnable(loop)
            quiet = quiet + 1 if idle else 0


def _runnable(loop: asyncio.AbstractEventLoop) -> int:
    """Callbacks ready to run beside ours: a task busy between awaits of storage calls
    that complete at once (the memory driver's) is never idle, though it never sleeps.
    (The loop's private queue: asyncio offers no public way to ask.)"""
    return len(getattr(loop, "_ready", ()))


class ClockedWriter:
    def __init__(self, inner: FileWriter, stamp: Any) -> None:
        self._inner = inner
        self._stamp = stamp

    @property
    def size(self) -> int:
        return self._inner.size

    async def write(self, data: bytes) -> None:
        await self._inner.write(data)
        self._stamp()

    async def commit(self) -> None:
        await self._inner.commit()
        self._stamp()

    async def close(self) -> None:
        await self._inner.close()

    async def cancel(self) -> None:
        await self._inner.cancel()


class ClockedDriver:
    """``inner`` with the modification times of what it writes taken from ``clock``."""

    def __init__(self, inner: Driver, clock: StampingClock) -> None:
        self.inner = inner
        self.clock = clock
        self.name = inner.name
        self._stamps: dict[str, float] = {}

    def _stamp(self, path: str) -> None:
        self._stamps[path] = self.clock.time()

    def _forget(self, prefix: str) -> None:
        for path in [p for p in self._stamps if p == prefix or p.startswith(prefix + "/")]:
            del self._stamps[path]

    async def get(self, path: str) -> bytes:
        with self.clock.busy():
            return await self.inner.get(path)

    async def put(self, path: str, data: bytes) -> None:
        with self.clock.busy():
            await self.inner.put(path, data)
        self._stamp(path)

    async def stat(self, path: str) -> FileInfo:
        with self.clock.busy():
            info = await self.inner.stat(path)
        stamp = self._stamps.get(path)
        if stamp is None or info.is_dir:
            return info
        return FileInfo(info.path, info.size, stamp, info.is_dir)

    async def list(self, prefix: str, **kwargs: Any) -> list[str]:
        with self.clock.busy():
            return await self.inner.list(prefix, **kwargs)

    async def move(self, src: str, dst: str) -> None:
        with self.clock.busy():
            await self.inner.move(src, dst)
        self._stamps.pop(src, None)
        self._stamp(dst)

    async def delete(self, path: str) -> None:
        with self.clock.busy():
            await self.inner.delete(path)
        self._forget(path)

    async def delete_many(self, paths: Sequence[str]) -> None:
        with self.clock.busy():
            await self.inner.delete_many(paths)
        for path in paths:
            self._stamps.pop(path, None)

    def read(self, path: str, offset: int = 0, length: int | None = None) -> AsyncIterator[bytes]:
        return self.inner.read(path, offset, length)

    async def writer(self, path: str, append: bool = False) -> FileWriter:
        with self.clock.busy():
            inner = await self.inner.writer(path, append)
        return ClockedWriter(inner, lambda: self._stamp(path))

    async def url_for(self, path: str, expires_in: int = 1200) -> str | None:
        return await self.inner.url_for(path, expires_in)

    async def close(self) -> None:
        await self.inner.close()
