"""How the collector, the listings, pushes and pulls grow with the registry.

For each size (manifests across ``--repositories`` repositories, layers shared by
base image and team), on the filesystem or on a throwaway Ceph RGW (``--backend s3``):

1. generate the registry through the store (not HTTP): each manifest in its
   repository, tagged ``v<n>``, with a unique config and layer over three layers of
   one of 20 base images and one of its team's 5 layers; plus one repository with
   5,000 tags;
2. ``registry gc`` five times, each a fresh process, timed, with its peak RSS
   (``wait4``): the first mark (full, every manifest read), nothing changed, after 1% of
   the manifests were replaced (a new image pushed over an existing tag: the old one
   becomes garbage), nothing changed again, and ``--full`` (a full mark with the
   repository records at hand). Grace period 0, so the 1% run deletes what the change
   freed;
3. ``registry serve`` (one worker): ``_catalog`` pages (n=100: first, middle, last),
   tag pages of the 5,000-tag repository (n=100, first and middle), a small push
   (config and layer upload, manifest PUT) and a pull (manifest and blobs), medians;
4. with ``--distribution`` (filesystem only): the same content in CNCF distribution's
   layout (blob data hard-linked, links written), and ``docker-registry
   garbage-collect --dry-run`` with and without ``--delete-untagged``, timed, peak RSS.

Usage: python benchmarks/gc_scale.py [--sizes 1000,10000,100000] [--backend filesystem|s3]
       [--repositories 2000] [--distribution] [--json results.json] [--keep]
       [--reuse FOLDER]   (a folder --keep left: measure again without generating; the
                          first collection is then a forced full mark)
       [--seed FOLDER]    (with --backend s3: a filesystem folder --keep left, copied
                          into the run's RGW with rclone, then measured as --reuse: a
                          registry of 100,000 manifests in minutes instead of hours)
(BENCH_DIR picks the folder for the data; the machine should be otherwise idle.)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from registry.config import load_config
from registry.reference import parse_digest
from registry.store import RegistryStore, open_store
from tests.images import OCI_CONFIG, OCI_LAYER, OCI_MANIFEST, descriptor, image, push_image, sha256
from tests.server import free_port

if TYPE_CHECKING:
    from tests.rgw import RgwServer

BASES, BASE_LAYERS, TEAM_LAYERS = 20, 3, 5
TAGGED_REPOSITORY, TAG_COUNT = "bench/tags-5000", 5000
CONCURRENCY = 32
PAGE = 100
SAMPLES = 25
RECORD_COVER = 9.0  # s: the generator's change records are older than their cover then


# ----------------------------------------------------------------------------- content


def repositories(count: int) -> list[str]:
    teams = max(count // 40, 1)
    return [f"team-{i % teams:02d}/app-{i // teams:04d}" for i in range(count)]


def blob(seed: str, size: int) -> bytes:
    return random.Random(seed).randbytes(size)


def shared_layers() -> tuple[list[list[bytes]], dict[str, list[bytes]]]:
    bases = [[blob(f"base-{b}-{i}", 2048) for i in range(BASE_LAYERS)] for b in range(BASES)]
    return bases, {}


def team_layers(team: str, cache: dict[str, list[bytes]]) -> list[bytes]:
    if team not in cache:
        cache[team] = [blob(f"team-{team}-{i}", 1024) for i in range(TEAM_LAYERS)]
    return cache[team]


def manifest_for(
    number: int, repo: str, generation: int, bases: list[list[bytes]], teams: dict[str, list[bytes]]
) -> tuple[bytes, dict[str, bytes]]:
    """Manifest ``number`` (in ``repo``), and its blobs; ``generation`` > 0 replaces it."""
    config = json.dumps(
        {"architecture": "amd64", "os": "linux", "n": number, "generation": generation}
    ).encode()
    own = blob(f"own-{number}-{generation}", 512 + number % 1024)
    layers = [
        *bases[number % BASES],
        team_layers(repo.split("/")[0], teams)[number % TEAM_LAYERS],
        own,
    ]
    doc = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor(OCI_CONFIG, config),
        "layers": [descriptor(OCI_LAYER, layer) for layer in layers],
    }
    return json.dumps(doc).encode(), {sha256(b): b for b in [config, *layers]}


async def put_image(
    store: RegistryStore, repo: str, tag: str, body: bytes, blobs: dict[str, bytes]
) -> None:
    for digest, data in blobs.items():
        d = parse_digest(digest)
        await store.blobs.put_small(d, data)
        await store.blobs.link(repo, d)
    await store.manifests.put(repo, tag, body, OCI_MANIFEST)


async def bounded(jobs: Iterator[Any], concurrency: int = CONCURRENCY) -> None:
    async def worker() -> None:
        for job in jobs:
            await job

    await asyncio.gather(*(worker() for _ in range(concurrency)))


async def generate(store: RegistryStore, size: int, repos: list[str]) -> None:
    bases, teams = shared_layers()

    body, blobs = manifest_for(size, TAGGED_REPOSITORY, 0, bases, teams)
    await put_image(store, TAGGED_REPOSITORY, "t00000", body, blobs)

    def jobs() -> Iterator[Any]:
        for n in range(size):
            repo = repos[n % len(repos)]
            manifest, needed = manifest_for(n, repo, 0, bases, teams)
            yield put_image(store, repo, f"v{n // len(repos)}", manifest, needed)
        for t in range(1, TAG_COUNT):
            yield put_image(store, TAGGED_REPOSITORY, f"t{t:05d}", body, {})

    await bounded(jobs())


async def change(
    store: RegistryStore, size: int, repos: list[str], fraction: float, generation: int
) -> int:
    """Replace ``fraction`` of the manifests (random ones, over their tags)."""
    bases, teams = shared_layers()
    picked = random.Random(generation).sample(range(size), max(1, int(size * fraction)))

    def jobs() -> Iterator[Any]:
        for n in picked:
            repo = repos[n % len(repos)]
            body, blobs = manifest_for(n, repo, generation, bases, teams)
            yield put_image(store, repo, f"v{n // len(repos)}", body, blobs)

    await bounded(jobs())
    return len(picked)


# ----------------------------------------------------------------------------- processes


def config_doc(storage: dict[str, Any]) -> dict[str, Any]:
    return {
        "storage": storage,
        "gc": {"enabled": False, "grace_period": "0s", "full_mark_interval": "30d"},
        "log": {"level": "warning", "access_log": False},
    }


def run_process_rss(
    cmd: list[str], env: dict[str, str] | None = None, *, output: bool = True
) -> tuple[float, float, str]:
    """Run ``cmd``: wall time, its peak RSS (MiB) and its standard output (or none:
    ``output=False`` sends it to /dev/null). The peak is GNU time's (``/usr/bin/time -f
    %M``): ``wait4`` on a child of this process would count this process's own pages,
    which a child keeps as its peak across exec."""
    with tempfile.NamedTemporaryFile("r", suffix=".rss") as rss:
        started = time.monotonic()
        done = subprocess.run(
            ["/usr/bin/time", "-f", "%M", "-o", rss.name, *cmd],
            stdout=subprocess.PIPE if output else subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=env,
            check=False,
        )
        seconds = time.monotonic() - started
        if done.returncode != 0:
            raise RuntimeError(f"{cmd[:4]} failed: {done.stderr.decode()[-3000:]}")
        peak = int(rss.read().split()[-1]) / 1024
    return seconds, peak, done.stdout.decode() if output else ""


def gc_process(config_file: Path, *flags: str) -> dict[str, Any]:
    """``registry gc`` in a process of its own: wall time, peak RSS, what its report says."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
    cmd = [sys.executable, "-m", "registry", "gc", "--config", str(config_file), "--json", *flags]
    seconds, peak, out = run_process_rss(cmd, env)
    report = json.loads(out)
    return {
        "seconds": round(seconds, 2),
        "peak_rss_mib": round(peak, 1),
        "full": report["full_mark"],
        "marked": report["repositories_marked"],
        "manifests_deleted": len(report["manifests_deleted"]),
        "blobs_deleted": len(report["blobs_deleted"]),
    }


@contextlib.contextmanager
def serving(config_file: Path) -> Iterator[str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "registry",
            "serve",
            "--config",
            str(config_file),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(400):
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{url}/v2/", timeout=1).status_code == 200:
                    break
            time.sleep(0.05)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)


def median_ms(fn: Any, samples: int = SAMPLES) -> float:
    times = []
    for _ in range(samples):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return round(statistics.median(times) * 1000, 2)


def http_figures(url: str, repos: list[str]) -> dict[str, float]:
    names = sorted(repos)
    with httpx.Client(base_url=url, timeout=60) as client:

        def get(path: str, **params: str) -> None:
            r = client.get(path, params=params)
            assert r.status_code == 200, r.text

        figures = {
            "catalog_first_ms": median_ms(lambda: get("/v2/_catalog", n=str(PAGE))),
            "catalog_middle_ms": median_ms(
                lambda: get("/v2/_catalog", n=str(PAGE), last=names[len(names) // 2])
            ),
            "catalog_last_ms": median_ms(
                lambda: get("/v2/_catalog", n=str(PAGE), last=names[-PAGE // 2])
            ),
            "tags_first_ms": median_ms(
                lambda: get(f"/v2/{TAGGED_REPOSITORY}/tags/list", n=str(PAGE))
            ),
            "tags_middle_ms": median_ms(
                lambda: get(f"/v2/{TAGGED_REPOSITORY}/tags/list", n=str(PAGE), last="t02500")
            ),
        }
        counter = iter(range(10**9))

        def push() -> None:
            push_image(client, "bench/pushed", image(layers=1), f"p{next(counter)}")

        figures["push_ms"] = median_ms(push)
        pulled = names[len(names) // 3]

        def pull() -> None:
            accept = {"Accept": OCI_MANIFEST}
            r = client.get(f"/v2/{pulled}/manifests/v0", headers=accept)
            assert r.status_code == 200, r.text
            for d in [r.json()["config"], *r.json()["layers"]]:
                assert client.get(f"/v2/{pulled}/blobs/{d['digest']}").status_code == 200

        figures["pull_ms"] = median_ms(pull)
    return figures


# ----------------------------------------------------------------------------- distribution


def distribution_layout(ours: Path, theirs: Path) -> None:
    """Our filesystem store in distribution's layout: blob data hard-linked, links,
    revisions and tags written as distribution writes them."""
    v2 = theirs / "docker" / "registry" / "v2"
    for data in (ours / "blobs").glob("*/*/*/data"):
        target = v2 / "blobs" / data.relative_to(ours / "blobs")
        target.parent.mkdir(parents=True, exist_ok=True)
        os.link(data, target)
    for marker in (ours / "catalog").rglob("*!"):
        name = str(marker.relative_to(ours / "catalog"))[:-1]
        repo, out = ours / "repositories" / name, v2 / "repositories" / name
        for kind in ("_layers", "_manifests/revisions"):
            for link in (repo / kind).glob("*/*"):
                target = out / kind / link.parent.name / link.name / "link"
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(f"{link.parent.name}:{link.name}")
        for tag in (repo / "_manifests" / "tags").glob("*"):
            digest = tag.read_text()
            algorithm, hexa = digest.split(":")
            for link in (
                out / "_manifests/tags" / tag.name / "current/link",
                out / "_manifests/tags" / tag.name / "index" / algorithm / hexa / "link",
            ):
                link.parent.mkdir(parents=True, exist_ok=True)
                link.write_text(digest)


def distribution_gc(root: Path, workdir: Path) -> dict[str, Any]:
    config = workdir / "distribution.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "version": 0.1,
                "log": {"level": "error"},
                "storage": {
                    "filesystem": {"rootdirectory": str(root)},
                    "delete": {"enabled": True},
                },
                "http": {"addr": "127.0.0.1:0"},
            }
        )
    )
    out: dict[str, Any] = {}
    for label, flags in (("dry_run", []), ("dry_run_delete_untagged", ["--delete-untagged"])):
        cmd = ["docker-registry", "garbage-collect", "--dry-run", *flags, str(config)]
        seconds, rss, _ = run_process_rss(cmd, output=False)
        out[label] = {"seconds": round(seconds, 2), "peak_rss_mib": round(rss, 1)}
    return out


# ----------------------------------------------------------------------------- one size


@contextlib.contextmanager
def backend_storage(
    backend: str, workdir: Path, size: int, seed: Path | None = None
) -> Iterator[dict[str, Any]]:
    if backend == "filesystem":
        yield {"driver": "filesystem", "filesystem": {"rootdirectory": str(workdir / "data")}}
        return
    from tests.rgw import running_rgw

    with running_rgw() as rgw:
        s3 = rgw.s3_config(prefix=f"scale-{size}")
        if seed is not None:
            copy_into_bucket(seed / "data", rgw, f"{rgw.bucket}/{s3.prefix}")
        yield {"driver": "s3", "s3": {k: v for k, v in s3.model_dump().items() if v is not None}}


def copy_into_bucket(data: Path, rgw: RgwServer, destination: str) -> None:
    """Every file under ``data`` as an object at the same path under ``destination``
    (both drivers name objects by the same layout), by rclone: generating through
    the store costs 39 storage requests a manifest, copying one per file."""
    # the AWS SDK in rclone refuses AWS_CA_BUNDLE with its own HTTP transport; the RGW of
    # the run speaks plain HTTP
    env = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}
    env.update(
        RCLONE_CONFIG_RGW_TYPE="s3",
        RCLONE_CONFIG_RGW_PROVIDER="Ceph",
        RCLONE_CONFIG_RGW_ENDPOINT=rgw.endpoint_url,
        RCLONE_CONFIG_RGW_ACCESS_KEY_ID=rgw.access_key,
        RCLONE_CONFIG_RGW_SECRET_ACCESS_KEY=rgw.secret_key,
    )
    started = time.monotonic()
    subprocess.run(
        [
            "rclone", "copy", str(data), f"rgw:{destination}",
            "--transfers", "64", "--checkers", "64", "--no-traverse", "--no-check-dest",
            "--s3-no-check-bucket", "--s3-disable-checksum", "--no-update-modtime",
        ],
        env=env,
        check=True,
    )  # fmt: skip
    print(f"seeded {destination} in {time.monotonic() - started:.0f}s", flush=True)


def measure(
    size: int,
    backend: str,
    repos_count: int,
    dist: bool,
    root: Path,
    *,
    keep: bool = False,
    reuse: Path | None = None,
    seed: Path | None = None,
) -> dict[str, Any]:
    workdir = reuse or Path(tempfile.mkdtemp(prefix=f"gc-scale-{size}-", dir=root))
    result: dict[str, Any] = {"size": size, "backend": backend}
    generated = reuse is None and seed is None
    try:
        with backend_storage(backend, workdir, size, seed) as storage:
            config_file = workdir / "config.yml"
            if reuse is None:  # a folder to reuse has its configuration
                config_file.write_text(yaml.safe_dump(config_doc(storage)))
            # The pushes of the generator get a reference budget of 5 s (their change
            # records cover 7.5 s), which 32 pushes in flight need; collections run
            # with a grace period of 0.
            config = load_config(config_file, environ={"REGISTRY_GC_GRACE_PERIOD": "10s"})
            repos = repositories(repos_count)

            async def generate_all() -> None:
                store = open_store(config)
                try:
                    await generate(store, size, repos)
                finally:
                    await store.close()

            result["repositories"] = min(size, repos_count) + 1
            if generated:
                started = time.monotonic()
                asyncio.run(generate_all())
                result["generate_seconds"] = round(time.monotonic() - started, 1)
                print(f"[{size}/{backend}] generated in {result['generate_seconds']}s", flush=True)
                time.sleep(RECORD_COVER)  # the first mark removes every change record
            result["gc_first_full"] = gc_process(config_file, *([] if generated else ["--full"]))
            result["gc_unchanged"] = gc_process(config_file)
            print(
                f"[{size}/{backend}] gc: {result['gc_first_full']} {result['gc_unchanged']}",
                flush=True,
            )

            async def change_one_percent() -> int:
                store = open_store(config)
                try:
                    return await change(store, size, repos, 0.01, int(time.time()))
                finally:
                    await store.close()

            result["changed_manifests"] = asyncio.run(change_one_percent())
            time.sleep(RECORD_COVER)
            result["gc_one_percent_changed"] = gc_process(config_file)
            result["gc_unchanged_again"] = gc_process(config_file)
            result["gc_full_with_state"] = gc_process(config_file, "--full")
            print(
                f"[{size}/{backend}] gc after change: {result['gc_one_percent_changed']} "
                f"{result['gc_unchanged_again']}",
                flush=True,
            )
            with serving(config_file) as url:
                result["http"] = http_figures(url, [*repos[:size], TAGGED_REPOSITORY])
            print(f"[{size}/{backend}] http: {result['http']}", flush=True)
            if dist and backend == "filesystem":
                theirs = workdir / "distribution"
                shutil.rmtree(theirs, ignore_errors=True)
                distribution_layout(workdir / "data", theirs)
                result["distribution"] = distribution_gc(theirs, workdir)
                print(f"[{size}/{backend}] distribution: {result['distribution']}", flush=True)
    finally:
        if keep or reuse:
            print(f"[{size}/{backend}] data kept in {workdir}", flush=True)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--backend", choices=("filesystem", "s3"), default="filesystem")
    parser.add_argument("--repositories", type=int, default=2000)
    parser.add_argument("--distribution", action="store_true")
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--keep", action="store_true", help="keep the generated data")
    parser.add_argument(
        "--reuse", type=Path, help="a folder --keep left (filesystem, one size): no generation"
    )
    parser.add_argument(
        "--seed", type=Path, help="with --backend s3: a filesystem folder --keep left, copied"
    )
    args = parser.parse_args()
    if args.seed and args.backend != "s3":
        parser.error("--seed copies a filesystem registry into an RGW: it needs --backend s3")
    root = Path(os.environ.get("BENCH_DIR") or tempfile.gettempdir())
    results = [
        measure(
            int(s),
            args.backend,
            args.repositories,
            args.distribution,
            root,
            keep=args.keep,
            reuse=args.reuse,
            seed=args.seed,
        )
        for s in args.sizes.split(",")
    ]
    print(json.dumps(results, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
