"""Login attempts, in flight or failed, counted in storage so that every worker process
and every replica sees the same ones (the failed-login limit, registry/auth/identities.py).

::

    login-attempts/<epoch>/<subject>/<ms>-<random>    one empty object per attempt

``<subject>`` is a hash of what is counted (a user name with a client address, or an
address), so a key is bounded whatever a client sends. ``<epoch>`` is the wall-clock
time divided by the counting window: an attempt is counted for one window, which spans
the current epoch and the one before, and older epochs are deleted whole (once per epoch
by each process), so nothing has to be read to be cleaned up.

The driver has no atomic increment, and none is needed: every attempt writes its own
object *before* it counts the objects of its subject. Of attempts racing each other, the
k-th to finish writing sees at least k objects when it counts, so no more than the limit
can see a count within it (in-flight attempts count, across processes). Record names
sort by time, so a count reads only the window and at most ``limit`` names.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from registry.store import layout
from storage_backends import Driver, StorageError

log = logging.getLogger("registry.auth")

_MS_DIGITS = 15  # zero-padded milliseconds since the epoch: names sort by time


def _subject_key(subject: str) -> str:
    return hashlib.sha256(subject.encode("utf-8", "surrogatepass")).hexdigest()[:40]


def _epoch(moment: float, window: float) -> int:
    return int(moment // max(window, 1.0))


def _dir(epoch: int, subject: str) -> str:
    return layout.login_attempts(epoch, _subject_key(subject))


def _record_time(name: str) -> float | None:
    stamp, _, _ = name.partition("-")
    return int(stamp) / 1000 if len(stamp) == _MS_DIGITS and stamp.isdigit() else None


@dataclass(frozen=True)
class AttemptRecord:
    """One stored attempt: its path and when it was made."""

    path: str
    at: float


class LoginAttempts:
    def __init__(self, driver: Driver, clock: Callable[[], float] = time.time) -> None:
        self.driver = driver
        self.clock = clock
        self._swept_epoch: int | None = None
        self._sweeps: set[asyncio.Task[None]] = set()

    async def add(self, subject: str, window: float) -> AttemptRecord:
        now = self.clock()
        epoch = _epoch(now, window)
        name = f"{int(now * 1000):0{_MS_DIGITS}d}-{secrets.token_hex(6)}"
        record = AttemptRecord(f"{_dir(epoch, subject)}/{name}", now)
        await self.driver.put(record.path, b"")
        if self._swept_epoch != epoch:
            self._swept_epoch = epoch
            task = asyncio.create_task(self._sweep(epoch))
            self._sweeps.add(task)
            task.add_done_callback(self._sweeps.discard)
        return record

    async def recent(self, subject: str, window: float, limit: int) -> list[AttemptRecord]:
        """``subject``'s attempts within the last ``window`` seconds, oldest first, at
        most ``limit`` of them."""
        now = self.clock()
        since = now - window
        cutoff = f"{int(since * 1000):0{_MS_DIGITS}d}"
        epoch = _epoch(now, window)
        epochs = (epoch - 1, epoch)
        listed = await asyncio.gather(
            *(self.driver.list(_dir(e, subject), start_after=cutoff, limit=limit) for e in epochs)
        )
        found = [
            AttemptRecord(f"{_dir(e, subject)}/{name}", at)
            for e, names in zip(epochs, listed, strict=True)
            for name in names
            if (at := _record_time(name)) is not None and at > since
        ]
        return sorted(found, key=lambda r: r.at)[:limit]

    async def discard(self, *records: AttemptRecord) -> None:
        await self.driver.delete_many([r.path for r in records])

    async def forget(self, subject: str, window: float) -> None:
        """Remove every attempt of ``subject`` in the window (a login succeeded)."""
        epoch = _epoch(self.clock(), window)
        await asyncio.gather(*(self.driver.delete(_dir(e, subject)) for e in (epoch - 1, epoch)))

    async def _sweep(self, epoch: int) -> None:
        """Delete the epochs that no window reaches any more (in the background: the
        next epoch's first attempt in any process does it again if this one fails)."""
        try:
            for name in await self.driver.list(layout.LOGIN_ATTEMPTS):
                if name.isdigit() and int(name) < epoch - 1:
                    await self.driver.delete(f"{layout.LOGIN_ATTEMPTS}/{name}")
        except StorageError as exc:
            log.warning("could not delete old login attempts: %s", exc)
