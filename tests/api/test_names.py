"""Repository names are validated before they touch storage: traversal attempts and
invalid names answer NAME_INVALID and leave nothing behind."""

from __future__ import annotations

import os

import httpx
import pytest

from tests.images import sha256
from tests.targets import RegistryTarget

BAD_NAMES = [
    "..",
    "../etc",
    "a/../b",
    "%2e%2e",
    "%2e%2e/%2e%2e/etc",
    "UPPER",
    "a//b",
    "-a",
    "a-",
    "_a",
    "a/_b",
]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_invalid_names_are_refused(api_target: RegistryTarget, name: str) -> None:
    blob = os.urandom(10)
    for method, path in [
        ("GET", f"/v2/{name}/tags/list"),
        ("GET", f"/v2/{name}/manifests/latest"),
        ("HEAD", f"/v2/{name}/blobs/{sha256(blob)}"),
        ("POST", f"/v2/{name}/blobs/uploads/?digest={sha256(blob)}"),
        ("POST", f"/v2/{name}/blobs/uploads/"),
    ]:
        status, data = api_target.raw_request(method, path, blob if method == "POST" else b"")
        assert status in (400, 404), (method, path, data[:300])
        if method != "HEAD" and status == 400:
            assert b"NAME_INVALID" in data
    stray = [p for p in api_target.stored_files() if ".." in p or "etc" in p.split("/")]
    assert stray == []


def test_absolute_path_name(api_target: RegistryTarget) -> None:
    status, data = api_target.raw_request("GET", "//etc/passwd/tags/list")
    assert status in (400, 404)
    status, data = api_target.raw_request("GET", "/v2//etc/tags/list")
    assert status == 400 and b"NAME_INVALID" in data


def test_name_too_long(client: httpx.Client) -> None:
    name = "/".join(["a" * 60] * 5)
    r = client.get(f"/v2/{name}/tags/list")
    assert r.status_code == 400
    assert r.json()["errors"][0]["code"] == "NAME_INVALID"
