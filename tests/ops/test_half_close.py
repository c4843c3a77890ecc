"""A client that closes its side of the connection once its request is sent (a half-close:
``printf ... | nc -N``, scripts, some proxies) still gets its answer from a real
`registry serve` (registry/server.py); a client that closes before its body is whole
gets nothing stored."""

from __future__ import annotations

import hashlib
import os
import socket

import httpx
import pytest

from tests.conftest import start_server
from tests.server import RegistryServer

MiB = 1 << 20


@pytest.fixture(scope="module")
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> RegistryServer:
    return start_server(request, tmp_path_factory.mktemp("half-close"))


def half_closed_exchange(server: RegistryServer, request: bytes) -> bytes:
    """Send ``request``, close our side, and read until the server closes its own."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as s:
        s.sendall(request)
        s.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
        return answer


def blob_post(digest: str, length: int) -> bytes:
    return (
        f"POST /v2/half/close/blobs/uploads/?digest={digest} HTTP/1.1\r\nHost: x\r\n"
        f"Content-Type: application/octet-stream\r\nContent-Length: {length}\r\n\r\n"
    ).encode()


def test_a_push_whose_client_half_closes_is_answered_and_stored(server: RegistryServer) -> None:
    # Storing 8 MiB takes the server past the moment the close arrives: without the
    # half-close kept open, the answer was lost (the blob was stored all the same).
    data = os.urandom(8 * MiB)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    answer = half_closed_exchange(server, blob_post(digest, len(data)) + data)
    head, _, _ = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 201 "), answer[:300]
    assert b"connection: close" in head.lower()
    r = httpx.get(f"{server.url}/v2/half/close/blobs/{digest}")
    assert r.status_code == 200 and r.content == data


@pytest.mark.parametrize("path", ["/v2/_catalog?n=5", "/v2/half/close/tags/list", "/metrics"])
def test_a_get_whose_client_half_closes_is_answered(server: RegistryServer, path: str) -> None:
    answer = half_closed_exchange(server, f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    assert answer.split(b" ", 2)[1] in (b"200", b"404"), answer[:300]


def test_a_body_cut_by_the_close_stores_nothing(server: RegistryServer) -> None:
    data = os.urandom(MiB)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    answer = half_closed_exchange(server, blob_post(digest, len(data)) + data[: MiB // 2])
    assert not answer.startswith(b"HTTP/1.1 201")
    assert httpx.head(f"{server.url}/v2/half/close/blobs/{digest}").status_code == 404
    assert httpx.get(f"{server.url}/v2/").status_code == 200
