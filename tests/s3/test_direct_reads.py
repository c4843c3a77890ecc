"""Blob pulls from S3 by the store's own socket (storage_backends/socket_get.py, spliced
by registry/zerocopy.py): a real `registry serve` on Ceph RGW, with a fault-injecting
proxy between them that sees, and can break, each request the registry makes."""

from __future__ import annotations

import hashlib
import os
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.faults import FaultProxy
from tests.ops.test_transfers import rss_mib
from tests.rgw import RgwServer
from tests.server import RegistryServer

pytestmark = pytest.mark.s3

MiB = 1 << 20
REPO = "direct/reads"


@pytest.fixture(scope="module")
def proxy(rgw: RgwServer) -> Iterator[FaultProxy]:
    proxy = FaultProxy(rgw.endpoint_url).start()
    yield proxy
    proxy.stop()


@pytest.fixture(scope="module")
def server(
    request: pytest.FixtureRequest,
    rgw: RgwServer,
    proxy: FaultProxy,
    tmp_path_factory: pytest.TempPathFactory,
) -> RegistryServer:
    s3 = rgw.s3_config(prefix=f"direct-{uuid.uuid4().hex[:12]}", endpoint_url=proxy.url)
    config = {"storage": {"driver": "s3", "s3": s3.model_dump(exclude_none=True)}}
    server = RegistryServer(tmp_path_factory.mktemp("direct"), config)
    request.addfinalizer(server.stop)
    server.start()
    return server


def push(server: RegistryServer, data: bytes) -> str:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    with server.client(timeout=60) as c:
        r = c.post(f"/v2/{REPO}/blobs/uploads/", params={"digest": digest}, content=data)
        assert r.status_code == 201, r.text
    return digest


@pytest.fixture(scope="module")
def blob(server: RegistryServer) -> tuple[str, bytes]:
    data = os.urandom(8 * MiB + 123)
    return push(server, data), data


def data_gets(proxy: FaultProxy) -> tuple[int, int]:
    """GETs of blob data the proxy forwarded: (presigned on a socket of their own, by
    boto3 with an Authorization header)."""
    seen = [s for s in proxy.seen if s.method == "GET" and s.path.endswith("/data")]
    direct = sum("X-Amz-Signature=" in s.query for s in seen)
    return direct, len(seen) - direct


def test_a_pull_is_spliced_from_the_store_whole_and_by_range(
    server: RegistryServer, proxy: FaultProxy, blob: tuple[str, bytes]
) -> None:
    digest, data = blob
    proxy.clear()
    with server.client(timeout=60) as c:
        r = c.get(f"/v2/{REPO}/blobs/{digest}")
        assert r.status_code == 200 and r.content == data
        r = c.get(f"/v2/{REPO}/blobs/{digest}", headers={"Range": "bytes=1000-5000999"})
        assert r.status_code == 206 and r.content == data[1000:5001000]
        assert r.headers["Content-Range"] == f"bytes 1000-5000999/{len(data)}"
    assert data_gets(proxy) == (2, 0)
    ranges = [s.headers.get("range") for s in proxy.seen if s.method == "GET"]
    assert ranges == [f"bytes=0-{len(data) - 1}", "bytes=1000-5000999"]


def test_a_small_blob_is_read_by_boto3(server: RegistryServer, proxy: FaultProxy) -> None:
    data = os.urandom(4096)
    digest = push(server, data)
    proxy.clear()
    with server.client() as c:
        r = c.get(f"/v2/{REPO}/blobs/{digest}")
        assert r.status_code == 200 and r.content == data
    assert data_gets(proxy) == (0, 1)


def test_a_store_that_cuts_the_body_cuts_the_response(
    server: RegistryServer, proxy: FaultProxy, blob: tuple[str, bytes]
) -> None:
    """The client must see an incomplete body, never a complete answer: the response is
    cut, quietly (a warning, no traceback), and the next pull is whole."""
    digest, data = blob
    proxy.clear()
    proxy.fault(method="GET", path="/data$", cut_after=3 * MiB)
    with server.client(timeout=60) as c:
        with pytest.raises(httpx.RemoteProtocolError):
            c.get(f"/v2/{REPO}/blobs/{digest}")
        r = c.get(f"/v2/{REPO}/blobs/{digest}")
        assert r.status_code == 200 and r.content == data
    log = server.log()
    assert "response cut short: the store's connection ended" in log
    assert "Traceback" not in log


def test_a_store_error_on_the_socket_falls_back_to_boto3(
    server: RegistryServer, proxy: FaultProxy, blob: tuple[str, bytes]
) -> None:
    digest, data = blob
    proxy.clear()
    proxy.fault(method="GET", path="/data$", status=503)
    with server.client(timeout=60) as c:
        r = c.get(f"/v2/{REPO}/blobs/{digest}")
        assert r.status_code == 200 and r.content == data
    assert data_gets(proxy) == (1, 1)
    assert "a direct read of" in server.log() and "got 503: read by boto3" in server.log()


def test_a_blob_gone_from_the_store_is_blob_unknown(
    server: RegistryServer, rgw: RgwServer, proxy: FaultProxy
) -> None:
    """Deleted behind the registry's back (another replica's collector): 404 with the
    OCI error, not a cut body."""
    data = os.urandom(2 * MiB)
    digest = push(server, data)
    s3 = rgw.client()
    keys = [
        o["Key"]
        for o in s3.list_objects_v2(Bucket=rgw.bucket, Prefix="direct-").get("Contents", [])
        if o["Key"].endswith(f"{digest.split(':')[1]}/data")
    ]
    assert len(keys) == 1
    s3.delete_object(Bucket=rgw.bucket, Key=keys[0])
    with server.client() as c:
        r = c.get(f"/v2/{REPO}/blobs/{digest}")
    assert r.status_code == 404 and r.json()["errors"][0]["code"] == "BLOB_UNKNOWN"


def test_a_client_that_leaves_midway_costs_nothing(
    server: RegistryServer, blob: tuple[str, bytes]
) -> None:
    digest, data = blob
    with server.client(timeout=60) as c:
        with c.stream("GET", f"/v2/{REPO}/blobs/{digest}") as r:
            assert r.status_code == 200
            next(r.iter_raw(64 * 1024))
        # The next request on a new connection is served; the log has no error.
        r = c.get(f"/v2/{REPO}/blobs/{digest}")
        assert r.content == data
    assert "Traceback" not in server.log()


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_a_slow_client_costs_the_server_no_cpu_and_no_memory(
    server: RegistryServer, blob: tuple[str, bytes]
) -> None:
    """A client taking 64 KiB every 50 ms: the server waits on the client's socket (the
    store's waits in turn), instead of waking for a pipe it cannot fill."""
    digest, data = blob
    assert server.proc is not None
    pid = server.proc.pid
    with socket.create_connection(("127.0.0.1", server.port)) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        s.sendall(f"GET /v2/{REPO}/blobs/{digest} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        time.sleep(0.5)  # the server fills what the sockets and the pipe hold, then waits
        cpu, rss = cpu_seconds(pid), rss_mib(pid)
        received = 0
        for _ in range(40):  # 2 s
            received += len(s.recv(64 * 1024))
            time.sleep(0.05)
        spent, grew = cpu_seconds(pid) - cpu, rss_mib(pid) - rss
        s.settimeout(30)
        while chunk := s.recv(1 << 20):
            received += len(chunk)
            if received >= len(data):
                break
    assert spent < 0.3, f"{spent:.2f} s of CPU in 2 s of a slow client"
    assert grew < 4, f"{grew:.1f} MiB"
