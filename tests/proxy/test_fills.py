"""Blobs through the cache (a real `registry serve`, real upstreams behind FaultProxies):
many clients of one uncached blob make one upstream GET; a client that gives up does not
stop the fetch; cut, padded and corrupted upstream bodies leave no cache entry and cut
the client's connection; ranges on misses."""

from __future__ import annotations

import hashlib
import os
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.auth.conftest import get_token, token_client
from tests.distribution import DistributionServer
from tests.images import push_blob, sha256
from tests.proxy.conftest import Upstreams, repo_name
from tests.server import RegistryServer


def seed_blob(upstreams: Upstreams, which: str, repo: str, data: bytes) -> str:
    server = upstreams.distribution if which == "dist" else upstreams.registry
    if isinstance(server, DistributionServer):
        with server.client() as c:
            return push_blob(c, repo, data)
    with server.client() as c:
        token = get_token(c, f"repository:{repo}:pull,push", user="admin")
    with token_client(server, token) as c:
        return push_blob(c, repo, data)


def blob_path(cache: RegistryServer, digest: str) -> Path:
    hex_ = digest.split(":")[1]
    return cache.data_dir / "blobs" / "sha256" / hex_[:2] / hex_ / "data"


def wait_stored(cache: RegistryServer, digest: str, timeout: float = 30) -> bytes:
    """The blob's stored bytes, once the fetch has committed them (a client has its
    last byte a moment before)."""
    deadline = time.monotonic() + timeout
    while not blob_path(cache, digest).exists():
        assert time.monotonic() < deadline, f"{digest} was not stored"
        time.sleep(0.02)
    return blob_path(cache, digest).read_bytes()


@dataclass
class Pull:
    digest: str | None = None
    size: int = 0
    first_byte: float | None = None
    done: float | None = None
    error: str | None = None


def pull(url: str, start: float) -> Pull:
    out = Pull()
    hasher = hashlib.sha256()
    try:
        with (
            httpx.Client(timeout=120) as c,
            c.stream("GET", url) as r,
        ):
            assert r.status_code == 200, r.status_code
            for chunk in r.iter_raw(1024 * 1024):
                if out.first_byte is None:
                    out.first_byte = time.monotonic() - start
                hasher.update(chunk)
                out.size += len(chunk)
        out.done = time.monotonic() - start
        out.digest = "sha256:" + hasher.hexdigest()
    except (httpx.HTTPError, AssertionError) as exc:
        out.error = f"{type(exc).__name__}: {exc}"
    return out


def test_fifty_clients_of_one_uncached_100mib_blob_make_one_upstream_get(
    cache: RegistryServer, upstreams: Upstreams
) -> None:
    data = os.urandom(100 * 1024 * 1024)
    repo = repo_name()
    digest = seed_blob(upstreams, "dist", repo, data)
    url = f"{cache.url}/v2/dist/{repo}/blobs/{digest}"
    # The upstream sends the body in 5 s, so that "streams while it stores" shows.
    upstreams.dist.fault(method="GET", path="/blobs/", rate=20 * 1024 * 1024)
    start = time.monotonic()
    with ThreadPoolExecutor(50) as pool:
        pulls = list(pool.map(lambda _: pull(url, start), range(50)))
    assert [p.error for p in pulls if p.error] == []
    assert {p.digest for p in pulls} == {digest}
    assert {p.size for p in pulls} == {len(data)}
    assert upstreams.dist.count("GET", "/blobs/") == 1
    assert wait_stored(cache, digest) == data
    assert cache.stray_files() == []
    # Every client had its first byte long before the upstream's last one: nobody waited
    # for the blob to be stored (absolute figures on an idle machine: benchmarks/proxy.py).
    stored_at = blob_path(cache, digest).stat().st_mtime - (time.time() - time.monotonic())
    slowest_first_byte = max(p.first_byte or 0 for p in pulls) + start
    assert slowest_first_byte < stored_at - 1.0, (slowest_first_byte - start, stored_at - start)
    with cache.client() as c:
        metrics = c.get("/metrics").text
    coalesced = re.search(r'registry_proxy_coalesced_waits_total\{upstream="dist"\} (\S+)', metrics)
    assert coalesced is not None and float(coalesced.group(1)) >= 49


def test_a_client_that_gives_up_does_not_stop_the_fetch(
    cache: RegistryServer, upstreams: Upstreams
) -> None:
    data = os.urandom(4 * 1024 * 1024)
    repo = repo_name()
    digest = seed_blob(upstreams, "reg", repo, data)
    # A slow upstream body (2 s): the client leaves long before its end.
    upstreams.reg.fault(method="GET", path="/blobs/", rate=2 * 1024 * 1024, times=None)
    url = f"{cache.url}/v2/reg/{repo}/blobs/{digest}"
    with httpx.Client(timeout=30) as c, c.stream("GET", url) as r:
        assert r.status_code == 200
        next(r.iter_raw(64 * 1024))
    assert not blob_path(cache, digest).exists()
    assert wait_stored(cache, digest) == data  # the abandoned fetch completed
    upstreams.reg.clear()
    with httpx.Client(timeout=30) as c:
        r = c.get(f"{cache.url}/v2/reg/{repo}/blobs/{digest}")
    assert r.status_code == 200 and sha256(r.content) == digest
    assert upstreams.reg.count("GET", "/blobs/") == 0


@pytest.mark.parametrize(
    "fault",
    [
        {"truncate": 1000},
        {"pad": b"trailing garbage"},
        {"corrupt": True},
        {"cut_after": 300_000},
    ],
    ids=["truncated", "padded", "corrupted", "cut"],
)
@pytest.mark.parametrize("which", ["reg", "dist"])
def test_a_faulty_upstream_body_leaves_no_cache_entry_and_cuts_the_client(
    cache: RegistryServer, upstreams: Upstreams, which: str, fault: dict[str, object]
) -> None:
    data = os.urandom(1024 * 1024 + 17)
    repo = repo_name()
    digest = seed_blob(upstreams, which, repo, data)
    front = upstreams.front(which)
    # Every GET (also one that meets the token challenge) until the fault heals.
    front.fault(method="GET", path="/blobs/", times=None, **fault)
    url = f"{cache.url}/v2/{which}/{repo}/blobs/{digest}"
    logged_before = len(cache.log())
    with (
        httpx.Client(timeout=30) as c,
        pytest.raises(httpx.RemoteProtocolError),
        c.stream("GET", url) as r,
    ):
        assert r.status_code == 200
        got = b"".join(r.iter_raw())
        pytest.fail(f"a complete body of {len(got)} bytes for a failed fetch")
    time.sleep(0.2)  # the fetch's cleanup runs after the client's connection is cut
    assert not blob_path(cache, digest).exists()
    assert cache.stray_files() == []
    front.clear()  # the fault heals: the next pull is whole, and cached
    with httpx.Client(timeout=30) as c:
        r = c.get(url)
        assert r.status_code == 200 and r.content == data
        assert wait_stored(cache, digest) == data
        front.clear()
        assert c.get(url).content == data
    assert front.count("GET", "/blobs/") == 0
    # One warning of ours says what happened; the abort itself is quiet (the server
    # has long finished with the cut request: it has served two since).
    log = cache.log()[logged_before:]
    assert "ASGI callable" not in log and " error " not in log, log
    warnings = [line for line in log.splitlines() if " warning " in line]
    assert len(warnings) == 1, log
    assert f"blob {digest} from upstream {which} " in warnings[0]
    assert "failed: " in warnings[0] and "nothing was cached" in warnings[0]


def test_ranges_of_a_miss_and_of_a_hit(cache: RegistryServer, upstreams: Upstreams) -> None:
    data = os.urandom(3 * 1024 * 1024)
    repo = repo_name()
    digest = seed_blob(upstreams, "dist", repo, data)
    url = f"{cache.url}/v2/dist/{repo}/blobs/{digest}"
    with httpx.Client(timeout=30) as c:
        r = c.get(url, headers={"Range": "bytes=100-199"})
        assert r.status_code == 206, r.text
        assert r.headers["content-range"] == f"bytes 100-199/{len(data)}"
        assert r.content == data[100:200]
        assert wait_stored(cache, digest) == data  # the full fetch went on behind it
        upstreams.dist.clear()
        r = c.get(url, headers={"Range": "bytes=-10"})
        assert r.status_code == 206 and r.content == data[-10:]
    assert upstreams.dist.count("GET", "/blobs/") == 0


def test_a_far_range_of_a_running_fetch_is_forwarded_upstream(
    cache: RegistryServer, upstreams: Upstreams
) -> None:
    data = os.urandom(32 * 1024 * 1024)
    repo = repo_name()
    digest = seed_blob(upstreams, "dist", repo, data)
    url = f"{cache.url}/v2/dist/{repo}/blobs/{digest}"
    # The full fetch stalls before its headers; the range asks far beyond its start.
    upstreams.dist.fault(method="GET", path="/blobs/", delay_headers=1.0)
    results: dict[str, bytes] = {}

    def full() -> None:
        with httpx.Client(timeout=60) as c:
            results["full"] = c.get(url).content

    thread = threading.Thread(target=full)
    thread.start()
    time.sleep(0.3)
    start = len(data) - 1000
    with httpx.Client(timeout=60) as c:
        r = c.get(url, headers={"Range": f"bytes={start}-"})
    thread.join()
    assert r.status_code == 206 and r.content == data[start:]
    assert results["full"] == data
    ranged = [s for s in upstreams.dist.seen if "range" in s.headers and "/blobs/" in s.path]
    assert len(ranged) == 1
