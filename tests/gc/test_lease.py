"""The gc lease: one holder at a time across processes, expiry, renewal, takeover."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from registry.gc.lease import Lease, LeaseLostError
from registry.store import layout
from storage_backends import Driver
from storage_backends.filesystem import FilesystemDriver

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["filesystem", pytest.param("s3", marks=pytest.mark.s3)])
async def driver(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Driver]:
    if request.param == "filesystem":
        opened: Driver = FilesystemDriver(tmp_path / "store")
    else:
        from storage_backends.s3 import S3Driver

        rgw = request.getfixturevalue("rgw")
        opened = S3Driver(rgw.s3_config(prefix=f"gc-lease-{uuid.uuid4().hex[:12]}"))
    try:
        yield opened
    finally:
        await opened.delete(layout.GC)
        await opened.close()


class SlowLeaseWrites:
    """A driver whose writes of the lease take ``delay`` seconds."""

    def __init__(self, inner: Driver, delay: float) -> None:
        self.inner = inner
        self.delay = delay

    async def put(self, path: str, data: bytes) -> None:
        if path == layout.gc_lease():
            await asyncio.sleep(self.delay)
        await self.inner.put(path, data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


async def test_of_two_concurrent_takers_exactly_one_gets_it(driver: Driver) -> None:
    for _ in range(3):
        a, b = Lease(driver, 30, settle=0.4), Lease(driver, 30, settle=0.4)
        got = await asyncio.gather(a.acquire(), b.acquire())
        assert sorted(got) == [False, True]
        winner = a if got[0] else b
        winner.check()
        await winner.release()
        assert await winner.read() is None


async def test_a_held_lease_is_refused_until_released(driver: Driver) -> None:
    a, b = Lease(driver, 30, settle=0.4), Lease(driver, 30, settle=0.4)
    assert await a.acquire()
    assert not await b.acquire()
    holder = await b.holder()
    assert holder is not None and holder.owner == a.owner
    await a.release()
    assert await b.acquire()
    await b.release()


async def test_an_expired_lease_can_be_taken_and_its_old_holder_knows(driver: Driver) -> None:
    a, b = Lease(driver, 1.0, settle=0.4), Lease(driver, 1.0, settle=0.4)
    assert await a.acquire()
    # Past the TTL by more than the storage clock's one-second resolution.
    await asyncio.sleep(2.3)
    with pytest.raises(LeaseLostError):
        a.check()
    assert await b.acquire()
    with pytest.raises(LeaseLostError):
        await a.renew()
    await a.release()  # not ours any more: must leave b's lease alone
    assert (await b.holder()) is not None
    await b.release()


async def test_renewal_keeps_the_lease_while_the_holder_works(driver: Driver) -> None:
    a, b = Lease(driver, 2.0, settle=0.4), Lease(driver, 2.0, settle=0.4)
    assert await a.acquire()
    async with a.kept():
        for _ in range(4):
            await asyncio.sleep(0.9)
            a.check()
            assert not await b.acquire()
    assert await a.read() is None  # released on leaving the block
    assert await b.acquire()
    await b.release()


async def test_a_taker_whose_read_to_write_took_too_long_backs_off(driver: Driver) -> None:
    slow = Lease(SlowLeaseWrites(driver, 0.6), 30, settle=0.5)
    assert not await slow.acquire()
    assert await slow.read() is None  # and leaves nothing behind
    with pytest.raises(LeaseLostError):
        slow.check()


async def test_a_takeover_is_noticed_on_renewal(driver: Driver) -> None:
    a = Lease(driver, 30, settle=0.4)
    assert await a.acquire()
    await driver.put(layout.gc_lease(), json.dumps({"owner": "someone-else", "ttl": 30}).encode())
    with pytest.raises(LeaseLostError):
        await a.renew()
    with pytest.raises(LeaseLostError):
        a.check()
    await a.release()
    holder = await a.holder()
    assert holder is not None and holder.owner == "someone-else"


async def test_an_unreadable_lease_counts_as_held(driver: Driver) -> None:
    await driver.put(layout.gc_lease(), b"not json")
    assert not await Lease(driver, 30, settle=0.4).acquire()


async def test_a_taker_cancelled_while_settling_leaves_no_lease(driver: Driver) -> None:
    a = Lease(driver, 30, settle=5)
    taking = asyncio.create_task(a.acquire())
    for _ in range(100):
        await asyncio.sleep(0.05)
        if await a.read() is not None:
            break
    taking.cancel()
    with pytest.raises(asyncio.CancelledError):
        await taking
    await asyncio.sleep(0.2)
    assert await a.read() is None
