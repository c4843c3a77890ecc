"""GET /v2/, unknown endpoints, and the TLS hello answered with HTTP/1.x."""

from __future__ import annotations

import contextlib
import socket
import ssl

import httpx

from tests.server import RegistryServer


def test_version_check(client: httpx.Client) -> None:
    r = client.get("/v2/")
    assert r.status_code == 200
    assert r.headers["Docker-Distribution-API-Version"] == "registry/2.0"
    assert r.json() == {}


def test_version_check_head(client: httpx.Client) -> None:
    r = client.head("/v2/")
    assert r.status_code == 200
    assert r.headers["Docker-Distribution-API-Version"] == "registry/2.0"


def test_unknown_endpoint_is_json_error(client: httpx.Client) -> None:
    r = client.get("/v2/foo/unknown/thing")
    assert r.status_code == 404
    assert r.headers["content-type"] == "application/json"
    assert r.json()["errors"][0]["code"] == "UNSUPPORTED"


def test_wrong_method_is_405_json(client: httpx.Client) -> None:
    r = client.post("/v2/foo/tags/list")
    assert r.status_code == 405
    assert r.json()["errors"][0]["code"] == "UNSUPPORTED"


def test_every_response_has_a_request_id(client: httpx.Client) -> None:
    r = client.get("/v2/", headers={"X-Request-Id": "abc-123"})
    assert r.headers["X-Request-Id"] == "abc-123"
    assert len(client.get("/v2/").headers["X-Request-Id"]) == 32


def test_tls_hello_gets_an_http1_answer(api_server: RegistryServer) -> None:
    """Docker with insecure-registries tries TLS first and falls back to plain HTTP only
    when the port answers the TLS ClientHello with an HTTP/1.x response."""
    ctx = ssl.create_default_context()
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(incoming, outgoing, server_hostname="localhost")
    with contextlib.suppress(ssl.SSLWantReadError):
        tls.do_handshake()
    hello = outgoing.read()
    assert hello[0] == 0x16  # a TLS handshake record
    with socket.create_connection(("127.0.0.1", api_server.port), timeout=5) as s:
        s.sendall(hello)
        answer = s.recv(64)
    assert answer.startswith(b"HTTP/1.")
