"""An upstream that is down, slow or rate-limiting: cached tags and digests still pull
(tags with a Warning, within ``max_stale``); what is not cached fails fast with the spec
error and the upstream's reason -- never a 500, never longer than the upstream timeout.
In-process caches of real upstreams."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.asgi_registry import InProcessRegistry
from tests.distribution import start_distribution
from tests.images import OCI_INDEX, OCI_MANIFEST, image, push_image
from tests.proxy.conftest import Upstreams, repo_name, upstream_entry

ACCEPT = {"Accept": f"{OCI_MANIFEST}, {OCI_INDEX}"}
MakeCache = Callable[..., InProcessRegistry]


def test_upstream_stopped_cached_content_pulls_and_the_rest_fails_fast(
    request: pytest.FixtureRequest, tmp_path: Path, in_process_cache: MakeCache
) -> None:
    upstream = start_distribution(request, tmp_path / "down")
    repo = repo_name()
    img = image(layers=2)
    other = image(layers=1)
    with upstream.client() as c:
        push_image(c, repo, img, "v1")
        push_image(c, repo, other, "v2")
    cache = in_process_cache(upstream_entry("down", upstream.url, tag_ttl="0s"))
    with cache.client() as c:
        assert c.get(f"/v2/down/{repo}/manifests/v1", headers=ACCEPT).status_code == 200
        for digest, data in img.blobs.items():
            assert c.get(f"/v2/down/{repo}/blobs/{digest}").content == data
        upstream.stop()

        started = time.monotonic()
        r = c.get(f"/v2/down/{repo}/manifests/v1", headers=ACCEPT)
        assert r.status_code == 200 and r.content == img.manifest
        assert r.headers["warning"].startswith('110 registry "Response is Stale; upstream down')
        r = c.head(f"/v2/down/{repo}/manifests/v1", headers=ACCEPT)
        assert r.status_code == 200 and "warning" in r.headers
        r = c.get(f"/v2/down/{repo}/manifests/{img.digest}")
        assert r.status_code == 200 and "warning" not in r.headers  # digests need nobody
        for digest, data in img.blobs.items():
            assert c.get(f"/v2/down/{repo}/blobs/{digest}").content == data

        for url in (
            f"/v2/down/{repo}/manifests/v2",
            f"/v2/down/{repo}/manifests/{other.digest}",
            f"/v2/down/{repo}/blobs/{next(iter(other.blobs))}",
        ):
            r = c.get(url)
            assert r.status_code == 503, (url, r.text)
            assert r.json()["errors"][0]["code"] == "UNAVAILABLE"
            assert "upstream down" in r.json()["errors"][0]["message"]
        r = c.get(f"/v2/down/{repo}/tags/list")
        assert r.status_code == 200 and r.json()["tags"] == ["v1"] and "warning" in r.headers
        assert time.monotonic() - started < 5


def test_rate_limited_upstream_passes_429_and_retry_after_through(
    upstreams: Upstreams, in_process_cache: MakeCache
) -> None:
    repo = repo_name()
    img = image(layers=1)
    upstreams.seed("dist", repo, img)
    cache = in_process_cache()
    upstreams.dist.fault(path="/manifests/", status=429, retry_after="42", times=None)
    with cache.client() as c:
        r = c.get(f"/v2/dist/{repo}/manifests/v1", headers=ACCEPT)
    assert r.status_code == 429
    assert r.json()["errors"][0]["code"] == "TOOMANYREQUESTS"
    assert r.headers["retry-after"] == "42"


def test_a_slow_upstream_answers_within_its_timeout(
    upstreams: Upstreams, in_process_cache: MakeCache
) -> None:
    repo = repo_name()
    img = image(layers=1)
    upstreams.seed("dist", repo, img)
    slow = upstream_entry(
        "slow",
        upstreams.dist.url,
        hosts=["slow.invalid"],
        timeouts={"response_headers": "1s"},
    )
    cache = in_process_cache(slow)
    upstreams.dist.fault(path="/manifests/", delay_headers=10, times=None)
    started = time.monotonic()
    with cache.client() as c:
        r = c.get(f"/v2/slow/{repo}/manifests/v1", headers=ACCEPT)
    assert r.status_code == 503 and r.json()["errors"][0]["code"] == "UNAVAILABLE"
    assert time.monotonic() - started < 3


def test_a_tag_older_than_max_stale_is_not_served_stale(
    request: pytest.FixtureRequest, tmp_path: Path, in_process_cache: MakeCache
) -> None:
    upstream = start_distribution(request, tmp_path / "down")
    repo = repo_name()
    img = image(layers=1)
    with upstream.client() as c:
        push_image(c, repo, img, "v1")
    entry = upstream_entry("down", upstream.url, tag_ttl="0s", max_stale="1s")
    cache = in_process_cache(entry)
    with cache.client() as c:
        assert c.get(f"/v2/down/{repo}/manifests/v1", headers=ACCEPT).status_code == 200
        upstream.stop()
        assert c.get(f"/v2/down/{repo}/manifests/v1", headers=ACCEPT).status_code == 200
        time.sleep(1.1)
        r = c.get(f"/v2/down/{repo}/manifests/v1", headers=ACCEPT)
        assert r.status_code == 503
        assert c.get(f"/v2/down/{repo}/manifests/{img.digest}").status_code == 200


def test_a_tag_the_upstream_removed_is_removed_from_the_cache(
    upstreams: Upstreams, in_process_cache: MakeCache
) -> None:
    repo = repo_name()
    img = image(layers=1)
    upstreams.seed("dist", repo, img)
    cache = in_process_cache(
        upstream_entry("quick", upstreams.dist.url, hosts=["quick.invalid"], tag_ttl="0s")
    )
    with cache.client() as c:
        assert c.get(f"/v2/quick/{repo}/manifests/v1", headers=ACCEPT).status_code == 200
        with upstreams.distribution.client() as u:
            assert u.delete(f"/v2/{repo}/manifests/{img.digest}").status_code == 202
        r = c.get(f"/v2/quick/{repo}/manifests/v1", headers=ACCEPT)
        assert r.status_code == 404 and r.json()["errors"][0]["code"] == "MANIFEST_UNKNOWN"
        assert c.get(f"/v2/quick/{repo}/tags/list").json()["tags"] == []
