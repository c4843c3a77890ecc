"""Render times of the web UI's pages on the filesystem driver at scale: 10,000
repositories (each with a pushed manifest, its last push recorded, counted in a usage
snapshot) and one repository with 5,000 tags, generated through the store; then a real
``registry serve`` answers each page while the client times it.

Measured per page: the median and the slowest of ``--rounds`` sequential requests after
one warm-up, with auth off and with token auth (a logged-in admin, whose every
repository is checked against the policy). The issue's bound: every page under 300 ms.

Usage: python benchmarks/ui.py [--repositories 10000] [--tags 5000] [--rounds 20]
       [--data DIR]   (BENCH_DIR=/dev/shm keeps the disk out of the figures; --data
       keeps the generated registry in DIR, and a later run with it measures at once)
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import bcrypt
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from registry.config import Config
from registry.reference import Digest
from registry.store import RegistryStore, RepositoryUsage, UsageSnapshot, open_store
from tests.server import RegistryServer

BOUND_MS = 300.0
PASSWORD = "bench-password"
BIG = "big/app"


def blob(data: bytes) -> tuple[Digest, dict[str, object]]:
    hexdigest = hashlib.sha256(data).hexdigest()
    media = "application/vnd.oci.image.layer.v1.tar+gzip"
    return Digest("sha256", hexdigest), {
        "mediaType": media,
        "digest": f"sha256:{hexdigest}",
        "size": len(data),
    }


def manifest(config: dict[str, object], layer: dict[str, object], n: int) -> bytes:
    doc = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {**config, "mediaType": "application/vnd.oci.image.config.v1+json"},
        "layers": [layer],
        "annotations": {"n": str(n)},
    }
    return json.dumps(doc).encode()


async def generate(store: RegistryStore, repositories: int, tags: int) -> None:
    """Repositories ``org-<k>/repo-<i>`` with one tagged manifest each, and BIG with
    ``tags`` tags over 50 manifests; then the usage snapshot the collector would write."""
    store.changes.listen(store.pushes)  # as the UI wires it: last pushes recorded
    config_data = json.dumps({"architecture": "amd64", "os": "linux"}).encode()
    layer_data = os.urandom(4096)
    config_digest, config = blob(config_data)
    layer_digest, layer = blob(layer_data)
    await store.blobs.put_small(config_digest, config_data)
    await store.blobs.put_small(layer_digest, layer_data)
    names = [f"org-{i % 20:02d}/repo-{i:05d}" for i in range(repositories)]
    started = time.monotonic()
    for i, name in enumerate(names):
        await store.blobs.link(name, config_digest)
        await store.blobs.link(name, layer_digest)
        await store.manifests.put(name, "latest", manifest(config, layer, i), None)
        if i % 1000 == 999:
            print(f"  {i + 1} repositories ({time.monotonic() - started:.0f} s)", flush=True)
    await store.blobs.link(BIG, config_digest)
    await store.blobs.link(BIG, layer_digest)
    bodies = [manifest(config, layer, 10**6 + k) for k in range(50)]
    for t in range(tags):
        tag = f"v{t // 100}.{t % 100}.{t % 7}" if t % 5 else f"build-{t:05d}"
        await store.manifests.put(BIG, tag, bodies[t % 50], None)
    print(f"  {tags} tags in {BIG} ({time.monotonic() - started:.0f} s)", flush=True)
    held = len(config_data) + len(layer_data)
    usage = tuple(
        RepositoryUsage(n, held_bytes=held + (i * 7919) % 100_000, unique_bytes=i % 5000)
        for i, n in enumerate([*names, BIG])
    )
    await store.usage.write(UsageSnapshot(time.time(), 10**9, 10**7, usage))


def pages(repositories: int, tags: int) -> list[tuple[str, str]]:
    last = max(1, -(-repositories // 50))
    many = f"{tags:,} tags"
    return [
        ("repositories, page 1", "/ui/"),
        ("repositories, middle page", f"/ui/?page={last // 2}"),
        ("repositories, last page", f"/ui/?page={last}"),
        ("repositories by last push", "/ui/?sort=pushed"),
        ("repositories by size", "/ui/?sort=size&page=3"),
        ("repositories, search", "/ui/?q=repo-012"),
        (f"{many}, page 1", f"/ui/repositories/{BIG}"),
        (f"{many}, page 60", f"/ui/repositories/{BIG}?page=60"),
        (f"{many} by version", f"/ui/repositories/{BIG}?sort=version"),
        (f"{many} by push time", f"/ui/repositories/{BIG}?sort=pushed"),
        (f"{many}, search", f"/ui/repositories/{BIG}?q=v3."),
        (f"a manifest ({many})", f"/ui/repositories/{BIG}/-/manifests/build-00000"),
        ("storage, page 1", "/ui/storage"),
        ("storage by repository", "/ui/storage?sort=name&page=100"),
    ]


def measure(client: httpx.Client, url: str, rounds: int) -> tuple[float, float]:
    r = client.get(url)
    assert r.status_code == 200, (url, r.status_code, r.text[:300])
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        r = client.get(url)
        times.append((time.perf_counter() - started) * 1000)
        assert r.status_code == 200, url
    return statistics.median(times), max(times)


def login(client: httpx.Client) -> None:
    page = client.get("/ui/login").text
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found is not None
    r = client.post(
        "/ui/login",
        data={"csrf": found.group(1), "username": "admin", "password": PASSWORD},
    )
    assert r.status_code == 303, r.text


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repositories", type=int, default=10_000)
    parser.add_argument("--tags", type=int, default=5_000)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--data", type=Path, help="generate into (or reuse) this folder")
    args = parser.parse_args()

    base = Path(tempfile.mkdtemp(prefix="ui-bench-", dir=os.environ.get("BENCH_DIR")))
    try:
        data = args.data.resolve() if args.data else base / "data"
        if (data / "catalog").exists():
            print(f"reusing {data}", flush=True)
        else:
            print(f"generating in {data}", flush=True)
            config = Config.model_validate(
                {"storage": {"filesystem": {"rootdirectory": str(data)}}}
            )

            async def run() -> None:
                store = open_store(config)
                try:
                    await generate(store, args.repositories, args.tags)
                finally:
                    await store.close()

            asyncio.run(run())
        hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode()
        modes = {
            "auth off": {},
            "token auth, admin": {
                "auth": {
                    "mode": "token",
                    "users": {"admin": {"password_hash": hashed}},
                    "grants": [{"repositories": ["**"], "role": "admin", "users": ["admin"]}],
                    "token": {"key_file": str(base / "token.pem")},
                }
            },
        }
        results: dict[str, dict[str, tuple[float, float]]] = {}
        for mode, settings in modes.items():
            workdir = base / mode.replace(" ", "-").replace(",", "")
            server = RegistryServer(workdir, {**settings, "gc": {"enabled": False}})
            server.data_dir = data  # every mode reads the same data
            server.start()
            try:
                with server.client() as client:
                    if "auth" in settings:
                        login(client)
                    results[mode] = {
                        label: measure(client, url, args.rounds)
                        for label, url in pages(args.repositories, args.tags)
                    }
            finally:
                server.stop()
        print()
        print(f"{args.repositories:,} repositories, {args.tags:,} tags in one; filesystem driver")
        print(f"ms per page, median / slowest of {args.rounds} (after one warm-up)")
        print(f"{'page':32}" + "".join(f"{mode:>22}" for mode in results))
        slow = []
        for label, _ in pages(args.repositories, args.tags):
            row = f"{label:32}"
            for mode in results:
                median, worst = results[mode][label]
                row += f"{median:>13.1f} / {worst:>6.1f}"
                if median > BOUND_MS:
                    slow.append(f"{label} ({mode})")
            print(row)
        if slow:
            print(f"\nover {BOUND_MS:.0f} ms (median): {', '.join(slow)}")
            sys.exit(1)
        print(f"\nevery page under {BOUND_MS:.0f} ms (median)")
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
