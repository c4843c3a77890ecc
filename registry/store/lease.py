"""Named leases in storage: one holder at a time across every process and host.

Background work that many processes could do but one should (garbage collection now;
event delivery, replication, cache fills later) takes the lease of its name first.
``gc/lease`` (``leases/<name>`` for other names) holds ``{"owner": <random id>, "ttl":
<seconds>}``; it is held while the storage's clock is less than ``ttl`` past its
modification time. Taking it:

1. read the lease; if another owner holds it and it has not expired, give up;
2. write our own record, and give up if the read-to-write took longer than half of
   ``settle`` (our read may be stale);
3. wait ``settle`` seconds, read it back, and proceed only if it is still ours.

Why two takers cannot both proceed: say A's write lands before B's. A read back its own
record ``settle`` after writing it, so B's write came later than that. B's read came
before A's write (otherwise B would have seen A's lease and given up), so B's
read-to-write spanned more than ``settle`` and B gave up at step 2.

The holder renews the lease (rewrites it, after checking it is still the owner) a
quarter of the TTL after its last write, and treats it as lost once half the TTL has
passed since the start of its last successful write: well before anyone else may see it
expire. Taking it spent a settle time since its write, so a TTL must be more than twice
``SETTLE`` (registry/config.py refuses shorter ones). The holder
calls ``Lease.check`` before every step that must not run beside another holder.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

from registry.store import layout
from registry.store.clock import SYSTEM_CLOCK, Clock, StorageClock
from storage_backends import Driver, PathNotFoundError

log = logging.getLogger("registry.lease")

SETTLE = 1.0


class LeaseLostError(Exception):
    """The lease expired or was taken over while we held it."""


@dataclass(frozen=True)
class LeaseRecord:
    owner: str
    ttl: float
    modified: float  # storage time of the last write

    @classmethod
    def load(cls, raw: bytes, modified: float) -> LeaseRecord:
        try:
            doc = json.loads(raw)
            return cls(str(doc["owner"]), float(doc["ttl"]), modified)
        except (ValueError, KeyError, TypeError):
            # Unreadable: someone wrote it by hand or a write was torn. Honour it as held
            # for a default TTL rather than working beside an unknown process.
            return cls("", 60.0, modified)


class Lease:
    """The lease called ``name``, as one would-be holder (``owner``) sees it. Made by
    ``RegistryStore.lease``."""

    def __init__(
        self,
        driver: Driver,
        name: str,
        ttl: float,
        *,
        owner: str | None = None,
        settle: float = SETTLE,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self._driver = driver
        self._path = layout.lease(name)
        self._storage_clock = StorageClock(driver, name)
        self.name = name
        self.ttl = ttl
        self.owner = owner or uuid.uuid4().hex
        self.settle = settle
        self._clock = clock
        self._confirmed_at: float | None = None  # monotonic start of our last write
        self._lost = False

    async def read(self) -> LeaseRecord | None:
        try:
            raw = await self._driver.get(self._path)
            info = await self._driver.stat(self._path)
        except PathNotFoundError:
            return None
        return LeaseRecord.load(raw, info.modified)

    async def holder(self) -> LeaseRecord | None:
        """The current holder, if the lease is held and not expired."""
        record = await self.read()
        if record is None:
            return None
        if await self._storage_clock.now() - record.modified > record.ttl:
            return None
        return record

    async def acquire(self) -> bool:
        # A first look, untimed: the first request on a fresh S3 connection alone can
        # take a second or two, which must not count against the read-to-write bound.
        current = await self.holder()
        if current is not None and current.owner != self.owner:
            return False
        started = self._clock.monotonic()
        current = await self.holder()
        if current is not None and current.owner != self.owner:
            return False
        # Shielded: a shutdown that cancels us mid-write must still see the write land
        # and then release it, or a stale lease would block the work for a whole ttl.
        write = asyncio.ensure_future(self._write())
        try:
            await asyncio.shield(write)
            if self._clock.monotonic() - started > self.settle / 2:
                # Our read may be stale, and we may have overwritten a holder (who will
                # notice at its next renewal and stop): do not proceed this time.
                log.info("%s lease: storage too slow to take the lease safely", self.name)
                await self.release()
                return False
            await self._clock.sleep(self.settle)
            back = await self.read()
        except BaseException:
            # Cancelled (server shutdown) or failed while settling: leave no lease behind.
            with contextlib.suppress(Exception):
                await write
            await asyncio.shield(self.release())
            raise
        if back is None or back.owner != self.owner:
            self._confirmed_at = None
            return False
        self._lost = False
        return True

    async def renew(self) -> None:
        record = await self.read()
        if record is None or record.owner != self.owner:
            self._lost = True
            raise LeaseLostError(f"the {self.name} lease was taken over")
        await self._write()

    def check(self) -> None:
        """Raise LeaseLostError unless we hold the lease with time to spare."""
        if (
            self._lost
            or self._confirmed_at is None
            or self._clock.monotonic() - self._confirmed_at > self.ttl / 2
        ):
            raise LeaseLostError(f"the {self.name} lease was lost or not renewed in time")

    async def release(self) -> None:
        self._confirmed_at = None
        record = await self.read()
        if record is not None and record.owner == self.owner:
            await self._driver.delete(self._path)

    @contextlib.asynccontextmanager
    async def kept(self) -> AsyncIterator[Lease]:
        """Renew the (acquired) lease in the background while the block runs, and
        release it afterwards."""
        renewer = asyncio.create_task(self._renew_forever(), name=f"registry-{self.name}-lease")
        try:
            yield self
        finally:
            renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewer
            await self.release()

    async def _renew_forever(self) -> None:
        wait = self.ttl / 4
        if self._confirmed_at is not None:
            # A quarter of the TTL after our last write, not after the block began:
            # taking the lease spent a settle time of it already (at once if more).
            wait -= self._clock.monotonic() - self._confirmed_at
        while True:
            await self._clock.sleep(max(0.0, wait))
            wait = self.ttl / 4
            try:
                await self.renew()
            except LeaseLostError:
                log.error("%s lease lost; the work under it stops", self.name)
                return
            except Exception as exc:  # storage trouble: check() will say when it matters
                log.warning("%s lease renewal failed: %s", self.name, exc)

    async def _write(self) -> None:
        started = self._clock.monotonic()
        record = {"owner": self.owner, "ttl": self.ttl}
        await self._driver.put(self._path, json.dumps(record).encode())
        self._confirmed_at = started
