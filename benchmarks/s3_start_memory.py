"""A worker's resident memory on S3 at start and after a few small requests: what every
process of ``registry serve --workers N`` holds (VmRSS) once it serves, then after a
round of small requests on one connection (a 4 KiB image pushed, its manifest fetched
by tag, a blob HEAD, a tags page), then after more such rounds.

One connection keeps every request on one worker: "served" is the largest worker after
the rounds, "idle" the other one(s), "all" every process (the supervisor too). Each
figure is the median of ``--runs`` fresh servers, started one after the other on the
same RGW. ``--baseline CHECKOUT`` runs another source folder too (e.g. an older
commit's ``git archive``), interleaved with this one: before and after in one run.
``--endpoint-url`` uses a running RGW (the test keys of tests/rgw.py) instead of
starting one.

Usage: python benchmarks/s3_start_memory.py [--workers 2] [--rounds 5] [--runs 3]
       [--baseline CHECKOUT] [--endpoint-url URL]
Needs: the Ceph RGW packages the S3 tests use, unless ``--endpoint-url`` is given.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.compare import rss_mib
from benchmarks.s3_storage import registry_on
from tests.images import image, push_image
from tests.rgw import RgwServer, missing_binaries, running_rgw
from tests.server import RegistryServer

REPO = "bench/s3-start"


def small_round(server: RegistryServer, n: int) -> None:
    """One push of a 4 KiB image, then the reads a pull and a listing make."""
    img = image(layers=1, layer_size=4096)
    with server.client() as client:
        push_image(client, REPO, img, tag=f"t{n}")
        r = client.get(f"/v2/{REPO}/manifests/t{n}", headers={"Accept": img.media_type})
        assert r.status_code == 200, r.text
        layer = next(iter(img.blobs))
        assert client.head(f"/v2/{REPO}/blobs/{layer}").status_code == 200
        r = client.get(f"/v2/{REPO}/tags/list", params={"n": 100})
        assert r.status_code == 200, r.text


def split(pid: int) -> dict[str, float]:
    """RSS of the supervisor's workers: the largest ("served"), the others, and all."""
    rss = rss_mib(pid)
    workers = sorted((v for p, v in rss.items() if p != pid), reverse=True) or [rss[pid]]
    idle = workers[1:] or [0.0]
    return {"served": workers[0], "idle": max(idle), "all": sum(rss.values())}


def run_once(
    rgw: RgwServer, workdir: Path, args: argparse.Namespace, source: str | None
) -> dict[str, float]:
    server = registry_on(rgw, workdir, args.workers, source)
    server.start(timeout=60)
    assert server.proc is not None
    try:
        time.sleep(args.settle)  # past the workers' start-up
        figures = {f"start: {k}": v for k, v in split(server.proc.pid).items()}
        for n in range(args.rounds):
            small_round(server, n)
            if n == 0 or n == args.rounds - 1:
                time.sleep(0.2)
                label = "1 round" if n == 0 else f"{args.rounds} rounds"
                figures |= {f"{label}: {k}": v for k, v in split(server.proc.pid).items()}
        return figures
    finally:
        server.stop()


@contextlib.contextmanager
def rgw_server(endpoint_url: str | None) -> Iterator[RgwServer]:
    if endpoint_url:
        server = RgwServer(endpoint_url)
        server.make_bucket(server.bucket)
        yield server
        return
    if missing := missing_binaries():
        sys.exit(f"Ceph RGW binaries not found: {', '.join(missing)}")
    with running_rgw() as server:
        yield server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--settle", type=float, default=1.0, help="seconds after start")
    parser.add_argument("--baseline", metavar="CHECKOUT", help="also run this source folder")
    parser.add_argument("--endpoint-url", help="a running RGW with the test keys")
    args = parser.parse_args()
    servers = ({"baseline": args.baseline} if args.baseline else {}) | {"this": None}
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in servers}
    with rgw_server(args.endpoint_url) as rgw, tempfile.TemporaryDirectory() as tmp:
        for i in range(args.runs):
            for name, source in servers.items():
                runs[name].append(run_once(rgw, Path(tmp) / f"{name}-{i}", args, source))
    print(f"RSS (MiB) on Ceph RGW, {args.workers} workers, median of {args.runs} runs")
    print(f"{'':24}" + "".join(f"{n:>12}" for n in runs))
    for key in runs["this"][0]:
        medians = [statistics.median(r[key] for r in results) for results in runs.values()]
        print(f"{key:24}" + "".join(f"{m:12.1f}" for m in medians))


if __name__ == "__main__":
    main()
