"""Pages of tags served again while the repository's tags version holds
(registry/store/tags.py): one small read instead of a listing, and never a page that
misses a tag pushed, deleted or expired through another process.

Two stores over one MemoryStore are two processes on one bucket; time is virtual."""

from __future__ import annotations

import pytest

from registry.config import GcConfig, RetentionPolicyConfig, UntaggedConfig
from registry.gc import Collector
from registry.store import layout
from tests.images import image
from tests.store.test_read_cache import TTL, Bucket, bucket, push_image

pytestmark = pytest.mark.anyio
__all__ = ["bucket"]  # the fixture, shared with the read cache's tests

REPO = "team/app"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_a_page_is_listed_once_then_checked_by_one_read(bucket: Bucket) -> None:
    a, b = bucket.process(), bucket.process()
    await push_image(a.store, REPO, image(layers=1), "v1")
    b.calls.take()
    assert await b.store.tags.page(REPO, None, 51) == ["v1"]
    assert b.calls.take() == ["get", "list"]  # the version, the listing
    assert await b.store.tags.page(REPO, None, 51) == ["v1"]
    assert b.calls.take() == ["get"]
    # Another page of the same repository is a listing of its own.
    assert await b.store.tags.page(REPO, "v0", 51) == ["v1"]
    assert b.calls.take() == ["get", "list"]


async def test_tags_pushed_and_deleted_through_another_process_are_seen_at_once(
    bucket: Bucket,
) -> None:
    a, b = bucket.process(), bucket.process()
    img = image(layers=1)
    await push_image(a.store, REPO, img, "v1")
    assert await b.store.tags.page(REPO, None, 51) == ["v1"]
    await push_image(a.store, REPO, img, "v2")
    assert await b.store.tags.page(REPO, None, 51) == ["v1", "v2"]
    await a.store.manifests.delete(REPO, "v1")
    assert await b.store.tags.page(REPO, None, 51) == ["v2"]
    # And B's own writes, the same way.
    await push_image(b.store, REPO, img, "v3")
    assert await a.store.tags.page(REPO, None, 51) == ["v2", "v3"]
    assert await b.store.tags.page(REPO, None, 51) == ["v2", "v3"]


async def test_tags_the_collector_of_another_process_expired_are_seen_at_once(
    bucket: Bucket,
) -> None:
    a, b = bucket.process(ttl=60), bucket.process(ttl=60)
    for tag in ("v1", "v2", "v3"):
        await push_image(a.store, REPO, image(layers=1), tag)
        await bucket.clock.advance(2)
    assert await b.store.tags.page(REPO, None, 51) == ["v1", "v2", "v3"]
    config = GcConfig(
        grace_period=0,
        untagged=UntaggedConfig(policy="keep"),
        retention=[RetentionPolicyConfig(keep_last=1)],
    )
    await Collector(a.store, config, upload_expiry=3600, settle=0).run()
    assert bucket.clock.now < 60  # B's page is within its ttl: only the version tells
    assert await b.store.tags.page(REPO, None, 51) == ["v3"]


async def test_a_writer_killed_between_its_two_writes_leaves_a_page_stale_for_the_ttl_at_most(
    bucket: Bucket,
) -> None:
    a, b = bucket.process(), bucket.process()
    await push_image(a.store, REPO, image(layers=1), "v1")
    assert await b.store.tags.page(REPO, None, 51) == ["v1"]
    # The tag landed; the version write that follows it never happened.
    await a.store._driver.put(layout.tag(REPO, "v2"), b"sha256:" + b"0" * 64)
    assert await b.store.tags.page(REPO, None, 51) == ["v1"]
    await bucket.clock.advance(TTL)
    assert await b.store.tags.page(REPO, None, 51) == ["v1", "v2"]


async def test_without_a_version_or_without_the_cache_every_page_is_listed(
    bucket: Bucket,
) -> None:
    a, off = bucket.process(), bucket.process(ttl=0)
    await push_image(a.store, REPO, image(layers=1), "v1")
    for _ in range(2):
        assert await off.store.tags.page(REPO, None, 51) == ["v1"]
    assert off.calls.take()[-2:] == ["list", "list"]  # no version read either
    # A repository no writer of this version has tagged since: nothing to check against.
    await a.store._driver.delete(layout.tags_version(REPO))
    a.calls.take()
    for _ in range(2):
        assert await a.store.tags.page(REPO, None, 51) == ["v1"]
    assert a.calls.take() == ["get", "list", "get", "list"]
