"""Blob transfers against a real `registry serve`: memory per transfer in flight stays
small whatever the blob size and however slow the client (pulls are sent from the page
cache through one buffer per worker, pushes wait in the socket), clients that leave or
stall cost nothing, and HTTP/1.0 keep-alive is honoured."""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx
import pytest

from tests.conftest import start_server
from tests.server import RegistryServer, free_port

MiB = 1 << 20
BLOB = 96 * MiB
REPO = "transfers/big"


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def minor_faults(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[7])


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


@pytest.fixture(scope="module")
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> RegistryServer:
    workdir = tmp_path_factory.mktemp("transfers")
    return start_server(request, workdir, config={"http": {"graceful_timeout": "2s"}})


@pytest.fixture(scope="module")
def blob(server: RegistryServer) -> tuple[str, bytes]:
    """A 96 MiB blob (one random MiB, repeated), pushed in one PUT."""
    block = os.urandom(MiB)
    data = block * (BLOB // MiB)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    with server.client(timeout=120) as c:
        r = c.post(f"/v2/{REPO}/blobs/uploads/")
        r = c.put(r.headers["Location"], params={"digest": digest}, content=data)
        assert r.status_code == 201, r.text
    return digest, block


@contextmanager
def stalled_pull(server: RegistryServer, digest: str) -> Iterator[socket.socket]:
    """A GET of the blob whose client reads only the first bytes, then nothing."""
    s = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    try:
        s.sendall(f"GET /v2/{REPO}/blobs/{digest} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        assert s.recv(65536).startswith(b"HTTP/1.1 200")
        yield s
    finally:
        s.close()


def worker_pid(server: RegistryServer) -> int:
    assert server.proc is not None
    return server.proc.pid  # one worker: uvicorn serves in the process it starts


def test_stalled_pulls_hold_no_part_of_the_blob(
    server: RegistryServer, blob: tuple[str, bytes]
) -> None:
    """Twenty clients that stop reading a 96 MiB blob: the server waits for the sockets
    (back-pressure) and holds no buffer for them; streaming it in 4 MiB chunks with a
    read ahead held about 12 MiB per client (240 MiB here)."""
    digest, _ = blob
    pid = worker_pid(server)
    before = rss_mib(pid)
    with ExitStack() as stack:
        for _ in range(20):
            stack.enter_context(stalled_pull(server, digest))
        time.sleep(1.0)
        grown = rss_mib(pid) - before
        with server.client() as c:  # the server still serves meanwhile
            assert c.get("/v2/").status_code == 200
    assert grown < 24, f"RSS grew by {grown:.0f} MiB for 20 stalled pulls"


def test_a_slow_reader_gets_every_byte(server: RegistryServer, blob: tuple[str, bytes]) -> None:
    digest, _ = blob
    pid = worker_pid(server)
    before = rss_mib(pid)
    h = hashlib.sha256()
    with (
        httpx.Client(base_url=server.url, timeout=60) as c,
        c.stream("GET", f"/v2/{REPO}/blobs/{digest}") as r,
    ):
        assert r.status_code == 200
        for i, chunk in enumerate(r.iter_bytes(MiB)):
            h.update(chunk)
            if i < 8:
                time.sleep(0.1)  # slow at first, while the server could race ahead
    assert "sha256:" + h.hexdigest() == digest
    assert rss_mib(pid) - before < 16


def test_ranges_are_sent_from_the_file(server: RegistryServer, blob: tuple[str, bytes]) -> None:
    digest, block = blob
    with server.client() as c:
        start = 5 * MiB + 17
        r = c.get(
            f"/v2/{REPO}/blobs/{digest}", headers={"Range": f"bytes={start}-{start + 99_999}"}
        )
        assert r.status_code == 206
        assert r.headers["content-length"] == "100000"
        offset = start % MiB
        assert r.content == (block * 2)[offset : offset + 100_000]


def test_clients_that_leave_mid_pull_leave_nothing_open(
    server: RegistryServer, blob: tuple[str, bytes]
) -> None:
    digest, _ = blob
    pid = worker_pid(server)
    with server.client() as c:  # open whatever is opened once (the log, the pool)
        c.get("/v2/")
    before = open_fds(pid)
    for _ in range(10):
        with stalled_pull(server, digest) as s:
            s.recv(65536)
    deadline = time.monotonic() + 10
    while open_fds(pid) > before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert open_fds(pid) <= before
    assert "Traceback" not in server.log()


def test_a_stalled_pull_does_not_hold_up_shutdown(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    server = start_server(request, tmp_path, config={"http": {"graceful_timeout": "1s"}})
    data = os.urandom(8 * MiB)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    with server.client() as c:
        r = c.post(f"/v2/{REPO}/blobs/uploads/")
        assert c.put(r.headers["Location"], params={"digest": digest}, content=data).is_success
    with stalled_pull(server, digest):
        assert server.proc is not None
        started = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        server.proc.wait(15)
        assert time.monotonic() - started < 8


def test_pushes_wait_in_the_socket(server: RegistryServer) -> None:
    """A fast 96 MiB push: the server reads as it writes, a few MiB ahead at most."""
    pid = worker_pid(server)
    block = os.urandom(MiB)
    data = block * 96
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    before = rss_mib(pid)
    with server.client(timeout=120) as c:
        r = c.post("/v2/transfers/pushed/blobs/uploads/")
        body = (block for _ in range(96))
        r = c.put(r.headers["Location"], params={"digest": digest}, content=body)
        assert r.status_code == 201, r.text
    assert rss_mib(pid) - before < 24


def test_pushes_reuse_the_memory_they_free(server: RegistryServer) -> None:
    """A push's pieces are freed a step at a time once written; the next ones reuse that
    memory. (glibc gave it back to the system at once, and faulting it in again cost a
    page fault per 4 KiB received: 40% of the event loop's CPU.)"""
    pid = worker_pid(server)
    block = os.urandom(MiB)

    def push(mib: int) -> None:
        digest = "sha256:" + hashlib.sha256(block * mib).hexdigest()
        with server.client(timeout=120) as c:
            location = c.post("/v2/transfers/reused/blobs/uploads/").headers["Location"]
            for i in range(0, mib, 8):
                chunk_range = f"{i * MiB}-{(i + 8) * MiB - 1}"
                r = c.patch(location, content=block * 8, headers={"Content-Range": chunk_range})
                assert r.status_code == 202, r.text
                location = r.headers["Location"]
            assert c.put(location, params={"digest": digest}).status_code == 201

    push(16)  # the heap grows to what a push holds
    before = minor_faults(pid)
    push(64)
    faults = minor_faults(pid) - before
    assert faults < 64 * MiB // 4096 // 10


def test_http10_keep_alive_is_honoured(server: RegistryServer) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        for _ in range(3):
            s.sendall(b"GET /v2/ HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            head = b""
            while b"\r\n\r\n" not in head:
                head += s.recv(4096)
            assert head.startswith(b"HTTP/1.1 200")
            assert b"connection: keep-alive" in head.lower()
            length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            body = head.split(b"\r\n\r\n", 1)[1]
            while len(body) < length:
                body += s.recv(4096)
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(b"GET /v2/ HTTP/1.0\r\n\r\n")
        data = b""
        while chunk := s.recv(4096):
            data += chunk
        assert data.startswith(b"HTTP/1.1 200")  # and then the server closed


def test_a_file_read_from_the_disk_goes_on_in_threads(tmp_path: Path) -> None:
    """Every read counts as a wait for the disk here: after the first, the rest of each
    file is sent from threads (sendfile), byte for byte."""
    port = free_port()
    code = (
        "import sys, registry.zerocopy as z; z._waited_for_disk = lambda *_: True; "
        "from registry.cli import main; main(sys.argv[1:])"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
    cmd = [sys.executable, "-c", code, "serve", "--host", "127.0.0.1", "--port", str(port)]
    cmd += ["--data-dir", str(tmp_path / "data")]
    log = (tmp_path / "server.log").open("wb")
    proc = subprocess.Popen(cmd, env=env, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(200):
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{url}/v2/", timeout=1).status_code == 200:
                    break
            time.sleep(0.05)
        data = os.urandom(24 * MiB)
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        with httpx.Client(base_url=url, timeout=60) as c:
            r = c.post(f"/v2/{REPO}/blobs/uploads/")
            assert c.put(r.headers["Location"], params={"digest": digest}, content=data).is_success
            for _ in range(3):
                assert c.get(f"/v2/{REPO}/blobs/{digest}").content == data
            r = c.get(f"/v2/{REPO}/blobs/{digest}", headers={"Range": "bytes=1000-2000999"})
            assert r.content == data[1000:2001000]
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        log.close()
    assert "Traceback" not in (tmp_path / "server.log").read_text()
