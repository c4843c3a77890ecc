"""Memory of the S3 backend: peak RSS of every process of ``registry serve --workers 2``
on a throwaway Ceph RGW, scenario by scenario -- a 1 GiB blob pushed as one PUT and in
64 MiB PATCHes, pulled back, and 32 clients pulling a 16 MiB blob at once.

Before each scenario every process's peak (VmHWM) is reset to its current RSS, so that a
figure is that scenario's own: "all" sums the server's processes (the supervisor and
its workers), "largest" is the largest of them.
Request bodies are streamed from a generator: the script holds no blob either.
``--baseline CHECKOUT`` runs our server from another source folder too (e.g. an older
commit's ``git archive``), one after the other on the same RGW: before and after in one
run. The script exits 1 when a process of this checkout's server reaches ``--limit-mb``.

Usage: python benchmarks/s3_memory.py [--size-mib 1024] [--workers 2] [--pulls 32]
       [--limit-mb 250] [--baseline CHECKOUT]
Needs: curl and the Ceph RGW packages the S3 tests use (apt-get install ceph-mon
ceph-osd radosgw ceph-common).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.compare import blob_digest, body, peak_rss_mib, process_tree
from benchmarks.s3_storage import registry_on
from tests.rgw import RgwServer, missing_binaries, running_rgw
from tests.server import RegistryServer

MiB = 1 << 20
MB = 1_000_000
REPO = "bench/s3-memory"


def reset_peaks(pid: int) -> None:
    """Start every process's VmHWM again from its current RSS (Linux 4.0 and later)."""
    for p in process_tree(pid):
        with contextlib.suppress(OSError):
            Path(f"/proc/{p}/clear_refs").write_text("5")


def push_put(server: RegistryServer, blob: Path, digest: str) -> None:
    r = httpx.post(f"{server.url}/v2/{REPO}/blobs/uploads/")
    assert r.status_code == 202, r.text
    url = httpx.URL(server.url).join(r.headers["Location"]).copy_merge_params({"digest": digest})
    out = subprocess.run(
        ["curl", "-sS", "-X", "PUT", "-T", str(blob), "-H", "Expect:", "-o", "/dev/null",
         "-w", "%{http_code}", "-H", "Content-Type: application/octet-stream", str(url)],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert out == "201", out


def push_chunked(server: RegistryServer, size: int, chunk: int, digest: str) -> None:
    with server.client(timeout=600) as client:
        r = client.post(f"/v2/{REPO}/blobs/uploads/")
        assert r.status_code == 202, r.text
        location = r.headers["Location"]
        for offset in range(0, size, chunk):
            n = min(chunk, size - offset)
            # body(n) is the blob's first n bytes, and every chunk starts at a multiple
            # of its 1 MiB period, so it is also the blob's bytes at [offset, offset + n).
            r = client.patch(
                location,
                content=body(n),
                headers={
                    "Content-Range": f"{offset}-{offset + n - 1}",
                    "Content-Length": str(n),
                    "Content-Type": "application/octet-stream",
                },
            )
            assert r.status_code == 202, r.text
            location = r.headers["Location"]
        r = client.put(location, params={"digest": digest})
        assert r.status_code == 201, r.text


def pull(server: RegistryServer, digest: str, size: int) -> None:
    out = subprocess.run(
        ["curl", "-sS", "-o", "/dev/null", "-w", "%{size_download}",
         f"{server.url}/v2/{REPO}/blobs/{digest}"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert int(out) == size, out


def pulls_at_once(server: RegistryServer, digest: str, size: int, clients: int) -> None:
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(lambda _: pull(server, digest, size), range(clients)))


def measure(server: RegistryServer, scenarios: dict[str, Callable[[], None]]) -> dict[str, float]:
    assert server.proc is not None
    pid = server.proc.pid
    idle = peak_rss_mib(pid)
    figures = {"idle: all": sum(idle.values()), "idle: largest": max(idle.values())}
    for name, run in scenarios.items():
        reset_peaks(pid)
        started = time.perf_counter()
        run()
        seconds = time.perf_counter() - started
        peaks = peak_rss_mib(pid)
        figures[f"{name}: all"] = sum(peaks.values())
        figures[f"{name}: largest"] = max(peaks.values())
        print(f"  {name}: {seconds:.1f} s", file=sys.stderr, flush=True)
    return figures


def run_server(
    rgw: RgwServer, workdir: Path, args: argparse.Namespace, source: str | None
) -> dict[str, float]:
    size, chunk = args.size_mib * MiB, args.chunk_mib * MiB
    server = registry_on(rgw, workdir, args.workers, source)
    blob = workdir / "blob.bin"
    with blob.open("wb") as f:
        for part in body(size):
            f.write(part)
    big = blob_digest(size)
    mid = os.urandom(16 * MiB)
    mid_digest = "sha256:" + hashlib.sha256(mid).hexdigest()
    server.start(timeout=60)
    try:
        time.sleep(1)  # the workers past their start-up
        r = httpx.post(
            f"{server.url}/v2/{REPO}/blobs/uploads/", params={"digest": mid_digest}, content=mid
        )
        assert r.status_code == 201, r.text
        return measure(
            server,
            {
                f"push {args.size_mib} MiB, one PUT": lambda: push_put(server, blob, big),
                f"push {args.size_mib} MiB, {args.chunk_mib} MiB PATCHes": lambda: push_chunked(
                    server, size, chunk, blob_digest(size)
                ),
                f"pull {args.size_mib} MiB": lambda: pull(server, big, size),
                f"{args.pulls} pulls of 16 MiB at once": lambda: pulls_at_once(
                    server, mid_digest, len(mid), args.pulls
                ),
            },
        )
    finally:
        server.stop()
        blob.unlink()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--chunk-mib", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--pulls", type=int, default=32)
    parser.add_argument("--limit-mb", type=float, default=250.0, help="peak RSS of a process")
    parser.add_argument("--baseline", metavar="CHECKOUT", help="also run this source folder")
    args = parser.parse_args()
    if missing := missing_binaries():
        sys.exit(f"Ceph RGW binaries not found: {', '.join(missing)}")
    servers = ({"baseline": args.baseline} if args.baseline else {}) | {"this": None}
    results: dict[str, dict[str, float]] = {}
    with running_rgw() as rgw, tempfile.TemporaryDirectory(prefix="s3-memory-") as tmp:
        for name, source in servers.items():
            print(f"{name}:", file=sys.stderr, flush=True)
            results[name] = run_server(rgw, Path(tmp) / name, args, source)
    print(f"peak RSS (MiB) on Ceph RGW, {args.workers} workers")
    print(f"{'':44}" + "".join(f"{n:>12}" for n in results))
    for key in results["this"]:
        print(f"{key:44}" + "".join(f"{r[key]:12.1f}" for r in results.values()))
    largest = max(v for k, v in results["this"].items() if k.endswith("largest"))
    if largest * MiB >= args.limit_mb * MB:
        sys.exit(f"FAIL: a process reached {largest * MiB / MB:.1f} MB >= {args.limit_mb:.0f} MB")


if __name__ == "__main__":
    main()
