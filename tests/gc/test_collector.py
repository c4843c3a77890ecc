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
    assert await registry.store.lease("gc", 60).read() is None


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
    assert all([await registry.has_blob(d) for d in garbage.blobs])
    assert "incomplete" in report.summary()


async def test_claims_of_blobs_that_never_came_are_removed(registry: Registry) -> None:
    """A manifest PUT naming a blob nobody pushed fails, but leaves a claim behind."""
    missing = make_image([os.urandom(100)])
    with pytest.raises(RegistryError) as failed:
        await registry.push("p/m", missing, "v1", upload=False)
    assert failed.value.code == errors.MANIFEST_BLOB_UNKNOWN
    left = [parse_digest(d) for d in missing.blobs]
    claims = registry.store.claims

    async def claimed() -> list[bool]:
        return [await claims.claimed_at(d) is not None for d in left]

    assert await claimed() == [True] * len(left)
    report = await registry.collector.run()  # too recent: kept
    assert await claimed() == [True] * len(left)
    registry.age()
    report = await registry.collector.run()

    assert report.blobs_deleted == []
    assert await claimed() == [False] * len(left)


async def test_what_a_deleted_tag_frees_is_held_back_until_the_grace_period_ends(
    registry: Registry,
) -> None:
    layer = os.urandom(1000)
    img = make_image([layer])
    await registry.push("p/h", img, "v1")
    registry.age(20)
    await registry.store.manifests.delete("p/h", "v1")

    report = await registry.collector.run()

    assert report.manifests_deleted == [] and report.blobs_deleted == []
    until = report.held_back_manifests[f"p/h@{img.digest}"]
    assert set(report.held_back_blobs) == set(img.blobs)
    assert set(report.held_back_blobs.values()) == {until}
    assert report.blob_sizes == {d: len(b) for d, b in img.blobs.items()}
    # The grace period is 60 s, counted from the push (20 s ago), plus the clock's
    # resolution: until about 41 s from now.
    now = registry.clock.time()
    assert now + 40 < until <= now + 42
    assert "held back by the grace period (1m): 1 manifest and 2 blobs" in report.summary()

    registry.age(until - now)
    report = await registry.collector.run()

    assert report.manifests_deleted == [f"p/h@{img.digest}"]
    assert set(report.blobs_deleted) == {img.digest, *img.blobs}
    assert report.held_back_manifests == {} and report.held_back_blobs == {}


async def test_a_blob_pushed_for_a_manifest_still_to_come_is_held_back(
    registry: Registry,
) -> None:
    digest = await registry.upload("p/b", b"a layer, its manifest not pushed yet")

    report = await registry.collector.run()

    assert report.blobs_deleted == []
    assert list(report.held_back_blobs) == [str(digest)]
    assert report.blob_sizes == {str(digest): 36}
