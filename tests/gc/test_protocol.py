"""The claim/tombstone protocol under forced interleavings: a collector stopped at each
step of its final check while a push runs, in one process over the memory driver and in
virtual time. Each case of the safety argument in registry/store/claims.py has a test
here. The gates name storage paths (``layout``): these tests pin the protocol's storage
operations."""

from __future__ import annotations

import asyncio
import hashlib
import os
from typing import Any

import pytest

from registry import errors
from registry.config import RetentionPolicyConfig
from registry.errors import RegistryError
from registry.reference import Digest, parse_digest
from registry.store import BlobBusyError, layout
from tests.gated_driver import WAIT, Gate
from tests.gc.collection import make_image, make_index
from tests.gc.inprocess import CollectorRig
from tests.images import Image

pytestmark = pytest.mark.anyio


async def garbage_image(rig: CollectorRig, repo: str) -> tuple[Image, bytes]:
    """An image pushed long ago whose tag is gone: all of it is garbage."""
    layer = os.urandom(300)
    old = make_image([layer])
    await rig.push(repo, old, "v1")
    await rig.store.manifests.delete(repo, "v1")
    rig.age()
    return old, layer


def reusing(layer: bytes) -> Image:
    """A new image over an existing layer: the client HEADs the layer, finds it and
    uploads only the new config (what ``rig.push(..., upload=False)`` then skips)."""
    return make_image([layer])


async def push_config_only(rig: CollectorRig, repo: str, img: Image) -> None:
    config = next(iter(img.blobs.values()))
    await rig.upload(repo, config)


async def run_until(gate: Gate, rig: CollectorRig) -> asyncio.Task[Any]:
    run = asyncio.create_task(rig.collector.run())
    await gate.wait_reached()
    return run


async def test_a_claim_before_the_tombstone_spares_the_blob(rig: CollectorRig) -> None:
    _, layer = await garbage_image(rig, "p/a")
    digest = Digest("sha256", hashlib.sha256(layer).hexdigest())
    gate = rig.driver.gate("put", layout.blob_collecting(digest))
    run = await run_until(gate, rig)

    new = reusing(layer)
    await push_config_only(rig, "p/a", new)
    await rig.push("p/a", new, "v2", upload=False)  # W1..W3 and the writes, all before C1
    gate.release.set()
    report = await asyncio.wait_for(run, WAIT)

    assert str(digest) not in report.blobs_deleted
    assert report.spared >= 1
    await rig.pull("p/a", "v2")


async def test_a_claim_while_the_tombstone_is_up_waits_and_is_honoured(rig: CollectorRig) -> None:
    _, layer = await garbage_image(rig, "p/b")
    digest = Digest("sha256", hashlib.sha256(layer).hexdigest())
    # Stop C2, the re-read of "claimed" (the first stat of it is the look before C1).
    gate = rig.driver.gate("stat", layout.blob_claimed(digest), skip=1)
    run = await run_until(gate, rig)
    assert rig.stored(layout.blob_collecting(digest))

    new = reusing(layer)
    await push_config_only(rig, "p/b", new)
    push = asyncio.create_task(rig.push("p/b", new, "v2", upload=False))
    await rig.clock.advance(0.3)
    assert not push.done()  # waiting for the tombstone to go
    gate.release.set()
    report = await asyncio.wait_for(run, WAIT)
    await asyncio.wait_for(push, WAIT)

    assert str(digest) not in report.blobs_deleted
    await rig.pull("p/b", "v2")


async def test_a_claim_after_the_final_check_fails_the_push_cleanly(rig: CollectorRig) -> None:
    _, layer = await garbage_image(rig, "p/c")
    digest = Digest("sha256", hashlib.sha256(layer).hexdigest())
    gate = rig.driver.gate("delete", layout.blob_data(digest))  # C3, past C2
    run = await run_until(gate, rig)

    new = reusing(layer)
    await push_config_only(rig, "p/c", new)
    push = asyncio.create_task(rig.push("p/c", new, "v2", upload=False))
    await rig.clock.advance(0.3)
    assert not push.done()
    gate.release.set()
    report = await asyncio.wait_for(run, WAIT)
    with pytest.raises(RegistryError) as failed:
        await asyncio.wait_for(push, WAIT)

    assert failed.value.code == errors.MANIFEST_BLOB_UNKNOWN
    assert str(digest) in report.blobs_deleted
    assert not await rig.has_blob(digest)
    # Nothing of the failed push is visible.
    assert await rig.store.tags.read("p/c", "v2") is None
    assert not await rig.store.manifests.has_revision("p/c", parse_digest(new.digest))


async def test_an_upload_during_the_deletion_puts_its_own_data_in(rig: CollectorRig) -> None:
    _, layer = await garbage_image(rig, "p/d")
    digest = Digest("sha256", hashlib.sha256(layer).hexdigest())
    gate = rig.driver.gate("delete", layout.blob_data(digest))
    run = await run_until(gate, rig)

    upload = asyncio.create_task(rig.upload("p/other", layer))
    await rig.clock.advance(0.3)
    assert not upload.done()
    gate.release.set()
    report = await asyncio.wait_for(run, WAIT)
    assert await asyncio.wait_for(upload, WAIT) == digest

    assert str(digest) in report.blobs_deleted  # the old copy went ...
    info = await rig.store.blobs.stat("p/other", digest)  # ... the new one is there
    assert info.size == len(layer)
    # and it is claimed afresh, so a collection right now spares it.
    report = await rig.collector.run()
    assert str(digest) not in report.blobs_deleted
    assert await rig.has_blob(digest)


async def test_a_mount_while_the_tombstone_is_up_fails_over_to_an_upload(
    rig: CollectorRig,
) -> None:
    _, layer = await garbage_image(rig, "p/m")
    digest = Digest("sha256", hashlib.sha256(layer).hexdigest())
    gate = rig.driver.gate("delete", layout.blob_data(digest))
    run = await run_until(gate, rig)
    mount = asyncio.create_task(rig.store.blobs.mount("p/m2", digest, "p/m"))
    await rig.clock.advance(0.3)
    gate.release.set()
    await asyncio.wait_for(run, WAIT)
    assert await asyncio.wait_for(mount, WAIT) is None  # the client uploads instead (202)


async def test_retention_racing_a_push_of_the_same_tag() -> None:
    policy = RetentionPolicyConfig(repositories=["p/r"], keep_last=0)
    rig = CollectorRig(retention=[policy])
    old = make_image([os.urandom(200)])
    await rig.push("p/r", old, "t")
    rig.age()
    gate = rig.driver.gate("delete", layout.tag("p/r", "t"))
    run = await run_until(gate, rig)

    new = make_image([os.urandom(200)])
    for data in new.blobs.values():
        await rig.upload("p/r", data)
    push = asyncio.create_task(rig.push("p/r", new, "t", upload=False))
    await rig.clock.advance(0.3)
    assert not push.done()  # it claimed what the tag named, which is being collected
    gate.release.set()
    report = await asyncio.wait_for(run, WAIT)
    await asyncio.wait_for(push, WAIT)

    assert report.tags_deleted == ["p/r:t"]
    assert await rig.store.tags.read("p/r", "t") == parse_digest(new.digest)
    await rig.pull("p/r", "t")


async def test_retention_spares_a_tag_pushed_before_its_tombstone() -> None:
    policy = RetentionPolicyConfig(repositories=["p/s"], keep_last=0)
    rig = CollectorRig(retention=[policy])
    old = make_image([os.urandom(200)])
    await rig.push("p/s", old, "t")
    rig.age()
    gate = rig.driver.gate("put", layout.blob_collecting(parse_digest(old.digest)))
    run = await run_until(gate, rig)

    new = make_image([os.urandom(200)])
    await rig.push("p/s", new, "t")
    gate.release.set()
    report = await asyncio.wait_for(run, WAIT)

    assert report.tags_deleted == []
    await rig.pull("p/s", "t")


async def test_an_index_pushed_onto_an_old_untagged_child_keeps_the_childs_layers(
    rig: CollectorRig,
) -> None:
    child = make_image([os.urandom(400)])
    await rig.push("p/i", child)  # by digest: untagged
    rig.age()
    gate = rig.driver.gate("put", layout.blob_collecting(parse_digest(child.digest)))
    run = await run_until(gate, rig)

    idx = make_index([child])
    await rig.store.manifests.put("p/i", "multi", idx.manifest, idx.media_type)
    gate.release.set()
    report = await asyncio.wait_for(run, WAIT)

    assert report.manifests_deleted == []
    assert report.blobs_deleted == []
    await rig.pull("p/i", "multi")


async def test_a_claim_gives_up_on_a_tombstone_that_stays(rig: CollectorRig) -> None:
    digest = await rig.upload("p/t", b"some bytes")
    await rig.driver.put(layout.blob_collecting(digest), b"crashed collector")
    started = rig.clock.monotonic()
    with pytest.raises(BlobBusyError):
        await rig.store.claims.claim([digest], wait=0.3)
    assert rig.clock.monotonic() - started < 2
    await rig.driver.delete(layout.blob_collecting(digest))
    assert await rig.store.claims.claim([digest]) == {digest}


async def test_claims_are_renewed_when_checking_outlasts_the_budget(rig: CollectorRig) -> None:
    rig.store.claims.reference_budget = 0.2
    digest = await rig.upload("p/w", b"payload")
    folder = layout.blob_dir(digest)
    listed = rig.driver.count("list", folder)
    gate = rig.driver.gate("list", folder)
    claim = asyncio.create_task(rig.store.claims.claim([digest]))
    await gate.wait_reached()
    await rig.clock.advance(0.3)  # the first check outlasts the budget
    gate.release.set()
    assert await asyncio.wait_for(claim, WAIT) == {digest}
    # Claimed again: the second claim is the recent one.
    assert rig.driver.count("list", folder) - listed == 2


async def test_a_claim_swallowed_by_a_finishing_collection_is_made_again(
    rig: CollectorRig,
) -> None:
    digest = await rig.upload("p/x", b"payload")
    claimed = layout.blob_claimed(digest)
    written = rig.driver.count("put", claimed)
    gate = rig.driver.gate("put", claimed, after=True)
    claim = asyncio.create_task(rig.store.claims.claim([digest]))
    await gate.wait_reached()
    await rig.driver.inner.delete(claimed)  # as a cycle deleting the blob's files just after
    gate.release.set()
    assert await asyncio.wait_for(claim, WAIT) == {digest}
    assert rig.driver.count("put", claimed) - written == 2
    assert await rig.store.claims.claimed_at(digest) is not None


async def test_a_cancelled_run_leaves_no_tombstone_and_no_lease(rig: CollectorRig) -> None:
    _, layer = await garbage_image(rig, "p/v")
    digest = Digest("sha256", hashlib.sha256(layer).hexdigest())
    gate = rig.driver.gate("delete", layout.blob_data(digest))
    run = await run_until(gate, rig)
    assert rig.stored(layout.blob_collecting(digest))
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    await rig.clock.advance(0.1)  # the shielded clean-up finishes
    assert not rig.stored(layout.blob_collecting(digest))
    assert await rig.store.lease("gc", 60).read() is None
    assert await rig.store.claims.claim([digest]) == {digest}
