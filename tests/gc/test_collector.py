"""The collector in one process, without forced interleavings: crash leftovers, the
lease between two collectors, damaged content, an empty store."""

from __future__ import annotations

import asyncio
import os

import pytest

from registry import errors
from registry.config import GcConfig
from registry.errors import RegistryError
from registry.gc import CollectionBusyError, Collector
from registry.reference import parse_digest
from registry.store import layout
from tests.gc.collection import make_image
from tests.gc.inprocess import HOUR, CollectorRig

pytestmark = pytest.mark.anyio


async def test_the_next_run_removes_tombstones_a_crashed_run_left(rig: CollectorRig) -> None:
    img = make_image([os.urandom(100)])
    await rig.push("p/u", img, "v1")
    stale = parse_digest(img.digest)
    await rig.driver.put(layout.blob_collecting(stale), b"crashed collector")
    await rig.collector.run()
    assert not rig.stored(layout.blob_collecting(stale))
    await rig.pull("p/u", "v1")


async def test_two_collectors_never_run_at_once(rig: CollectorRig) -> None:
    other = Collector(rig.store, GcConfig(grace_period=60), upload_expiry=24 * HOUR, settle=0.05)
    results = await asyncio.gather(rig.collector.run(), other.run(), return_exceptions=True)
    busy = [r for r in results if isinstance(r, CollectionBusyError)]
    assert len(busy) == 1, results


async def test_an_empty_store_is_collected_and_the_lease_released(rig: CollectorRig) -> None:
    report = await rig.collector.run()
    assert report.complete and not report.blobs_deleted
    assert await rig.store.lease("gc", 60).read() is None


async def test_an_unreadable_kept_manifest_stops_the_sweep(rig: CollectorRig) -> None:
    """What it references is unknown, so nothing it might need may go."""
    kept = make_image([os.urandom(100)])
    await rig.push("p/k", kept, "v1")
    garbage = make_image([os.urandom(100)])
    await rig.push("p/g", garbage, "v1")
    await rig.store.manifests.delete("p/g", "v1")
    await rig.memory.put(layout.blob_data(parse_digest(kept.digest)), b"{not json")
    rig.age()

    report = await rig.collector.run()

    assert report.complete is False
    assert report.blobs_deleted == [] and report.manifests_deleted == []
    assert all([await rig.has_blob(d) for d in garbage.blobs])
    assert "incomplete" in report.summary()


async def test_claims_of_blobs_that_never_came_are_removed(rig: CollectorRig) -> None:
    """A manifest PUT naming a blob nobody pushed fails, but leaves a claim behind."""
    missing = make_image([os.urandom(100)])
    with pytest.raises(RegistryError) as failed:
        await rig.push("p/m", missing, "v1", upload=False)
    assert failed.value.code == errors.MANIFEST_BLOB_UNKNOWN
    left = [parse_digest(d) for d in missing.blobs]
    claims = rig.store.claims

    async def claimed() -> list[bool]:
        return [await claims.claimed_at(d) is not None for d in left]

    assert await claimed() == [True] * len(left)
    report = await rig.collector.run()  # too recent: kept
    assert await claimed() == [True] * len(left)
    rig.age()
    report = await rig.collector.run()

    assert report.blobs_deleted == []
    assert await claimed() == [False] * len(left)


async def test_what_a_deleted_tag_frees_is_held_back_until_the_grace_period_ends(
    rig: CollectorRig,
) -> None:
    layer = os.urandom(1000)
    img = make_image([layer])
    await rig.push("p/h", img, "v1")
    rig.age(20)
    await rig.store.manifests.delete("p/h", "v1")

    report = await rig.collector.run()

    assert report.manifests_deleted == [] and report.blobs_deleted == []
    until = report.held_back_manifests[f"p/h@{img.digest}"]
    assert set(report.held_back_blobs) == set(img.blobs)
    assert set(report.held_back_blobs.values()) == {until}
    assert report.blob_sizes == {d: len(b) for d, b in img.blobs.items()}
    # The grace period is 60 s, counted from the push (20 s ago), plus the clock's
    # resolution: until about 41 s from now.
    now = rig.clock.time()
    assert now + 40 < until <= now + 42
    assert "held back by the grace period (1m): 1 manifest and 2 blobs" in report.summary()

    rig.age(until - now)
    report = await rig.collector.run()

    assert report.manifests_deleted == [f"p/h@{img.digest}"]
    assert set(report.blobs_deleted) == {img.digest, *img.blobs}
    assert report.held_back_manifests == {} and report.held_back_blobs == {}


async def test_a_blob_pushed_for_a_manifest_still_to_come_is_held_back(
    rig: CollectorRig,
) -> None:
    digest = await rig.upload("p/b", b"a layer, its manifest not pushed yet")

    report = await rig.collector.run()

    assert report.blobs_deleted == []
    assert list(report.held_back_blobs) == [str(digest)]
    assert report.blob_sizes == {str(digest): 36}
