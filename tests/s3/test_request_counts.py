"""How many S3 requests each registry operation makes, counted on the wire (botocore's
``before-send``: every HTTP request, retries included) on Ceph RGW. The figures are the
ones docs/operations.md gives; a change that adds requests to a common operation shows
here.

"cold" is a process that has not read the objects before; "warm" one that read them
less than the read cache's ttl ago (registry/store/read_cache.py). The app runs in
this process over a real S3 driver, with the configuration's defaults for S3 but a long
ttl."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from typing import Any
from unittest import mock

import httpx
import pytest

from storage_backends import socket_put
from storage_backends.s3 import MIN_PART, S3Driver
from tests.asgi_registry import InProcessRegistry
from tests.images import Image, image, push_blob, push_image, sha256
from tests.rgw import RgwServer

pytestmark = pytest.mark.s3

# operation -> S3 requests it makes (what they are, in the comments)
EXPECTED = {
    # POST ?digest= with the body: claim (PUT claimed, LIST the blob's folder), PUT the
    # data, PUT the link.
    "push 4 KiB in one POST": 4,
    "push 4 KiB in one POST, blob already stored": 3,  # no data PUT
    # POST (PUT state), PATCH (GET state, PUT state with the bytes), PUT ?digest= (GET
    # state, claim 2, PUT data, PUT link, DeleteObjects the state: all the session has).
    "push 4 KiB as docker does (POST, PATCH, PUT)": 9,
    # Beyond 256 KiB the bytes go to a data file. PATCH: GET state, PUT state (no longer
    # inline: once per session), GET the S3 writer's sidecar (none yet), PUT it (one
    # object: state and tail), PUT the progress file. PUT: GET state, GET sidecar, PUT
    # the object, DeleteObjects the sidecar, claim 2, HEAD + COPY + DeleteObjects to move
    # it to its address, PUT link, the session's delete 2.
    "push 1 MiB as docker does (POST, PATCH, PUT)": 19,
    # A multipart upload of 3 parts across 3 PATCHes (5 MiB parts).
    "push 15 MiB in 3 PATCHes of 5 MiB": 31,
    # Tag read, claims of the manifest and its 3 blobs (2 each), their links (HEAD),
    # the repository's last-push marker (the web UI's, store/pushes.py) and a listing of
    # its older ones (the first push of this process; later ones delete the marker they
    # remember instead), the manifest's bytes, its revision, the tag, the tags version.
    "push a manifest (2 layers) with a tag": 18,
    "blob HEAD, cold": 2,  # the link, the data's size
    "blob HEAD, warm": 0,
    "blob HEAD of a blob not there": 2,  # HEAD, then a listing (is it a folder?)
    "blob GET (4 KiB), warm": 1,
    "manifest GET by tag, cold": 3,  # the tag, the revision, the bytes
    "manifest GET by tag, warm": 1,  # the tag: tags are never cached
    "manifest GET by digest, cold": 2,
    "manifest GET by digest, warm": 0,
    "manifest HEAD by tag, warm": 1,
    # Does the repository exist (its catalog marker), the tags version, one listing.
    "tags list, cold": 3,
    # The tags version only: it reads as when the page was listed (store/tags.py); and a
    # repository once seen is known (catalog markers stay).
    "tags list, warm": 1,
    "tags list after a tag pushed through another process": 2,  # the version, a listing
    # The manifest cold (3), then per blob its link, its size and its bytes.
    "pull an image (manifest by tag, config, 2 layers), cold": 12,
}


class Wire:
    """Counts the S3 requests a driver sends: botocore's, and the parts sent as their
    bytes arrive, on sockets of their own (storage_backends/socket_put.py; counted in
    whichever process sends them, the only one working meanwhile)."""

    def __init__(self, driver: S3Driver) -> None:
        self.requests: list[str] = []
        driver._s3.meta.events.register("before-send.s3", self._sent)

    def _sent(self, **kwargs: Any) -> None:
        self.requests.append(kwargs["event_name"].rsplit(".", 1)[-1])

    def count(self, call: Callable[[], object]) -> int:
        self.requests.clear()
        finish = socket_put.Put.finish

        async def counted(put: socket_put.Put) -> tuple[int, dict[str, str], bytes]:
            self.requests.append("UploadPart")
            return await finish(put)

        with mock.patch.object(socket_put.Put, "finish", counted):
            call()
        return len(self.requests)


@pytest.fixture
def prefix() -> str:
    return f"counts-{uuid.uuid4().hex[:12]}"


def registry(rgw: RgwServer, prefix: str) -> tuple[InProcessRegistry, Wire]:
    s3 = rgw.s3_config(prefix=prefix, part_size=MIN_PART)
    # A ttl no slow machine outlasts between a read and the "warm" one after it; and
    # the read-only flag, which a write reads once per its ttl whatever the operation
    # (2 s by default: a slow run would count it in whichever push crossed the mark),
    # read once by the warm-up pushes.
    config = {
        "storage": {
            "driver": "s3",
            "s3": s3.model_dump(exclude_none=True),
            "cache": {"ttl": 60},
            "readonly_flag_ttl": "1h",
        },
        "gc": {"enabled": False},
    }
    driver = S3Driver(s3)
    return InProcessRegistry(config, driver), Wire(driver)


@pytest.fixture
def pair(rgw: RgwServer, prefix: str) -> Iterator[tuple[httpx.Client, Wire, httpx.Client, Wire]]:
    """Two processes on one bucket: ``a`` pushes, ``b`` has read nothing yet."""
    a, wire_a = registry(rgw, prefix)
    b, wire_b = registry(rgw, prefix)
    with a, b, a.client() as client_a, b.client() as client_b:
        yield client_a, wire_a, client_b, wire_b


def docker_push(client: httpx.Client, repo: str, data: bytes) -> None:
    r = client.post(f"/v2/{repo}/blobs/uploads/")
    assert r.status_code == 202, r.text
    r = client.patch(
        r.headers["Location"], content=data, headers={"Content-Type": "application/octet-stream"}
    )
    assert r.status_code == 202, r.text
    r = client.put(httpx.URL(r.headers["Location"]).copy_merge_params({"digest": sha256(data)}))
    assert r.status_code == 201, r.text


def chunked_push(client: httpx.Client, repo: str, data: bytes, chunk: int) -> None:
    r = client.post(f"/v2/{repo}/blobs/uploads/")
    location = r.headers["Location"]
    for start in range(0, len(data), chunk):
        piece = data[start : start + chunk]
        r = client.patch(
            location,
            content=piece,
            headers={
                "Content-Range": f"{start}-{start + len(piece) - 1}",
                "Content-Type": "application/octet-stream",
            },
        )
        assert r.status_code == 202, r.text
        location = r.headers["Location"]
    r = client.put(httpx.URL(location).copy_merge_params({"digest": sha256(data)}))
    assert r.status_code == 201, r.text


def ok(response: httpx.Response) -> None:
    assert response.status_code == 200, response.text


def test_s3_requests_per_operation(
    pair: tuple[httpx.Client, Wire, httpx.Client, Wire],
) -> None:
    a, wire_a, b, wire_b = pair
    repo = "counts/app"
    push_blob(a, repo, os.urandom(100))  # the repository's markers, written once
    docker_push(a, repo, os.urandom(100))
    small = os.urandom(4096)
    img = image(layers=2)
    accept = {"Accept": img.media_type}
    counted: dict[str, int] = {}

    def count(wire: Wire, name: str, call: Callable[[], object]) -> None:
        counted[name] = wire.count(call)

    count(wire_a, "push 4 KiB in one POST", lambda: push_blob(a, repo, small))
    count(wire_a, "push 4 KiB in one POST, blob already stored", lambda: push_blob(a, repo, small))
    count(
        wire_a,
        "push 4 KiB as docker does (POST, PATCH, PUT)",
        lambda: docker_push(a, repo, os.urandom(4096)),
    )
    count(
        wire_a,
        "push 1 MiB as docker does (POST, PATCH, PUT)",
        lambda: docker_push(a, repo, os.urandom(1 << 20)),
    )
    count(
        wire_a,
        "push 15 MiB in 3 PATCHes of 5 MiB",
        lambda: chunked_push(a, repo, os.urandom(3 * MIN_PART), MIN_PART),
    )
    for data in img.blobs.values():
        push_blob(a, repo, data)
    count(
        wire_a,
        "push a manifest (2 layers) with a tag",
        lambda: push_image(a, repo, Image(img.manifest, img.media_type), tag="v1"),
    )

    layer = sha256(small)
    count(wire_b, "blob HEAD, cold", lambda: ok(b.head(f"/v2/{repo}/blobs/{layer}")))
    count(wire_b, "blob HEAD, warm", lambda: ok(b.head(f"/v2/{repo}/blobs/{layer}")))
    missing = "sha256:" + "0" * 64
    count(
        wire_b,
        "blob HEAD of a blob not there",
        lambda: b.head(f"/v2/{repo}/blobs/{missing}").status_code == 404 or pytest.fail(),
    )
    count(wire_b, "blob GET (4 KiB), warm", lambda: ok(b.get(f"/v2/{repo}/blobs/{layer}")))
    manifest_by_tag = f"/v2/{repo}/manifests/v1"
    manifest_by_digest = f"/v2/{repo}/manifests/{img.digest}"
    count(wire_b, "manifest GET by tag, cold", lambda: ok(b.get(manifest_by_tag, headers=accept)))
    count(wire_b, "manifest GET by tag, warm", lambda: ok(b.get(manifest_by_tag, headers=accept)))
    count(wire_b, "manifest GET by digest, warm", lambda: ok(b.get(manifest_by_digest)))
    count(wire_b, "manifest HEAD by tag, warm", lambda: ok(b.head(manifest_by_tag)))
    count(wire_b, "tags list, cold", lambda: ok(b.get(f"/v2/{repo}/tags/list?n=50")))
    count(wire_b, "tags list, warm", lambda: ok(b.get(f"/v2/{repo}/tags/list?n=50")))
    # A manifest by digest, and a whole pull, on a process that has read none of it.
    other = image(layers=2)
    push_image(a, repo, other, tag="v2")

    def tags_with_v2() -> None:
        r = b.get(f"/v2/{repo}/tags/list?n=50")
        ok(r)
        assert r.json()["tags"] == ["v1", "v2"]

    count(wire_b, "tags list after a tag pushed through another process", tags_with_v2)
    count(
        wire_b,
        "manifest GET by digest, cold",
        lambda: ok(b.get(f"/v2/{repo}/manifests/{other.digest}")),
    )
    pulled = image(layers=2)
    push_image(a, repo, pulled, tag="v3")

    def pull() -> None:
        ok(b.get(f"/v2/{repo}/manifests/v3", headers={"Accept": pulled.media_type}))
        for digest in pulled.blobs:
            ok(b.get(f"/v2/{repo}/blobs/{digest}"))

    count(wire_b, "pull an image (manifest by tag, config, 2 layers), cold", pull)
    assert counted == EXPECTED
