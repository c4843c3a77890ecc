"""The usage snapshot round-trips through storage, and a damaged one reads as none."""

from __future__ import annotations

import pytest

from registry.store import RegistryStore, RepositoryUsage, UsageSnapshot
from storage_backends import CheckedDriver
from storage_backends.memory import MemoryDriver

pytestmark = pytest.mark.anyio


async def test_snapshot_round_trip_and_damage() -> None:
    driver = MemoryDriver()
    store = RegistryStore(CheckedDriver(driver))
    assert await store.usage.read() is None
    snapshot = UsageSnapshot(
        finished_at=1_700_000_000.5,
        total_bytes=300,
        reclaimable_bytes=20,
        repositories=(RepositoryUsage("team/a", 200, 50, 3, 2), RepositoryUsage("team/b", 150)),
        groups={"team/**": 280},
    )
    await store.usage.write(snapshot)
    read = await store.usage.read()
    assert read == snapshot
    assert read is not None and read.repositories[0].shared_bytes == 150
    await driver.put("gc/usage", b"{not json")
    assert await store.usage.read() is None
