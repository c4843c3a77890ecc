"""Input a fuzzer or a hostile client sends: each gets its OCI error, never a 500, and
leaves nothing in storage."""

from __future__ import annotations

import uuid

import httpx
import pytest

from registry.reference import NAME_COMPONENT_MAX
from tests.images import OCI_MANIFEST, image, push_image, sha256
from tests.targets import RegistryTarget


def error_code(r: httpx.Response) -> str:
    code: str = r.json()["errors"][0]["code"]
    return code


# ----------------------------------------------------------------- deeply nested JSON


@pytest.mark.parametrize("depth", [1000, 2000])
def test_deeply_nested_manifest_is_manifest_invalid(
    client: httpx.Client, repo: str, depth: int
) -> None:
    body = b'{"schemaVersion":2,"annotations":' + b"[" * depth + b"]" * depth + b"}"
    r = client.put(f"/v2/{repo}/manifests/v1", content=body, headers={"Content-Type": OCI_MANIFEST})
    assert r.status_code == 400, r.text
    assert error_code(r) == "MANIFEST_INVALID"
    assert client.get(f"/v2/{repo}/tags/list").status_code == 404


# ------------------------------------------------------ long repository name components


def long_name(length: int) -> str:
    """A fresh one-component name of ``length`` characters (255 is the whole name's limit)."""
    return (uuid.uuid4().hex + "a" * length)[:length]


def test_longest_component_is_stored_and_served(client: httpx.Client) -> None:
    name = long_name(NAME_COMPONENT_MAX)
    img = image(layers=1, layer_size=64)
    digest = push_image(client, name, img, tag="v1")
    r = client.get(f"/v2/{name}/manifests/v1", headers={"Accept": OCI_MANIFEST})
    assert r.status_code == 200 and r.headers["Docker-Content-Digest"] == digest
    assert client.get(f"/v2/{name}/tags/list").json() == {"name": name, "tags": ["v1"]}
    catalog = client.get("/v2/_catalog", params={"last": name[:-1]}).json()["repositories"]
    assert name in catalog


def test_longer_component_is_name_invalid(api_target: RegistryTarget) -> None:
    """255 characters fit the name limit but not a file name beside a marker: refused
    up front on every driver, never a 500 from the filesystem."""
    name = long_name(NAME_COMPONENT_MAX + 1)
    blob = b"x" * 16
    with api_target.client() as client:
        for r in (
            client.post(f"/v2/{name}/blobs/uploads/"),
            client.post(
                f"/v2/{name}/blobs/uploads/", params={"digest": sha256(blob)}, content=blob
            ),
            client.put(
                f"/v2/{name}/manifests/v1",
                content=image().manifest,
                headers={"Content-Type": OCI_MANIFEST},
            ),
            client.get(f"/v2/{name}/tags/list"),
            client.get(f"/v2/{name}/manifests/v1"),
        ):
            assert r.status_code == 400, (r.request.method, r.request.url, r.text)
            assert error_code(r) == "NAME_INVALID"
    assert [p for p in api_target.stored_files() if name in p] == []


# ------------------------------------------------------------- referrers with bad digests


@pytest.mark.parametrize(
    "digest",
    [
        "sha256:..%2f..%2ftmp",
        "sha256:..%2F..%2Fetc%2Fpasswd",
        "sha256:abc%2fdef",
        "sha256:" + "a" * 63,
        "md5:" + "a" * 32,
        "not-a-digest",
    ],
)
def test_referrers_with_an_invalid_digest_is_digest_invalid(
    api_target: RegistryTarget, digest: str
) -> None:
    name = f"t{uuid.uuid4().hex[:8]}/app"
    status, data = api_target.raw_request("GET", f"/v2/{name}/referrers/{digest}")
    assert status == 400, data[-300:]
    assert b"DIGEST_INVALID" in data
