"""The HTTP layer against a real `registry serve` (registry/server.py): request line and
header size, header and body timeouts, the connection cap, memory that stays flat under
oversized heads, and TLS probes on a plain-HTTP port."""

from __future__ import annotations

import base64
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from tests.auth.conftest import PASSWORD, auth_section
from tests.conftest import require_tool, start_server
from tests.images import image, push_image
from tests.ops.test_tls import self_signed
from tests.server import RegistryServer

MiB = 1 << 20


@contextmanager
def connection(server: RegistryServer, timeout: float = 10.0) -> Iterator[socket.socket]:
    with socket.create_connection(("127.0.0.1", server.port), timeout=timeout) as s:
        yield s


def read_all(s: socket.socket) -> bytes:
    data = b""
    try:
        while chunk := s.recv(65536):
            data += chunk
    except ConnectionResetError:
        pass
    return data


def send_quietly(s: socket.socket, data: bytes) -> None:
    """Send what the server may stop reading (it answers and closes first)."""
    with suppress(BrokenPipeError, ConnectionResetError):
        s.sendall(data)


def status_of(response: bytes) -> int:
    return int(response.split(b" ", 2)[1])


def closed_within(s: socket.socket, seconds: float) -> tuple[bool, bytes]:
    """Whether the server closes the connection within ``seconds`` (and what it said)."""
    s.settimeout(seconds)
    try:
        return True, read_all(s)
    except TimeoutError:
        return False, b""


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@pytest.fixture(scope="module")
def limits_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> RegistryServer:
    workdir = tmp_path_factory.mktemp("http-limits")
    http = {"header_timeout": "3s", "idle_timeout": "2s"}
    config = {"auth": auth_section(workdir, "basic"), "http": http}
    return start_server(request, workdir, config=config)


# ------------------------------------------------------------------------------ sizes


def test_oversized_authorization_header_gets_431(limits_server: RegistryServer) -> None:
    with connection(limits_server) as s:
        head = b"GET /v2/ HTTP/1.1\r\nHost: x\r\nAuthorization: Basic "
        send_quietly(s, head + b"A" * (8 * MiB) + b"\r\n\r\n")
        response = read_all(s)
    assert status_of(response) == 431
    assert b"larger than 65536 bytes" in response


def test_many_headers_adding_up_get_431(limits_server: RegistryServer) -> None:
    headers = b"".join(b"X-Filler-%d: %s\r\n" % (i, b"v" * 1000) for i in range(80))
    with connection(limits_server) as s:
        send_quietly(s, b"GET /v2/ HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n")
        assert status_of(read_all(s)) == 431


def test_long_request_target_gets_414(limits_server: RegistryServer) -> None:
    with connection(limits_server) as s:
        send_quietly(s, b"GET /v2/" + b"a" * 20_000 + b"/tags/list HTTP/1.1\r\nHost: x\r\n\r\n")
        assert status_of(read_all(s)) == 414


def test_large_but_reasonable_headers_still_work(limits_server: RegistryServer) -> None:
    """A 16 KiB bearer-sized header and a long query are fine."""
    with limits_server.client(auth=("admin", PASSWORD)) as c:
        r = c.get("/v2/", headers={"X-Big": "b" * 16_000})
        assert r.status_code == 200
        r = c.get("/v2/_catalog", params={"last": "a" * 200, "n": "5"})
        assert r.status_code == 200
    assert "Invalid HTTP request" not in limits_server.log()


def test_memory_stays_flat_under_huge_user_names(limits_server: RegistryServer) -> None:
    """20 logins with 8 MB user names took a worker from 91 to 282 MiB, for good."""
    assert limits_server.proc is not None
    with limits_server.client(auth=("admin", PASSWORD)) as c:
        assert c.get("/v2/").status_code == 200
    before = rss_mib(limits_server.proc.pid)
    for i in range(20):
        credential = base64.b64encode(b"u" * (8 * MiB) + b"%d:guess" % i)
        with connection(limits_server, timeout=30) as s:
            send_quietly(
                s,
                b"GET /v2/ HTTP/1.1\r\nHost: x\r\nAuthorization: Basic " + credential + b"\r\n\r\n",
            )
            assert status_of(read_all(s)) == 431
    after = rss_mib(limits_server.proc.pid)
    print(f"worker RSS before {before:.0f} MiB, after 20 x 8 MB user names {after:.0f} MiB")
    assert after - before < 15, (before, after)


# --------------------------------------------------------------------------- timeouts


def test_trickled_header_lines_are_cut_off(limits_server: RegistryServer) -> None:
    """One header line a second never completes a head: dropped at header_timeout (3s)."""
    with connection(limits_server) as s:
        s.sendall(b"GET /v2/ HTTP/1.1\r\nHost: x\r\n")
        started = time.monotonic()
        closed = b""
        for i in range(10):
            time.sleep(1)
            try:
                s.sendall(b"X-Slow-%d: 1\r\n" % i)
            except (BrokenPipeError, ConnectionResetError):
                break
            s.settimeout(0.01)
            try:
                closed = s.recv(1000)
            except TimeoutError:
                continue
            except ConnectionResetError:
                break
            break
        elapsed = time.monotonic() - started
    assert 2 <= elapsed <= 6, elapsed
    assert closed == b"" or status_of(closed) == 408


def test_idle_partial_request_line_is_dropped(limits_server: RegistryServer) -> None:
    with connection(limits_server) as s:
        s.sendall(b"GET /v2/ HT")
        started = time.monotonic()
        closed, response = closed_within(s, 8)
    assert closed and 2 <= time.monotonic() - started <= 6
    assert status_of(response) == 408


def test_an_idle_keep_alive_connection_lasts_http_idle_timeout(
    limits_server: RegistryServer,
) -> None:
    request = b"GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n"
    with connection(limits_server) as s:
        for _ in range(2):  # the second request after a second of silence: still served
            s.sendall(request)
            assert status_of(s.recv(65536)) == 401
            time.sleep(1)
        started = time.monotonic()
        closed, response = closed_within(s, 6)
    assert closed and response == b"" and time.monotonic() - started <= 3


def test_a_connection_that_sends_nothing_is_dropped(limits_server: RegistryServer) -> None:
    with connection(limits_server) as s:
        started = time.monotonic()
        closed, response = closed_within(s, 8)
    assert closed and response == b"" and time.monotonic() - started <= 6


@pytest.fixture(scope="module")
def body_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> RegistryServer:
    config = {"http": {"body_timeout": "2s", "max_connections": 4}}
    return start_server(request, tmp_path_factory.mktemp("http-body"), config=config)


def start_upload(server: RegistryServer) -> str:
    with server.client() as c:
        r = c.post("/v2/limits/app/blobs/uploads/")
        assert r.status_code == 202
        return r.headers["location"]


def request_logged(server: RegistryServer, method: str, path: str, timeout: float = 30) -> str:
    """The access log line of a request, once the server has written it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in server.log().splitlines():
            if f'"{method} {path}"' in line:
                return line
        time.sleep(0.05)
    raise AssertionError(f"no log line for {method} {path}:\n{server.log()}")


def test_a_stalled_body_is_dropped(body_server: RegistryServer) -> None:
    location = start_upload(body_server)
    with connection(body_server) as s:
        s.sendall(
            f"PATCH {location} HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\n"
            "Content-Length: 100000\r\n\r\n".encode()
            + b"x" * 1000
        )
        started = time.monotonic()
        closed, _ = closed_within(s, 10)
    assert closed and 1.5 <= time.monotonic() - started <= 5
    # The application goes on after the close (it stores what arrived): its log line
    # says it is done, and that it was given every byte that arrived.
    logged = request_logged(body_server, "PATCH", urlsplit(location).path)
    assert " in=1000 " in logged, logged
    # what arrived is kept: the session says how far it got
    with body_server.client() as c:
        r = c.get(location)
        assert r.status_code == 204 and r.headers["range"] == "0-999"


def test_a_slow_but_steady_body_is_not_dropped(body_server: RegistryServer) -> None:
    location = start_upload(body_server)
    with connection(body_server) as s:
        s.sendall(
            f"PATCH {location} HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\n"
            "Content-Length: 6000\r\nConnection: close\r\n\r\n".encode()
        )
        for _ in range(6):  # 6 s in all, never 2 s of silence
            s.sendall(b"y" * 1000)
            time.sleep(1)
        response = read_all(s)
    assert status_of(response) == 202, response[:300]


def test_connections_beyond_the_cap_get_503(body_server: RegistryServer) -> None:
    held = [socket.create_connection(("127.0.0.1", body_server.port)) for _ in range(4)]
    try:
        time.sleep(0.3)
        with httpx.Client(base_url=body_server.url, timeout=10) as c:
            assert c.get("/v2/").status_code == 503
    finally:
        for s in held:
            s.close()
    time.sleep(0.3)
    with httpx.Client(base_url=body_server.url, timeout=10) as c:
        assert c.get("/v2/").status_code == 200


def test_pushes_still_stream(body_server: RegistryServer) -> None:
    """The body flow-control tweak of app.py still applies under the new protocol."""
    with body_server.client() as c:
        push_image(c, "limits/big", image(layers=1, layer_size=64 * MiB), tag="v1")


# ------------------------------------------------------------------ TLS on plain HTTP


def test_tls_probes_are_explained_once_not_warned_about(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    server = start_server(request, tmp_path)
    with server.client() as c:
        push_image(c, "probe/app", image(layers=1, layer_size=128), tag="v1")
    skopeo = require_tool("skopeo")
    for _ in range(3):
        done = subprocess.run(
            [skopeo, "inspect", "--tls-verify=false", f"docker://{server.host}/probe/app:v1"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
    with connection(server) as s:  # a TLS ClientHello's first bytes, by hand
        s.sendall(bytes.fromhex("16030100c8010000c40303") + b"\x00" * 100)
        response = read_all(s)
    assert status_of(response) == 400 and b"plain HTTP, not HTTPS" in response
    log = server.log()
    assert "Invalid HTTP request received" not in log
    explained = [line for line in log.splitlines() if "opened TLS (HTTPS)" in line]
    assert len(explained) == 1 and " info registry.http: " in explained[0], explained


def test_a_tls_listener_is_not_mistaken_for_a_probe(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """With TLS on, the protocol sees decrypted bytes: nothing to recognise."""
    cert, key = self_signed(tmp_path)
    server = start_server(
        request,
        tmp_path / "tls",
        config={"http": {"tls_cert": str(cert), "tls_key": str(key)}},
        scheme="https",
    )
    with server.client() as c:
        assert c.get("/v2/").status_code == 200
    assert "opened TLS" not in server.log()


def test_slow_clients_do_not_block_others(limits_server: RegistryServer) -> None:
    """While slow heads are held open, a normal client is served at once."""
    stop = threading.Event()

    def trickle() -> None:
        with connection(limits_server) as s:
            s.sendall(b"GET /v2/ HTTP/1.1\r\n")
            while not stop.wait(0.5):
                try:
                    s.sendall(b"X: 1\r\n")
                except OSError:
                    return

    threads = [threading.Thread(target=trickle) for _ in range(20)]
    for t in threads:
        t.start()
    try:
        with limits_server.client(auth=("admin", PASSWORD)) as c:
            started = time.monotonic()
            assert c.get("/v2/").status_code == 200
            assert time.monotonic() - started < 1
    finally:
        stop.set()
        for t in threads:
            t.join()
