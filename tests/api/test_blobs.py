"""GET/HEAD/DELETE /v2/<name>/blobs/<digest>, with Range."""

from __future__ import annotations

import hashlib
import os

import httpx
import pytest

from tests.images import push_blob, sha256

MISSING = "sha256:" + "0" * 64


def test_get_blob_returns_exact_bytes(client: httpx.Client, repo: str) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)
    digest = push_blob(client, repo, data)
    r = client.get(f"/v2/{repo}/blobs/{digest}")
    assert r.status_code == 200
    assert r.content == data
    assert r.headers["Docker-Content-Digest"] == digest
    assert r.headers["Content-Length"] == str(len(data))
    assert r.headers["Content-Type"] == "application/octet-stream"
    assert r.headers["ETag"] == f'"{digest}"'


def test_head_blob(client: httpx.Client, repo: str) -> None:
    digest = push_blob(client, repo, b"hello")
    r = client.head(f"/v2/{repo}/blobs/{digest}")
    assert r.status_code == 200
    assert r.headers["Content-Length"] == "5"
    assert r.headers["Docker-Content-Digest"] == digest
    assert r.content == b""


def test_unknown_blob_is_404(client: httpx.Client, repo: str) -> None:
    r = client.get(f"/v2/{repo}/blobs/{MISSING}")
    assert r.status_code == 404
    assert r.json()["errors"][0]["code"] == "BLOB_UNKNOWN"
    assert client.head(f"/v2/{repo}/blobs/{MISSING}").status_code == 404


def test_blob_is_visible_only_where_linked(client: httpx.Client, repo: str) -> None:
    digest = push_blob(client, repo, os.urandom(100))
    assert client.head(f"/v2/{repo}-other/blobs/{digest}").status_code == 404


@pytest.mark.parametrize(
    ("header", "start", "end"),
    [("bytes=0-9", 0, 9), ("bytes=10-", 10, 99), ("bytes=-5", 95, 99), ("bytes=90-200", 90, 99)],
)
def test_range_request(client: httpx.Client, repo: str, header: str, start: int, end: int) -> None:
    data = os.urandom(100)
    digest = push_blob(client, repo, data)
    r = client.get(f"/v2/{repo}/blobs/{digest}", headers={"Range": header})
    assert r.status_code == 206
    assert r.content == data[start : end + 1]
    assert r.headers["Content-Range"] == f"bytes {start}-{end}/100"
    assert r.headers["Content-Length"] == str(end - start + 1)


def test_unsatisfiable_range_is_416(client: httpx.Client, repo: str) -> None:
    digest = push_blob(client, repo, os.urandom(100))
    r = client.get(f"/v2/{repo}/blobs/{digest}", headers={"Range": "bytes=100-"})
    assert r.status_code == 416
    assert r.headers["Content-Range"] == "bytes */100"


def test_malformed_range_serves_whole_blob(client: httpx.Client, repo: str) -> None:
    data = os.urandom(50)
    digest = push_blob(client, repo, data)
    r = client.get(f"/v2/{repo}/blobs/{digest}", headers={"Range": "lines=1-2"})
    assert r.status_code == 200
    assert r.content == data


def test_delete_blob(client: httpx.Client, repo: str) -> None:
    digest = push_blob(client, repo, os.urandom(64))
    r = client.delete(f"/v2/{repo}/blobs/{digest}")
    assert r.status_code == 202
    assert client.head(f"/v2/{repo}/blobs/{digest}").status_code == 404
    r = client.delete(f"/v2/{repo}/blobs/{digest}")
    assert r.status_code == 404
    assert r.json()["errors"][0]["code"] == "BLOB_UNKNOWN"


@pytest.mark.parametrize(
    "digest",
    ["sha256:abc", "md5:" + "0" * 32, "sha256:" + "G" * 64, "sha256:" + "A" * 64, "nodigest"],
)
def test_invalid_digest_is_400(client: httpx.Client, repo: str, digest: str) -> None:
    r = client.get(f"/v2/{repo}/blobs/{digest}")
    assert r.status_code == 400
    assert r.json()["errors"][0]["code"] == "DIGEST_INVALID"


def test_sha512_blob(client: httpx.Client, repo: str) -> None:
    data = os.urandom(1000)
    digest = "sha512:" + hashlib.sha512(data).hexdigest()
    r = client.post(f"/v2/{repo}/blobs/uploads/", params={"digest": digest}, content=data)
    assert r.status_code == 201, r.text
    assert r.headers["Docker-Content-Digest"] == digest
    got = client.get(f"/v2/{repo}/blobs/{digest}")
    assert got.content == data
    assert sha256(data) != digest
