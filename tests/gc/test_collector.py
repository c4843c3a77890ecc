"""The collector in one process, without forced interleavings: crash leftovers, the
lease between two collectors, damaged content, an empty store."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from registry import errors
from registry.config import GcConfig
from registry.errors import RegistryError
from registry.gc import CollectionBusyError, Collector
from registry.reference import parse_digest
from registry.store import layout
from storage_backends import PathNotFoundError
from tests.gc.collection import make_image
from tests.gc.inprocess import HOUR, Registry

pytestmark = pytest.mark.anyio


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    return Registry(tmp_path / "store")


async def test_the_next_run_removes_tombstones_a_crashed_run_left(registry: Registry) -> None:
    img = make_image([os.urandom(100)])
    await registry.push("p/u", img, "v1")
    stale = parse_digest(img.digest)
    await registry.driver.put(layout.blob_collecting(stale), b"crashed collector")
    await registry.collector.run()
    assert not registry.stored(layout.blob_collecting(stale))
    await registry.pull("p/u", "v1")


async def test_two_collectors_never_run_at_once(registry: Registry) -> None:
    other = Collector(
        registry.store, GcConfig(grace_period=60), upload_expiry=24 * HOUR, settle=0.05
    )
    results = await asyncio.gather(
        registry.collector.run(), other.run(), return_exceptions=True
    )
    busy = [r for r in results if isinstance(r, CollectionBusyError)]
    assert len(busy) == 1, results


async def test_an_empty_store_is_collected_and_the_lease_released(registry: Registry) -> None:
    report = await registry.collector.run()
    assert report.complete and not report.blobs_deleted
    with pytest.raises(PathNotFoundError):
        await registry.driver.get(layout.gc_lease())


async def test_an_unreadable_kept_manifest_stops_the_sweep(registry: Registry) -> None:
    """What it references is unknown, so nothing it might need may go."""
    kept = make_image([os.urandom(100)])
    await registry.push("p/k", kept, "v1")
    garbage = make_image([os.urandom(100)])
    await registry.push("p/g", garbage, "v1")
    await registry.store.manifests.delete("p/g", "v1")
    path = registry.root / layout.blob_data(parse_digest(kept.digest))
    path.write_bytes(b"{not json")
    registry.age()

    report = await registry.collector.run()

    assert report.complete is False
    assert report.blobs_deleted == [] and report.manifests_deleted == []
    assert all(registry.has_blob(d) for d in garbage.blobs)
    assert "incomplete" in report.summary()


async def test_claims_of_blobs_that_never_came_are_removed(registry: Registry) -> None:
    """A manifest PUT naming a blob nobody pushed fails, but leaves a claim behind."""
    missing = make_image([os.urandom(100)])
    with pytest.raises(RegistryError) as failed:
        await registry.push("p/m", missing, "v1", upload=False)
    assert failed.value.code == errors.MANIFEST_BLOB_UNKNOWN
    left = [parse_digest(d) for d in missing.blobs]
    assert all(registry.stored(layout.blob_claimed(d)) for d in left)

    report = await registry.collector.run()  # too recent: kept
    assert all(registry.stored(layout.blob_claimed(d)) for d in left)
    registry.age()
    report = await registry.collector.run()

    assert report.blobs_deleted == []
    assert not any(registry.stored(layout.blob_claimed(d)) for d in left)
