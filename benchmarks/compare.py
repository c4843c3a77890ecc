"""Side-by-side benchmark: this registry against CNCF distribution 2.8.2 (Debian's
``docker-registry``), on one machine, with both servers' data on the same storage.

One command, from a checkout with its virtualenv::

    .venv/bin/python benchmarks/compare.py

prints, for every scenario, the median of the rounds (3 by default) for each server and
the ratio ours/theirs. In a round both servers are up, and each scenario runs on one
and then on the other, the order alternating between rounds (the second inherits a
warmer machine): a scenario's two figures come from the same minute, not from minutes
apart; our server runs with ``--workers 2``. Clients are C programs (curl, wrk, ab)
except for the chunked push, so that the figures are the servers', not a Python
client's. On a busy machine compare the ratios, which come from one round each, rather
than absolute figures.

Scenarios (``--scenarios`` picks some):

* ``push-put``: a 1 GiB blob pushed as one PUT (POST, then PUT ?digest= with the body);
* ``push-chunked``: another 1 GiB blob in 10 MiB PATCHes with Content-Range, then PUT;
* ``pull``: the first one pulled back (curl), three times: the median;
* ``push-4k``: 4 KiB blobs pushed as docker does (POST, PATCH, PUT), 16 clients;
* ``manifest-get``, ``blob-head``, ``tags-page``: 32 clients, keep-alive;
* ``pull-16m``: 32 clients pulling one 16 MiB blob;
* ``pull-100``: 100 concurrent pulls of a 1 GiB blob, our server with ONE worker;
* ``slow-client``: one client reading a 1 GiB blob at 1 MB/s (curl --limit-rate): how
  much the server's resident memory grows meanwhile (it must not buffer the blob).

Memory is VmHWM, the peak resident set of each of the server's processes, reset before
every scenario (``/proc/<pid>/clear_refs``); "all processes" sums it over the process
tree (the supervisor and its workers), "largest" is the largest process. The summary
"peak RSS, all processes" is the largest of the scenarios' sums: each bounds from above
what the processes held together during its scenario. (Peaks of different processes
in different scenarios never coexisted, so they are not added up.)

Storage: the scenarios speak HTTP only. Where the servers keep their data is a
``Storage`` (``FilesystemStorage``: a folder each under ``BENCH_DIR``, default the
system's temporary folder; same disk for both), which gives each server its
configuration, so that another storage runs the same scenarios.

Usage: python benchmarks/compare.py [--rounds 3] [--duration 10] [--workers 2]
       [--size-mib 1024] [--scenarios push-put,pull,...] [--only registry]
       [--json results.json]
Needs: docker-registry, wrk, ab and curl (apt-get install docker-registry wrk
apache2-utils curl).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import http.client
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import s3_storage
from benchmarks.s3_storage import Storage
from tests.images import image, push_blob, push_image
from tests.server import free_port

MiB = 1 << 20
MB = 1_000_000
CHUNK = MiB
# The big blobs repeat one random MiB: the same bytes for both servers, nothing to hold.
BLOCK = os.urandom(CHUNK)
BLOCK2 = os.urandom(CHUNK)  # the chunked push's blob: another digest
PUSH_CHUNK = 10 * MiB
PULL_REPEATS = 3  # pulls of the big blob in the pull scenario (the median is its figure)
SMALL_BLOB = 4096
SLOW_RATE = "1M"  # curl's --limit-rate: 1 MB/s
REPO = "bench/big"


# ----------------------------------------------------------------------------- blobs


def body(size: int, block: bytes = BLOCK) -> Iterator[bytes]:
    sent = 0
    while sent < size:
        n = min(CHUNK, size - sent)
        yield block[:n]
        sent += n


def blob_digest(size: int, block: bytes = BLOCK) -> str:
    h = hashlib.sha256()
    for b in body(size, block):
        h.update(b)
    return "sha256:" + h.hexdigest()


# ---------------------------------------------------------------------------- memory


def process_tree(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                ppid = int((p / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(p.name))
    pids, todo = [], [pid]
    while todo:
        p = todo.pop()
        pids.append(p)
        todo += children.get(p, [])
    return pids


def _status_kib(pid: int, field_name: str) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def peak_rss_mib(pid: int) -> dict[int, float]:
    """VmHWM (peak resident set) of each process in the tree, in MiB."""
    out = {}
    for p in process_tree(pid):
        kib = _status_kib(p, "VmHWM")
        if kib is not None:
            out[p] = kib / 1024
    return out


def rss_mib(pid: int) -> dict[int, float]:
    """VmRSS (resident set now) of each process in the tree, in MiB."""
    out = {}
    for p in process_tree(pid):
        kib = _status_kib(p, "VmRSS")
        if kib is not None:
            out[p] = kib / 1024
    return out


def reset_peaks(pid: int) -> None:
    """Start every process's VmHWM again from its current RSS (Linux 4.0 and later)."""
    for p in process_tree(pid):
        with contextlib.suppress(OSError):
            Path(f"/proc/{p}/clear_refs").write_text("5")


# --------------------------------------------------------------------------- storage


class FilesystemStorage:
    name = "filesystem"

    def __init__(self, root: Path) -> None:
        self.root = root

    def folder(self, server: str) -> Path:
        path = self.root / f"data-{server}"
        path.mkdir(exist_ok=True)
        return path

    def distribution(self, server: str) -> dict[str, Any]:
        return {
            "filesystem": {"rootdirectory": str(self.folder(server))},
            "delete": {"enabled": True},
        }

    def registry(self, server: str) -> dict[str, str]:
        return {
            "REGISTRY_STORAGE_DRIVER": "filesystem",
            "REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY": str(self.folder(server)),
        }

    def clear(self, server: str) -> None:
        # Free its pages for the next round: on a VM, memory that was never touched is
        # much slower to fill than memory just given back.
        shutil.rmtree(self.root / f"data-{server}", ignore_errors=True)

    def holds(self, data: int) -> int:
        return data

    def settle(self) -> None:
        subprocess.run(["sync"], check=True)  # start with the disk idle

    def keep_logs(self, into: Path) -> None:
        pass  # the servers' logs are all there is


# --------------------------------------------------------------------------- servers


def wait_ready(url: str, proc: subprocess.Popen[bytes]) -> None:
    for _ in range(400):
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: the server exited with {proc.returncode}")
        try:
            if httpx.get(f"{url}/v2/", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{url} did not start")


class Server:
    """``kind``: distribution, registry, or baseline (ours, run from ``source``); also
    the name of its data in ``storage`` and of its log."""

    def __init__(
        self, kind: str, storage: Storage, workdir: Path, workers: int, source: str | None = None
    ) -> None:
        self.kind = kind
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = dict(os.environ)
        if kind == "distribution":
            config = workdir / "distribution.yml"
            config.write_text(
                json.dumps(
                    {
                        "version": 0.1,
                        "log": {"level": "error", "accesslog": {"disabled": True}},
                        "storage": storage.distribution(kind),
                        "http": {"addr": f"127.0.0.1:{self.port}"},
                    }
                )
            )
            cmd = ["docker-registry", "serve", str(config)]
        else:
            env = {k: v for k, v in env.items() if not k.startswith("REGISTRY_")}
            env.update(storage.registry(kind))
            env["REGISTRY_LOG_ACCESS_LOG"] = "false"
            env["REGISTRY_LOG_LEVEL"] = "warning"
            if source is not None:  # --baseline: our server from another checkout
                env["PYTHONPATH"] = source
            cmd = [
                sys.executable,
                "-m",
                "registry",
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--workers",
                str(workers),
            ]
        self.log = (workdir / f"{kind}.log").open("ab")
        self.proc = subprocess.Popen(
            cmd,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=source or workdir,  # python -m puts the folder it runs in first on the path
        )
        wait_ready(self.url, self.proc)
        time.sleep(0.5)  # workers past their start-up
        self.idle = rss_mib(self.proc.pid)

    def stop(self) -> None:
        os.killpg(self.proc.pid, signal.SIGTERM)
        self.proc.wait(60)
        self.log.close()


# ------------------------------------------------------------------------- load tools


WRK_DONE = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("BENCH %d %d %d %d %d\\n", summary.requests, summary.bytes,
    summary.duration, e.status, e.connect + e.read + e.write + e.timeout))
end
"""

WRK_GET = (
    'wrk.headers["Accept"] = "application/vnd.oci.image.manifest.v1+json, '
    "application/vnd.oci.image.index.v1+json, "
    'application/vnd.docker.distribution.manifest.v2+json"\n' + WRK_DONE
)

# One connection per wrk thread, so that a thread's Lua state is its client's: POST,
# PATCH with the blob, PUT ?digest=, then the next blob of the thread's file.
WRK_PUSH = """
local RECORD = 71 + @SIZE@
local counter = 0
local threads = {}
setup = function(thread)
  thread:set("id", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

local data, n, i, step, location
init = function(args)
  local f = assert(io.open(args[1] .. "/blobs-" .. id, "rb"))
  data = f:read("*a")
  f:close()
  n = #data / RECORD
  i, step = 0, 0
  repo = args[2]
  pushes = 0
end

request = function()
  local off = (i % n) * RECORD
  if step == 0 then
    return wrk.format("POST", "/v2/" .. repo .. "/blobs/uploads/", {}, "")
  elseif step == 1 then
    return wrk.format("PATCH", location, {["Content-Type"] = "application/octet-stream"},
      data:sub(off + 72, off + RECORD))
  end
  local sep = location:find("?", 1, true) and "&" or "?"
  return wrk.format("PUT", location .. sep .. "digest=" .. data:sub(off + 1, off + 71), {}, "")
end

response = function(status, headers, body)
  if status >= 300 then
    step = 0
  elseif step == 2 then
    pushes = pushes + 1
    i = i + 1
    step = 0
  else
    location = (headers["Location"] or headers["location"]):gsub("^https?://[^/]+", "")
    step = step + 1
  end
end

done = function(summary, latency, requests)
  local total = 0
  for _, t in ipairs(threads) do total = total + t:get("pushes") end
  local e = summary.errors
  io.write(string.format("BENCH %d %d %d %d %d\\n", total, summary.bytes,
    summary.duration, e.status, e.connect + e.read + e.write + e.timeout))
end
""".replace("@SIZE@", str(SMALL_BLOB))


@dataclass
class WrkResult:
    requests: int
    bytes: int
    seconds: float
    status_errors: int
    socket_errors: int

    @property
    def per_second(self) -> float:
        return self.requests / self.seconds

    @property
    def mb_per_second(self) -> float:
        return self.bytes / self.seconds / MB


def wrk(
    url: str,
    script: str,
    *,
    threads: int,
    connections: int,
    duration: int,
    args: list[str] | None = None,
    check: bool = True,
) -> WrkResult:
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as f:
        f.write(script)
        f.flush()
        cmd = [
            "wrk",
            f"-t{threads}",
            f"-c{connections}",
            f"-d{duration}s",
            "--timeout",
            "600s",
            "-s",
            f.name,
            url,
        ]
        out = subprocess.run(
            cmd + (["--", *args] if args else []), capture_output=True, text=True, check=True
        ).stdout
    line = next(x for x in out.splitlines() if x.startswith("BENCH "))
    requests, nbytes, micros, status_errors, socket_errors = map(int, line.split()[1:])
    result = WrkResult(requests, nbytes, micros / 1e6, status_errors, socket_errors)
    if check and status_errors:
        raise RuntimeError(f"{status_errors} error answers from {url}:\n{out}")
    return result


def ab_head(url: str, duration: int) -> float:
    """HEAD throughput with ab (wrk waits for a body after a HEAD answer)."""
    out = subprocess.run(
        ["ab", "-k", "-i", "-q", "-c", "32", "-t", str(duration), "-n", "10000000", url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for line in out.splitlines():
        if line.startswith("Non-2xx responses"):
            raise RuntimeError(f"errors from {url}: {line}")
        if line.startswith("Requests per second:"):
            return float(line.split()[3])
    raise RuntimeError(out)


def curl(*args: str) -> str:
    return subprocess.run(
        ["curl", "-sS", "--fail-with-body", *args], capture_output=True, text=True, check=True
    ).stdout


def absolute(server: Server, location: str) -> httpx.URL:
    return httpx.URL(server.url).join(location)


# -------------------------------------------------------------------------- scenarios


@dataclass
class Bench:
    """What the scenarios share: the blobs, a scratch folder, the options."""

    size: int
    duration: int
    tmp: Path
    big_file: Path
    big_digest: str
    chunked_digest: str
    small_files: Path
    results: dict[str, float] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """The big blobs' size, as the figures name it."""
        return f"{self.size >> 30} GiB" if self.size % (1 << 30) == 0 else f"{self.size >> 20} MiB"


def push_put(server: Server, bench: Bench) -> None:
    """POST, then the whole blob in the body of PUT ?digest= (curl -T)."""
    started = time.perf_counter()
    r = httpx.post(f"{server.url}/v2/{REPO}/blobs/uploads/")
    assert r.status_code == 202, r.text
    url = absolute(server, r.headers["Location"]).copy_merge_params({"digest": bench.big_digest})
    out = curl(
        "-X",
        "PUT",
        "-T",
        str(bench.big_file),
        "-H",
        "Expect:",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "-H",
        "Content-Type: application/octet-stream",
        str(url),
    )
    assert out == "201", out
    bench.results[f"push {bench.label}, one PUT (MB/s)"] = (
        bench.size / (time.perf_counter() - started) / MB
    )


def push_chunked(server: Server, bench: Bench) -> None:
    """POST, 10 MiB PATCHes with Content-Range (one keep-alive connection), PUT ?digest=."""
    chunk = BLOCK2 * (PUSH_CHUNK // CHUNK)  # chunks start at multiples of the period
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=600)
    started = time.perf_counter()
    conn.request("POST", f"/v2/{REPO}/blobs/uploads/", headers={"Content-Length": "0"})
    r = conn.getresponse()
    r.read()
    assert r.status == 202, r.status
    location = r.getheader("Location", "")
    for offset in range(0, bench.size, PUSH_CHUNK):
        n = min(PUSH_CHUNK, bench.size - offset)
        path = absolute(server, location).raw_path.decode()
        conn.request(
            "PATCH",
            path,
            body=memoryview(chunk)[:n],
            headers={
                "Content-Range": f"{offset}-{offset + n - 1}",
                "Content-Length": str(n),
                "Content-Type": "application/octet-stream",
            },
        )
        r = conn.getresponse()
        r.read()
        assert r.status == 202, r.status
        location = r.getheader("Location", "")
    url = absolute(server, location).copy_merge_params({"digest": bench.chunked_digest})
    conn.request("PUT", url.raw_path.decode(), headers={"Content-Length": "0"})
    r = conn.getresponse()
    r.read()
    assert r.status == 201, r.status
    conn.close()
    seconds = time.perf_counter() - started
    bench.results[f"push {bench.label}, 10 MiB chunks (MB/s)"] = bench.size / seconds / MB


def pull(server: Server, bench: Bench) -> None:
    """The big blob pulled PULL_REPEATS times, one after the other: the median. One
    pull of a second or so is one sample of whatever else the machine (or the store)
    does meanwhile; three in a row are still a round's, not a best-of."""
    rates = []
    for _ in range(PULL_REPEATS):
        started = time.perf_counter()
        out = curl(
            "-o",
            "/dev/null",
            "-w",
            "%{size_download}",
            f"{server.url}/v2/{REPO}/blobs/{bench.big_digest}",
        )
        seconds = time.perf_counter() - started
        assert int(out) == bench.size, out
        rates.append(bench.size / seconds / MB)
    bench.results[f"pull {bench.label} (MB/s)"] = statistics.median(rates)


def push_4k(server: Server, bench: Bench) -> None:
    result = wrk(
        server.url,
        WRK_PUSH,
        threads=16,
        connections=16,
        duration=bench.duration,
        args=[str(bench.small_files), "bench/small4k"],
    )
    bench.results["4 KiB pushes, 16 clients (/s)"] = result.per_second


def _small_content(server: Server) -> str:
    """An image tagged ``latest`` (and 100 more tags) and a small blob; its digest."""
    with httpx.Client(base_url=server.url, timeout=60) as c:
        img = image(layers=2)
        push_image(c, "bench/small", img, tag="latest")
        for i in range(100):
            r = c.put(
                f"/v2/bench/small/manifests/t{i:03d}",
                content=img.manifest,
                headers={"Content-Type": img.media_type},
            )
            assert r.status_code == 201
        return push_blob(c, "bench/small", os.urandom(1000))


def manifest_get(server: Server, bench: Bench) -> None:
    _small_content(server)
    result = wrk(
        f"{server.url}/v2/bench/small/manifests/latest",
        WRK_GET,
        threads=2,
        connections=32,
        duration=bench.duration,
    )
    bench.results["manifest GET by tag, 32 clients (/s)"] = result.per_second


def blob_head(server: Server, bench: Bench) -> None:
    layer = _small_content(server)
    rps = ab_head(f"{server.url}/v2/bench/small/blobs/{layer}", bench.duration)
    bench.results["blob HEAD, 32 clients (/s)"] = rps


def tags_page(server: Server, bench: Bench) -> None:
    _small_content(server)
    result = wrk(
        f"{server.url}/v2/bench/small/tags/list?n=50",
        WRK_GET,
        threads=2,
        connections=32,
        duration=bench.duration,
    )
    bench.results["tags page (n=50), 32 clients (/s)"] = result.per_second


def pull_16m(server: Server, bench: Bench) -> None:
    with httpx.Client(base_url=server.url, timeout=60) as c:
        digest = push_blob(c, "bench/mid", os.urandom(16 * MiB))
    reset_peaks(server.proc.pid)  # the push is not part of it
    result = wrk(
        f"{server.url}/v2/bench/mid/blobs/{digest}",
        WRK_DONE,
        threads=2,
        connections=32,
        duration=bench.duration,
    )
    bench.results["32 clients pulling 16 MiB (MB/s)"] = result.mb_per_second


def pull_100(server: Server, bench: Bench) -> None:
    """100 transfers of the big blob in flight at once, for the scenario's duration."""
    result = wrk(
        f"{server.url}/v2/{REPO}/blobs/{bench.big_digest}",
        WRK_DONE,
        threads=2,
        connections=100,
        duration=bench.duration,
    )
    bench.results[f"100 pulls of {bench.label}, one worker (MB/s)"] = result.mb_per_second


def slow_client(server: Server, bench: Bench) -> None:
    """A client reading at 1 MB/s: the server must hold little more than a read."""
    before = sum(rss_mib(server.proc.pid).values())
    proc = subprocess.run(
        [
            "curl",
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{size_download}",
            "--limit-rate",
            SLOW_RATE,
            "--max-time",
            str(bench.duration),
            f"{server.url}/v2/{REPO}/blobs/{bench.big_digest}",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    received = int(proc.stdout or 0)
    assert 0 < received < bench.size, (received, proc.stderr)
    growth = sum(peak_rss_mib(server.proc.pid).values()) - before
    bench.results["slow client: RSS growth (MiB)"] = growth


Scenario = Callable[[Server, Bench], None]
# Run with the configured workers, in this order (pull needs push-put's blob).
SCENARIOS: dict[str, Scenario] = {
    "push-put": push_put,
    "push-chunked": push_chunked,
    "pull": pull,
    "push-4k": push_4k,
    "manifest-get": manifest_get,
    "blob-head": blob_head,
    "tags-page": tags_page,
    "pull-16m": pull_16m,
}
# Then with one worker, on the same data.
ONE_WORKER: dict[str, Scenario] = {"pull-100": pull_100, "slow-client": slow_client}
NEEDS_BIG_BLOB = {"pull", "pull-100", "slow-client"}
# Peak memory of each scenario by itself (VmHWM reset before it, all processes).
MEMORY_ROWS = {
    "push-put": "peak RSS: push one PUT (MiB)",
    "push-chunked": "peak RSS: push 10 MiB chunks (MiB)",
    "pull": "peak RSS: pull (MiB)",
    "push-4k": "peak RSS: 4 KiB pushes (MiB)",
    "manifest-get": "peak RSS: manifest GET (MiB)",
    "blob-head": "peak RSS: blob HEAD (MiB)",
    "tags-page": "peak RSS: tags page (MiB)",
    "pull-16m": "peak RSS: 32 x 16 MiB pulls (MiB)",
    "pull-100": "peak RSS: 100 pulls, one worker (MiB)",
    "slow-client": "peak RSS: slow client, one worker (MiB)",
}


@dataclass
class Tally:
    """One server's figures in a round, and the memory peaks its summary comes from."""

    results: dict[str, float] = field(default_factory=dict)
    peaks: dict[int, float] = field(default_factory=dict)  # each process's, over the scenarios
    totals: list[float] = field(default_factory=list)  # each scenario's, all processes


def run_round(
    kinds: list[str],
    storage: Storage,
    bench: Bench,
    workers: int,
    chosen: list[str],
    baseline: str | None = None,
) -> dict[str, dict[str, float]]:
    """One round. In each phase every server is up (each idle while another is
    measured), and each scenario runs on one server after the other in the order of
    ``kinds``: the figures of a scenario come from the same minute of the machine and
    of the store, not minutes apart (a store's state drifts over a run: RGW's does)."""
    tallies = {kind: Tally() for kind in kinds}
    phases = [(workers, SCENARIOS), (1, ONE_WORKER)]
    for phase_workers, scenarios in phases:
        todo = [name for name in scenarios if name in chosen]
        if not todo:
            continue
        main_phase = phase_workers == workers
        servers: dict[str, Server] = {}
        try:
            for kind in kinds:
                source = baseline if kind == "baseline" else None
                servers[kind] = Server(kind, storage, bench.tmp, phase_workers, source)
                if main_phase:
                    idle = sum(servers[kind].idle.values())
                    tallies[kind].results["RSS at start, all processes (MiB)"] = idle
            for name in todo:
                for kind in kinds:
                    tally = tallies[kind]
                    bench.results = tally.results
                    server = servers[kind]
                    if name in NEEDS_BIG_BLOB:
                        _ensure_big_blob(server, bench)
                    storage.settle()
                    reset_peaks(server.proc.pid)
                    scenarios[name](server, bench)
                    rss = peak_rss_mib(server.proc.pid)
                    if name in MEMORY_ROWS:
                        tally.results[MEMORY_ROWS[name]] = sum(rss.values())
                    if main_phase:
                        tally.totals.append(sum(rss.values()))
                        for pid, mib in rss.items():
                            tally.peaks[pid] = max(tally.peaks.get(pid, 0.0), mib)
        finally:
            for server in servers.values():
                server.stop()
    for kind, tally in tallies.items():
        if tally.peaks:
            tally.results["peak RSS, all processes (MiB)"] = max(tally.totals)
            tally.results["peak RSS, largest process (MiB)"] = max(tally.peaks.values())
        storage.clear(kind)
    return {kind: tally.results for kind, tally in tallies.items()}


def keep_logs(tmp: Path, storage: Storage) -> None:
    """A failed run's logs (the servers', the storage's), kept for a look: the run's
    folders are removed as it ends."""
    kept = Path(tempfile.mkdtemp(prefix="bench-failed-", dir=os.environ.get("BENCH_DIR")))
    for log in tmp.glob("*.log"):
        shutil.copy(log, kept)
    storage.keep_logs(kept)
    print(f"the run failed: its logs are in {kept}", file=sys.stderr, flush=True)


def _ensure_big_blob(server: Server, bench: Bench) -> None:
    """The big blob, for scenarios chosen without push-put (not measured then)."""
    r = httpx.head(f"{server.url}/v2/{REPO}/blobs/{bench.big_digest}")
    if r.status_code != 200:
        push_put(server, bench)
        bench.results.pop(f"push {bench.label}, one PUT (MB/s)", None)


def touch_memory(folder: Path, size: int) -> None:
    """Fill ``size`` bytes of memory once and give them back (a file in ``folder``,
    removed). On a virtual machine, memory the guest never touched is slow to fill the
    first time (measured here on a fresh VM: 3 s per GiB written to tmpfs, against 0.35
    s once touched): without this, whichever server first holds more than the machine
    ever held pays for it, in whatever scenario that happens (a 1 GiB push at a third
    of its speed). Freed pages are reused first, so the run's data then lands on
    touched memory."""
    scratch = folder / "touch"
    zeros = bytes(CHUNK)
    with scratch.open("wb") as f:
        for _ in range(size // CHUNK):
            f.write(zeros)
    scratch.unlink()


def write_small_blobs(folder: Path, threads: int, per_thread: int) -> None:
    """The 4 KiB push scenario's blobs: a file per wrk thread of (digest, bytes) records."""
    folder.mkdir()
    for t in range(threads):
        with (folder / f"blobs-{t}").open("wb") as f:
            for _ in range(per_thread):
                data = os.urandom(SMALL_BLOB)
                f.write(("sha256:" + hashlib.sha256(data).hexdigest()).encode() + data)


# ----------------------------------------------------------------------------- report

LOWER_IS_BETTER = ("RSS",)


# The per-scenario peaks printed (the others are in --json, or with --all-memory).
PRINTED_PEAKS = (MEMORY_ROWS["pull-16m"], MEMORY_ROWS["pull-100"])


def report(
    runs: dict[str, list[dict[str, float]]], rounds: int, workers: int, all_memory: bool
) -> None:
    results = {k: v for k, v in runs.items() if v}
    keys: list[str] = []
    for rs in results.values():
        for r in rs:
            keys += [k for k in r if k not in keys]
    peaks = [k for k in keys if k.startswith("peak RSS: ")]
    memory = [k for k in keys if "RSS" in k and k not in peaks]
    shown = peaks if all_memory else [k for k in peaks if k in PRINTED_PEAKS]
    keys = [k for k in keys if "RSS" not in k] + memory + shown
    print(f"\nmedian of {rounds} round(s); our server with --workers {workers}")
    names = list(results)
    header = f"{'':52}" + "".join(f"{k:>14}" for k in names)
    compared = "distribution" in names and "registry" in names
    if compared:
        header += f"{'ratio':>10}"
    if "baseline" in names and "registry" in names:
        header += f"{'':34}{'vs baseline':>12}"
    print(header)
    for key in keys:
        medians = []
        for k in names:
            values = [r[key] for r in results[k] if key in r]
            medians.append(statistics.median(values) if values else float("nan"))
        row = f"{key:52}" + "".join(f"{m:14.1f}" for m in medians)
        better = "lower" if any(w in key for w in LOWER_IS_BETTER) else "higher"
        if compared:
            ratios = _ratios(runs, key, "distribution")
            if ratios:
                row += f"{statistics.median(ratios):9.2f}x"
                row += f"  ({min(ratios):.2f}-{max(ratios):.2f}, {better} is better)"
            else:
                row += " " * 43
        if "baseline" in names and "registry" in names:
            ratios = _ratios(runs, key, "baseline")
            if ratios:
                row += f"{statistics.median(ratios):11.2f}x"
        print(row)


def _ratios(runs: dict[str, list[dict[str, float]]], key: str, other: str) -> list[float]:
    """Ours over ``other``'s figure for ``key``, per round: each from one round."""
    ratios = []
    for theirs, ours in zip(runs[other], runs["registry"], strict=False):
        if key in theirs and key in ours and theirs[key] > 0:
            ratios.append(ours[key] / theirs[key])
    return ratios


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--duration", type=int, default=10, help="seconds per load scenario")
    parser.add_argument("--only", choices=["registry", "distribution"])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--scenarios",
        default=",".join([*SCENARIOS, *ONE_WORKER]),
        help="comma-separated: " + ", ".join([*SCENARIOS, *ONE_WORKER]),
    )
    parser.add_argument("--json", help="write every round's figures to this file")
    parser.add_argument(
        "--all-memory", action="store_true", help="print the peak RSS of every scenario"
    )
    parser.add_argument(
        "--baseline",
        metavar="CHECKOUT",
        help="also run our server from this source folder (e.g. an older commit's "
        "`git archive`), as a third server: before and after in the same rounds",
    )
    s3_storage.add_argument(parser)
    args = parser.parse_args()
    chosen = args.scenarios.split(",")
    unknown = set(chosen) - set(SCENARIOS) - set(ONE_WORKER)
    if unknown:
        sys.exit(f"unknown scenarios: {', '.join(sorted(unknown))}")
    for tool in ("docker-registry", "wrk", "ab", "curl"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is needed: apt-get install {tool}")
    size = args.size_mib * MiB
    runs: dict[str, list[dict[str, float]]] = {"distribution": [], "registry": []}
    kinds = [k for k in runs if args.only in (None, k)]
    if args.baseline:
        runs["baseline"] = []
        kinds.append("baseline")
    with (
        tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR")) as tmp_name,
        contextlib.ExitStack() as stack,
    ):
        tmp = Path(tmp_name)
        big = tmp / "blob.bin"
        with big.open("wb") as f:
            for part in body(size):
                f.write(part)
        small = tmp / "small"
        write_small_blobs(small, 16, max(200, 150 * args.duration))
        bench = Bench(
            size, args.duration, tmp, big, blob_digest(size), blob_digest(size, BLOCK2), small
        )
        storage = stack.enter_context(s3_storage.chosen(args, FilesystemStorage(tmp)))
        # What a round holds at once: what the storage holds for each server's two big
        # blobs, the big file, a blob's worth of slack.
        touch_memory(tmp, storage.holds(2 * len(kinds) * size) + 2 * size)
        try:
            for round_ in range(args.rounds):
                # Alternate who goes first: the second inherits a warmer machine.
                order = kinds if round_ % 2 == 0 else kinds[::-1]
                print(f"round {round_ + 1}: {', '.join(order)}", file=sys.stderr, flush=True)
                figures = run_round(order, storage, bench, args.workers, chosen, args.baseline)
                for kind in order:
                    runs[kind].append(figures[kind])
                    print(json.dumps({kind: figures[kind]}), file=sys.stderr, flush=True)
        except BaseException:
            keep_logs(tmp, storage)
            raise
    if args.json:
        Path(args.json).write_text(json.dumps(runs, indent=1))
    report(runs, args.rounds, args.workers, args.all_memory)


if __name__ == "__main__":
    main()
