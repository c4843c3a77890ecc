"""Repositories a pull-through cache serves (``Collector(cached=...)``): their untagged
manifests -- digest pulls -- are left to the cache's eviction, not to the untagged
policy; an index child the cache never fetched is no reason to warn there; and a change
of the cached namespaces makes the next mark a full one. Elsewhere nothing changes."""

from __future__ import annotations

import logging
import os

import pytest

from registry.config import GcConfig
from registry.gc import Collector
from registry.reference import parse_digest
from tests.gc.collection import make_image
from tests.gc.inprocess import HOUR, CollectorRig
from tests.images import Image, index

pytestmark = pytest.mark.anyio

CACHED = ("dockerhub/**",)
NO_CONTENT = "has no content"


def collector(rig: CollectorRig, cached: tuple[str, ...] = CACHED) -> Collector:
    config = GcConfig(grace_period=60)  # untagged.policy: delete, the default
    return Collector(rig.store, config, upload_expiry=24 * HOUR, settle=0.05, cached=cached)


async def cache_fill(rig: CollectorRig, repo: str, img: Image, reference: str) -> None:
    """Store a manifest as the cache does: before (or without) what it references."""
    await rig.store.manifests.put(
        repo, reference, img.manifest, img.media_type, verify_references=False
    )


async def test_untagged_manifests_in_a_cached_namespace_wait_for_eviction(
    rig: CollectorRig,
) -> None:
    cached_img, local_img = make_image([os.urandom(200)]), make_image([os.urandom(200)])
    await rig.push("dockerhub/library/alpine", cached_img)  # pulled by digest: no tag
    await rig.push("team/app", local_img)  # pushed by digest
    rig.age()
    gc = collector(rig)

    report = await gc.run()

    assert report.manifests_deleted == [f"team/app@{local_img.digest}"]
    assert not any([await rig.has_blob(d) for d in local_img.blobs])
    assert all([await rig.has_blob(d) for d in [cached_img.digest, *cached_img.blobs]])
    await rig.pull("dockerhub/library/alpine", cached_img.digest)
    assert not (await gc.run(full=True)).manifests_deleted  # a full mark agrees

    # Eviction deletes the manifest (registry/proxy/eviction.py); then it goes.
    await rig.store.manifests.delete("dockerhub/library/alpine", cached_img.digest)
    rig.age()
    report = await gc.run()
    assert set(report.blobs_deleted) == {cached_img.digest, *cached_img.blobs}


async def test_without_cached_namespaces_the_untagged_policy_applies_everywhere(
    rig: CollectorRig,
) -> None:
    img = make_image([os.urandom(200)])
    await rig.push("dockerhub/library/alpine", img)
    rig.age()

    report = await collector(rig, cached=()).run()

    assert report.manifests_deleted == [f"dockerhub/library/alpine@{img.digest}"]


async def test_a_change_of_the_cached_namespaces_makes_the_next_mark_full(
    rig: CollectorRig,
) -> None:
    await rig.push("dockerhub/library/alpine", make_image([os.urandom(100)]), "v1")
    assert (await collector(rig, cached=()).run()).full_mark
    assert not (await collector(rig, cached=()).run()).full_mark

    assert (await collector(rig).run()).full_mark
    assert not (await collector(rig).run()).full_mark


async def test_unfetched_children_of_a_cached_index_are_not_warned_about(
    rig: CollectorRig, caplog: pytest.LogCaptureFixture
) -> None:
    pulled, never = make_image([os.urandom(100)]), make_image([os.urandom(100)])
    multi = index([pulled, never])
    repo = "dockerhub/library/multi"
    await rig.push(repo, pulled)  # the platform a client pulled
    await cache_fill(rig, repo, multi, "v1")  # the other child was never fetched
    rig.age()

    with caplog.at_level(logging.DEBUG, logger="registry.gc"):
        report = await collector(rig).run()

    assert report.complete and not report.manifests_deleted
    quiet = [r for r in caplog.records if NO_CONTENT in r.getMessage()]
    assert [(r.levelno, never.digest in r.getMessage()) for r in quiet] == [(logging.DEBUG, True)]
    assert all([await rig.has_blob(d) for d in [multi.digest, pulled.digest, *pulled.blobs]])
    assert not await rig.has_blob(parse_digest(never.digest))


async def test_a_manifest_without_content_elsewhere_is_still_a_warning(
    rig: CollectorRig, caplog: pytest.LogCaptureFixture
) -> None:
    present, missing = make_image([os.urandom(100)]), make_image([os.urandom(100)])
    multi = index([present, missing])
    await rig.push("team/multi", present)
    await cache_fill(rig, "team/multi", multi, "v1")

    with caplog.at_level(logging.DEBUG, logger="registry.gc"):
        await collector(rig).run()

    warned = [r for r in caplog.records if NO_CONTENT in r.getMessage()]
    assert [(r.levelno, missing.digest in r.getMessage()) for r in warned] == [
        (logging.WARNING, True)
    ]
