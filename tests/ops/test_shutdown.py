"""SIGTERM: stop accepting, let in-flight requests finish within http.graceful_timeout,
then stop; an upload cut off by the stop resumes on the restarted server."""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from tests.conftest import start_server
from tests.server import RegistryServer

GRACE = 2.0


def start_upload(server: RegistryServer, name: str) -> str:
    with server.client() as client:
        r = client.post(f"/v2/{name}/blobs/uploads/")
        assert r.status_code == 202
        return urlsplit(r.headers["Location"]).path


def open_patch(server: RegistryServer, path: str, total: int) -> socket.socket:
    """A PATCH that announces ``total`` body bytes; the caller sends them."""
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    sock.sendall(
        f"PATCH {path} HTTP/1.1\r\nHost: {server.host}\r\n"
        f"Content-Type: application/octet-stream\r\nContent-Length: {total}\r\n\r\n".encode()
    )
    return sock


def refuses_connections(server: RegistryServer, within: float) -> bool:
    """New connections are refused within ``within`` seconds (with several workers
    the supervisor passes the signal on to them)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            httpx.get(f"{server.url}/v2/", timeout=1)
        except httpx.TransportError:
            return True
        time.sleep(0.05)
    return False


def wait_exit(server: RegistryServer, timeout: float) -> float:
    assert server.proc is not None
    started = time.monotonic()
    server.proc.wait(timeout)
    return time.monotonic() - started


@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_mid_upload_exits_within_the_timeout_and_the_upload_resumes(
    request: pytest.FixtureRequest, tmp_path: Path, workers: int
) -> None:
    server = start_server(
        request, tmp_path, config={"http": {"graceful_timeout": f"{GRACE}s"}}, workers=workers
    )
    name = f"shutdown/{uuid.uuid4().hex[:8]}"
    data = os.urandom(3 * 1024 * 1024 + 123)
    sent = 1_500_000
    path = start_upload(server, name)
    sock = open_patch(server, path, len(data))
    sock.sendall(data[:sent])
    time.sleep(0.5)  # the server has read it all; now the client stalls

    assert server.proc is not None
    signalled = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)
    assert refuses_connections(server, within=1.5)  # while the stalled request holds it up
    server.proc.wait(GRACE + 10)
    assert time.monotonic() - signalled < GRACE + 5
    sock.close()
    server.proc = None

    server.start()
    with server.client() as client:
        status = client.get(path)
        assert status.status_code == 204
        assert status.headers["Range"] == f"0-{sent - 1}"
        r = client.patch(
            path,
            content=data[sent:],
            headers={
                "Content-Range": f"{sent}-{len(data) - 1}",
                "Content-Type": "application/octet-stream",
            },
        )
        assert r.status_code == 202, r.text
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        r = client.put(path, params={"digest": digest})
        assert r.status_code == 201, r.text
        assert client.get(f"/v2/{name}/blobs/{digest}").content == data


def test_sigterm_lets_an_inflight_upload_finish(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    server = start_server(request, tmp_path, config={"http": {"graceful_timeout": "20s"}})
    name = f"shutdown/{uuid.uuid4().hex[:8]}"
    data = os.urandom(2 * 1024 * 1024)
    path = start_upload(server, name)
    sock = open_patch(server, path, len(data))
    sock.sendall(data[: len(data) // 2])
    time.sleep(0.3)
    assert server.proc is not None
    server.proc.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    assert server.proc.poll() is None  # waiting for the request, well within 20s
    sock.sendall(data[len(data) // 2 :])
    response = b""
    while b"\r\n\r\n" not in response:
        chunk = sock.recv(4096)
        if not chunk:
            break
        response += chunk
    sock.close()
    assert response.startswith(b"HTTP/1.1 202"), response
    assert f"range: 0-{len(data) - 1}".encode() in response.lower()
    assert wait_exit(server, 15) < 10
    # uvicorn re-raises the SIGTERM once it has shut down cleanly.
    assert server.proc.returncode in (0, -signal.SIGTERM)
    server.proc = None
    log = server.log()
    assert "Application shutdown complete" in log
    assert "Cancel" not in log  # nothing was cut off


@pytest.mark.parametrize("wait", [0.3, 3.0], ids=["request-soon", "no-request"])
def test_a_connection_accepted_before_sigterm_gets_its_request_answered(
    request: pytest.FixtureRequest, tmp_path: Path, wait: float
) -> None:
    """A client connects, the stop begins before its request arrives (a HUP roll-over
    under load does this): the request is answered, with Connection: close, not reset.
    One that sends nothing within the stop's grace is closed."""
    server = start_server(request, tmp_path, config={"http": {"graceful_timeout": "20s"}})
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    time.sleep(0.3)  # accepted by the worker, nothing sent yet
    assert server.proc is not None
    server.proc.send_signal(signal.SIGTERM)
    time.sleep(wait)
    response = b""
    try:
        sock.sendall(f"GET /v2/ HTTP/1.1\r\nHost: {server.host}\r\n\r\n".encode())
        while chunk := sock.recv(4096):
            response += chunk
    except OSError as e:
        response = repr(e).encode()
    sock.close()
    if wait < 1.0:
        assert response.startswith(b"HTTP/1.1 200"), response
        assert b"connection: close" in response.lower()
    else:
        assert not response.startswith(b"HTTP/1.1")
    assert wait_exit(server, 15) < 10
    server.proc = None
