"""A real S3 server for the tests: a throwaway one-node Ceph RADOS Gateway on loopback.

One monitor (explicit monmap, msgr2 only), one bluestore OSD on a sparse file (memstore
where the temp dir cannot do O_DIRECT) and radosgw (beast), no cephx, all in a temp dir
with free ports; see shared/notes/s3-ceph-rgw.md. RGW's testing KMS is on, so SSE-KMS
can be exercised. The beast frontend runs with ``tcp_nodelay=1``, as a production RGW
should: without it every response with a body waits ~40 ms for the client's delayed ACK
(Nagle), which would make small reads the whole of any figure.
The session fixture ``rgw`` starts it on first use and stops exactly the daemons it
started. Without the ceph binaries the S3 tests skip, except under CI=true, where a
missing S3 server is a failure rather than a silently smaller test run.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config as BotoConfig
from botocore.exceptions import BotoCoreError, ClientError

from registry.config import S3Config

BINARIES = ("monmaptool", "ceph-mon", "ceph-osd", "radosgw", "radosgw-admin", "ceph")
APT_PACKAGES = "ceph-mon ceph-osd radosgw ceph-common"

ACCESS_KEY = "REGISTRYTESTKEY00001"
SECRET_KEY = "registry-test-secret-key-0000000000000001"
REGION = "us-east-1"
BUCKET = "registry-tests"

# Keys for RGW's built-in "testing" KMS, so SSE-KMS can be exercised without a Vault.
KMS_KEY_ID = "testkey-1"
_KMS_KEY = "YmluCmJvb3N0CmJvb3N0LWJ1aWxkCmNlcGguY29uZgo="

# Start-up takes about 20 s; together these stay below pytest-timeout's 300 s.
MON_TIMEOUT = 45.0
OSD_TIMEOUT = 90.0
RGW_TIMEOUT = 90.0
STOP_TIMEOUT = 15.0
COMMAND_TIMEOUT = 60.0

_PR_SET_PDEATHSIG = 1


class RgwStartError(RuntimeError):
    """The cluster did not come up; the message carries the daemon logs."""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> None:
    # If pytest is killed outright, the daemons go with it instead of lingering in CI.
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _supports_direct_io(directory: Path) -> bool:
    """BlueStore opens its block file with O_DIRECT, which tmpfs refuses before Linux 6.6."""
    probe = directory / "odirect-probe"
    try:
        fd = os.open(probe, os.O_CREAT | os.O_RDWR | getattr(os, "O_DIRECT", 0), 0o600)
    except OSError:
        return False
    os.close(fd)
    probe.unlink()
    return True


# The OSD's block file is sparse; on tmpfs it holds in memory every extent BlueStore has
# written, which grows towards this size as data comes and goes (not only to the live
# data): a long run needs a smaller one (benchmarks/s3_storage.py).
BLOCK_SIZE = 20 << 30


def _ceph_conf(d: Path, fsid: str, mon_port: int, rgw_port: int, block_size: int) -> str:
    if _supports_direct_io(d):
        store = f"""\
osd objectstore = bluestore
bluestore block create = true
bluestore block size = {block_size}
bluestore cache autotune = false
bluestore cache size = 134217728"""
    else:
        store = """\
osd objectstore = memstore
memstore device bytes = 4294967296"""
    return f"""\
[global]
fsid = {fsid}
mon host = [v2:127.0.0.1:{mon_port}]
public addr = 127.0.0.1
public network = 127.0.0.1/32
ms bind msgr1 = false
ms bind ipv6 = false
auth cluster required = none
auth service required = none
auth client required = none
keyring = /dev/null
run dir = {d}/run
admin socket = {d}/run/$name.asok
pid file = {d}/run/$name.pid
log file = {d}/log/$name.log
log to stderr = false
err to stderr = true
mon data = {d}/mon/$name
osd data = {d}/osd/$id
crash dir = {d}/crash
{store}
osd memory target = 943718400
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon allow pool size one = true
mon allow pool delete = true
mon max pg per osd = 1000
mon data avail warn = 2
mon data avail crit = 1

[client]
ms mon client mode = crc
ms client mode = crc
rgw frontends = beast endpoint=127.0.0.1:{rgw_port} tcp_nodelay=1
rgw data = {d}/rgw
rgw gc obj min wait = 60
rgw gc processor period = 60
rgw crypt require ssl = false
rgw crypt s3 kms backend = testing
rgw crypt s3 kms encryption keys = {KMS_KEY_ID}={_KMS_KEY}
"""


@dataclass
class RgwServer:
    """Connection facts for tests, plus helpers that build buckets and configs."""

    endpoint_url: str
    access_key: str = ACCESS_KEY
    secret_key: str = SECRET_KEY
    region: str = REGION
    bucket: str = BUCKET
    kms_key_id: str = KMS_KEY_ID
    conf: Path | None = None  # the cluster's ceph.conf, for radosgw-admin

    def wait_quiet(self, below: float = 0.1, longest: float = 30.0) -> None:
        """Wait until the cluster's daemons use less than ``below`` of a core (over a
        second), ``longest`` seconds at most: after many deletes its OSD compacts for
        a while, in the middle of whatever runs next."""
        if self.conf is None:
            raise RuntimeError("no cluster configuration to find its daemons by")
        deadline = time.monotonic() + longest
        while time.monotonic() < deadline:
            pids = _pids_with(str(self.conf))
            before = _cpu_seconds(pids)
            time.sleep(1.0)
            if _cpu_seconds(pids) - before < below:
                return

    def collect_garbage(self) -> None:
        """Remove now the data of deleted objects, which RGW's collector would remove in
        its next period (``rgw gc processor period``)."""
        if self.conf is None:
            raise RuntimeError("no cluster configuration to reach RGW's collector with")
        argv = ["radosgw-admin", "-c", str(self.conf), "-n", "client.admin"]
        subprocess.run(
            [*argv, "gc", "process", "--include-all"],
            env={**os.environ, "CEPH_CONF": str(self.conf)},
            capture_output=True,
            check=True,
            timeout=COMMAND_TIMEOUT,
        )

    def client(self) -> Any:
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=self.region,
            config=BotoConfig(
                s3={"addressing_style": "path"},
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
            ),
        )

    def make_bucket(self, name: str) -> str:
        try:
            self.client().create_bucket(Bucket=name)
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") != "BucketAlreadyOwnedByYou":
                raise
        return name

    def s3_config(self, prefix: str = "", **overrides: Any) -> S3Config:
        values: dict[str, Any] = {
            "bucket": self.bucket,
            "region": self.region,
            "endpoint_url": self.endpoint_url,
            "path_style": True,
            "prefix": prefix,
            "access_key_id": self.access_key,
            "secret_access_key": self.secret_key,
        }
        values.update(overrides)
        return S3Config(**values)


def _pids_with(text: str) -> list[int]:
    """The processes whose command line contains ``text``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if text in (entry / "cmdline").read_bytes().decode(errors="replace"):
                    found.append(int(entry.name))
    return found


def _cpu_seconds(pids: list[int]) -> float:
    """User and system CPU time of ``pids`` so far (those that still run)."""
    ticks = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


@dataclass
class RgwCluster:
    """The daemons of one throwaway cluster; ``stop`` ends exactly these PIDs."""

    root: Path
    block_size: int = BLOCK_SIZE
    mon_port: int = field(default_factory=_free_port)
    rgw_port: int = field(default_factory=_free_port)
    procs: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)

    @property
    def conf(self) -> Path:
        return self.root / "ceph.conf"

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.rgw_port}"

    def start(self) -> RgwServer:
        fsid = str(uuid.uuid4())
        for sub in ("run", "log", "mon/mon.a", "osd/0", "rgw"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        conf = _ceph_conf(self.root, fsid, self.mon_port, self.rgw_port, self.block_size)
        self.conf.write_text(conf)

        monmap = self.root / "monmap"
        self._run(
            "monmaptool", "--create", "--fsid", fsid,
            "--addv", "a", f"[v2:127.0.0.1:{self.mon_port}]", str(monmap),
        )  # fmt: skip
        self._run("ceph-mon", "-c", str(self.conf), "--mkfs", "-i", "a", "--monmap", str(monmap))
        self._spawn("mon.a", "ceph-mon", "-f", "-c", str(self.conf), "-i", "a")
        self._wait("the monitor", MON_TIMEOUT, self._mon_up)

        osd_uuid = str(uuid.uuid4())
        osd_id = self._ceph("osd", "new", osd_uuid).strip()
        if osd_id != "0":
            raise RgwStartError(f"expected osd id 0, got {osd_id!r}")
        self._run("ceph-osd", "-c", str(self.conf), "-i", "0", "--mkfs", "--osd-uuid", osd_uuid)
        self._spawn("osd.0", "ceph-osd", "-f", "-c", str(self.conf), "-i", "0")
        self._wait("the OSD", OSD_TIMEOUT, self._osd_up)

        self._spawn("client.rgw", "radosgw", "-f", "-c", str(self.conf), "-n", "client.rgw")
        self._wait("radosgw", RGW_TIMEOUT, self._rgw_up)
        self._run(
            "radosgw-admin", "-c", str(self.conf), "-n", "client.admin", "user", "create",
            "--uid", "registry", "--display-name", "registry",
            "--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY,
        )  # fmt: skip
        server = RgwServer(self.endpoint_url, conf=self.conf)
        self._wait("the S3 API", MON_TIMEOUT, lambda: _try_make_bucket(server))
        return server

    def stop(self) -> None:
        # One at a time, clients first: an OSD whose monitor is gone stalls on exit.
        for _, proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(STOP_TIMEOUT)
        self.procs.clear()

    def logs(self, lines: int = 40) -> str:
        out: list[str] = []
        for path in sorted((self.root / "log").glob("*")):
            with contextlib.suppress(OSError):
                tail = path.read_text(errors="replace").splitlines()[-lines:]
                out.append(f"----- {path.name} (last {len(tail)} lines) -----")
                out.extend(tail)
        return "\n".join(out)

    def _env(self) -> dict[str, str]:
        return {**os.environ, "CEPH_CONF": str(self.conf)}

    def _run(self, *argv: str, timeout: float = COMMAND_TIMEOUT) -> str:
        try:
            res = subprocess.run(
                argv, capture_output=True, text=True, timeout=timeout, env=self._env(), check=False
            )
        except subprocess.TimeoutExpired as e:
            raise RgwStartError(f"{' '.join(argv)} timed out after {timeout:.0f}s") from e
        if res.returncode != 0:
            raise RgwStartError(
                f"{' '.join(argv)} exited {res.returncode}\n{res.stdout}\n{res.stderr}"
            )
        return res.stdout

    def _ceph(self, *args: str, timeout: float = COMMAND_TIMEOUT) -> str:
        return self._run(
            "ceph", "-c", str(self.conf), "--connect-timeout", "10", *args, timeout=timeout
        )

    def _spawn(self, name: str, *argv: str) -> None:
        out = (self.root / "log" / f"{name}.stdout").open("wb")
        try:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self._env(),
                preexec_fn=_die_with_parent,
            )
        finally:
            out.close()
        self.procs.append((name, proc))

    def _wait(self, what: str, timeout: float, ready: Callable[[], bool]) -> None:
        deadline = time.monotonic() + timeout
        last = "not ready"
        while True:
            for name, proc in self.procs:
                if proc.poll() is not None:
                    raise RgwStartError(f"{name} exited with {proc.returncode} while starting")
            try:
                if ready():
                    return
            except (RgwStartError, OSError, ValueError, ClientError, BotoCoreError) as e:
                last = str(e).strip().splitlines()[-1] if str(e).strip() else repr(e)
            if time.monotonic() > deadline:
                raise RgwStartError(f"{what} was not ready after {timeout:.0f}s: {last}")
            time.sleep(0.5)

    def _mon_up(self) -> bool:
        self._ceph("mon", "stat", timeout=20)
        return True

    def _osd_up(self) -> bool:
        stat = json.loads(self._ceph("osd", "stat", "-f", "json", timeout=20))
        return int(stat.get("num_up_osds", 0)) >= 1 and int(stat.get("num_in_osds", 0)) >= 1

    def _rgw_up(self) -> bool:
        with socket.create_connection(("127.0.0.1", self.rgw_port), timeout=2) as s:
            s.sendall(b"GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            return s.recv(12).startswith(b"HTTP/1.")


def _try_make_bucket(server: RgwServer) -> bool:
    server.make_bucket(server.bucket)
    return True


def missing_binaries() -> list[str]:
    return [b for b in BINARIES if shutil.which(b) is None]


@contextlib.contextmanager
def running_rgw(block_size: int = BLOCK_SIZE) -> Iterator[RgwServer]:
    """Start a cluster in a fresh temp dir; stop its daemons and remove the dir after."""
    root = Path(tempfile.mkdtemp(prefix="rgw-"))
    cluster = RgwCluster(root, block_size)
    try:
        try:
            server = cluster.start()
        except BaseException as e:
            cluster.stop()
            if isinstance(e, RgwStartError):
                raise RgwStartError(f"{e}\n{cluster.logs()}") from e
            raise
        yield server
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def rgw() -> Iterator[RgwServer]:
    """A throwaway Ceph cluster with RGW and a bucket, for the session; tests keep to
    key prefixes of their own."""
    missing = missing_binaries()
    if missing:
        reason = (
            f"Ceph RGW binaries not found ({', '.join(missing)}); "
            f"install with: apt-get install -y --no-install-recommends {APT_PACKAGES}"
        )
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true but {reason}", pytrace=False)
        pytest.skip(reason)
    try:
        with running_rgw() as server:
            yield server
    except RgwStartError as e:
        pytest.fail(f"Ceph RGW failed to start:\n{e}", pytrace=False)
