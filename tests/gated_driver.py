"""A driver wrapper for the tests that must stop, fail or watch one storage operation,
over any driver (the memory driver, usually).

* ``gate(op, path)``: the next call of ``op`` on ``path`` waits until the test sets the
  gate's ``release``, before the inner driver runs it, or, with ``after=True``, once it
  has run and before its caller hears back: to force an interleaving, or to slow one
  call down by exactly as much (virtual) time as the test lets pass.
* ``fail(op)``: calls of ``op`` raise StorageError, as a backend that is down does,
  until ``heal()``.
* ``calls``: every call, in order, with the paths it named.

A ``delete_many`` is one call naming all its paths; a gate or a failure on ``delete``
of one of them holds or fails the whole batch. A ``move`` is gated on its destination.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

from storage_backends import Driver, FileInfo, FileWriter, StorageError

WAIT = 10.0  # seconds a test waits for a gate to be reached before it fails


@dataclass(frozen=True)
class Call:
    op: str
    paths: tuple[str, ...]


class Gate:
    """Holds the ``skip``-th next ``op`` on ``path`` until ``release`` is set."""

    def __init__(self, op: str, path: str, skip: int, after: bool) -> None:
        self.op, self.path, self.skip, self.after = op, path, skip, after
        self.reached = asyncio.Event()
        self.release = asyncio.Event()
        self.used = False

    async def wait_reached(self, timeout: float = WAIT) -> None:
        await asyncio.wait_for(self.reached.wait(), timeout)


class GatedDriver:
    def __init__(self, inner: Driver) -> None:
        self.inner = inner
        self.name = inner.name
        self.gates: list[Gate] = []
        self.failing: set[str] = set()
        self.calls: list[Call] = []

    def gate(self, op: str, path: str, skip: int = 0, *, after: bool = False) -> Gate:
        gate = Gate("delete" if op == "delete_many" else op, path, skip, after)
        self.gates.append(gate)
        return gate

    def fail(self, *ops: str) -> None:
        self.failing.update(ops)

    def heal(self) -> None:
        self.failing.clear()

    def count(self, op: str, path: str | None = None) -> int:
        """How many calls of ``op`` there were (on ``path``, if given)."""
        return sum(c.op == op and (path is None or path in c.paths) for c in self.calls)

    async def _enter(self, op: str, paths: Sequence[str]) -> None:
        self.calls.append(Call(op, tuple(paths)))
        if op in self.failing:
            raise StorageError(f"{op}: the backend is down (GatedDriver.fail)")
        await self._pass(op, paths, after=False)

    async def _pass(self, op: str, paths: Sequence[str], *, after: bool) -> None:
        op = "delete" if op == "delete_many" else op
        for gate in self.gates:
            if gate.used or gate.op != op or gate.after != after or gate.path not in paths:
                continue
            if gate.skip:
                gate.skip -= 1
                continue
            gate.used = True
            gate.reached.set()
            await gate.release.wait()

    async def get(self, path: str) -> bytes:
        await self._enter("get", [path])
        data = await self.inner.get(path)
        await self._pass("get", [path], after=True)
        return data

    async def put(self, path: str, data: bytes) -> None:
        await self._enter("put", [path])
        await self.inner.put(path, data)
        await self._pass("put", [path], after=True)

    async def stat(self, path: str) -> FileInfo:
        await self._enter("stat", [path])
        info = await self.inner.stat(path)
        await self._pass("stat", [path], after=True)
        return info

    async def list(self, prefix: str, **kwargs: Any) -> list[str]:
        await self._enter("list", [prefix])
        names = await self.inner.list(prefix, **kwargs)
        await self._pass("list", [prefix], after=True)
        return names

    async def move(self, src: str, dst: str) -> None:
        await self._enter("move", [dst])
        await self.inner.move(src, dst)
        await self._pass("move", [dst], after=True)

    async def delete(self, path: str) -> None:
        await self._enter("delete", [path])
        await self.inner.delete(path)
        await self._pass("delete", [path], after=True)

    async def delete_many(self, paths: Sequence[str]) -> None:
        await self._enter("delete_many", paths)
        await self.inner.delete_many(paths)
        await self._pass("delete_many", paths, after=True)

    async def read(
        self, path: str, offset: int = 0, length: int | None = None
    ) -> AsyncIterator[bytes]:
        await self._enter("read", [path])
        async for chunk in self.inner.read(path, offset, length):
            yield chunk

    async def writer(self, path: str, append: bool = False) -> FileWriter:
        await self._enter("writer", [path])
        return await self.inner.writer(path, append)

    async def url_for(self, path: str, expires_in: int = 1200) -> str | None:
        return await self.inner.url_for(path, expires_in)

    async def close(self) -> None:
        await self.inner.close()
