"""The read cache's bound, between two `registry serve` processes on one bucket and
prefix (two replicas) with the default configuration for S3: what one replica deletes,
or a collector run elsewhere deletes, the other answers as gone at most
``storage.cache.ttl`` (5 s) later; a tag is never stale; and a push through the replica
whose cache still says "linked" checks the storage anyway (docs/operations.md)."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import httpx
import pytest

from tests.gc.collection import run_gc
from tests.images import image, push_image, sha256
from tests.rgw import RgwServer
from tests.server import RegistryServer

pytestmark = pytest.mark.s3

TTL = 5.0  # the default for S3
# A request's own time, between the moment a replica asks the storage and its answer.
SLACK = 1.0


@dataclass
class Replicas:
    a: RegistryServer
    b: RegistryServer


@pytest.fixture(scope="module")
def replicas(
    request: pytest.FixtureRequest, rgw: RgwServer, tmp_path_factory: pytest.TempPathFactory
) -> Replicas:
    prefix = f"stale-{uuid.uuid4().hex[:12]}"
    s3 = rgw.s3_config(prefix=prefix).model_dump(exclude_none=True)
    config = {"storage": {"driver": "s3", "s3": s3}, "gc": {"enabled": False}}
    servers = [RegistryServer(tmp_path_factory.mktemp(n), config) for n in ("a", "b")]
    for server in servers:
        request.addfinalizer(server.stop)
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(lambda s: s.start(), servers))
    return Replicas(servers[0], servers[1])


@pytest.fixture
def repo() -> str:
    return f"stale/{uuid.uuid4().hex[:10]}"


def gone_after(check: Callable[[], int], since: float) -> float:
    """Poll until ``check`` answers 404; how long after ``since`` that was. Once gone,
    it stays gone."""
    deadline = since + TTL + SLACK + 5
    while check() != 404:
        assert time.monotonic() < deadline, "still answered long after the ttl"
        time.sleep(0.1)
    seen = time.monotonic() - since
    assert [check() for _ in range(3)] == [404] * 3
    return seen


def test_a_delete_on_one_replica_is_seen_by_the_other_within_the_ttl(
    replicas: Replicas, repo: str
) -> None:
    img = image(layers=1)
    layer = next(iter(img.blobs))
    with replicas.a.client() as a, replicas.b.client() as b:
        push_image(a, repo, img, "v1")
        read = time.monotonic()
        assert b.head(f"/v2/{repo}/blobs/{layer}").status_code == 200
        assert b.get(f"/v2/{repo}/manifests/{img.digest}").status_code == 200
        assert a.delete(f"/v2/{repo}/blobs/{layer}").status_code == 202
        assert a.delete(f"/v2/{repo}/manifests/{img.digest}").status_code == 202
        deleted = time.monotonic()
        # A knows at once; B's tag is read from storage, so it is gone there too.
        assert a.head(f"/v2/{repo}/blobs/{layer}").status_code == 404
        assert a.get(f"/v2/{repo}/manifests/{img.digest}").status_code == 404
        assert b.get(f"/v2/{repo}/manifests/v1").status_code == 404
        # B still answers from what it read (this is what the bound is about)...
        stale_blob = b.head(f"/v2/{repo}/blobs/{layer}").status_code
        stale_manifest = b.get(f"/v2/{repo}/manifests/{img.digest}").status_code
        if time.monotonic() - read < TTL - SLACK:
            assert (stale_blob, stale_manifest) == (200, 200)
        # ...and no longer than the ttl after the delete.
        lag_blob = gone_after(lambda: b.head(f"/v2/{repo}/blobs/{layer}").status_code, deleted)
        lag_manifest = gone_after(
            lambda: b.get(f"/v2/{repo}/manifests/{img.digest}").status_code, deleted
        )
    assert max(lag_blob, lag_manifest) <= TTL + SLACK


def test_a_tag_moved_on_one_replica_is_seen_at_once_by_the_other(
    replicas: Replicas, repo: str
) -> None:
    with replicas.a.client() as a, replicas.b.client() as b:
        for _ in range(3):
            img = image(layers=1)
            push_image(a, repo, img, "latest")
            r = b.get(f"/v2/{repo}/manifests/latest", headers={"Accept": img.media_type})
            assert r.status_code == 200
            assert r.headers["Docker-Content-Digest"] == img.digest


def test_a_collection_elsewhere_is_seen_within_the_ttl_and_a_pull_is_never_cut(
    replicas: Replicas, repo: str
) -> None:
    data = os.urandom(5000)
    layer = sha256(data)
    with replicas.a.client() as a, replicas.b.client() as b:
        r = a.post(f"/v2/{repo}/blobs/uploads/", params={"digest": layer}, content=data)
        assert r.status_code == 201  # linked, and referenced by no manifest
        assert b.head(f"/v2/{repo}/blobs/{layer}").status_code == 200
        report = run_gc(replicas.a)  # in this process: neither replica's collector
        collected = time.monotonic()
        assert layer in report["blobs_deleted"]
        # A pull through B finds the data gone before its response begins: a 404, never
        # a 200 with a cut body.
        r = b.get(f"/v2/{repo}/blobs/{layer}")
        assert r.status_code == 404 and r.json()["errors"][0]["code"] == "BLOB_UNKNOWN"
        lag = gone_after(lambda: b.head(f"/v2/{repo}/blobs/{layer}").status_code, collected)
    assert lag <= TTL + SLACK


def test_a_push_through_a_replica_with_a_stale_cache_checks_the_storage(
    replicas: Replicas, repo: str
) -> None:
    img = image(layers=1)
    layer = next(iter(img.blobs))
    with replicas.a.client() as a, replicas.b.client() as b:
        for data in img.blobs.values():
            r = a.post(f"/v2/{repo}/blobs/uploads/", params={"digest": sha256(data)}, content=data)
            assert r.status_code == 201
        for digest in img.blobs:
            assert b.head(f"/v2/{repo}/blobs/{digest}").status_code == 200
        assert a.delete(f"/v2/{repo}/blobs/{layer}").status_code == 202
        assert b.head(f"/v2/{repo}/blobs/{layer}").status_code == 200  # stale, for a pull
        r = b.put(
            f"/v2/{repo}/manifests/v1",
            content=img.manifest,
            headers={"Content-Type": img.media_type},
        )
        assert r.status_code == 400, r.text
        assert r.json()["errors"][0]["code"] == "MANIFEST_BLOB_UNKNOWN"
        # Nor does a mount from there trust it: an upload session instead (202).
        r = b.post(f"/v2/{repo}-other/blobs/uploads/", params={"mount": layer, "from": repo})
        assert r.status_code == 202
        b.delete(httpx.URL(r.headers["Location"]).path)
