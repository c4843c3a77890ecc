"""The pull-through cache: a large image pulled directly from the upstream (CNCF
distribution, Debian's ``docker-registry``), cold and warm through the cache, and by
many clients at once while it is cold.

For each: wall time, time to first byte of the layer (curl's ``time_starttransfer``),
bytes the cache took from the upstream (its ``registry_proxy_upstream_bytes`` metric),
and the cache's peak RSS (VmHWM, largest process). Clients are curl processes, so that
the figures are the servers'. A pull is what a client does: the manifest, the config,
the layer.

Usage: python benchmarks/proxy.py [--size-mib 1024] [--clients 50] [--workers 1]
       (BENCH_DIR=/dev/shm keeps the disk out of the figures)
Needs: docker-registry and curl.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.compare import peak_rss_mib, wait_ready
from tests.server import free_port

CHUNK = 1 << 20


def layer(size: int, seed: bytes) -> Iterator[bytes]:
    """``size`` bytes: one random MiB (from ``seed``) repeated."""
    block = hashlib.shake_256(seed).digest(CHUNK)
    for start in range(0, size, CHUNK):
        yield block[: min(CHUNK, size - start)]


def digest_of(size: int, seed: bytes) -> str:
    h = hashlib.sha256()
    for part in layer(size, seed):
        h.update(part)
    return "sha256:" + h.hexdigest()


class Process:
    def __init__(self, cmd: list[str], url: str, env: dict[str, str] | None = None) -> None:
        self.url = url
        self.proc = subprocess.Popen(
            cmd,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        wait_ready(url, self.proc)

    def stop(self) -> None:
        os.killpg(self.proc.pid, signal.SIGTERM)
        self.proc.wait(30)


def start_distribution(workdir: Path) -> Process:
    port = free_port()
    config = workdir / "distribution.yml"
    config.write_text(
        json.dumps(
            {
                "version": 0.1,
                "log": {"level": "error", "accesslog": {"disabled": True}},
                "storage": {"filesystem": {"rootdirectory": str(workdir / "upstream")}},
                "http": {"addr": f"127.0.0.1:{port}"},
            }
        )
    )
    return Process(["docker-registry", "serve", str(config)], f"http://127.0.0.1:{port}")


def start_cache(workdir: Path, upstream: str, workers: int) -> Process:
    port = free_port()
    config = workdir / "cache.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "log": {"level": "warning", "access_log": False},
                "gc": {"enabled": False},
                "proxy": {
                    "upstreams": [{"name": "up", "url": upstream}],
                    "spool_dir": str(workdir / "spool"),
                },
            }
        )
    )
    cmd = [
        sys.executable, "-m", "registry", "serve",
        "--host", "127.0.0.1", "--port", str(port),
        "--data-dir", str(workdir / "cache"),
        "--config", str(config),
        "--workers", str(workers),
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
    return Process(cmd, f"http://127.0.0.1:{port}", env)


def push_image(upstream: str, repo: str, size: int, seed: bytes) -> str:
    """A config and one layer of ``size`` bytes, tagged v1; returns the layer's digest."""
    config = json.dumps({"os": "linux", "seed": seed.hex()}).encode()
    digest = digest_of(size, seed)
    with httpx.Client(base_url=upstream, timeout=600) as c:
        for data, dgst in (
            (config, "sha256:" + hashlib.sha256(config).hexdigest()),
            (None, digest),
        ):
            r = c.post(f"/v2/{repo}/blobs/uploads/")
            url = (
                httpx.URL(upstream).join(r.headers["Location"]).copy_merge_params({"digest": dgst})
            )
            content = data if data is not None else layer(size, seed)
            r = c.put(url, content=content, headers={"Content-Type": "application/octet-stream"})
            assert r.status_code == 201, r.text
        manifest = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": "sha256:" + hashlib.sha256(config).hexdigest(),
                "size": len(config),
            },
            "layers": [
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": digest,
                    "size": size,
                }
            ],
        }
        r = c.put(
            f"/v2/{repo}/manifests/v1",
            content=json.dumps(manifest).encode(),
            headers={"Content-Type": manifest["mediaType"]},
        )
        assert r.status_code == 201, r.text
    return digest


def pull(base: str, repo: str, size: int) -> tuple[float, float]:
    """A whole pull: (time to the layer's first byte, wall time), in seconds."""
    started = time.perf_counter()
    with httpx.Client(base_url=base, timeout=600) as c:
        r = c.get(
            f"/v2/{repo}/manifests/v1",
            headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
        )
        r.raise_for_status()
        doc = r.json()
        c.get(f"/v2/{repo}/blobs/{doc['config']['digest']}").raise_for_status()
    before_layer = time.perf_counter() - started
    out = subprocess.run(
        [
            "curl", "-sS", "-f", "-o", "/dev/null",
            "-w", "%{time_starttransfer} %{size_download}",
            f"{base}/v2/{repo}/blobs/{doc['layers'][0]['digest']}",
        ],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    first_byte, got = out.split()
    assert int(got) == size, (got, size)
    return before_layer + float(first_byte), time.perf_counter() - started


def upstream_bytes(cache: Process) -> int:
    text = httpx.get(f"{cache.url}/metrics", timeout=30).text
    m = re.search(r'^registry_proxy_upstream_bytes_total\{upstream="up"\} (\S+)$', text, re.M)
    return int(float(m.group(1))) if m else 0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    for tool in ("docker-registry", "curl"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is needed: apt-get install {tool}")
    size = args.size_mib * CHUNK
    rows: list[tuple[str, dict[str, float]]] = []
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR")) as tmp:
        work = Path(tmp)
        upstream = start_distribution(work)
        cache = start_cache(work, upstream.url, args.workers)
        try:
            push_image(upstream.url, "bench/one", size, b"one")
            push_image(upstream.url, "bench/many", size, b"many")
            subprocess.run(["sync"], check=True)

            def measure(name: str, base: str, repo: str) -> None:
                before = upstream_bytes(cache)
                ttfb, wall = pull(base, repo, size)
                rows.append(
                    (
                        name,
                        {
                            "wall (s)": wall,
                            "first byte (s)": ttfb,
                            "upstream MiB": (upstream_bytes(cache) - before) / CHUNK,
                            "cache peak RSS (MiB)": max(peak_rss_mib(cache.proc.pid).values()),
                        },
                    )
                )

            measure("direct from the upstream", upstream.url, "bench/one")
            measure("cold, through the cache", cache.url, "up/bench/one")
            measure("warm, through the cache", cache.url, "up/bench/one")

            before = upstream_bytes(cache)
            started = time.perf_counter()
            with ThreadPoolExecutor(args.clients) as pool:
                pulls = list(
                    pool.map(lambda _: pull(cache.url, "up/bench/many", size), range(args.clients))
                )
            rows.append(
                (
                    f"{args.clients} clients at once, cold",
                    {
                        "wall (s)": time.perf_counter() - started,
                        "first byte (s)": max(p[0] for p in pulls),
                        "first byte, median (s)": statistics.median(p[0] for p in pulls),
                        "upstream MiB": (upstream_bytes(cache) - before) / CHUNK,
                        "cache peak RSS (MiB)": max(peak_rss_mib(cache.proc.pid).values()),
                    },
                )
            )
        finally:
            cache.stop()
            upstream.stop()
    print(f"{args.size_mib} MiB layer, cache with {args.workers} worker(s)")
    for name, figures in rows:
        print(f"  {name}")
        for key, value in figures.items():
            print(f"    {key:28}{value:12.2f}")


if __name__ == "__main__":
    main()
