"""Side-by-side benchmark: this registry against CNCF distribution (Debian's
``docker-registry``, 2.8.2), both on the local filesystem, on 127.0.0.1.

Measures
* a 1 GiB blob pushed as docker does it (POST, one streamed PATCH, PUT ?digest=) and
  pulled back, with the wall time and the server's peak RSS (VmHWM of every process);
* small requests with ``wrk``: manifest GET by tag, blob HEAD, a tags/list page.

Usage: python benchmarks/compare.py [--size-mib 1024] [--workers 2] [--duration 10]
       [--rounds 3]   (BENCH_DIR=/dev/shm keeps the disk out of the figures)
Needs: docker-registry, wrk, ab and curl (apt-get install docker-registry wrk
apache2-utils curl).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.images import image, push_blob, push_image
from tests.server import free_port

CHUNK = 1 << 20
BLOCK = os.urandom(CHUNK)  # the blob repeats one random MiB: same bytes for both servers


def wait_ready(url: str) -> None:
    for _ in range(200):
        try:
            if httpx.get(f"{url}/v2/", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{url} did not start")


def process_tree(pid: int) -> list[int]:
    pids = [pid]
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                ppid = int((p / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            if ppid == pid:
                pids += process_tree(int(p.name))
    return pids


def peak_rss_mib(pid: int) -> dict[int, float]:
    """VmHWM (peak resident set) of each process in the tree, in MiB."""
    out = {}
    for p in process_tree(pid):
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    out[p] = int(line.split()[1]) / 1024
        except OSError:
            pass
    return out


class Server:
    def __init__(self, kind: str, workdir: Path, workers: int) -> None:
        self.kind = kind
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.data = workdir / kind
        data = self.data
        data.mkdir()
        env = dict(os.environ)
        if kind == "distribution":
            config = workdir / "distribution.yml"
            config.write_text(
                json.dumps(
                    {
                        "version": 0.1,
                        "log": {"level": "error", "accesslog": {"disabled": True}},
                        "storage": {
                            "filesystem": {"rootdirectory": str(data)},
                            "delete": {"enabled": True},
                        },
                        "http": {"addr": f"127.0.0.1:{self.port}"},
                    }
                )
            )
            cmd = ["docker-registry", "serve", str(config)]
        else:
            cmd = [
                sys.executable,
                "-m",
                "registry",
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--data-dir",
                str(data),
                "--workers",
                str(workers),
            ]
            env["REGISTRY_LOG_ACCESS_LOG"] = "false"
            env["REGISTRY_LOG_LEVEL"] = "warning"
        self.proc = subprocess.Popen(
            cmd,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        wait_ready(self.url)

    def stop(self) -> None:
        os.killpg(self.proc.pid, signal.SIGTERM)
        self.proc.wait(30)
        # Free its pages for the next server: on this VM, memory that was never touched
        # is much slower to fill than memory just given back.
        shutil.rmtree(self.data)


def body(size: int) -> Iterator[bytes]:
    block = BLOCK
    sent = 0
    while sent < size:
        n = min(CHUNK, size - sent)
        yield block[:n]
        sent += n


def blob_digest(size: int) -> str:
    h = hashlib.sha256()
    for b in body(size):
        h.update(b)
    return "sha256:" + h.hexdigest()


def push_pull(server: Server, blob: Path, digest: str) -> tuple[float, float]:
    """Push as docker does (POST, one streamed PATCH, PUT ?digest=) and pull, with curl:
    a C client, so the figures are the servers', not a Python client's."""
    with httpx.Client(base_url=server.url, timeout=600) as c:
        t0 = time.perf_counter()
        r = c.post("/v2/bench/big/blobs/uploads/")
        location = httpx.URL(server.url).join(r.headers["Location"])
        out = subprocess.run(
            [
                "curl",
                "-sS",
                "-X",
                "PATCH",
                "-T",
                str(blob),
                "-D",
                "-",
                "-o",
                "/dev/null",
                "-H",
                "Content-Type: application/octet-stream",
                "-H",
                "Expect:",
                str(location),
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert " 202" in out.splitlines()[0], out
        headers = dict(line.split(": ", 1) for line in out.splitlines()[1:] if ": " in line)
        after = {k.lower(): v.strip() for k, v in headers.items()}["location"]
        url = httpx.URL(server.url).join(after).copy_merge_params({"digest": digest})
        r = c.put(url)
        assert r.status_code == 201, r.text
        push = time.perf_counter() - t0
    t0 = time.perf_counter()
    size = subprocess.run(
        [
            "curl",
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{size_download}",
            f"{server.url}/v2/bench/big/blobs/{digest}",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    pull = time.perf_counter() - t0
    assert int(size) == blob.stat().st_size
    return push, pull


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


def wrk(url: str, duration: int, method: str = "GET") -> float:
    script = Path(tempfile.mkstemp(suffix=".lua")[1])
    script.write_text(
        f'wrk.method = "{method}"\n'
        'wrk.headers["Accept"] = "application/vnd.oci.image.manifest.v1+json, '
        "application/vnd.oci.image.index.v1+json, "
        'application/vnd.docker.distribution.manifest.v2+json"\n'
    )
    cmd = ["wrk", "-t2", "-c32", f"-d{duration}s", "-s", str(script), url]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    script.unlink()
    if "Non-2xx" in out:
        raise RuntimeError(f"errors from {url}: {out}")
    for line in out.splitlines():
        if line.startswith("Requests/sec:"):
            return float(line.split()[1])
    raise RuntimeError(out)


def small_requests(server: Server, duration: int) -> dict[str, float]:
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
        layer = push_blob(c, "bench/small", os.urandom(1000))
    return {
        "manifest GET": wrk(f"{server.url}/v2/bench/small/manifests/latest", duration),
        "blob HEAD": ab_head(f"{server.url}/v2/bench/small/blobs/{layer}", duration),
        "tags page (n=50)": wrk(f"{server.url}/v2/bench/small/tags/list?n=50", duration),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--only", choices=["registry", "distribution"])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    size = args.size_mib * CHUNK
    for tool in ("docker-registry", "wrk", "ab", "curl"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is needed: apt-get install {tool}")
    digest = blob_digest(size)
    runs: dict[str, list[dict[str, float]]] = {"distribution": [], "registry": []}
    kinds = [k for k in runs if args.only in (None, k)]
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR")) as tmp:
        blob = Path(tmp) / "blob.bin"
        with blob.open("wb") as f:
            for part in body(size):
                f.write(part)
        for round_ in range(args.rounds):
            # Alternate who goes first: the second server inherits a warmer machine.
            for kind in kinds if round_ % 2 == 0 else kinds[::-1]:
                server = Server(kind, Path(tmp), args.workers)
                try:
                    subprocess.run(["sync"], check=True)  # start both with the disk idle
                    push, pull = push_pull(server, blob, digest)
                    rss = peak_rss_mib(server.proc.pid)
                    res = {
                        f"push {args.size_mib} MiB (s)": push,
                        f"pull {args.size_mib} MiB (s)": pull,
                        "peak RSS, largest process (MiB)": max(rss.values()),
                    }
                    for name, rps in small_requests(server, args.duration).items():
                        res[f"{name} (req/s)"] = rps
                    runs[kind].append(res)
                finally:
                    server.stop()
    results = {k: v for k, v in runs.items() if v}
    keys = list(next(iter(results.values()))[0])
    print(f"median of {args.rounds} rounds, {args.workers} workers")
    print(f"{'':34}" + "".join(f"{k:>16}" for k in results))
    for key in keys:
        row = "".join(f"{statistics.median(r[key] for r in results[k]):16.2f}" for k in results)
        print(f"{key:34}{row}")


if __name__ == "__main__":
    main()
