"""The incremental mark (registry/gc/plan.py): a collection re-marks only the
repositories a change record names, that time alone changes, or that it does not know;
it reads no manifest again otherwise; it removes a record only once the change it
announces has surely landed; and a collection that stopped half way, damaged state or
changed settings make the next mark a full one."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable

import pytest

from registry.config import GcConfig, RetentionPolicyConfig
from registry.gc import Collector
from registry.gc import spill as spill_module
from registry.gc.run import Repository
from registry.gc.spill import Spill
from registry.reference import parse_digest
from registry.store import RegistryStore, layout
from registry.store.changes import ManifestDeleted, TagDeleted
from storage_backends import CheckedDriver
from storage_backends.memory import MemoryDriver
from tests.clocks import VirtualClock
from tests.gated_driver import WAIT
from tests.gc.collection import make_image
from tests.gc.inprocess import HOUR, CollectorRig

pytestmark = pytest.mark.anyio


SETTLE = 0.2  # the lease's: long enough for a loaded test machine


@pytest.fixture
def registry() -> CollectorRig:
    registry = CollectorRig()
    registry.collector = collector(registry)
    return registry


def collector(registry: CollectorRig, **kwargs: object) -> Collector:
    return Collector(
        registry.store,
        GcConfig(grace_period=60),
        upload_expiry=24 * HOUR,
        settle=SETTLE,
        **kwargs,  # type: ignore[arg-type]
    )


def count_reads(registry: CollectorRig, prefix: str) -> list[str]:
    """Every ``get`` of a path starting with ``prefix`` from now on."""
    reads: list[str] = []
    driver = registry.driver
    original = driver.get

    async def get(path: str) -> bytes:
        if path.startswith(prefix):
            reads.append(path)
        return await original(path)

    driver.get = get  # type: ignore[method-assign]
    return reads


async def records(registry: CollectorRig) -> list[str]:
    return await registry.driver.list(layout.changed(), recursive=True)


async def test_a_collection_with_nothing_changed_marks_nothing_and_reads_no_manifest(
    registry: CollectorRig,
) -> None:
    for repo in ("p/a", "p/b", "p/c"):
        await registry.push(repo, make_image([os.urandom(300)]), "v1")
    registry.age()
    first = await registry.collector.run()
    assert first.full_mark and first.repositories_marked == 3
    registry.age()
    manifests, tags = count_reads(registry, "blobs/"), count_reads(registry, "repositories/")

    report = await registry.collector.run()

    assert not report.full_mark and report.repositories_marked == 0
    assert manifests == [] and tags == []
    assert "incremental mark: 0 of 3 repositories" in report.summary()
    for repo in ("p/a", "p/b", "p/c"):
        await registry.pull(repo, "v1")


async def test_a_change_re_marks_its_repository_only(registry: CollectorRig) -> None:
    images = {repo: make_image([os.urandom(300)]) for repo in ("p/a", "p/b", "p/c")}
    for repo, img in images.items():
        await registry.push(repo, img, "v1")
    registry.age()
    await registry.collector.run()
    await registry.store.manifests.delete("p/b", "v1")
    registry.age()
    reads = count_reads(registry, "repositories/")

    report = await registry.collector.run()

    assert report.repositories_marked == 1
    assert {p.split("/_manifests")[0] for p in reads} <= {"repositories/p/b"}
    assert report.manifests_deleted == [f"p/b@{images['p/b'].digest}"]
    assert set(report.blobs_deleted) == {images["p/b"].digest, *images["p/b"].blobs}
    await registry.pull("p/a", "v1")
    await registry.pull("p/c", "v1")


async def test_a_change_record_stays_until_its_change_has_surely_landed(
    registry: CollectorRig,
) -> None:
    await registry.push("p/r", make_image([os.urandom(300)]), "v1")
    registry.age()
    await registry.collector.run()
    assert await records(registry) == []
    await registry.store.manifests.delete("p/r", "v1")
    written = await records(registry)
    assert len(written) == 1

    # Younger than its cover (the reference budget and a half, 45 s here): the change
    # it announces may still be on its way, so every run marks p/r and keeps it.
    for _ in range(2):
        report = await registry.collector.run()
        assert report.repositories_marked == 1
        assert await records(registry) == written
    registry.age(46)
    report = await registry.collector.run()
    assert report.repositories_marked == 1
    assert await records(registry) == []
    report = await registry.collector.run()
    assert report.repositories_marked == 0


async def test_a_push_landing_after_its_repository_was_scanned_is_seen_later(
    registry: CollectorRig,
) -> None:
    """The record is written before the change, so a collection can scan the repository
    between the two; a later one marks it again and keeps what the push needs."""
    await registry.push("p/x", make_image([os.urandom(100)]), "v0")
    layer = os.urandom(500)
    await registry.upload("p/x", layer)  # pushed long ago, used by nothing yet
    registry.age()
    await registry.collector.run()

    img = make_image([layer])
    for data in img.blobs.values():
        await registry.upload("p/x", data)
    gate = registry.driver.gate("put", layout.revision("p/x", parse_digest(img.digest)))
    push = asyncio.create_task(registry.push("p/x", img, "v1", upload=False))
    await gate.wait_reached()  # its record is written; nothing of the manifest yet
    first = await registry.collector.run()
    assert first.repositories_marked == 1  # scanned before the manifest landed
    gate.release.set()
    await asyncio.wait_for(push, WAIT)
    registry.age()  # every claim of the push is old now

    report = await registry.collector.run()

    assert report.repositories_marked == 1
    assert report.blobs_deleted == []
    await registry.pull("p/x", "v1")


async def test_a_manifest_pushed_and_deleted_between_collections_leaves_nothing(
    registry: CollectorRig,
) -> None:
    await registry.push("p/d", make_image([os.urandom(100)]), "v0")
    registry.age()
    await registry.collector.run()
    img = make_image([os.urandom(200)])
    await registry.push("p/d", img, "v1")
    await registry.store.manifests.delete("p/d", img.digest)  # no mark ever saw it
    registry.age()

    report = await registry.collector.run()

    assert not report.full_mark
    assert set(report.blobs_deleted) == {img.digest, *img.blobs}
    assert not await registry.has_blob(img.digest)


async def test_a_collection_that_stopped_half_way_makes_the_next_one_full(
    registry: CollectorRig,
) -> None:
    await registry.push("p/h", make_image([os.urandom(100)]), "v1")
    registry.age()
    await registry.collector.run()
    state = registry.store.mark_state
    original = state.write_summary

    async def fail(*args: object) -> None:
        raise OSError("disk full")

    state.write_summary = fail  # type: ignore[method-assign]
    with pytest.raises(OSError):
        await registry.collector.run()
    state.write_summary = original  # type: ignore[method-assign]
    assert registry.stored(layout.mark_running())

    report = await registry.collector.run()

    assert report.full_mark
    assert not registry.stored(layout.mark_running())
    assert not (await registry.collector.run()).full_mark


async def test_a_damaged_shard_is_not_swept_and_the_next_mark_is_full(
    registry: CollectorRig,
) -> None:
    img = make_image([os.urandom(100)])
    await registry.push("p/s", img, "v1")
    registry.age()
    await registry.collector.run()
    await registry.store.manifests.delete("p/s", "v1")
    for shard in await registry.store.mark_state.shards():
        algorithm, folder = shard.split("/")
        await registry.memory.put(layout.mark_shard(algorithm, folder), b"{damaged")
    registry.age()

    report = await registry.collector.run()

    assert report.blobs_deleted == []  # who else keeps them is unknown
    assert all([await registry.has_blob(d) for d in img.blobs])
    report = await registry.collector.run()
    assert report.full_mark
    assert set(report.blobs_deleted) == {img.digest, *img.blobs}


async def test_changed_settings_make_the_next_mark_full(registry: CollectorRig) -> None:
    await registry.push("team/app", make_image([os.urandom(100)]), "v1")
    await registry.collector.run()
    assert not (await registry.collector.run()).full_mark
    grouped = collector(registry, usage_groups={"team": ["team/**"]})
    assert (await grouped.run()).full_mark
    assert not (await grouped.run()).full_mark


async def test_time_alone_re_marks_a_repository_when_a_held_back_manifest_ages(
    registry: CollectorRig,
) -> None:
    img = make_image([os.urandom(100)])
    await registry.push("p/t", img, "v1")
    await registry.push("p/u", make_image([os.urandom(100)]), "v1")
    await registry.store.manifests.delete("p/t", "v1")
    registry.age(50)  # the records are old, the manifest is not (grace period: 60 s)
    report = await registry.collector.run()
    assert f"p/t@{img.digest}" in report.held_back_manifests
    registry.age(20)

    report = await registry.collector.run()

    assert report.repositories_marked == 1
    assert report.manifests_deleted == [f"p/t@{img.digest}"]


# ---------------------------------------------------------------------------- records


async def store_and_clock() -> tuple[RegistryStore, VirtualClock]:
    clock = VirtualClock()
    driver = CheckedDriver(MemoryDriver(clock=clock.time))
    return RegistryStore(driver, reference_budget=10, clock=clock), clock


async def test_a_process_writes_one_record_per_repository_per_window() -> None:
    store, clock = await store_and_clock()
    changed = store.changed
    digest = parse_digest("sha256:" + "a" * 64)
    tag_deleted: Callable[[str], Awaitable[None]] = lambda name: changed.before(  # noqa: E731
        TagDeleted(name, "v1", digest)
    )

    await asyncio.gather(*(tag_deleted("p/a") for _ in range(5)))
    await tag_deleted("p/b")
    await clock.advance(4.9)  # the window is half the reference budget
    await tag_deleted("p/a")
    assert sorted(r.repository for r in await changed.records()) == ["p/a", "p/b"]
    await clock.advance(0.2)
    await tag_deleted("p/a")
    found = await changed.records()
    assert sorted(r.repository for r in found) == ["p/a", "p/a", "p/b"]
    assert {r.cover for r in found} == {15.0}  # the window and the budget
    assert all(r.digest is None for r in found)

    # What takes something from a repository is recorded each time, with its digest.
    await changed.before(ManifestDeleted("p/a", digest, "application/x", 10))
    deleted = [r for r in await changed.records() if r.digest is not None]
    assert [(r.repository, r.digest) for r in deleted] == [("p/a", digest)]
    await store.close()


async def test_time_alone_re_marks_a_repository_when_a_tag_reaches_its_retention_age() -> None:
    registry = CollectorRig()
    policy = RetentionPolicyConfig(repositories=["ci/**"], older_than=600)
    registry.collector = Collector(
        registry.store,
        GcConfig(grace_period=60, retention=[policy]),
        upload_expiry=24 * HOUR,
        settle=SETTLE,
    )
    await registry.push("ci/build", make_image([os.urandom(100)]), "b1")
    await registry.push("ci/other", make_image([os.urandom(100)]), "b1")
    registry.age(100)
    assert (await registry.collector.run()).tags_deleted == []
    registry.age(100)
    assert (await registry.collector.run()).repositories_marked == 0
    await registry.push("ci/other", make_image([os.urandom(100)]), "b2")
    registry.age(401)  # b1 of both is 601 s old now; ci/build has not changed

    report = await registry.collector.run()

    assert sorted(report.tags_deleted) == ["ci/build:b1", "ci/other:b1"]


def test_the_spill_gives_back_what_it_was_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(spill_module, "BUFFERED", 3)  # most lines go to disk
    spill = Spill()
    try:
        lines = [["k", f"{i:02x}", "p/a", i % 3, i] for i in range(10)]
        for line in lines:
            spill.add(f"sha256/{line[1][0]}0", line)
        assert spill.shards() == {"sha256/00"}
        assert list(spill.lines("sha256/00")) == lines
        assert list(spill.lines("sha256/ff")) == []
        repo = Repository("p/a", tags={"v1": parse_digest("sha256:" + "b" * 64)})
        number = spill.park(repo)
        assert spill.unpark(number) == repo
    finally:
        spill.close()
    assert not spill.root.exists()
