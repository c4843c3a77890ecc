"""What events cost a push: push throughput of small images (a config, two 1 KiB layers,
a manifest by tag) with one webhook endpoint configured against none, on one
``registry serve`` over the filesystem; and how long after the last push the last
event arrives.

The receiver is a process of its own (a plain http.server answering 204), so that its
work does not slow the pushing client; all of it shares the machine's cores, as on a
small server. Rounds alternate between the two set-ups; the median counts.

Usage: python benchmarks/events.py [--images 300] [--clients 4] [--rounds 3] [--workers 1]
       (BENCH_DIR=/dev/shm keeps the disk out of the figures)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.images import image, push_image
from tests.server import RegistryServer, free_port


def serve_receiver(port: int, count_file: Path) -> None:
    """The receiver process: counts events, writes the count to ``count_file``."""
    lock = threading.Lock()
    count = [0]

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            with lock:
                count[0] += len(json.loads(body)["events"])
                count_file.write_text(str(count[0]))
            self.send_response(204)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of a process and its children so far."""
    total = 0.0
    ticks = os.sysconf("SC_CLK_TCK")
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(entry.name) == pid or int(fields[1]) == pid:
            total += (int(fields[11]) + int(fields[12])) / ticks
    return total


def received(count_file: Path) -> int:
    try:
        return int(count_file.read_text() or 0)
    except (OSError, ValueError):
        return 0


def push_round(url: str, images: int, clients: int, prefix: str) -> float:
    """Images pushed per second by ``clients`` threads."""
    made = [image(layers=2, layer_size=1024) for _ in range(images)]

    def push(i: int) -> None:
        with httpx.Client(base_url=url, timeout=60) as c:
            for n in range(i, images, clients):
                push_image(c, f"{prefix}/r{n % 8}", made[n], tag=f"t{n}")

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(push, range(clients)))
    return images / (time.perf_counter() - started)


def run(args: argparse.Namespace, workdir: Path, with_endpoint: bool, n: int) -> dict[str, float]:
    config: dict[str, Any] = {"log": {"access_log": False}, "gc": {"enabled": False}}
    count_file = workdir / f"count-{n}"
    receiver = None
    if with_endpoint:
        port = free_port()
        receiver = subprocess.Popen(
            [sys.executable, __file__, "--receiver", str(port), str(count_file)]
        )
        config["notifications"] = {
            "endpoints": [{"name": "bench", "url": f"http://127.0.0.1:{port}/"}]
        }
    server = RegistryServer(workdir / f"registry-{n}", config, workers=args.workers)
    server.start()
    assert server.proc is not None
    try:
        cpu = cpu_seconds(server.proc.pid)
        rate = push_round(server.url, args.images, args.clients, f"bench{n}")
        lag = 0.0
        if with_endpoint:
            # Each image: three blob pushes and one manifest push; each repository: a create.
            expected = 4 * args.images + 8
            done = time.perf_counter()
            while received(count_file) < expected and time.perf_counter() - done < 120:
                time.sleep(0.02)
            lag = time.perf_counter() - done
            assert received(count_file) >= expected, (received(count_file), expected)
        cpu = cpu_seconds(server.proc.pid) - cpu
        return {
            "images_per_s": rate,
            "last_event_after_s": lag,
            "cpu_ms_per_image": 1000 * cpu / args.images,
        }
    finally:
        server.stop()
        if receiver is not None:
            receiver.terminate()
            receiver.wait()


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--receiver":
        serve_receiver(int(sys.argv[2]), Path(sys.argv[3]))
        return
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=300)
    p.add_argument("--clients", type=int, default=4)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--workers", type=int, default=1)
    args = p.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="bench-events-", dir=os.environ.get("BENCH_DIR")))
    results: dict[bool, list[dict[str, float]]] = {False: [], True: []}
    try:
        n = 0
        for r in range(args.rounds):
            for with_endpoint in (False, True) if r % 2 == 0 else (True, False):
                n += 1
                results[with_endpoint].append(run(args, workdir, with_endpoint, n))
                print(f"round {r + 1}, endpoint={with_endpoint}: {results[with_endpoint][-1]}")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    none = statistics.median(x["images_per_s"] for x in results[False])
    one = statistics.median(x["images_per_s"] for x in results[True])
    lag = statistics.median(x["last_event_after_s"] for x in results[True])
    cpu_none = statistics.median(x["cpu_ms_per_image"] for x in results[False])
    cpu_one = statistics.median(x["cpu_ms_per_image"] for x in results[True])
    print(f"no endpoint:  {none:.1f} images/s, registry CPU {cpu_none:.2f} ms per image")
    print(
        f"one endpoint: {one:.1f} images/s, registry CPU {cpu_one:.2f} ms per image "
        f"(delivery included); last event {lag:.2f}s after the last push"
    )
    print(
        f"cost of the outbox: {100 * (1 - one / none):.1f}% of push throughput, "
        f"{100 * (cpu_one / cpu_none - 1):.1f}% more CPU per push"
    )


if __name__ == "__main__":
    main()
