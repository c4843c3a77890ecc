"""POST/PATCH/PUT/GET/DELETE /v2/<name>/blobs/uploads/: every push flavour."""

from __future__ import annotations

import os
import socket
import time

import httpx
import pytest

from tests.images import push_blob, sha256
from tests.server import RegistryServer
from tests.targets import RegistryTarget, stray_files


def start(client: httpx.Client, repo: str) -> str:
    r = client.post(f"/v2/{repo}/blobs/uploads/")
    assert r.status_code == 202, r.text
    assert r.headers["Range"] == "0-0"
    assert "Docker-Upload-UUID" in r.headers
    assert "OCI-Chunk-Min-Length" in r.headers
    location: str = r.headers["Location"]
    return location


def assert_pullable(client: httpx.Client, repo: str, data: bytes) -> None:
    r = client.get(f"/v2/{repo}/blobs/{sha256(data)}")
    assert r.status_code == 200
    assert r.content == data


def test_monolithic_post_with_digest(client: httpx.Client, repo: str) -> None:
    data = os.urandom(5000)
    r = client.post(f"/v2/{repo}/blobs/uploads/", params={"digest": sha256(data)}, content=data)
    assert r.status_code == 201
    assert r.headers["Location"] == f"/v2/{repo}/blobs/{sha256(data)}"
    assert r.headers["Docker-Content-Digest"] == sha256(data)
    assert_pullable(client, repo, data)


def test_post_then_put(client: httpx.Client, repo: str) -> None:
    data = os.urandom(5000)
    location = start(client, repo)
    r = client.put(
        location,
        params={"digest": sha256(data)},
        content=data,
        headers={"Content-Type": "application/octet-stream"},
    )
    assert r.status_code == 201, r.text
    assert r.headers["Docker-Content-Digest"] == sha256(data)
    assert_pullable(client, repo, data)


def test_chunked_upload_with_progress(client: httpx.Client, repo: str) -> None:
    chunks = [os.urandom(1000), os.urandom(2000), os.urandom(5 * 1024 * 1024 + 3)]
    data = b"".join(chunks)
    location = start(client, repo)
    offset = 0
    for chunk in chunks:
        r = client.patch(
            location,
            content=chunk,
            headers={
                "Content-Range": f"{offset}-{offset + len(chunk) - 1}",
                "Content-Type": "application/octet-stream",
            },
        )
        assert r.status_code == 202, r.text
        offset += len(chunk)
        assert r.headers["Range"] == f"0-{offset - 1}"
        location = r.headers["Location"]  # usable as given
        status = client.get(location)
        assert status.status_code == 204
        assert status.headers["Range"] == f"0-{offset - 1}"
        assert status.headers["Docker-Upload-UUID"]
    r = client.put(location, params={"digest": sha256(data)})
    assert r.status_code == 201, r.text
    assert_pullable(client, repo, data)


def test_streamed_patch_without_content_range(client: httpx.Client, repo: str) -> None:
    data = os.urandom(300_000)

    def body():  # chunked transfer encoding, as docker sends it
        for i in range(0, len(data), 65536):
            yield data[i : i + 65536]

    location = start(client, repo)
    r = client.patch(location, content=body())
    assert r.status_code == 202
    assert r.headers["Range"] == f"0-{len(data) - 1}"
    r = client.put(r.headers["Location"], params={"digest": sha256(data)})
    assert r.status_code == 201
    assert_pullable(client, repo, data)


def test_put_carries_last_chunk(client: httpx.Client, repo: str) -> None:
    a, b = os.urandom(100), os.urandom(200)
    location = start(client, repo)
    r = client.patch(location, content=a, headers={"Content-Range": "0-99"})
    r = client.put(
        r.headers["Location"],
        params={"digest": sha256(a + b)},
        content=b,
        headers={"Content-Range": "100-299"},
    )
    assert r.status_code == 201, r.text
    assert_pullable(client, repo, a + b)


def test_out_of_order_chunk_is_416(client: httpx.Client, repo: str) -> None:
    location = start(client, repo)
    client.patch(location, content=b"x" * 10, headers={"Content-Range": "0-9"})
    r = client.patch(location, content=b"y" * 10, headers={"Content-Range": "20-29"})
    assert r.status_code == 416
    assert r.json()["errors"][0]["code"] == "BLOB_UPLOAD_INVALID"
    assert r.headers["Range"] == "0-9"
    r = client.patch(location, content=b"y" * 10, headers={"Content-Range": "0-9"})
    assert r.status_code == 416
    # The upload is intact and continues where it was.
    r = client.patch(location, content=b"z" * 10, headers={"Content-Range": "10-19"})
    assert r.status_code == 202
    r = client.put(location, params={"digest": sha256(b"x" * 10 + b"z" * 10)})
    assert r.status_code == 201


def test_malformed_content_range_is_416(client: httpx.Client, repo: str) -> None:
    location = start(client, repo)
    r = client.patch(location, content=b"abc", headers={"Content-Range": "bytes=oops"})
    assert r.status_code == 416


def test_wrong_digest_is_refused_and_nothing_visible(
    client: httpx.Client, repo: str, api_target: RegistryTarget
) -> None:
    data = os.urandom(1000)
    wrong = sha256(b"something else")
    r = client.post(f"/v2/{repo}/blobs/uploads/", params={"digest": wrong}, content=data)
    assert r.status_code == 400
    assert r.json()["errors"][0]["code"] == "DIGEST_INVALID"
    assert client.head(f"/v2/{repo}/blobs/{wrong}").status_code == 404
    assert client.head(f"/v2/{repo}/blobs/{sha256(data)}").status_code == 404
    location = start(client, repo)
    client.patch(location, content=data)
    r = client.put(location, params={"digest": wrong})
    assert r.status_code == 400
    assert r.json()["errors"][0]["code"] == "DIGEST_INVALID"
    assert client.get(location).status_code == 404  # the failed session is gone
    assert not [p for p in stray_files(api_target.stored_files()) if repo in p]


def test_put_without_digest_is_400(client: httpx.Client, repo: str) -> None:
    location = start(client, repo)
    r = client.put(location, content=b"abc")
    assert r.status_code == 400
    assert r.json()["errors"][0]["code"] == "DIGEST_INVALID"


def test_empty_blob(client: httpx.Client, repo: str) -> None:
    location = start(client, repo)
    r = client.put(location, params={"digest": sha256(b"")})
    assert r.status_code == 201
    r = client.get(f"/v2/{repo}/blobs/{sha256(b'')}")
    assert r.status_code == 200 and r.content == b""


def test_cancel_upload(client: httpx.Client, repo: str) -> None:
    location = start(client, repo)
    client.patch(location, content=b"abc")
    assert client.delete(location).status_code == 204
    r = client.get(location)
    assert r.status_code == 404
    assert r.json()["errors"][0]["code"] == "BLOB_UPLOAD_UNKNOWN"
    assert client.delete(location).status_code == 404


@pytest.mark.parametrize("upload_id", ["nonexistent", "0" * 32, "%2e%2e", "..%2f..%2fx"])
def test_unknown_upload_is_404(client: httpx.Client, repo: str, upload_id: str) -> None:
    for method in ("GET", "PATCH", "PUT", "DELETE"):
        r = client.request(method, f"/v2/{repo}/blobs/uploads/{upload_id}?digest={sha256(b'')}")
        assert r.status_code == 404, (method, r.text)
        # An encoded slash makes it another endpoint; all else is an unknown session.
        expected = "UNSUPPORTED" if "%2f" in upload_id else "BLOB_UPLOAD_UNKNOWN"
        assert r.json()["errors"][0]["code"] == expected


def test_cross_repository_mount(client: httpx.Client, repo: str) -> None:
    data = os.urandom(2000)
    digest = push_blob(client, repo, data)
    target = repo + "-mounted"
    r = client.post(f"/v2/{target}/blobs/uploads/", params={"mount": digest, "from": repo})
    assert r.status_code == 201
    assert r.headers["Location"] == f"/v2/{target}/blobs/{digest}"
    assert r.headers["Docker-Content-Digest"] == digest
    assert_pullable(client, target, data)


def test_mount_of_unknown_blob_starts_an_upload(client: httpx.Client, repo: str) -> None:
    r = client.post(
        f"/v2/{repo}/blobs/uploads/", params={"mount": sha256(b"nope"), "from": repo + "x"}
    )
    assert r.status_code == 202
    assert client.get(r.headers["Location"]).status_code == 204


def test_mount_without_from_starts_an_upload(client: httpx.Client, repo: str) -> None:
    digest = push_blob(client, repo, os.urandom(10))
    r = client.post(f"/v2/{repo}-b/blobs/uploads/", params={"mount": digest})
    assert r.status_code == 202


def test_mount_from_invalid_name_is_400(client: httpx.Client, repo: str) -> None:
    r = client.post(f"/v2/{repo}/blobs/uploads/", params={"mount": sha256(b"x"), "from": "../etc"})
    assert r.status_code == 400
    assert r.json()["errors"][0]["code"] == "NAME_INVALID"


def test_client_disconnect_mid_upload_leaves_nothing_visible(
    client: httpx.Client, repo: str, api_target: RegistryTarget, api_server: RegistryServer
) -> None:
    data = os.urandom(1_000_000)
    digest = sha256(data)
    with socket.create_connection(("127.0.0.1", api_server.port)) as s:
        s.sendall(
            f"POST /v2/{repo}/blobs/uploads/?digest={digest} HTTP/1.1\r\n"
            f"Host: {api_server.host}\r\nContent-Length: {len(data)}\r\n\r\n".encode()
        )
        s.sendall(data[: len(data) // 2])
    # The request is over once its access-log line is written: by then the server has
    # seen the disconnect and cleaned up.
    deadline = time.monotonic() + 20
    while f"POST /v2/{repo}/blobs/uploads/" not in api_server.log():
        assert time.monotonic() < deadline, "the server never finished the request"
        time.sleep(0.05)
    assert client.head(f"/v2/{repo}/blobs/{digest}").status_code == 404
    assert not [p for p in stray_files(api_target.stored_files()) if repo in p]


def test_truncated_chunked_upload_cannot_complete(client: httpx.Client, repo: str) -> None:
    data = os.urandom(10_000)
    location = start(client, repo)
    r = client.patch(location, content=data[:5000], headers={"Content-Range": "0-4999"})
    r = client.put(r.headers["Location"], params={"digest": sha256(data)})
    assert r.status_code == 400
    assert r.json()["errors"][0]["code"] == "DIGEST_INVALID"
    assert client.head(f"/v2/{repo}/blobs/{sha256(data)}").status_code == 404
