"""Replication against ``skopeo sync``: time, and bytes the target received, to copy the
same content from one ``registry serve`` to a fresh other one.

Two workloads, each copied by both tools into a target of its own:

- ``shared``: 50 images in 50 repositories on one base (3 layers of 8 MiB), each with
  its own 256 KiB layer and config: a tool that sends every image whole sends 1.2 GiB,
  one that sends each blob once (mounting the base where it is already) about 37 MiB;
- ``big``: one image with a 1 GiB layer.

Ours is ``registry replicate run`` (a full pass of a push rule, the same code as the
server's schedule and events) from the source's storage; skopeo's is ``skopeo sync
--src yaml`` over the same images. Bytes are the request body bytes the target counted
(its /metrics), so uploads, and what a mount saves, show. Each tool starts a process of
its own (its start-up is part of its time); all share the machine's cores.

Usage: python benchmarks/replication.py [--images 50] [--big-mib 1024] [--parallel 4]
                                        [--rounds 3]
       (BENCH_DIR=/dev/shm keeps the disk out of the figures)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.images import OCI_CONFIG, OCI_LAYER, OCI_MANIFEST, descriptor, push_blob
from tests.server import RegistryServer

MiB = 1024 * 1024


def body_bytes(server: RegistryServer) -> tuple[int, int]:
    """Request body bytes and requests the server has counted so far."""
    text = httpx.get(f"{server.url}/metrics", timeout=30).text
    received = requests = 0.0
    for line in text.splitlines():
        if line.startswith("registry_http_request_body_bytes_total{"):
            received += float(line.split()[-1])
        elif line.startswith("registry_http_requests_total{"):
            requests += float(line.split()[-1])
    return int(received), int(requests)


def put_manifest(
    client: httpx.Client, repository: str, tag: str, layers: list[dict[str, Any]], config: bytes
) -> None:
    doc = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor(OCI_CONFIG, config),
        "layers": layers,
    }
    r = client.put(
        f"/v2/{repository}/manifests/{tag}",
        content=json.dumps(doc).encode(),
        headers={"Content-Type": OCI_MANIFEST},
    )
    assert r.status_code == 201, r.text


def seed_shared(source: RegistryServer, images: int) -> list[str]:
    base = [os.urandom(8 * MiB) for _ in range(3)]
    names = []
    with source.client(timeout=300) as c:
        for i in range(images):
            repository = f"bench/app-{i:02d}"
            own = os.urandom(256 * 1024)
            config = json.dumps({"architecture": "amd64", "os": "linux", "n": i}).encode()
            for blob in (*base, own, config):
                push_blob(c, repository, blob)
            layers = [descriptor(OCI_LAYER, b) for b in (*base, own)]
            put_manifest(c, repository, "v1", layers, config)
            names.append(repository)
    return names


def big_pieces(mib: int, block: bytes) -> Iterator[bytes]:
    for i in range(mib):
        yield i.to_bytes(8, "big") + block[8:]


def seed_big(source: RegistryServer, mib: int) -> list[str]:
    block = os.urandom(MiB)
    hasher = hashlib.sha256()
    for piece in big_pieces(mib, block):
        hasher.update(piece)
    digest = "sha256:" + hasher.hexdigest()
    config = json.dumps({"architecture": "amd64", "os": "linux", "big": True}).encode()
    with source.client(timeout=600) as c:
        push_blob(c, "bench/big", config)
        r = c.post(
            "/v2/bench/big/blobs/uploads/",
            params={"digest": digest},
            content=big_pieces(mib, block),
            headers={"Content-Length": str(mib * MiB), "Content-Type": "application/octet-stream"},
        )
        assert r.status_code == 201, r.text
        put_manifest(
            c,
            "bench/big",
            "v1",
            [{"mediaType": OCI_LAYER, "digest": digest, "size": mib * MiB}],
            config,
        )
    return ["bench/big"]


def ours(
    source: RegistryServer, target: RegistryServer, names: list[str], parallel: int, work: Path
) -> tuple[float, float]:
    """The command's time, and its pass's own (without start-up and the lease)."""
    rule = {
        "name": "bench",
        "direction": "push",
        "remote": {"url": target.url},
        "repositories": {"include": names},
        "trigger": {"events": False},
        "parallel": parallel,
    }
    config = work / "replicate.yml"
    config.write_text(
        yaml.safe_dump({"replication": {"rules": [rule]}, "log": {"level": "warning"}})
    )
    started = time.monotonic()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "registry",
            "replicate",
            "run",
            "bench",
            "--config",
            str(config),
            "--data-dir",
            str(source.data_dir),
            "--json",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    elapsed = time.monotonic() - started
    if done.returncode != 0:
        raise SystemExit(f"registry replicate run failed:\n{done.stdout}\n{done.stderr}")
    run = json.loads(done.stdout)
    return elapsed, run["finished"] - run["started"]


def skopeo(
    source: RegistryServer, target: RegistryServer, names: list[str], work: Path
) -> tuple[float, float]:
    spec = work / "skopeo-sync.yml"
    spec.write_text(
        yaml.safe_dump({source.host: {"tls-verify": False, "images": {n: ["v1"] for n in names}}})
    )
    env = {**os.environ, "HOME": str(work / "home")}
    started = time.monotonic()
    done = subprocess.run(
        [
            "skopeo",
            "sync",
            "--src",
            "yaml",
            "--dest",
            "docker",
            "--dest-tls-verify=false",
            "--preserve-digests",
            str(spec),
            f"{target.host}/bench",  # each image goes to DESTINATION/<its last component>
        ],
        capture_output=True,
        text=True,
        check=False,
        env=env,
    )
    elapsed = time.monotonic() - started
    if done.returncode != 0:
        raise SystemExit(f"skopeo sync failed:\n{done.stderr}")
    return elapsed, elapsed


def check_same(source: RegistryServer, target: RegistryServer, names: list[str], tool: str) -> None:
    accept = {"Accept": OCI_MANIFEST}
    for n in names:
        a = httpx.get(f"{source.url}/v2/{n}/manifests/v1", headers=accept, timeout=30)
        b = httpx.get(f"{target.url}/v2/{n}/manifests/v1", headers=accept, timeout=30)
        if b.status_code != 200 or a.content != b.content:
            catalog = httpx.get(f"{target.url}/v2/_catalog", timeout=30).text
            raise SystemExit(
                f"{tool}: {n}: not the same manifest ({b.status_code}); {catalog[:300]}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=50)
    parser.add_argument("--big-mib", type=int, default=1024)
    parser.add_argument("--parallel", type=int, default=4, help="the rule's parallel")
    parser.add_argument("--rounds", type=int, default=3, help="order alternates; medians")
    args = parser.parse_args()
    if shutil.which("skopeo") is None:
        raise SystemExit("skopeo is not installed")
    root = Path(tempfile.mkdtemp(prefix="bench-replication-", dir=os.environ.get("BENCH_DIR")))
    servers: list[RegistryServer] = []

    def server(name: str) -> RegistryServer:
        s = RegistryServer(root / name, {"log": {"access_log": False}, "gc": {"enabled": False}})
        s.start()
        servers.append(s)
        return s

    results: dict[tuple[str, str], list[tuple[float, float, int, int]]] = {}
    try:
        source = server("source")
        workloads = {
            "shared": seed_shared(source, args.images),
            "big": seed_big(source, args.big_mib),
        }
        for round_ in range(args.rounds):
            tools = ("ours", "skopeo") if round_ % 2 == 0 else ("skopeo", "ours")
            for workload, names in workloads.items():
                for tool in tools:
                    target = server(f"{workload}-{tool}-{round_}")
                    work = root / f"{workload}-{tool}-{round_}-work"
                    work.mkdir()
                    before, requests_before = body_bytes(target)
                    if tool == "ours":
                        seconds, copying = ours(source, target, names, args.parallel, work)
                    else:
                        seconds, copying = skopeo(source, target, names, work)
                    after, requests_after = body_bytes(target)
                    check_same(source, target, names, tool)
                    results.setdefault((workload, tool), []).append(
                        (seconds, copying, after - before, requests_after - requests_before)
                    )
                    target.stop()
                    servers.remove(target)
                    shutil.rmtree(target.workdir, ignore_errors=True)
    finally:
        for s in servers:
            s.stop()
        shutil.rmtree(root, ignore_errors=True)
    print(f"median of {args.rounds} rounds; 'copying': without the command's start-up")
    print(
        f"{'workload':<8} {'tool':<7} {'seconds':>8} {'copying':>8} {'MiB sent':>9} {'requests':>9}"
    )
    for (workload, tool), runs in results.items():
        seconds = statistics.median(r[0] for r in runs)
        copying = statistics.median(r[1] for r in runs)
        sent, requests = runs[-1][2], runs[-1][3]
        print(
            f"{workload:<8} {tool:<7} {seconds:>8.2f} {copying:>8.2f} {sent / MiB:>9.1f} "
            f"{requests:>9}"
        )


if __name__ == "__main__":
    main()
