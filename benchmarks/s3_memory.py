"""Memory bound of the S3 backend: a 1 GiB blob pushed chunked and pulled back through
``registry serve --workers 2`` on a throwaway Ceph RGW, with the server's peak RSS.

The push is what a resumable client does: POST, then 64 MiB PATCHes with Content-Range
and Content-Length, then PUT ?digest=. Request bodies are streamed from a generator, so
this script holds no blob in memory either. The peak RSS is VmHWM, the largest of the
server's processes (as benchmarks/compare.py measures it); the script exits 1 when it
reaches the limit (250 MB by default: issue 3's bound).

Usage: python benchmarks/s3_memory.py [--size-mib 1024] [--chunk-mib 64] [--workers 2]
Needs: the Ceph RGW packages the S3 tests use (apt-get install ceph-mon ceph-osd radosgw
ceph-common).
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.compare import CHUNK, blob_digest, body, peak_rss_mib
from tests.rgw import missing_binaries, running_rgw
from tests.server import RegistryServer

MiB = 1 << 20
MB = 1_000_000
REPO = "bench/s3-memory"


def push_chunked(client: httpx.Client, size: int, chunk: int, digest: str) -> float:
    started = time.perf_counter()
    r = client.post(f"/v2/{REPO}/blobs/uploads/")
    assert r.status_code == 202, r.text
    location = r.headers["Location"]
    for offset in range(0, size, chunk):
        n = min(chunk, size - offset)
        # body(n) is the blob's first n bytes, and every chunk starts at a multiple of
        # its 1 MiB period, so it is also the blob's bytes at [offset, offset + n).
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
        assert r.headers["Range"] == f"0-{offset + n - 1}", r.headers
        location = r.headers["Location"]
    r = client.put(location, params={"digest": digest})
    assert r.status_code == 201, r.text
    return time.perf_counter() - started


def pull_verified(client: httpx.Client, size: int, digest: str) -> float:
    started = time.perf_counter()
    hasher = hashlib.sha256()
    got = 0
    with client.stream("GET", f"/v2/{REPO}/blobs/{digest}") as r:
        assert r.status_code == 200, r.read()
        for data in r.iter_bytes(CHUNK):
            hasher.update(data)
            got += len(data)
    elapsed = time.perf_counter() - started
    if got != size or f"sha256:{hasher.hexdigest()}" != digest:
        sys.exit(f"pulled {got} bytes with sha256:{hasher.hexdigest()}, expected {size} {digest}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--chunk-mib", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--limit-mb", type=float, default=250.0, help="peak RSS bound (MB)")
    args = parser.parse_args()
    if missing := missing_binaries():
        sys.exit(f"Ceph RGW binaries not found: {', '.join(missing)}")
    size, chunk = args.size_mib * MiB, args.chunk_mib * MiB
    digest = blob_digest(size)

    with running_rgw() as rgw, tempfile.TemporaryDirectory(prefix="s3-memory-") as tmp:
        s3 = rgw.s3_config(prefix=f"bench-{uuid.uuid4().hex[:8]}")
        config = {
            "storage": {"driver": "s3", "s3": s3.model_dump(exclude_none=True)},
            "log": {"level": "warning", "access_log": False},
        }
        server = RegistryServer(Path(tmp), config, workers=args.workers)
        server.start(timeout=60)
        try:
            assert server.proc is not None
            idle = peak_rss_mib(server.proc.pid)
            with server.client(timeout=600) as client:
                push = push_chunked(client, size, chunk, digest)
                pull = pull_verified(client, size, digest)
            peaks = peak_rss_mib(server.proc.pid)
        finally:
            server.stop()

    peak = max(peaks.values())
    print(f"blob: {args.size_mib} MiB, {args.chunk_mib} MiB PATCHes, {args.workers} workers, RGW")
    print(f"push (chunked):          {push:7.1f} s  ({args.size_mib / push:6.1f} MiB/s)")
    print(f"pull (sha256 verified):  {pull:7.1f} s  ({args.size_mib / pull:6.1f} MiB/s)")
    print(f"peak RSS after start:    {max(idle.values()):7.1f} MiB")
    for pid, mib in sorted(peaks.items()):
        print(f"peak RSS pid {pid:<10} {mib:7.1f} MiB")
    print(
        f"peak RSS, largest:       {peak:7.1f} MiB = {peak * MiB / MB:.1f} MB "
        f"(limit {args.limit_mb:.0f} MB)"
    )
    if peak * MiB >= args.limit_mb * MB:
        sys.exit(f"FAIL: peak RSS {peak * MiB / MB:.1f} MB >= {args.limit_mb:.0f} MB")


if __name__ == "__main__":
    main()
