"""Repository names are validated before they touch storage: traversal attempts and
invalid names answer NAME_INVALID and leave nothing behind."""

from __future__ import annotations

import os
import socket

import httpx
import pytest

from tests.images import sha256
from tests.server import RegistryServer

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


def raw_request(
    server: RegistryServer, method: str, path: str, body: bytes = b""
) -> tuple[int, bytes]:
    """Send a request with the path exactly as given (no client-side normalisation)."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(
            f"{method} {path} HTTP/1.1\r\nHost: {server.host}\r\nContent-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n".encode()
            + body
        )
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    status = int(data.split(b" ", 2)[1])
    return status, data


@pytest.mark.parametrize("name", BAD_NAMES)
def test_invalid_names_are_refused(registry: RegistryServer, name: str) -> None:
    blob = os.urandom(10)
    for method, path in [
        ("GET", f"/v2/{name}/tags/list"),
        ("GET", f"/v2/{name}/manifests/latest"),
        ("HEAD", f"/v2/{name}/blobs/{sha256(blob)}"),
        ("POST", f"/v2/{name}/blobs/uploads/?digest={sha256(blob)}"),
        ("POST", f"/v2/{name}/blobs/uploads/"),
    ]:
        status, data = raw_request(registry, method, path, blob if method == "POST" else b"")
        assert status in (400, 404), (method, path, data[:300])
        if method != "HEAD" and status == 400:
            assert b"NAME_INVALID" in data
    if registry.data_dir.exists():
        stray = [p for p in registry.data_dir.rglob("*") if ".." in p.as_posix() or "etc" in p.name]
        assert stray == []


def test_absolute_path_name(registry: RegistryServer) -> None:
    status, data = raw_request(registry, "GET", "//etc/passwd/tags/list")
    assert status in (400, 404)
    status, data = raw_request(registry, "GET", "/v2//etc/tags/list")
    assert status == 400 and b"NAME_INVALID" in data


def test_name_too_long(client: httpx.Client) -> None:
    name = "/".join(["a" * 60] * 5)
    r = client.get(f"/v2/{name}/tags/list")
    assert r.status_code == 400
    assert r.json()["errors"][0]["code"] == "NAME_INVALID"
