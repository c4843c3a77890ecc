"""The event outbox in storage, beside the data: what registry/events/ records and
delivers, kept here so that every process and replica sees the same.

::

    events/pending/<time>-<instance>        a change, recorded before it is visible
    events/settled/<time>-<instance>        its request ended in an error (empty)
    events/queues/<kind>/<name>/<seq>       a segment of confirmed events for one consumer
    events/cursors/<kind>/<name>            how far that consumer got
    events/dead/<kind>/<name>/<seq>         its dead letters

A pending key starts with the recording process's wall-clock time in microseconds
(strictly increasing within a process) and ends with the process's instance id, so
that a listing gives the records in the order they were made. A consumer's segments are
named by the sequence number of their first event; one process at a time (the holder of
the ``events`` lease) writes queues, cursors and dead letters. The documents themselves
are opaque here: registry/events/ owns their format.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence

from registry.store import layout
from registry.store.clock import SYSTEM_CLOCK, Clock
from storage_backends import Driver, PathNotFoundError

_READ_CONCURRENCY = 16


class Outbox:
    def __init__(self, driver: Driver, clock: Clock = SYSTEM_CLOCK) -> None:
        self._driver = driver
        self._clock = clock
        self.instance = uuid.uuid4().hex[:12]
        self._last = 0

    # ------------------------------------------------------------------ pending

    def new_key(self) -> str:
        """A key that sorts after every key this process made before."""
        now = max(int(self._clock.time() * 1_000_000), self._last + 1)
        self._last = now
        return f"{now:017d}-{self.instance}"

    @staticmethod
    def key_time(key: str) -> float:
        """When the record of ``key`` was made (seconds since the epoch)."""
        return int(key.partition("-")[0]) / 1_000_000

    async def add(self, key: str, record: bytes) -> None:
        await self._driver.put(layout.outbox_record(key), record)

    async def pending(self, *, after: str | None = None, limit: int = 1000) -> list[str]:
        """Keys of pending records, oldest first."""
        names = await self._driver.list(layout.outbox_pending(), start_after=after, limit=limit)
        return [n for n in names if _valid_key(n)]

    async def read_many(self, keys: Sequence[str]) -> dict[str, bytes]:
        """The records of ``keys`` that are still there."""
        found: dict[str, bytes] = {}
        todo = iter(keys)

        async def worker() -> None:
            # A few readers rather than a task per record: a round may hold thousands.
            for key in todo:
                raw = await self._get(layout.outbox_record(key))
                if raw is not None:
                    found[key] = raw

        await asyncio.gather(*(worker() for _ in range(min(_READ_CONCURRENCY, len(keys)))))
        return {k: found[k] for k in keys if k in found}

    async def settle(self, keys: Sequence[str]) -> None:
        """Say that the requests which recorded ``keys`` are over (they failed): what is
        not visible of their changes now never will be."""
        markers = [layout.outbox_settled_marker(k) for k in keys]
        await asyncio.gather(*(self._driver.put(m, b"") for m in markers))

    async def settled(self) -> set[str]:
        names = await self._driver.list(layout.outbox_settled())
        return {n for n in names if _valid_key(n)}

    async def remove(self, keys: Sequence[str], *, markers: Sequence[str] = ()) -> None:
        """Drop processed records and the settled markers of ``markers``."""
        paths = [layout.outbox_record(k) for k in keys]
        paths += [layout.outbox_settled_marker(k) for k in markers]
        if paths:
            await self._driver.delete_many(paths)

    # ------------------------------------------------------------------ consumers

    async def consumers(self) -> list[str]:
        """Every consumer with a queue, a cursor or dead letters."""
        found: set[str] = set()
        for area in ("queues", "cursors", "dead"):
            for kind in layout.CONSUMER_KINDS:
                prefix = f"{layout.outbox_consumers(area)}/{kind}"
                found |= {f"{kind}/{n}" for n in await self._driver.list(prefix)}
        return sorted(c for c in found if _valid_consumer(c))

    async def segments(self, consumer: str) -> list[int]:
        return _numbers(await self._driver.list(layout.outbox_queue(consumer)))

    async def write_segment(self, consumer: str, seq: int, data: bytes) -> None:
        await self._driver.put(layout.outbox_segment(consumer, seq), data)

    async def read_segment(self, consumer: str, seq: int) -> bytes | None:
        return await self._get(layout.outbox_segment(consumer, seq))

    async def delete_segments(self, consumer: str, seqs: Sequence[int]) -> None:
        if seqs:
            await self._driver.delete_many([layout.outbox_segment(consumer, s) for s in seqs])

    async def read_cursor(self, consumer: str) -> bytes | None:
        return await self._get(layout.outbox_cursor(consumer))

    async def write_cursor(self, consumer: str, data: bytes) -> None:
        await self._driver.put(layout.outbox_cursor(consumer), data)

    async def dead_letters(self, consumer: str) -> list[int]:
        return _numbers(await self._driver.list(layout.outbox_dead(consumer)))

    async def write_dead_letter(self, consumer: str, seq: int, data: bytes) -> None:
        await self._driver.put(layout.outbox_dead_letter(consumer, seq), data)

    async def read_dead_letter(self, consumer: str, seq: int) -> bytes | None:
        return await self._get(layout.outbox_dead_letter(consumer, seq))

    async def delete_dead_letters(self, consumer: str, seqs: Sequence[int]) -> None:
        if seqs:
            await self._driver.delete_many([layout.outbox_dead_letter(consumer, s) for s in seqs])

    async def _get(self, path: str) -> bytes | None:
        try:
            return await self._driver.get(path)
        except PathNotFoundError:
            return None


def _valid_key(name: str) -> bool:
    try:
        layout.check_outbox_key(name)
    except ValueError:
        return False
    return True


def _valid_consumer(consumer: str) -> bool:
    try:
        layout.check_consumer(consumer)
    except ValueError:
        return False
    return True


def _numbers(names: list[str]) -> list[int]:
    return sorted(int(n) for n in names if n.isdigit())
