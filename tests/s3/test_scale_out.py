"""Two `registry serve` processes on the same bucket and key prefix, as replicas behind a
load balancer: whatever one of them stored, the other continues, serves and lists."""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.images import image, index, push_blob, sha256
from tests.rgw import RgwServer
from tests.server import RegistryServer

pytestmark = pytest.mark.s3

MiB = 1 << 20
PART = 5 * MiB  # S3's smallest part, so that a few MiB make a real multipart upload
BIG = PART + 17  # one part is sent, 17 bytes stay as the saved tail


@dataclass
class Pair:
    """Servers A and B on one bucket and prefix, and a raw S3 client to look inside."""

    a: RegistryServer
    b: RegistryServer
    s3: Any
    bucket: str
    prefix: str

    def keys(self, below: str) -> list[str]:
        """Every key under ``<prefix>/<below>``, relative to the prefix."""
        out: list[str] = []
        for page in self.s3.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=f"{self.prefix}/{below}"
        ):
            out += [o["Key"][len(self.prefix) + 1 :] for o in page.get("Contents", [])]
        return out

    def multipart_uploads(self, below: str) -> list[str]:
        resp = self.s3.list_multipart_uploads(Bucket=self.bucket, Prefix=f"{self.prefix}/{below}")
        return [u["Key"] for u in resp.get("Uploads", [])]


@pytest.fixture(scope="module")
def pair(
    request: pytest.FixtureRequest, rgw: RgwServer, tmp_path_factory: pytest.TempPathFactory
) -> Pair:
    prefix = f"scale-{uuid.uuid4().hex[:12]}"
    s3_config = rgw.s3_config(prefix=prefix, part_size=PART).model_dump(exclude_none=True)
    config = {"storage": {"driver": "s3", "s3": s3_config}}
    servers = [RegistryServer(tmp_path_factory.mktemp(n), config) for n in ("a", "b")]
    for server in servers:
        request.addfinalizer(server.stop)
    with ThreadPoolExecutor(2) as pool:  # each takes a second or two to import and bind
        list(pool.map(lambda s: s.start(), servers))
    return Pair(servers[0], servers[1], rgw.client(), rgw.bucket, prefix)


def begin(client: httpx.Client, repo: str) -> str:
    r = client.post(f"/v2/{repo}/blobs/uploads/")
    assert r.status_code == 202, r.text
    location: str = r.headers["Location"]
    return location


def patch(client: httpx.Client, location: str, chunk: bytes, offset: int) -> str:
    r = client.patch(
        location,
        content=chunk,
        headers={
            "Content-Range": f"{offset}-{offset + len(chunk) - 1}",
            "Content-Type": "application/octet-stream",
        },
    )
    assert r.status_code == 202, r.text
    assert r.headers["Range"] == f"0-{offset + len(chunk) - 1}"
    new_location: str = r.headers["Location"]
    return new_location


def progress(client: httpx.Client, location: str) -> str:
    r = client.get(location)
    assert r.status_code == 204, r.text
    stored: str = r.headers["Range"]
    return stored


def push_blob_through(server: RegistryServer, repo: str, data: bytes) -> None:
    with server.client() as c:
        push_blob(c, repo, data)


def assert_pulls(servers: list[RegistryServer], repo: str, data: bytes) -> None:
    for server in servers:
        with server.client() as c:
            r = c.get(f"/v2/{repo}/blobs/{sha256(data)}")
            assert r.status_code == 200, (server.url, r.text)
            assert r.headers["Docker-Content-Digest"] == sha256(data)
            assert r.content == data, server.url


def assert_no_sessions_left(pair: Pair, repo: str) -> None:
    assert pair.keys(f"repositories/{repo}/_uploads/") == []
    assert pair.multipart_uploads(f"repositories/{repo}/") == []


def test_chunked_upload_begun_on_a_continued_on_b_finished_on_a(pair: Pair, repo: str) -> None:
    chunks = [os.urandom(BIG), os.urandom(1000), os.urandom(BIG), os.urandom(3333)]
    data = b"".join(chunks)
    with pair.a.client() as a, pair.b.client() as b:
        location = begin(a, repo)
        offset = 0
        # A sends a whole part and leaves a small tail; B continues from both.
        for client, chunk in zip([a, a, b, b], chunks, strict=True):
            location = patch(client, location, chunk, offset)
            offset += len(chunk)
            assert progress(a, location) == progress(b, location) == f"0-{offset - 1}"
            assert len(pair.multipart_uploads(f"repositories/{repo}/_uploads/")) == 1
        r = a.put(location, params={"digest": sha256(data)})
        assert r.status_code == 201, r.text
        assert r.headers["Docker-Content-Digest"] == sha256(data)
    assert_pulls([pair.a, pair.b], repo, data)
    assert_no_sessions_left(pair, repo)


def test_manifest_and_index_pushed_on_a_are_served_and_listed_by_b(pair: Pair, repo: str) -> None:
    single = image(layers=2)
    children = [image(layers=1), image(layers=1)]
    multi = index(children)
    blobs = [blob for img in (single, *children) for blob in img.blobs.values()]
    with ThreadPoolExecutor(len(blobs)) as pool:  # RGW round trips add up; push at once
        list(pool.map(lambda blob: push_blob_through(pair.a, repo, blob), blobs))
    with pair.a.client() as a:
        for img, ref in [*((c, c.digest) for c in children), (multi, "multi"), (single, "v1")]:
            r = a.put(
                f"/v2/{repo}/manifests/{ref}",
                content=img.manifest,
                headers={"Content-Type": img.media_type},
            )
            assert r.status_code == 201, r.text
    with pair.b.client() as b:
        for img, ref in [(single, "v1"), (multi, "multi"), (children[1], children[1].digest)]:
            for reference in (ref, img.digest):
                r = b.get(f"/v2/{repo}/manifests/{reference}", headers={"Accept": img.media_type})
                assert r.status_code == 200, r.text
                assert r.content == img.manifest  # byte-identical
                assert r.headers["Content-Type"] == img.media_type
                assert r.headers["Docker-Content-Digest"] == img.digest
        for digest, blob in single.blobs.items():
            r = b.get(f"/v2/{repo}/blobs/{digest}")
            assert r.status_code == 200
            assert r.content == blob
        r = b.get(f"/v2/{repo}/tags/list")
        assert r.status_code == 200
        assert r.json() == {"name": repo, "tags": ["multi", "v1"]}
        r = b.get("/v2/_catalog", params={"n": "10000"})
        assert repo in r.json()["repositories"]


def _monolithic(server: RegistryServer, repo: str, data: bytes) -> int:
    with server.client() as c:
        r = c.post(f"/v2/{repo}/blobs/uploads/", params={"digest": sha256(data)}, content=data)
        return r.status_code


def _chunked(server: RegistryServer, repo: str, data: bytes) -> int:
    with server.client() as c:
        location = patch(c, begin(c, repo), data[:BIG], 0)
        r = c.put(
            location,
            params={"digest": sha256(data)},
            content=data[BIG:],
            headers={"Content-Range": f"{BIG}-{len(data) - 1}"},
        )
        return r.status_code


def test_same_blob_pushed_through_both_at_once_is_stored_once(pair: Pair, repo: str) -> None:
    data = os.urandom(BIG + 4096)
    hex_ = sha256(data).split(":")[1]
    pushes: list[Callable[[], int]] = [
        lambda: _monolithic(pair.a, repo, data),
        lambda: _chunked(pair.a, repo, data),
        lambda: _monolithic(pair.b, repo, data),
        lambda: _chunked(pair.b, repo, data),
    ]
    barrier = threading.Barrier(len(pushes))

    def race(push: Callable[[], int]) -> int:
        barrier.wait()
        return push()

    with ThreadPoolExecutor(len(pushes)) as pool:
        statuses = list(pool.map(race, pushes))
    assert statuses == [201] * len(pushes)
    key = f"blobs/sha256/{hex_[:2]}/{hex_}/data"
    stored = [k for k in pair.keys("blobs/") if f"/{hex_}/" in k]
    assert [k for k in stored if k.endswith("/data")] == [key]
    head = pair.s3.head_object(Bucket=pair.bucket, Key=f"{pair.prefix}/{key}")
    assert head["ContentLength"] == len(data)
    layers = f"repositories/{repo}/_layers/"
    assert pair.keys(layers) == [f"{layers}sha256/{hex_}"]
    assert_pulls([pair.a, pair.b], repo, data)
    assert_no_sessions_left(pair, repo)


def test_session_survives_restart_of_a_and_is_finished_on_b(pair: Pair, repo: str) -> None:
    chunks = [os.urandom(BIG), os.urandom(777), os.urandom(2048)]
    data = b"".join(chunks)
    with pair.a.client() as a:
        location = begin(a, repo)
        location = patch(a, location, chunks[0], 0)
        location = patch(a, location, chunks[1], BIG)
    assert len(pair.multipart_uploads(f"repositories/{repo}/_uploads/")) == 1
    pair.a.restart()  # the live hasher and every other bit of process memory are gone
    offset = BIG + len(chunks[1])
    with pair.a.client() as a, pair.b.client() as b:
        assert progress(a, location) == f"0-{offset - 1}"
        r = b.put(
            location,
            params={"digest": sha256(data)},
            content=chunks[2],
            headers={"Content-Range": f"{offset}-{len(data) - 1}"},
        )
        assert r.status_code == 201, r.text
        assert progress_gone(a, location)
    assert_pulls([pair.a, pair.b], repo, data)
    assert_no_sessions_left(pair, repo)


def progress_gone(client: httpx.Client, location: str) -> bool:
    r = client.get(location)
    return r.status_code == 404 and r.json()["errors"][0]["code"] == "BLOB_UPLOAD_UNKNOWN"
