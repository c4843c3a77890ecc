"""The read cache (registry/store/read_cache.py): pulls answered without the storage
within its ttl; deletes made elsewhere seen within the ttl, deletes made here at once;
tags, absence and everything a push checks never taken from it.

Two stores over one MemoryStore are two processes on one bucket; time is virtual."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass, field

import pytest

from registry import errors
from registry.config import GcConfig, ReadCacheConfig, UntaggedConfig
from registry.errors import RegistryError
from registry.gc import Collector
from registry.reference import Digest, parse_digest
from registry.store import ReadCache, RegistryStore
from storage_backends import CheckedDriver
from storage_backends.memory import MemoryDriver, MemoryStore
from tests.clocks import VirtualClock
from tests.images import DOCKER_MANIFEST, OCI_MANIFEST, Image, image, sha256

pytestmark = pytest.mark.anyio
TTL = 5.0


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@dataclass
class Calls:
    """The storage operations of one store, as the metrics observer sees them."""

    ops: list[str] = field(default_factory=list)

    def __call__(self, driver: str, operation: str, seconds: float, failed: bool) -> None:
        self.ops.append(operation)

    def take(self) -> list[str]:
        ops, self.ops = self.ops, []
        return ops


@dataclass
class Process:
    store: RegistryStore
    calls: Calls


class Bucket:
    """One storage, and processes on it that share a virtual clock."""

    def __init__(self, ttl: float = TTL) -> None:
        self.clock = VirtualClock()
        self.files = MemoryStore()
        self.ttl = ttl
        self.opened: list[RegistryStore] = []

    def process(self, ttl: float | None = None) -> Process:
        calls = Calls()
        driver = MemoryDriver(self.files, clock=self.clock.time)
        cache = ReadCache(self.clock, self.ttl if ttl is None else ttl, 100, 1 << 20)
        store = RegistryStore(CheckedDriver(driver, calls), clock=self.clock, read_cache=cache)
        self.opened.append(store)
        return Process(store, calls)


@pytest.fixture
async def bucket() -> AsyncIterator[Bucket]:
    b = Bucket()
    yield b
    for store in b.opened:
        await store.close()


async def body(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def push_blob(store: RegistryStore, name: str, data: bytes) -> Digest:
    digest = parse_digest(sha256(data))
    await store.uploads.push(name, digest, body(data))
    return digest


async def push_image(store: RegistryStore, name: str, img: Image, tag: str) -> Digest:
    for data in img.blobs.values():
        await push_blob(store, name, data)
    await store.manifests.put(name, tag, img.manifest, img.media_type)
    return parse_digest(img.digest)


async def unknown(code: errors.ErrorCode, call: Awaitable[object]) -> bool:
    try:
        await call
    except RegistryError as e:
        return e.code == code
    return False


async def test_a_blob_is_answered_from_the_cache_within_the_ttl_then_asked_again(
    bucket: Bucket,
) -> None:
    a = bucket.process()
    digest = await push_blob(a.store, "team/app", b"layer")
    a.calls.take()
    assert (await a.store.blobs.stat("team/app", digest)).size == 5
    assert a.calls.take() == ["stat", "stat"]  # the link, the data
    assert (await a.store.blobs.stat("team/app", digest)).size == 5
    assert a.calls.take() == []
    await bucket.clock.advance(TTL)
    assert (await a.store.blobs.stat("team/app", digest)).size == 5
    assert a.calls.take() == ["stat"]  # the link again; the size is the digest's for good


async def test_a_manifest_by_digest_needs_no_storage_and_by_tag_only_the_tag(
    bucket: Bucket,
) -> None:
    a = bucket.process()
    img = image(layers=1)
    digest = await push_image(a.store, "team/app", img, "v1")
    b = bucket.process()
    stored = await b.store.manifests.resolve("team/app", str(digest))
    assert await b.store.manifests.content(stored) == img.manifest
    assert b.calls.take() == ["get", "get"]  # the revision, the manifest's bytes
    stored = await b.store.manifests.resolve("team/app", str(digest))
    assert await b.store.manifests.content(stored) == img.manifest
    assert b.calls.take() == []
    stored = await b.store.manifests.resolve("team/app", "v1")
    assert (stored.digest, stored.media_type) == (digest, img.media_type)
    assert await b.store.manifests.content(stored) == img.manifest
    assert b.calls.take() == ["get"]  # the tag


async def test_a_delete_through_another_process_is_seen_within_the_ttl(bucket: Bucket) -> None:
    a, b = bucket.process(), bucket.process()
    img = image(layers=1)
    digest = await push_image(a.store, "team/app", img, "v1")
    layer = parse_digest(next(iter(img.blobs)))
    await b.store.blobs.stat("team/app", layer)
    await b.store.manifests.resolve("team/app", str(digest))

    await bucket.clock.advance(1)
    await a.store.blobs.unlink("team/app", layer)
    await a.store.manifests.delete("team/app", str(digest))
    # The process that deleted knows at once.
    assert await unknown(errors.BLOB_UNKNOWN, a.store.blobs.stat("team/app", layer))
    assert await unknown(errors.MANIFEST_UNKNOWN, a.store.manifests.resolve("team/app", "v1"))
    assert await unknown(
        errors.MANIFEST_UNKNOWN, a.store.manifests.resolve("team/app", str(digest))
    )
    # The other one may still answer from what it read, until the ttl from its read.
    assert (await b.store.blobs.stat("team/app", layer)).size == len(img.blobs[str(layer)])
    assert (await b.store.manifests.resolve("team/app", str(digest))).digest == digest
    # A tag is never cached: the tags the delete removed are gone for B too.
    assert await unknown(errors.MANIFEST_UNKNOWN, b.store.manifests.resolve("team/app", "v1"))
    await bucket.clock.advance(TTL - 1)
    assert await unknown(errors.BLOB_UNKNOWN, b.store.blobs.stat("team/app", layer))
    assert await unknown(
        errors.MANIFEST_UNKNOWN, b.store.manifests.resolve("team/app", str(digest))
    )


async def test_a_tag_moved_through_another_process_is_seen_at_once(bucket: Bucket) -> None:
    a, b = bucket.process(), bucket.process()
    first, second = image(layers=1), image(layers=1)
    await push_image(a.store, "team/app", first, "latest")
    assert (await b.store.manifests.resolve("team/app", "latest")).digest == parse_digest(
        first.digest
    )
    await push_image(a.store, "team/app", second, "latest")
    assert (await b.store.manifests.resolve("team/app", "latest")).digest == parse_digest(
        second.digest
    )


async def test_absence_is_never_cached(bucket: Bucket) -> None:
    a, b = bucket.process(), bucket.process()
    data = os.urandom(100)
    digest = parse_digest(sha256(data))
    assert await unknown(errors.BLOB_UNKNOWN, b.store.blobs.stat("team/app", digest))
    await push_blob(a.store, "team/app", data)
    assert (await b.store.blobs.stat("team/app", digest)).size == 100


async def test_the_collector_of_another_process_is_seen_within_the_ttl_and_a_get_never_cuts(
    bucket: Bucket,
) -> None:
    a, b = bucket.process(ttl=60), bucket.process(ttl=60)
    data = os.urandom(3000)  # an unreferenced blob, as an abandoned push leaves
    digest = await push_blob(a.store, "team/app", data)
    await bucket.clock.advance(2)  # older than the grace period (0) and the clock's resolution
    for p in (a, b):
        assert (await p.store.blobs.stat("team/app", digest)).size == 3000
    config = GcConfig(grace_period=0, untagged=UntaggedConfig(policy="delete"))
    report = await Collector(a.store, config, upload_expiry=3600, settle=0).run()
    assert str(digest) in report.blobs_deleted
    assert bucket.clock.now < 2 + 60  # what A and B read is within their ttl
    # Its own collector's deletes are forgotten at once (the Collected change).
    assert await unknown(errors.BLOB_UNKNOWN, a.store.blobs.stat("team/app", digest))
    # The other process's HEAD may lag for the ttl; its GET finds the data gone and says
    # so before any response began, and forgets the link.
    assert (await b.store.blobs.stat("team/app", digest)).size == 3000
    assert await unknown(errors.BLOB_UNKNOWN, b.store.blobs.stream("team/app", digest))
    assert await unknown(errors.BLOB_UNKNOWN, b.store.blobs.stat("team/app", digest))


async def test_pushes_and_mounts_never_trust_the_cache(bucket: Bucket) -> None:
    a, b = bucket.process(), bucket.process()
    img = image(layers=1)
    layer = parse_digest(next(iter(img.blobs)))
    config_blob = parse_digest(sha256(img.blobs[str(layer)]))
    for data in img.blobs.values():
        await push_blob(a.store, "team/app", data)
    for d in map(parse_digest, img.blobs):
        await b.store.blobs.stat("team/app", d)  # cached in B: linked
    await a.store.blobs.unlink("team/app", config_blob)
    assert (await b.store.blobs.stat("team/app", config_blob)).size > 0  # stale, for reads
    # A mount from there, or a manifest that needs it there, reads the storage.
    assert await b.store.blobs.mount("team/other", config_blob, "team/app") is None
    with pytest.raises(RegistryError) as refused:
        await b.store.manifests.put("team/app", "v1", img.manifest, img.media_type)
    assert refused.value.code == errors.MANIFEST_BLOB_UNKNOWN


async def test_a_manifest_rewritten_here_is_read_as_written(bucket: Bucket) -> None:
    """A PUT of the same bytes with another media type rewrites the revision record; a
    pull through the same process answers with the new one at once."""
    a = bucket.process()
    img = image(layers=1)
    doc = json.loads(img.manifest)
    del doc["mediaType"]  # then the Content-Type header decides
    unlabeled = Image(json.dumps(doc).encode(), "application/json", img.blobs)
    await push_image(a.store, "team/app", unlabeled, "v1")
    assert (await a.store.manifests.resolve("team/app", "v1")).media_type == OCI_MANIFEST
    await a.store.manifests.put("team/app", "v1", unlabeled.manifest, DOCKER_MANIFEST)
    assert (await a.store.manifests.resolve("team/app", "v1")).media_type == DOCKER_MANIFEST


def test_no_ttl_keeps_nothing() -> None:
    cache = ReadCache(VirtualClock(), 0, 100, 1000)
    digest = parse_digest(sha256(b"x"))
    cache.keep_link("a", digest, 1, cache.started())
    cache.keep_manifest_body(digest, b"x")
    assert cache.linked_size("a", digest) is None
    assert cache.manifest_body(digest) is None
    assert cache.blob_size(digest) is None


def test_the_cache_is_bounded_in_entries_and_bytes() -> None:
    cache = ReadCache(VirtualClock(), TTL, 3, 100)
    digests = [parse_digest(sha256(bytes([i]))) for i in range(5)]
    for i, d in enumerate(digests):
        cache.keep_link("a", d, i, cache.started())
        cache.keep_manifest_body(d, bytes(40))
    assert [cache.linked_size("a", d) for d in digests] == [None, None, 2, 3, 4]
    # 100 bytes hold two bodies of 40; one larger than the budget is not kept at all.
    assert [cache.manifest_body(d) is not None for d in digests] == [False] * 3 + [True] * 2
    cache.keep_manifest_body(digests[0], bytes(101))
    assert cache.manifest_body(digests[0]) is None
    assert cache.manifest_body(digests[4]) is not None


def test_a_fact_is_trusted_from_when_it_was_asked_for() -> None:
    clock = VirtualClock()
    cache = ReadCache(clock, TTL, 10, 100)
    digest = parse_digest(sha256(b"x"))
    asked = cache.started()
    clock.now += 4  # a slow answer: the ttl runs from the question
    cache.keep_link("a", digest, 1, asked)
    assert cache.linked_size("a", digest) == 1
    clock.now += 1
    assert cache.linked_size("a", digest) is None


def test_the_default_ttl_is_on_for_s3_only() -> None:
    config = ReadCacheConfig()
    assert (config.ttl_for("s3"), config.ttl_for("filesystem")) == (5.0, 0.0)
    assert ReadCacheConfig(ttl=0).ttl_for("s3") == 0.0
    assert ReadCacheConfig.model_validate({"ttl": "2s"}).ttl_for("filesystem") == 2.0
