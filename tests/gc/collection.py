"""Helpers of the gc tests: collect on a test server's storage (in this process, with
the storage's clock moved on, or as ``registry gc``), build images from chosen layers,
and pull images back completely, verifying every digest."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from typing import Any

import httpx

from registry.gc import Collector
from registry.store import RegistryStore, reference_budget
from storage_backends.factory import open_driver
from tests.clocks import ClockedDriver, VirtualClock
from tests.gc.storage import server_config
from tests.images import (
    OCI_CONFIG,
    OCI_INDEX,
    OCI_LAYER,
    OCI_MANIFEST,
    Image,
    descriptor,
    sha256,
)
from tests.server import RegistryServer

EXIT_BUSY = 75
# The collector's clock resolution is one second: anything younger is never "old".
PAST_RESOLUTION = 1.1


def gc_env(**settings: str) -> dict[str, str]:
    """The environment of a ``registry gc`` process: no inherited REGISTRY_*, then ours."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
    env.update(settings)
    return env


def run_gc_process(
    server: RegistryServer, *flags: str, **settings: str
) -> subprocess.CompletedProcess[str]:
    """``registry gc`` on ``server``'s storage; ``settings`` are REGISTRY_* variables."""
    cmd = [
        sys.executable,
        "-m",
        "registry",
        "gc",
        "--config",
        str(server.config_file),
        "--data-dir",
        str(server.data_dir),
        *flags,
    ]
    return subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        timeout=120,
        env=gc_env(**settings),
        cwd=server.workdir,
    )


def run_gc(
    server: RegistryServer,
    *,
    dry_run: bool = False,
    moved: float = PAST_RESOLUTION,
    **settings: str,
) -> dict[str, Any]:
    """Collect on ``server``'s storage in this process, with the server's configuration
    and the REGISTRY_* ``settings`` (grace period 0 unless given), and return the report
    as ``registry gc --json`` prints it. The storage's clock is moved ``moved`` seconds
    on first, so that everything just written is older than its resolution, and the
    collector's own waits (the lease's settle time) pass in virtual time: no test
    sleeps for either."""
    settings.setdefault("REGISTRY_GC_GRACE_PERIOD", "0s")
    config = server_config(server, settings)
    clock = VirtualClock(start=time.time() + moved)

    async def collect() -> dict[str, Any]:
        store = RegistryStore(
            ClockedDriver(open_driver(config.storage), clock),
            reference_budget=reference_budget(config.gc.grace_period),
            clock=clock,
        )
        try:
            collector = Collector(store, config.gc, upload_expiry=config.uploads.expiry)
            report = await collector.run(dry_run=dry_run)
        finally:
            await store.close()
        # As the command prints it: JSON, so that tests read what operators read.
        loaded: dict[str, Any] = json.loads(json.dumps(report.as_dict()))
        return loaded

    return asyncio.run(collect())


def make_image(
    layers: list[bytes], *, subject: Image | None = None, artifact_type: str | None = None
) -> Image:
    """An OCI image manifest with exactly ``layers`` and a fresh config."""
    config = json.dumps({"architecture": "amd64", "os": "linux", "nonce": os.urandom(8).hex()})
    config_bytes = config.encode()
    doc: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor(OCI_CONFIG, config_bytes),
        "layers": [descriptor(OCI_LAYER, b) for b in layers],
    }
    if subject is not None:
        doc["subject"] = descriptor(subject.media_type, subject.manifest)
    if artifact_type is not None:
        doc["artifactType"] = artifact_type
    blobs = {sha256(b): b for b in [config_bytes, *layers]}
    return Image(json.dumps(doc).encode(), OCI_MANIFEST, blobs)


def make_index(children: list[Image]) -> Image:
    doc = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [descriptor(c.media_type, c.manifest) for c in children],
    }
    return Image(json.dumps(doc).encode(), OCI_INDEX, {}, children)


def pull_verified(client: httpx.Client, repo: str, reference: str) -> list[str]:
    """Pull a manifest and, recursively, everything it references; assert every digest.
    Returns the digests pulled."""
    r = client.get(
        f"/v2/{repo}/manifests/{reference}",
        headers={
            "Accept": f"{OCI_MANIFEST}, {OCI_INDEX}, application/vnd.docker."
            "distribution.manifest.v2+json, application/vnd.docker.distribution."
            "manifest.list.v2+json"
        },
    )
    assert r.status_code == 200, f"{repo}:{reference}: {r.status_code} {r.text}"
    digest = r.headers["Docker-Content-Digest"]
    assert sha256(r.content) == digest, f"{repo}:{reference}: manifest bytes do not match"
    if ":" in reference:
        assert digest == reference
    doc = r.json()
    pulled = [digest]
    for child in doc.get("manifests", []):
        pulled += pull_verified(client, repo, child["digest"])
    blobs = [doc["config"], *doc.get("layers", [])] if "config" in doc else []
    for blob in blobs:
        if blob.get("urls"):
            continue
        b = client.get(f"/v2/{repo}/blobs/{blob['digest']}")
        assert b.status_code == 200, f"{repo}: blob {blob['digest']}: {b.status_code}"
        assert sha256(b.content) == blob["digest"], f"{repo}: blob {blob['digest']} corrupt"
        assert len(b.content) == blob["size"]
        pulled.append(blob["digest"])
    return pulled


def blob_status(client: httpx.Client, repo: str, digest: str) -> int:
    return client.head(f"/v2/{repo}/blobs/{digest}").status_code


def manifest_status(client: httpx.Client, repo: str, reference: str) -> int:
    return client.head(
        f"/v2/{repo}/manifests/{reference}", headers={"Accept": f"{OCI_MANIFEST}, {OCI_INDEX}"}
    ).status_code
