"""Manifests through the cache: tags within their TTL cost no upstream request, after it
one HEAD, and one GET only when the tag moved; digests are cached for good; concurrent
pulls of one uncached tag share one upstream GET; the metrics count it all."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import httpx

from tests.images import OCI_INDEX, OCI_MANIFEST, image
from tests.proxy.conftest import Upstreams, repo_name
from tests.server import RegistryServer

ACCEPT = {"Accept": f"{OCI_MANIFEST}, {OCI_INDEX}"}


def manifest_requests(upstreams: Upstreams) -> dict[str, int]:
    """Manifest requests at the token-auth upstream, less the challenge a client's very
    first request meets (it carries no token yet)."""
    seen = [s for s in upstreams.reg.seen if "/manifests/" in s.path]
    return {
        m: sum(1 for s in seen if s.method == m and "authorization" in s.headers)
        for m in ("GET", "HEAD")
    }


def test_a_tag_within_its_ttl_costs_no_upstream_request_then_one_head(
    cache: RegistryServer, upstreams: Upstreams
) -> None:
    repo = repo_name()
    first = image(layers=1)
    upstreams.seed("reg", repo, first)
    url = f"/v2/ttl/{repo}/manifests/v1"  # ttl/: the reg upstream with a 1 s TTL
    with cache.client() as c:
        assert c.get(url, headers=ACCEPT).content == first.manifest
        assert manifest_requests(upstreams) == {"GET": 1, "HEAD": 0}
        upstreams.reg.clear()
        started = time.monotonic()
        for _ in range(100):
            r = c.get(url, headers=ACCEPT)
            assert r.status_code == 200 and r.content == first.manifest
        assert time.monotonic() - started < 1.0, "too slow to test within the TTL"
        assert manifest_requests(upstreams) == {"GET": 0, "HEAD": 0}
        time.sleep(1.1)
        for _ in range(5):
            assert c.get(url, headers=ACCEPT).content == first.manifest
        assert manifest_requests(upstreams) == {"GET": 0, "HEAD": 1}  # unchanged: no GET

        moved = image(layers=1)
        upstreams.seed("reg", repo, moved)
        upstreams.reg.clear()
        assert c.get(url, headers=ACCEPT).content == first.manifest  # still within the TTL
        time.sleep(1.1)
        r = c.get(url, headers=ACCEPT)
        assert r.content == moved.manifest
        assert r.headers["docker-content-digest"] == moved.digest
        assert manifest_requests(upstreams) == {"GET": 1, "HEAD": 1}
        # The old manifest stays pullable by digest, from the cache.
        upstreams.reg.clear()
        assert c.get(f"/v2/ttl/{repo}/manifests/{first.digest}").content == first.manifest
        assert manifest_requests(upstreams) == {"GET": 0, "HEAD": 0}


def test_digests_are_cached_for_good(cache: RegistryServer, upstreams: Upstreams) -> None:
    repo = repo_name()
    img = image(layers=1)
    upstreams.seed("reg", repo, img, tag=None)
    with cache.client() as c:
        url = f"/v2/ttl/{repo}/manifests/{img.digest}"
        assert c.get(url).content == img.manifest
        time.sleep(1.1)  # past the tag TTL: digests are not revalidated
        upstreams.reg.clear()
        r = c.head(url)
        assert r.status_code == 200 and r.headers["content-length"] == str(len(img.manifest))
        assert c.get(url).content == img.manifest
    assert manifest_requests(upstreams) == {"GET": 0, "HEAD": 0}


def test_concurrent_pulls_of_an_uncached_tag_share_one_upstream_get(
    cache: RegistryServer, upstreams: Upstreams
) -> None:
    repo = repo_name()
    img = image(layers=1)
    upstreams.seed("dist", repo, img)
    upstreams.dist.fault(method="GET", path="/manifests/", delay_headers=0.5)

    def get(_: int) -> bytes:
        with httpx.Client(base_url=cache.url, timeout=30) as c:
            return c.get(f"/v2/dist/{repo}/manifests/v1", headers=ACCEPT).content

    with ThreadPoolExecutor(20) as pool:
        bodies = list(pool.map(get, range(20)))
    assert set(bodies) == {img.manifest}
    assert upstreams.dist.count("GET", "/manifests/") == 1


def test_head_of_an_uncached_tag_caches_it_and_the_metrics_count(
    cache: RegistryServer, upstreams: Upstreams
) -> None:
    repo = repo_name()
    img = image(layers=1)
    upstreams.seed("dist", repo, img)
    with cache.client() as c:
        r = c.head(f"/v2/dist/{repo}/manifests/v1", headers=ACCEPT)
        assert r.status_code == 200
        assert r.headers["docker-content-digest"] == img.digest
        assert r.headers["content-type"] == img.media_type
        upstreams.dist.clear()
        assert c.get(f"/v2/dist/{repo}/manifests/{img.digest}").content == img.manifest
        assert c.get(f"/v2/dist/{repo}/manifests/v1").content == img.manifest
        assert upstreams.dist.count(None, "/manifests/") == 0
        metrics = c.get("/metrics").text
    for name in (
        'registry_proxy_hits_total{kind="manifest",upstream="dist"}',
        'registry_proxy_misses_total{kind="manifest",upstream="dist"}',
        'registry_proxy_upstream_requests_total{operation="manifest_get",status="200",upstream="dist"}',
        'registry_proxy_upstream_bytes_total{upstream="dist"}',
    ):
        assert name in metrics, name
