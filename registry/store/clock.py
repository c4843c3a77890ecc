"""Time, twice: the process's clock (how long something took, how long to wait) and the
storage's clock (how old a stored object is).

Both are seams: a test passes a ``Clock`` it moves by hand and a driver whose
modification times follow it, and waits for nothing.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol

from registry.store import layout
from storage_backends import Driver

# Modification times on S3 have a resolution of one second (a time is truncated, so an
# object may look up to a second older than it is); every cutoff computed from storage
# times is moved back by this much so that nothing looks older than it is.
CLOCK_RESOLUTION = 1.0


class Clock(Protocol):
    """The process's clocks: monotonic, with a sleep on it, and the wall clock (for the
    rare reader of storage times that may not write a probe)."""

    def monotonic(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...

    def time(self) -> float: ...


class SystemClock:
    def monotonic(self) -> float:
        return time.monotonic()

    def time(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


SYSTEM_CLOCK: Clock = SystemClock()


class StorageClock:
    """The storage's current time, read the way stored objects get theirs: write a probe
    and read back its modification time. Whoever compares storage times (the collector,
    a lease, an expiry) reads "now" here rather than trusting the local clock of
    whichever host runs it. Each user has its own probe (``name``)."""

    def __init__(self, driver: Driver, name: str) -> None:
        self._driver = driver
        self._probe = layout.clock_probe(name)

    async def now(self) -> float:
        await self._driver.put(self._probe, b"")
        return (await self._driver.stat(self._probe)).modified
