"""The collector's deletes in batches (C3 of registry/store/claims.py): the files of one
step go in one ``delete_many``, and a step that must follow another is a later batch."""

from __future__ import annotations

import hashlib
import os

import pytest

from registry.config import RetentionPolicyConfig
from registry.reference import Digest, parse_digest
from registry.store import layout
from tests.gc.collection import make_image, make_index
from tests.gc.inprocess import CollectorRig

pytestmark = pytest.mark.anyio


def deletes_since(rig: CollectorRig, mark: int) -> list[set[str]]:
    """Every batch the rig's driver deleted since its ``mark``-th call; a ``delete`` is a
    batch of one."""
    return [set(c.paths) for c in rig.driver.calls[mark:] if c.op in ("delete", "delete_many")]


def touching(batches: list[set[str]], paths: set[str]) -> list[set[str]]:
    return [b & paths for b in batches if b & paths]


async def test_a_blobs_links_go_together_then_its_data_then_its_claim(
    rig: CollectorRig,
) -> None:
    layer = os.urandom(300)
    for repo in ("p/a", "p/b"):
        await rig.push(repo, make_image([layer]), "v1")
        await rig.store.manifests.delete(repo, "v1")
    rig.age()
    digest = Digest("sha256", hashlib.sha256(layer).hexdigest())
    links = {layout.layer_link("p/a", digest), layout.layer_link("p/b", digest)}
    data, claimed = layout.blob_data(digest), layout.blob_claimed(digest)
    tombstone = layout.blob_collecting(digest)
    mark = len(rig.driver.calls)

    report = await rig.collector.run()

    assert str(digest) in report.blobs_deleted
    assert touching(deletes_since(rig, mark), {*links, data, claimed, tombstone}) == [
        links,
        {data},
        {claimed},
        {tombstone},
    ]


async def test_referrer_entries_go_first_then_indexes_then_their_children(
    rig: CollectorRig,
) -> None:
    children = [make_image([os.urandom(100)]), make_image([os.urandom(100)])]
    index = make_index(children)
    signature = make_image([os.urandom(50)], subject=index, artifact_type="application/x-sig")
    await rig.push("p/i", index, "v1")
    await rig.push("p/i", signature)
    await rig.store.manifests.delete("p/i", "v1")
    rig.age()
    idx, sig = parse_digest(index.digest), parse_digest(signature.digest)
    kids = [parse_digest(c.digest) for c in children]
    entry = layout.referrer("p/i", idx, sig)
    revisions = {layout.revision("p/i", d) for d in (idx, sig, *kids)}
    tombstones = {layout.blob_collecting(d) for d in (idx, sig, *kids)}
    mark = len(rig.driver.calls)

    report = await rig.collector.run()

    assert len(report.manifests_deleted) == 4
    # The manifests' own content goes later, in the blob sweep, with its own tombstones.
    assert touching(deletes_since(rig, mark), {entry, *revisions, *tombstones})[:4] == [
        {entry},
        {layout.revision("p/i", idx), layout.revision("p/i", sig)},  # no parent among them
        {layout.revision("p/i", d) for d in kids},
        tombstones,
    ]


async def test_retention_deletes_the_expired_tags_of_one_digest_together() -> None:
    policy = RetentionPolicyConfig(repositories=["p/r"], keep_last=0)
    rig = CollectorRig(retention=[policy])
    img = make_image([os.urandom(200)])
    for tag in ("t1", "t2", "t3"):
        await rig.push("p/r", img, tag)
    rig.age()
    tags = {layout.tag("p/r", t) for t in ("t1", "t2", "t3")}
    mark = len(rig.driver.calls)

    report = await rig.collector.run()

    assert sorted(report.tags_deleted) == ["p/r:t1", "p/r:t2", "p/r:t3"]
    assert touching(deletes_since(rig, mark), tags) == [tags]
