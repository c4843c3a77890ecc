"""Named leases: one holder at a time across processes, expiry, renewal, takeover; the
gc lease where older versions look for it. In virtual time: no test waits for a settle
time or a TTL."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from registry.store import Lease, LeaseLostError, RegistryStore, layout
from storage_backends import Driver
from storage_backends.filesystem import FilesystemDriver
from tests.clocks import ClockedDriver, VirtualClock
from tests.gated_driver import GatedDriver

pytestmark = pytest.mark.anyio


@dataclass
class Storage:
    store: RegistryStore
    driver: Driver
    clock: VirtualClock


@pytest.fixture(params=["filesystem", pytest.param("s3", marks=pytest.mark.s3)])
async def storage(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Storage]:
    if request.param == "filesystem":
        inner: Driver = FilesystemDriver(tmp_path / "store")
    else:
        from storage_backends.s3 import S3Driver

        rgw = request.getfixturevalue("rgw")
        inner = S3Driver(rgw.s3_config(prefix=f"lease-{uuid.uuid4().hex[:12]}").driver_settings())
    clock = VirtualClock()
    driver = ClockedDriver(inner, clock)
    try:
        yield Storage(RegistryStore(driver, clock=clock), driver, clock)
    finally:
        for prefix in (layout.GC, layout.LEASES, layout.CLOCKS):
            await inner.delete(prefix)
        await inner.close()


async def test_of_two_concurrent_takers_exactly_one_gets_it(storage: Storage) -> None:
    for _ in range(3):
        a, b = storage.store.lease("gc", 30, settle=0.4), storage.store.lease("gc", 30, settle=0.4)
        got = await asyncio.gather(a.acquire(), b.acquire())
        assert sorted(got) == [False, True]
        winner = a if got[0] else b
        winner.check()
        await winner.release()
        assert await winner.read() is None


async def test_a_held_lease_is_refused_until_released(storage: Storage) -> None:
    a, b = storage.store.lease("gc", 30, settle=0.4), storage.store.lease("gc", 30, settle=0.4)
    assert await a.acquire()
    assert not await b.acquire()
    holder = await b.holder()
    assert holder is not None and holder.owner == a.owner
    await a.release()
    assert await b.acquire()
    await b.release()


async def test_an_expired_lease_can_be_taken_and_its_old_holder_knows(storage: Storage) -> None:
    a, b = storage.store.lease("gc", 1.0, settle=0.4), storage.store.lease("gc", 1.0, settle=0.4)
    assert await a.acquire()  # written at 0, confirmed after the settle time (0.4)
    await storage.clock.advance(0.3)
    assert not await b.acquire()  # not expired yet
    # Past the TTL by more than the storage clock's one-second resolution.
    await storage.clock.advance(1.6)
    with pytest.raises(LeaseLostError):
        a.check()
    assert await b.acquire()
    with pytest.raises(LeaseLostError):
        await a.renew()
    await a.release()  # not ours any more: must leave b's lease alone
    assert (await b.holder()) is not None
    await b.release()


async def test_renewal_keeps_the_lease_while_the_holder_works(storage: Storage) -> None:
    a, b = storage.store.lease("gc", 2.0, settle=0.4), storage.store.lease("gc", 2.0, settle=0.4)
    assert await a.acquire()
    async with a.kept():
        for _ in range(4):
            await storage.clock.advance(0.9)
            a.check()
            assert not await b.acquire()
    assert await a.read() is None  # released on leaving the block
    assert await b.acquire()
    await b.release()


async def test_a_holder_that_stops_renewing_loses_the_lease(storage: Storage) -> None:
    a = storage.store.lease("gc", 2.0, settle=0.4)
    assert await a.acquire()
    await storage.clock.advance(1.1)  # more than half the TTL since the last write
    with pytest.raises(LeaseLostError):
        a.check()


async def test_a_taker_whose_read_to_write_took_too_long_backs_off(storage: Storage) -> None:
    gated = GatedDriver(storage.driver)
    lease = Lease(gated, "gc", 30, settle=0.5, clock=storage.clock)
    written = gated.gate("put", layout.lease("gc"))
    taking = asyncio.create_task(lease.acquire())
    await written.wait_reached()
    await storage.clock.advance(0.6)  # the write of the lease takes 0.6 s
    written.release.set()
    assert not await taking
    assert await lease.read() is None  # and leaves nothing behind
    with pytest.raises(LeaseLostError):
        lease.check()


async def test_a_takeover_is_noticed_on_renewal(storage: Storage) -> None:
    a = storage.store.lease("gc", 30, settle=0.4)
    assert await a.acquire()
    record = json.dumps({"owner": "someone-else", "ttl": 30}).encode()
    await storage.driver.put(layout.lease("gc"), record)
    with pytest.raises(LeaseLostError):
        await a.renew()
    with pytest.raises(LeaseLostError):
        a.check()
    await a.release()
    holder = await a.holder()
    assert holder is not None and holder.owner == "someone-else"


async def test_an_unreadable_lease_counts_as_held(storage: Storage) -> None:
    await storage.driver.put(layout.lease("gc"), b"not json")
    assert not await storage.store.lease("gc", 30, settle=0.4).acquire()


async def test_a_taker_cancelled_while_settling_leaves_no_lease(storage: Storage) -> None:
    a = storage.store.lease("gc", 30, settle=5)
    taking = asyncio.create_task(a.acquire())
    while await a.read() is None:
        await storage.clock.advance(0.01)  # wakes long before the settle time is over
    taking.cancel()
    with pytest.raises(asyncio.CancelledError):
        await taking
    await storage.clock.advance(0.2)
    assert await a.read() is None


async def test_leases_of_different_names_are_independent(storage: Storage) -> None:
    gc, events = storage.store.lease("gc", 30, settle=0.4), storage.store.lease("events", 30)
    assert await gc.acquire()
    assert await events.acquire()
    assert not await storage.store.lease("events", 30, settle=0.4).acquire()
    await events.release()
    assert (await gc.holder()) is not None
    await gc.release()


def test_the_gc_lease_stays_where_older_versions_look_for_it() -> None:
    # A rolling upgrade runs old and new processes side by side: both must take the
    # same lease, or two collectors would run at once.
    assert layout.lease("gc") == "gc/lease"
    assert layout.lease("replication") == "leases/replication"
    for bad in ("", "GC", "a/b", "../x", "-x"):
        with pytest.raises(ValueError):
            layout.lease(bad)


async def test_the_storage_clock_reads_the_storages_time(storage: Storage) -> None:
    clock = storage.store.storage_clock("events")
    first = await clock.now()
    await storage.clock.advance(42)
    assert await clock.now() == pytest.approx(first + 42)
    assert await storage.store.storage_clock("gc").now() == pytest.approx(first + 42)
