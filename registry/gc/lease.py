"""One collection at a time across every process and host on the storage: a lease object.

``gc/lease`` holds ``{"owner": <random id>, "ttl": <seconds>}``; it is held while the
storage's clock is less than ``ttl`` past its modification time. Taking it:

1. read the lease; if another owner holds it and it has not expired, give up;
2. write our own record, and give up if the read-to-write took longer than half of
   ``settle`` (our read may be stale);
3. wait ``settle`` seconds, read it back, and proceed only if it is still ours.

Why two takers cannot both proceed: say A's write lands before B's. A read back its own
record ``settle`` after writing it, so B's write came later than that. B's read came
before A's write (otherwise B would have seen A's lease and given up), so B's
read-to-write spanned more than ``settle`` and B gave up at step 2.

The holder renews the lease (rewrites it, after checking it is still the owner) every
quarter of the TTL, and treats it as lost once half the TTL has passed since the start
of its last successful write: well before anyone else may see it expire. The collector
checks ``Lease.check`` before every group of deletions.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

from registry.gc.clock import storage_now
from registry.store import layout
from storage_backends import Driver, PathNotFoundError

log = logging.getLogger("registry.gc")

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
            # for a default TTL rather than collecting beside an unknown process.
            return cls("", 60.0, modified)


class Lease:
    def __init__(
        self,
        driver: Driver,
        ttl: float,
        *,
        owner: str | None = None,
        settle: float = SETTLE,
    ) -> None:
        self.driver = driver
        self.ttl = ttl
        self.owner = owner or uuid.uuid4().hex
        self.settle = settle
        self._confirmed_at: float | None = None  # monotonic start of our last write
        self._lost = False

    async def read(self) -> LeaseRecord | None:
        try:
            raw = await self.driver.get(layout.gc_lease())
            info = await self.driver.stat(layout.gc_lease())
        except PathNotFoundError:
            return None
        return LeaseRecord.load(raw, info.modified)

    async def holder(self) -> LeaseRecord | None:
        """The current holder, if the lease is held and not expired."""
        record = await self.read()
        if record is None:
            return None
        if await storage_now(self.driver) - record.modified > record.ttl:
            return None
        return record

    async def acquire(self) -> bool:
        # A first look, untimed: the first request on a fresh S3 connection alone can
        # take a second or two, which must not count against the read-to-write bound.
        current = await self.holder()
        if current is not None and current.owner != self.owner:
            return False
        started = time.monotonic()
        current = await self.holder()
        if current is not None and current.owner != self.owner:
            return False
        # Shielded: a shutdown that cancels us mid-write must still see the write land
        # and then release it, or a stale lease would block collection for a whole ttl.
        write = asyncio.ensure_future(self._write())
        try:
            await asyncio.shield(write)
            if time.monotonic() - started > self.settle / 2:
                # Our read may be stale, and we may have overwritten a holder (who will
                # notice at its next renewal and stop): do not collect this time.
                log.info("gc lease: storage too slow to take the lease safely; not collecting")
                await self.release()
                return False
            await asyncio.sleep(self.settle)
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
            raise LeaseLostError("the gc lease was taken over")
        await self._write()

    def check(self) -> None:
        """Raise LeaseLostError unless we hold the lease with time to spare."""
        if (
            self._lost
            or self._confirmed_at is None
            or time.monotonic() - self._confirmed_at > self.ttl / 2
        ):
            raise LeaseLostError("the gc lease was lost or not renewed in time")

    async def release(self) -> None:
        self._confirmed_at = None
        record = await self.read()
        if record is not None and record.owner == self.owner:
            await self.driver.delete(layout.gc_lease())

    @contextlib.asynccontextmanager
    async def kept(self) -> AsyncIterator[Lease]:
        """Renew the (acquired) lease in the background while the block runs, and
        release it afterwards."""
        renewer = asyncio.create_task(self._renew_forever(), name="registry-gc-lease")
        try:
            yield self
        finally:
            renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewer
            await self.release()

    async def _renew_forever(self) -> None:
        while True:
            await asyncio.sleep(self.ttl / 4)
            try:
                await self.renew()
            except LeaseLostError:
                log.error("gc lease lost; the collection stops")
                return
            except Exception as exc:  # storage trouble: check() will say when it matters
                log.warning("gc lease renewal failed: %s", exc)

    async def _write(self) -> None:
        started = time.monotonic()
        record = {"owner": self.owner, "ttl": self.ttl}
        await self.driver.put(layout.gc_lease(), json.dumps(record).encode())
        self._confirmed_at = started
