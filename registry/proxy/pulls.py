"""When each cached manifest was last pulled, kept cheaply: pulls are noted in memory and
written (an empty record, whose modification time is the time) at most once per
``pulled_resolution`` per manifest and process, by a loop, never on the request's path.
Eviction reads these times; a manifest without a record counts from when it was cached."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict

from registry.reference import Digest
from registry.store import RegistryStore
from registry.tasks import stop_task

log = logging.getLogger("registry.proxy")

_WRITTEN_MAX = 100_000  # manifests whose last write this process remembers


class PullRecorder:
    def __init__(self, store: RegistryStore, resolution: float) -> None:
        self.store = store
        self.resolution = resolution
        self._pending: set[tuple[str, Digest]] = set()
        self._written: OrderedDict[tuple[str, Digest], float] = OrderedDict()
        self._task: asyncio.Task[None] | None = None

    def note(self, name: str, digest: Digest) -> None:
        self._pending.add((name, digest))

    async def flush(self) -> int:
        """Write the records that are due; returns how many were written."""
        pending, self._pending = self._pending, set()
        now = self.store.clock.monotonic()
        due = [
            key
            for key in sorted(pending)
            if key not in self._written or now - self._written[key] >= self.resolution
        ]
        for name, digest in due:
            try:
                await self.store.proxy.mark_pulled(name, digest)
            except Exception as exc:
                log.warning("proxy: cannot record a pull of %s@%s: %s", name, digest, exc)
                self._pending.add((name, digest))
                continue
            self._written[(name, digest)] = now
            self._written.move_to_end((name, digest))
        while len(self._written) > _WRITTEN_MAX:
            self._written.popitem(last=False)
        return len(due)

    def forget(self, name: str, digest: Digest) -> None:
        """An evicted manifest: a pull after this is a new one."""
        self._written.pop((name, digest), None)
        self._pending.discard((name, digest))

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name="registry-proxy-pulls")

    async def stop(self) -> None:
        task, self._task = self._task, None
        await stop_task(task)
        with contextlib.suppress(Exception):
            await self.flush()

    async def _loop(self) -> None:
        interval = min(60.0, self.resolution / 4)
        while True:
            await self.store.clock.sleep(interval)
            await self.flush()
