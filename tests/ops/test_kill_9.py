"""kill -9 during pushes, against a real `registry serve --workers 2` on each storage
backend: clients push images (blobs whole and in chunks, then manifests by tag) while
every process of the server is killed at a random moment, five times, each followed by a
restart. Then every push that was acknowledged (201) must pull whole, every push that was
not must be absent or whole (never other bytes), and no request may have had a 5xx."""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.conftest import start_server
from tests.server import RegistryServer

KiB = 1024
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
CLIENTS = 6
KILLS = 5


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass
class Record:
    """What the clients pushed, and what the server acknowledged."""

    blobs: dict[str, tuple[str, bytes]] = field(default_factory=dict)  # tried: repository, bytes
    acked_blobs: set[str] = field(default_factory=set)
    manifests: dict[tuple[str, str], bytes] = field(default_factory=dict)  # (repo, tag)
    acked_manifests: set[tuple[str, str]] = field(default_factory=set)
    server_errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answered(self, r: httpx.Response, expected: int) -> bool:
        if r.status_code >= 500:
            with self.lock:
                self.server_errors.append(f"{r.request.method} {r.request.url.path}: {r.text}")
        return r.status_code == expected


def push_blob(c: httpx.Client, repo: str, data: bytes, rng: random.Random, rec: Record) -> bool:
    digest = digest_of(data)
    with rec.lock:
        rec.blobs[digest] = (repo, data)
    if rng.random() < 0.5:
        r = c.post(f"/v2/{repo}/blobs/uploads/", params={"digest": digest}, content=data)
        acked = rec.answered(r, 201)
    else:
        r = c.post(f"/v2/{repo}/blobs/uploads/")
        if not rec.answered(r, 202):
            return False
        location, half = r.headers["location"], len(data) // 2
        for start, piece in ((0, data[:half]), (half, data[half:])):
            headers = {
                "Content-Range": f"{start}-{start + len(piece) - 1}",
                "Content-Type": "application/octet-stream",
            }
            r = c.patch(location, content=piece, headers=headers)
            if not rec.answered(r, 202):
                return False
            location = r.headers["location"]
        acked = rec.answered(c.put(location, params={"digest": digest}), 201)
    if acked:
        with rec.lock:
            rec.acked_blobs.add(digest)
    return acked


def push_images(url: str, seed: int, stop: threading.Event, rec: Record) -> None:
    rng = random.Random(seed)
    with httpx.Client(base_url=url, timeout=30) as c:
        while not stop.is_set():
            repo = f"crash/r{rng.randrange(4)}"
            layer = rng.randbytes(rng.choice([700, 300 * KiB, 2600 * KiB]))
            config = json.dumps({"os": "linux", "n": rng.random()}).encode()
            try:
                if not (
                    push_blob(c, repo, config, rng, rec) and push_blob(c, repo, layer, rng, rec)
                ):
                    continue
                doc = {
                    "schemaVersion": 2,
                    "mediaType": OCI_MANIFEST,
                    "config": {
                        "mediaType": "application/vnd.oci.image.config.v1+json",
                        "digest": digest_of(config),
                        "size": len(config),
                    },
                    "layers": [
                        {
                            "mediaType": "application/vnd.oci.image.layer.v1.tar",
                            "digest": digest_of(layer),
                            "size": len(layer),
                        }
                    ],
                }
                body = json.dumps(doc).encode()
                tag = f"t{seed}-{rng.randrange(1 << 30)}"
                with rec.lock:
                    rec.manifests[(repo, tag)] = body
                r = c.put(
                    f"/v2/{repo}/manifests/{tag}",
                    content=body,
                    headers={"Content-Type": OCI_MANIFEST},
                )
                if rec.answered(r, 201):
                    with rec.lock:
                        rec.acked_manifests.add((repo, tag))
            except httpx.TransportError:
                time.sleep(0.05)  # the server is down: try again until it is back


def kill_9_everything(server: RegistryServer) -> None:
    """SIGKILL for the supervisor and every worker, none of them told first (the
    supervisor is stopped so that it cannot start another worker meanwhile)."""
    assert server.proc is not None
    supervisor = server.proc.pid
    os.kill(supervisor, signal.SIGSTOP)
    children = subprocess.run(["pgrep", "-P", str(supervisor)], capture_output=True, text=True)
    for pid in children.stdout.split():
        os.kill(int(pid), signal.SIGKILL)
    os.kill(supervisor, signal.SIGKILL)
    server.proc.wait()
    server.proc = None


@pytest.mark.parametrize("backend", ["filesystem", pytest.param("s3", marks=pytest.mark.s3)])
def test_kill_9_during_pushes_loses_nothing_acknowledged(
    request: pytest.FixtureRequest, tmp_path: Path, backend: str
) -> None:
    server = start_server(request, tmp_path, backend, workers=2)
    rec = Record()
    rng = random.Random(9)
    for round_ in range(KILLS):
        stop = threading.Event()
        clients = [
            threading.Thread(target=push_images, args=(server.url, round_ * 100 + i, stop, rec))
            for i in range(CLIENTS)
        ]
        for t in clients:
            t.start()
        time.sleep(rng.uniform(1.0, 2.5))
        kill_9_everything(server)
        stop.set()
        for t in clients:
            t.join(60)
        server.start()

    assert rec.server_errors == []
    assert len(rec.acked_manifests) >= KILLS, "too few pushes were acknowledged to tell"
    with server.client() as c:
        for digest, (repo, data) in rec.blobs.items():
            r = c.get(f"/v2/{repo}/blobs/{digest}")
            if digest in rec.acked_blobs:
                assert r.status_code == 200, f"{digest} was acknowledged and is gone"
            assert r.status_code in (200, 404)
            if r.status_code == 200:
                assert r.content == data, f"{digest}: other bytes served"
        for (repo, tag), body in rec.manifests.items():
            r = c.get(f"/v2/{repo}/manifests/{tag}", headers={"Accept": OCI_MANIFEST})
            if (repo, tag) in rec.acked_manifests:
                assert r.status_code == 200, f"{repo}:{tag} was acknowledged and is gone"
            assert r.status_code in (200, 404)
            if r.status_code == 200:
                assert r.content == body and r.headers["docker-content-digest"] == digest_of(body)
    assert "Traceback" not in server.log()
