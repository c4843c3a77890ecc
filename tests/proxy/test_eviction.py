"""Eviction: by age and by size, least recently pulled first, images kept whole; the
collector then sweeps what nothing references, and a blob that a local image or another
cached image shares stays. In-process caches over a memory driver whose clock the tests
move; the plan itself is pure and tested on its own."""

from __future__ import annotations

import json
import os
from collections.abc import Callable

from registry.config import GcConfig
from registry.gc import CollectionReport, background_collector
from registry.proxy import PullThroughCache
from registry.proxy.eviction import Cached, Node, plan
from registry.reference import Digest, parse_digest
from registry.store import RegistryStore
from storage_backends.memory import MemoryDriver
from tests.asgi_registry import InProcessRegistry
from tests.clocks import ShiftedClock
from tests.images import (
    OCI_CONFIG,
    OCI_LAYER,
    OCI_MANIFEST,
    Image,
    descriptor,
    push_image,
    sha256,
)
from tests.proxy.conftest import Upstreams, repo_name

DAY = 86400.0
MakeCache = Callable[..., InProcessRegistry]


def image_of(*layers: bytes) -> Image:
    config = json.dumps({"os": "linux", "nonce": os.urandom(8).hex()}).encode()
    doc = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor(OCI_CONFIG, config),
        "layers": [descriptor(OCI_LAYER, b) for b in layers],
    }
    return Image(json.dumps(doc).encode(), OCI_MANIFEST, {sha256(b): b for b in [config, *layers]})


def proxy_of(cache: InProcessRegistry) -> PullThroughCache:
    proxy: PullThroughCache = cache.app.state.proxy
    return proxy


def store_of(cache: InProcessRegistry) -> RegistryStore:
    store: RegistryStore = cache.app.state.store
    return store


def pull(cache: InProcessRegistry, name: str, img: Image, reference: str = "v1") -> None:
    """A whole pull through the cache, and the pull times written (as the loop would)."""
    with cache.client() as c:
        r = c.get(f"/v2/{name}/manifests/{reference}", headers={"Accept": img.media_type})
        assert r.status_code == 200 and r.content == img.manifest
        for digest, data in img.blobs.items():
            assert c.get(f"/v2/{name}/blobs/{digest}").content == data
    cache.run(proxy_of(cache).pulls.flush())


def stored(cache: InProcessRegistry, digest: str) -> bool:
    return cache.run(store_of(cache).blobs.exists(parse_digest(digest)))


def collect(cache: InProcessRegistry) -> CollectionReport:
    """A collection as ``registry serve`` makes it (``background_collector``, so the
    cached namespaces come from the cache's configuration), with no grace period."""
    config = cache.config.model_copy(update={"gc": GcConfig(grace_period=0)})
    background = background_collector(store_of(cache), config, cache.app.state.readonly)
    assert background is not None
    report: CollectionReport = cache.run(background.collector.run())
    return report


def test_eviction_by_age_keeps_blobs_that_others_share(
    upstreams: Upstreams, in_process_cache: MakeCache
) -> None:
    clock = ShiftedClock()
    cache = in_process_cache(driver=MemoryDriver(clock=clock.time), pulled_resolution=0.001)
    only_a, shared_cached, shared_local, only_b = (os.urandom(50_000) for _ in range(4))
    a = image_of(only_a, shared_cached, shared_local)
    b = image_of(only_b, shared_cached)
    local = image_of(shared_local)
    repo_a, repo_b = repo_name(), repo_name()
    upstreams.seed("dist", repo_a, a)
    upstreams.seed("dist", repo_b, b)
    with cache.client() as c:
        push_image(c, "local/app", local, "v1")
    pull(cache, f"dist/{repo_a}", a)
    pull(cache, f"dist/{repo_b}", b)

    clock.advance(8 * DAY)
    pull(cache, f"dist/{repo_b}", b)  # b is pulled again, a is not
    report = cache.run(proxy_of(cache).evictor.run())
    assert report is not None
    assert report.evicted == [((f"dist/{repo_a}", parse_digest(a.digest)), "age")]
    collect(cache)

    gone = [d for d in a.blobs if d not in b.blobs and d not in local.blobs]
    assert gone and not any(stored(cache, d) for d in gone)
    assert all(stored(cache, d) for d in [*b.blobs, *local.blobs])
    upstreams.dist.clear()
    pull(cache, f"dist/{repo_b}", b)  # whole, from the cache
    with cache.client() as c:
        assert c.get("/v2/local/app/manifests/v1").content == local.manifest
        for digest, data in local.blobs.items():
            assert c.get(f"/v2/local/app/blobs/{digest}").content == data
    assert upstreams.dist.count(None, "/(blobs|manifests)/") == 0
    pull(cache, f"dist/{repo_a}", a)  # evicted: fetched again
    assert upstreams.dist.count("GET", "/blobs/") == len(gone)


def test_digest_pulls_stay_cached_until_eviction_takes_them(
    upstreams: Upstreams, in_process_cache: MakeCache
) -> None:
    """A manifest pulled by digest is untagged in the cache: the collector's untagged
    policy (delete, the default) leaves it to eviction, and still applies elsewhere."""
    clock = ShiftedClock()
    cache = in_process_cache(driver=MemoryDriver(clock=clock.time), pulled_resolution=0.001)
    img, local = image_of(os.urandom(50_000)), image_of(os.urandom(50_000))
    repo = repo_name()
    name = f"dist/{repo}"
    upstreams.seed("dist", repo, img)
    pull(cache, name, img, img.digest)
    with cache.client() as c:
        push_image(c, "local/untagged", local)  # by digest: the policy's to delete
    clock.advance(DAY)

    report = collect(cache)

    assert report.manifests_deleted == [f"local/untagged@{local.digest}"]
    assert all(stored(cache, d) for d in [img.digest, *img.blobs])
    upstreams.dist.clear()
    pull(cache, name, img, img.digest)  # whole, from the cache
    assert upstreams.dist.count(None, "/(blobs|manifests)/") == 0

    clock.advance(8 * DAY)
    evicted = cache.run(proxy_of(cache).evictor.run())
    assert evicted is not None
    assert evicted.evicted == [((name, parse_digest(img.digest)), "age")]
    report = collect(cache)
    assert set(report.blobs_deleted) == {img.digest, *img.blobs}


def test_eviction_by_size_takes_the_least_recently_pulled_first(
    upstreams: Upstreams, in_process_cache: MakeCache
) -> None:
    clock = ShiftedClock()
    first, second, third = (image_of(os.urandom(200_000)) for _ in range(3))
    one_image = 200_000 + 1_000  # a layer, a config and a manifest fit; two do not
    cache = in_process_cache(
        driver=MemoryDriver(clock=clock.time),
        pulled_resolution=0.001,
        max_size=2 * one_image,
        evict_after=None,
    )
    repos = [repo_name() for _ in range(3)]
    for repo, img in zip(repos, (first, second, third), strict=True):
        upstreams.seed("dist", repo, img)
    pull(cache, f"dist/{repos[0]}", first)
    clock.advance(3600)
    pull(cache, f"dist/{repos[1]}", second)
    clock.advance(3600)
    pull(cache, f"dist/{repos[2]}", third)
    clock.advance(3600)
    pull(cache, f"dist/{repos[0]}", first)  # now the most recent

    report = cache.run(proxy_of(cache).evictor.run())
    assert report is not None
    assert report.evicted == [((f"dist/{repos[1]}", parse_digest(second.digest)), "size")]
    assert report.bytes_before > 2 * one_image >= report.bytes_after
    collect(cache)
    assert not any(stored(cache, d) for d in second.blobs)
    assert all(stored(cache, d) for d in [*first.blobs, *third.blobs])


# ---------------------------------------------------------------------- the plan, pure


def d(n: int) -> Digest:
    return Digest("sha256", f"{n:064x}")


def test_an_index_goes_no_later_than_its_children_and_first() -> None:
    index, child, other = d(1), d(2), d(3)
    nodes: dict[Node, Cached] = {
        ("r", index): Cached(pulled=100.0, size=10, children=frozenset({child, other})),
        ("r", child): Cached(pulled=50.0, size=10, blobs={d(10): 1000}),  # kept by the index
        ("r", other): Cached(pulled=900.0, size=10, blobs={d(11): 1000}),  # pulled by digest
    }
    assert plan(nodes, now=1000.0, evict_after=500.0, max_size=None) == [
        (("r", index), "age"),
        (("r", child), "age"),
    ]
    # Recently pulled, the index keeps its old child.
    nodes[("r", index)].pulled = 950.0
    assert plan(nodes, now=1000.0, evict_after=500.0, max_size=None) == []


def test_a_signature_goes_no_later_than_its_subject() -> None:
    subject, signature = d(1), d(2)
    nodes: dict[Node, Cached] = {
        ("r", subject): Cached(pulled=900.0, size=10, blobs={d(10): 5000}),
        ("r", signature): Cached(pulled=10.0, size=10, subject=subject, blobs={d(11): 10}),
    }
    assert plan(nodes, now=1000.0, evict_after=500.0, max_size=None) == []
    # Over the size, the subject goes first (though its signature was pulled earlier);
    # an orphaned signature is the collector's, or goes next when still too much.
    assert plan(nodes, now=1000.0, evict_after=None, max_size=100) == [
        (("r", subject), "size"),
    ]
    assert plan(nodes, now=1000.0, evict_after=None, max_size=15) == [
        (("r", subject), "size"),
        (("r", signature), "size"),
    ]


def test_a_blob_two_cached_images_share_counts_once() -> None:
    nodes: dict[Node, Cached] = {
        ("a", d(1)): Cached(pulled=1.0, size=0, blobs={d(10): 600, d(11): 100}),
        ("b", d(2)): Cached(pulled=2.0, size=0, blobs={d(10): 600, d(12): 100}),
    }
    # 800 bytes in all; evicting a frees only its own 100.
    assert plan(nodes, now=10.0, evict_after=None, max_size=800) == []
    assert plan(nodes, now=10.0, evict_after=None, max_size=750) == [(("a", d(1)), "size")]
    assert plan(nodes, now=10.0, evict_after=None, max_size=650) == [
        (("a", d(1)), "size"),
        (("b", d(2)), "size"),
    ]
