"""The collector's deletes in batches (C3 of registry/store/claims.py): the files of one
step go in one ``delete_many``, and a step that must follow another is a later batch."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

import pytest

from registry.config import RetentionPolicyConfig
from registry.reference import Digest, parse_digest
from registry.store import layout
from tests.gc.collection import make_image, make_index
from tests.gc.inprocess import Registry

pytestmark = pytest.mark.anyio


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    return Registry(tmp_path / "store")


def record_batches(registry: Registry) -> list[set[str]]:
    """Every batch the registry's driver deletes from now on; a ``delete`` is a batch
    of one."""
    batches: list[set[str]] = []
    driver = registry.driver
    delete, delete_many = driver.delete, driver.delete_many

    async def recorded_delete(path: str) -> None:
        batches.append({path})
        await delete(path)

    async def recorded_delete_many(paths: Sequence[str]) -> None:
        batches.append(set(paths))
        await delete_many(paths)

    driver.delete = recorded_delete  # type: ignore[method-assign]
    driver.delete_many = recorded_delete_many  # type: ignore[method-assign]
    return batches


def touching(batches: list[set[str]], paths: set[str]) -> list[set[str]]:
    return [b & paths for b in batches if b & paths]


async def test_a_blobs_links_go_together_then_its_data_then_its_claim(
    registry: Registry,
) -> None:
    layer = os.urandom(300)
    for repo in ("p/a", "p/b"):
        await registry.push(repo, make_image([layer]), "v1")
        await registry.store.manifests.delete(repo, "v1")
    registry.age()
    digest = Digest("sha256", hashlib.sha256(layer).hexdigest())
    links = {layout.layer_link("p/a", digest), layout.layer_link("p/b", digest)}
    data, claimed = layout.blob_data(digest), layout.blob_claimed(digest)
    tombstone = layout.blob_collecting(digest)
    batches = record_batches(registry)

    report = await registry.collector.run()

    assert str(digest) in report.blobs_deleted
    assert touching(batches, {*links, data, claimed, tombstone}) == [
        links,
        {data},
        {claimed},
        {tombstone},
    ]


async def test_referrer_entries_go_first_then_indexes_then_their_children(
    registry: Registry,
) -> None:
    children = [make_image([os.urandom(100)]), make_image([os.urandom(100)])]
    index = make_index(children)
    signature = make_image([os.urandom(50)], subject=index, artifact_type="application/x-sig")
    await registry.push("p/i", index, "v1")
    await registry.push("p/i", signature)
    await registry.store.manifests.delete("p/i", "v1")
    registry.age()
    idx, sig = parse_digest(index.digest), parse_digest(signature.digest)
    kids = [parse_digest(c.digest) for c in children]
    entry = layout.referrer("p/i", idx, sig)
    revisions = {layout.revision("p/i", d) for d in (idx, sig, *kids)}
    tombstones = {layout.blob_collecting(d) for d in (idx, sig, *kids)}
    batches = record_batches(registry)

    report = await registry.collector.run()

    assert len(report.manifests_deleted) == 4
    # The manifests' own content goes later, in the blob sweep, with its own tombstones.
    assert touching(batches, {entry, *revisions, *tombstones})[:4] == [
        {entry},
        {layout.revision("p/i", idx), layout.revision("p/i", sig)},  # no parent among them
        {layout.revision("p/i", d) for d in kids},
        tombstones,
    ]


async def test_retention_deletes_the_expired_tags_of_one_digest_together(
    tmp_path: Path,
) -> None:
    policy = RetentionPolicyConfig(repositories=["p/r"], keep_last=0)
    registry = Registry(tmp_path / "store", retention=[policy])
    img = make_image([os.urandom(200)])
    for tag in ("t1", "t2", "t3"):
        await registry.push("p/r", img, tag)
    registry.age()
    tags = {layout.tag("p/r", t) for t in ("t1", "t2", "t3")}
    batches = record_batches(registry)

    report = await registry.collector.run()

    assert sorted(report.tags_deleted) == ["p/r:t1", "p/r:t2", "p/r:t3"]
    assert touching(batches, tags) == [tags]
