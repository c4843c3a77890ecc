"""What only the memory driver has: a clock that tests move, and stores that several
drivers share. The rest of its behaviour is the driver contract's."""

from __future__ import annotations

import pytest

from storage_backends.checked import CheckedDriver
from storage_backends.memory import MemoryDriver, MemoryStore

pytestmark = pytest.mark.anyio


async def test_modification_times_come_from_the_clock() -> None:
    now = [1000.0]
    driver = CheckedDriver(MemoryDriver(clock=lambda: now[0]))
    await driver.put("a/put", b"1")
    now[0] = 2000.0
    writer = await driver.writer("a/written")
    await writer.write(b"2")
    await writer.commit()
    now[0] = 3000.0
    await driver.move("a/written", "b/moved")  # a move keeps the time, as a rename does
    assert (await driver.stat("a/put")).modified == 1000.0
    assert (await driver.stat("b/moved")).modified == 2000.0
    assert (await driver.stat("a")).modified == 1000.0


async def test_drivers_on_one_store_see_each_other_with_their_own_clocks() -> None:
    store = MemoryStore()
    first = CheckedDriver(MemoryDriver(store, clock=lambda: 10.0))
    second = CheckedDriver(MemoryDriver(store, clock=lambda: 20.0))
    await first.put("k", b"from first")
    assert await second.get("k") == b"from first"
    await second.put("k", b"from second")
    assert (await first.stat("k")).modified == 20.0
    assert list(store.files) == ["k"]
