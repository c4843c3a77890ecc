"""The claim/tombstone protocol under forced interleavings: a collector stopped at each
step of its final check while a push runs, in one process over the filesystem driver.
Each case of the safety argument in registry/store/claims.py has a test here. The gates
name storage paths (``layout``): these tests pin the protocol's storage operations."""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from pathlib import Path
from typing import Any

import pytest

from registry import errors
from registry.config import RetentionPolicyConfig
from registry.errors import RegistryError
from registry.reference import Digest, parse_digest
from registry.store import BlobBusyError, layout
from tests.gc.collection import make_image, make_index
from tests.gc.inprocess import WAIT, Gate, Registry
from tests.images import Image

pytestmark = pytest.mark.anyio


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    return Registry(tmp_path / "store")


async def garbage_image(registry: Registry, repo: str) -> tuple[Image, bytes]:
    """An image pushed long ago whose tag is gone: all of it is garbage."""
    layer = os.urandom(300)
    old = make_image([layer])
    await registry.push(repo, old, "v1")
    await registry.store.manifests.delete(repo, "v1")
    registry.age()
    return old, layer


def reusing(layer: bytes) -> Image:
    """A new image over an existing layer: the client HEADs the layer, finds it and
    uploads only the new config (what ``registry.push(..., upload=False)`` then skips)."""
    return make_image([layer])


async def push_config_only(registry: Registry, repo: str, img: Image) -> None:
    config = next(iter(img.blobs.values()))
    await registry.upload(repo, config)


async def run_until(gate: Gate, registry: Registry) -> asyncio.Task[Any]:
    run = asyncio.create_task(registry.collector.run())
    await gate.wait_reached()
    return run


async def test_a_claim_before_the_tombstone_spares_the_blob(registry: Registry) -> None:
    _, layer = await garbage_image(registry, "p/a")
    digest = Digest("sha256", hashlib.sha256(layer).hexdigest())
    gate = registry.driver.gate("put", layout.blob_collecting(digest))
    run = await run_until(gate, registry)

    new = reusing(layer)
    await push_config_only(registry, "p/a", new)
    await registry.push("p/a", new, "v2", upload=False)  # W1..W3 and the writes, all before C1
    gate.release.set()
    report = await asyncio.wait_for(run, WAIT)

    assert str(digest) not in report.blobs_deleted
    assert report.spared >= 1
    await registry.pull("p/a", "v2")


async def test_a_claim_while_the_tombstone_is_up_waits_and_is_honoured(registry: Registry) -> None:
    _, layer = await garbage_image(registry, "p/b")
    digest = Digest("sha256", hashlib.sha256(layer).hexdigest())
    # Stop C2, the re-read of "claimed" (the first stat of it is the look before C1).
    gate = registry.driver.gate("stat", layout.blob_claimed(digest), skip=1)
    run = await run_until(gate, registry)
    assert registry.stored(layout.blob_collecting(digest))

    new = reusing(layer)
    await push_config_only(registry, "p/b", new)
    push = asyncio.create_task(registry.push("p/b", new, "v2", upload=False))
    await asyncio.sleep(0.3)
    assert not push.done()  # waiting for the tombstone to go
    gate.release.set()
    report = await asyncio.wait_for(run, WAIT)
    await asyncio.wait_for(push, WAIT)

    assert str(digest) not in report.blobs_deleted
    await registry.pull("p/b", "v2")


async def test_a_claim_after_the_final_check_fails_the_push_cleanly(registry: Registry) -> None:
    _, layer = await garbage_image(registry, "p/c")
    digest = Digest("sha256", hashlib.sha256(layer).hexdigest())
    gate = registry.driver.gate("delete", layout.blob_data(digest))  # C3, past C2
    run = await run_until(gate, registry)

    new = reusing(layer)
    await push_config_only(registry, "p/c", new)
    push = asyncio.create_task(registry.push("p/c", new, "v2", upload=False))
    await asyncio.sleep(0.3)
    assert not push.done()
    gate.release.set()
    report = await asyncio.wait_for(run, WAIT)
    with pytest.raises(RegistryError) as failed:
        await asyncio.wait_for(push, WAIT)

    assert failed.value.code == errors.MANIFEST_BLOB_UNKNOWN
    assert str(digest) in report.blobs_deleted
    assert not await registry.has_blob(digest)
    # Nothing of the failed push is visible.
    assert await registry.store.tags.read("p/c", "v2") is None
    assert not await registry.store.manifests.has_revision("p/c", parse_digest(new.digest))


async def test_an_upload_during_the_deletion_puts_its_own_data_in(registry: Registry) -> None:
    _, layer = await garbage_image(registry, "p/d")
    digest = Digest("sha256", hashlib.sha256(layer).hexdigest())
    gate = registry.driver.gate("delete", layout.blob_data(digest))
    run = await run_until(gate, registry)

    upload = asyncio.create_task(registry.upload("p/other", layer))
    await asyncio.sleep(0.3)
    assert not upload.done()
    gate.release.set()
    report = await asyncio.wait_for(run, WAIT)
    assert await asyncio.wait_for(upload, WAIT) == digest

    assert str(digest) in report.blobs_deleted  # the old copy went ...
    info = await registry.store.blobs.stat("p/other", digest)  # ... the new one is there
    assert info.size == len(layer)
    # and it is claimed afresh, so a collection right now spares it.
    report = await registry.collector.run()
    assert str(digest) not in report.blobs_deleted
    assert await registry.has_blob(digest)


async def test_a_mount_while_the_tombstone_is_up_fails_over_to_an_upload(
    registry: Registry,
) -> None:
    _, layer = await garbage_image(registry, "p/m")
    digest = Digest("sha256", hashlib.sha256(layer).hexdigest())
    gate = registry.driver.gate("delete", layout.blob_data(digest))
    run = await run_until(gate, registry)
    mount = asyncio.create_task(registry.store.blobs.mount("p/m2", digest, "p/m"))
    await asyncio.sleep(0.3)
    gate.release.set()
    await asyncio.wait_for(run, WAIT)
    assert await asyncio.wait_for(mount, WAIT) is None  # the client uploads instead (202)


async def test_retention_racing_a_push_of_the_same_tag(tmp_path: Path) -> None:
    policy = RetentionPolicyConfig(repositories=["p/r"], keep_last=0)
    registry = Registry(tmp_path / "store", retention=[policy])
    old = make_image([os.urandom(200)])
    await registry.push("p/r", old, "t")
    registry.age()
    gate = registry.driver.gate("delete", layout.tag("p/r", "t"))
    run = await run_until(gate, registry)

    new = make_image([os.urandom(200)])
    for data in new.blobs.values():
        await registry.upload("p/r", data)
    push = asyncio.create_task(registry.push("p/r", new, "t", upload=False))
    await asyncio.sleep(0.3)
    assert not push.done()  # it claimed what the tag named, which is being collected
    gate.release.set()
    report = await asyncio.wait_for(run, WAIT)
    await asyncio.wait_for(push, WAIT)

    assert report.tags_deleted == ["p/r:t"]
    assert await registry.store.tags.read("p/r", "t") == parse_digest(new.digest)
    await registry.pull("p/r", "t")


async def test_retention_spares_a_tag_pushed_before_its_tombstone(tmp_path: Path) -> None:
    policy = RetentionPolicyConfig(repositories=["p/s"], keep_last=0)
    registry = Registry(tmp_path / "store", retention=[policy])
    old = make_image([os.urandom(200)])
    await registry.push("p/s", old, "t")
    registry.age()
    gate = registry.driver.gate("put", layout.blob_collecting(parse_digest(old.digest)))
    run = await run_until(gate, registry)

    new = make_image([os.urandom(200)])
    await registry.push("p/s", new, "t")
    gate.release.set()
    report = await asyncio.wait_for(run, WAIT)

    assert report.tags_deleted == []
    await registry.pull("p/s", "t")


async def test_an_index_pushed_onto_an_old_untagged_child_keeps_the_childs_layers(
    registry: Registry,
) -> None:
    child = make_image([os.urandom(400)])
    await registry.push("p/i", child)  # by digest: untagged
    registry.age()
    gate = registry.driver.gate("put", layout.blob_collecting(parse_digest(child.digest)))
    run = await run_until(gate, registry)

    idx = make_index([child])
    await registry.store.manifests.put("p/i", "multi", idx.manifest, idx.media_type)
    gate.release.set()
    report = await asyncio.wait_for(run, WAIT)

    assert report.manifests_deleted == []
    assert report.blobs_deleted == []
    await registry.pull("p/i", "multi")


async def test_a_claim_gives_up_on_a_tombstone_that_stays(registry: Registry) -> None:
    digest = await registry.upload("p/t", b"some bytes")
    await registry.driver.put(layout.blob_collecting(digest), b"crashed collector")
    started = time.monotonic()
    with pytest.raises(BlobBusyError):
        await registry.store.claims.claim([digest], wait=0.3)
    assert time.monotonic() - started < 2
    await registry.driver.delete(layout.blob_collecting(digest))
    assert await registry.store.claims.claim([digest]) == {digest}


async def test_claims_are_renewed_when_checking_outlasts_the_budget(tmp_path: Path) -> None:
    registry = Registry(tmp_path / "store")
    registry.store.claims.reference_budget = 0.2
    digest = await registry.upload("p/w", b"payload")
    folder = layout.blob_dir(digest)
    listings: list[float] = []
    original = registry.driver.list

    async def slow_list(prefix: str, **kwargs: Any) -> list[str]:
        if prefix == folder:
            listings.append(time.monotonic())
            if len(listings) == 1:
                await asyncio.sleep(0.3)  # the first check outlasts the budget
        return await original(prefix, **kwargs)

    registry.driver.list = slow_list  # type: ignore[method-assign]
    assert await registry.store.claims.claim([digest]) == {digest}
    assert len(listings) == 2  # claimed again; the second claim is the recent one


async def test_a_claim_swallowed_by_a_finishing_collection_is_made_again(
    registry: Registry,
) -> None:
    digest = await registry.upload("p/x", b"payload")
    claimed = layout.blob_claimed(digest)
    writes: list[str] = []
    original = registry.driver.put

    async def put_then_lose_it(path: str, data: bytes) -> None:
        await original(path, data)
        if path == claimed:
            writes.append(path)
            if len(writes) == 1:  # as a cycle deleting the blob's files just after
                await registry.driver.inner.delete(path)

    registry.driver.put = put_then_lose_it  # type: ignore[method-assign]
    assert await registry.store.claims.claim([digest]) == {digest}
    assert len(writes) == 2
    assert await registry.store.claims.claimed_at(digest) is not None


async def test_a_cancelled_run_leaves_no_tombstone_and_no_lease(registry: Registry) -> None:
    _, layer = await garbage_image(registry, "p/v")
    digest = Digest("sha256", hashlib.sha256(layer).hexdigest())
    gate = registry.driver.gate("delete", layout.blob_data(digest))
    run = await run_until(gate, registry)
    assert registry.stored(layout.blob_collecting(digest))
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    await asyncio.sleep(0.1)  # the shielded clean-up finishes
    assert not registry.stored(layout.blob_collecting(digest))
    assert await registry.store.lease("gc", 60).read() is None
    assert await registry.store.claims.claim([digest]) == {digest}
