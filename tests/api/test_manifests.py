"""GET/HEAD/PUT/DELETE /v2/<name>/manifests/<reference>."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.images import (
    DOCKER_LIST,
    DOCKER_MANIFEST,
    EMPTY_JSON,
    OCI_INDEX,
    OCI_MANIFEST,
    descriptor,
    image,
    index,
    push_blob,
    push_image,
    sha256,
)
from tests.targets import RegistryTarget


def error_code(r: httpx.Response) -> str:
    code: str = r.json()["errors"][0]["code"]
    return code


@pytest.mark.parametrize("docker", [False, True], ids=["oci", "docker"])
def test_put_and_get_by_tag_and_digest(client: httpx.Client, repo: str, docker: bool) -> None:
    img = image(docker=docker)
    for data in img.blobs.values():
        push_blob(client, repo, data)
    r = client.put(
        f"/v2/{repo}/manifests/v1", content=img.manifest, headers={"Content-Type": img.media_type}
    )
    assert r.status_code == 201, r.text
    assert r.headers["Docker-Content-Digest"] == img.digest
    assert r.headers["Location"] == f"/v2/{repo}/manifests/{img.digest}"
    for ref in ("v1", img.digest):
        got = client.get(f"/v2/{repo}/manifests/{ref}", headers={"Accept": img.media_type})
        assert got.status_code == 200
        assert got.content == img.manifest  # the exact bytes
        assert got.headers["Content-Type"] == img.media_type
        assert got.headers["Docker-Content-Digest"] == img.digest
        assert got.headers["Content-Length"] == str(len(img.manifest))
        assert got.headers["ETag"] == f'"{img.digest}"'
        head = client.head(f"/v2/{repo}/manifests/{ref}")
        assert head.status_code == 200
        assert head.headers["Content-Length"] == str(len(img.manifest))
        assert head.headers["Docker-Content-Digest"] == img.digest
        assert head.headers["Content-Type"] == img.media_type


def test_if_none_match_gives_304(client: httpx.Client, repo: str) -> None:
    digest = push_image(client, repo, image(), tag="v1")
    r = client.get(f"/v2/{repo}/manifests/v1", headers={"If-None-Match": f'"{digest}"'})
    assert r.status_code == 304


@pytest.mark.parametrize("docker", [False, True], ids=["oci-index", "docker-list"])
def test_index_needs_its_children(client: httpx.Client, repo: str, docker: bool) -> None:
    children = [image(docker=docker), image(docker=docker)]
    idx = index(children, docker=docker)
    r = client.put(
        f"/v2/{repo}/manifests/multi",
        content=idx.manifest,
        headers={"Content-Type": idx.media_type},
    )
    assert r.status_code == 400
    assert error_code(r) == "MANIFEST_BLOB_UNKNOWN"
    push_image(client, repo, idx, tag="multi")
    got = client.get(f"/v2/{repo}/manifests/multi")
    assert got.content == idx.manifest
    assert got.headers["Content-Type"] == (DOCKER_LIST if docker else OCI_INDEX)


def test_missing_blob_is_manifest_blob_unknown(client: httpx.Client, repo: str) -> None:
    img = image()
    r = client.put(
        f"/v2/{repo}/manifests/v1", content=img.manifest, headers={"Content-Type": OCI_MANIFEST}
    )
    assert r.status_code == 400
    assert error_code(r) == "MANIFEST_BLOB_UNKNOWN"
    assert client.get(f"/v2/{repo}/manifests/v1").status_code == 404


def test_blob_of_another_repository_does_not_count(client: httpx.Client, repo: str) -> None:
    img = image()
    for data in img.blobs.values():
        push_blob(client, repo + "-elsewhere", data)
    r = client.put(
        f"/v2/{repo}/manifests/v1", content=img.manifest, headers={"Content-Type": OCI_MANIFEST}
    )
    assert r.status_code == 400
    assert error_code(r) == "MANIFEST_BLOB_UNKNOWN"


def test_put_by_digest(client: httpx.Client, repo: str) -> None:
    img = image()
    for data in img.blobs.values():
        push_blob(client, repo, data)
    r = client.put(
        f"/v2/{repo}/manifests/{img.digest}",
        content=img.manifest,
        headers={"Content-Type": OCI_MANIFEST},
    )
    assert r.status_code == 201
    assert client.get(f"/v2/{repo}/manifests/{img.digest}").content == img.manifest


def test_put_by_wrong_digest_is_refused(client: httpx.Client, repo: str) -> None:
    img = image()
    for data in img.blobs.values():
        push_blob(client, repo, data)
    wrong = sha256(b"other")
    r = client.put(
        f"/v2/{repo}/manifests/{wrong}",
        content=img.manifest,
        headers={"Content-Type": OCI_MANIFEST},
    )
    assert r.status_code == 400
    assert error_code(r) == "DIGEST_INVALID"
    assert client.get(f"/v2/{repo}/manifests/{img.digest}").status_code == 404


def test_put_by_digest_with_several_tags(client: httpx.Client, repo: str) -> None:
    img = image()
    for data in img.blobs.values():
        push_blob(client, repo, data)
    r = client.put(
        f"/v2/{repo}/manifests/{img.digest}?tag=a&tag=b&tag=c",
        content=img.manifest,
        headers={"Content-Type": OCI_MANIFEST},
    )
    assert r.status_code == 201
    for tag in "abc":
        assert (
            client.get(f"/v2/{repo}/manifests/{tag}").headers["Docker-Content-Digest"] == img.digest
        )


def test_artifact_with_subject_answers_oci_subject(client: httpx.Client, repo: str) -> None:
    subject = image()
    push_image(client, repo, subject, tag="v1")
    empty = b"{}"
    push_blob(client, repo, empty)
    sig = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": "application/vnd.example.sig",
            "config": descriptor(EMPTY_JSON, empty),
            "layers": [descriptor(EMPTY_JSON, empty)],
            "subject": {
                "mediaType": OCI_MANIFEST,
                "digest": subject.digest,
                "size": len(subject.manifest),
            },
        }
    ).encode()
    r = client.put(
        f"/v2/{repo}/manifests/{sha256(sig)}", content=sig, headers={"Content-Type": OCI_MANIFEST}
    )
    assert r.status_code == 201
    assert r.headers["OCI-Subject"] == subject.digest


def test_subject_need_not_exist(client: httpx.Client, repo: str) -> None:
    absent = image()
    img = image(subject=absent, artifact_type="application/vnd.example.sbom")
    digest = push_image(client, repo, img)
    assert client.get(f"/v2/{repo}/manifests/{digest}").status_code == 200


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"{not json", OCI_MANIFEST),
        (b"[]", OCI_MANIFEST),
        (b'{"schemaVersion": 1}', OCI_MANIFEST),
        (
            b'{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json"}',
            OCI_MANIFEST,
        ),
        (
            b'{"schemaVersion": 2, "config": {"mediaType": "x", "digest": "sha256:zz", "size": 1}, '
            b'"layers": []}',
            OCI_MANIFEST,
        ),
        (
            b'{"schemaVersion": 2, "config": {"mediaType": "x", "digest": "sha256:'
            + b"a" * 64
            + b'", "size": -1}, "layers": []}',
            OCI_MANIFEST,
        ),
        (
            b'{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", '
            b'"manifests": []}',
            OCI_MANIFEST,
        ),
        (b'{"schemaVersion": 2, "manifests": "nope"}', OCI_INDEX),
        (b'{"schemaVersion": 2, "config": {}, "layers": []}', "application/vnd.example.unknown"),
        (
            b'{"schemaVersion": 1, "name": "x", "tag": "y", "fsLayers": []}',
            "application/vnd.docker.distribution.manifest.v1+prettyjws",
        ),
    ],
    ids=[
        "not-json",
        "array",
        "schema1",
        "no-config",
        "bad-digest",
        "negative-size",
        "type-mismatch",
        "manifests-not-list",
        "unknown-type",
        "docker-schema1",
    ],
)
def test_invalid_manifest_is_refused(
    client: httpx.Client, repo: str, body: bytes, content_type: str, api_target: RegistryTarget
) -> None:
    r = client.put(
        f"/v2/{repo}/manifests/bad", content=body, headers={"Content-Type": content_type}
    )
    assert r.status_code == 400, r.text
    assert error_code(r) == "MANIFEST_INVALID"
    assert client.get(f"/v2/{repo}/manifests/bad").status_code == 404
    assert not [p for p in api_target.stored_files() if p.startswith(f"repositories/{repo}/")]


def test_manifest_too_large_is_413(client: httpx.Client, repo: str) -> None:
    body = b'{"schemaVersion": 2, "pad": "' + b"x" * (4 * 1024 * 1024) + b'"}'
    r = client.put(
        f"/v2/{repo}/manifests/big", content=body, headers={"Content-Type": OCI_MANIFEST}
    )
    assert r.status_code == 413
    assert error_code(r) == "SIZE_INVALID"


def test_invalid_tag_is_refused(client: httpx.Client, repo: str) -> None:
    img = image()
    push_image(client, repo, img)
    r = client.put(
        f"/v2/{repo}/manifests/-bad", content=img.manifest, headers={"Content-Type": OCI_MANIFEST}
    )
    assert r.status_code == 400
    assert error_code(r) == "TAG_INVALID"
    r = client.put(
        f"/v2/{repo}/manifests/{img.digest}?tag=.bad",
        content=img.manifest,
        headers={"Content-Type": OCI_MANIFEST},
    )
    assert r.status_code == 400
    assert error_code(r) == "TAG_INVALID"


def test_unknown_manifest_is_404(client: httpx.Client, repo: str) -> None:
    for ref in ("nope", sha256(b"nope")):
        r = client.get(f"/v2/{repo}/manifests/{ref}")
        assert r.status_code == 404
        assert error_code(r) == "MANIFEST_UNKNOWN"
        r = client.head(f"/v2/{repo}/manifests/{ref}")
        assert r.status_code == 404
        assert r.content == b""


def test_delete_tag_keeps_manifest(client: httpx.Client, repo: str) -> None:
    digest = push_image(client, repo, image(), tag="v1")
    r = client.delete(f"/v2/{repo}/manifests/v1")
    assert r.status_code == 202
    assert client.get(f"/v2/{repo}/manifests/v1").status_code == 404
    assert client.get(f"/v2/{repo}/manifests/{digest}").status_code == 200
    assert client.delete(f"/v2/{repo}/manifests/v1").status_code == 404


def test_delete_manifest_removes_its_tags(client: httpx.Client, repo: str) -> None:
    img = image()
    digest = push_image(client, repo, img, tag="v1")
    push_image(client, repo, img, tag="v2")
    other = push_image(client, repo, image(), tag="v3")
    r = client.delete(f"/v2/{repo}/manifests/{digest}")
    assert r.status_code == 202
    for ref in ("v1", "v2", digest):
        assert client.get(f"/v2/{repo}/manifests/{ref}").status_code == 404
    assert client.get(f"/v2/{repo}/manifests/v3").headers["Docker-Content-Digest"] == other
    assert client.get(f"/v2/{repo}/tags/list").json()["tags"] == ["v3"]
    r = client.delete(f"/v2/{repo}/manifests/{digest}")
    assert r.status_code == 404
    assert error_code(r) == "MANIFEST_UNKNOWN"


def test_retag_moves_the_tag(client: httpx.Client, repo: str) -> None:
    push_image(client, repo, image(), tag="latest")
    second = push_image(client, repo, image(), tag="latest")
    assert client.get(f"/v2/{repo}/manifests/latest").headers["Docker-Content-Digest"] == second


def test_manifest_visible_only_in_its_repository(client: httpx.Client, repo: str) -> None:
    digest = push_image(client, repo, image(), tag="v1")
    assert client.get(f"/v2/{repo}-other/manifests/{digest}").status_code == 404


def test_docker_manifest_content_type_is_kept(client: httpx.Client, repo: str) -> None:
    img = image(docker=True)
    push_image(client, repo, img, tag="v1")
    r = client.get(f"/v2/{repo}/manifests/v1")
    assert r.headers["Content-Type"] == DOCKER_MANIFEST


def test_malformed_tag_reads_as_unknown(client: httpx.Client, repo: str) -> None:
    """A string that cannot be a tag names nothing: 404 on reads (conformance suite)."""
    push_image(client, repo, image(), tag="v1")
    for method in ("GET", "HEAD", "DELETE"):
        r = client.request(method, f"/v2/{repo}/manifests/.INVALID_MANIFEST_NAME")
        assert r.status_code == 404, method
        if method != "HEAD":
            assert error_code(r) == "MANIFEST_UNKNOWN"
