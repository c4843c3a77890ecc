"""Online collection under concurrent pushes loses nothing.

Client threads push (reusing old layers the way clients do: HEAD, skip the upload if the
blob is there, mount it from another repository otherwise), re-tag, delete tags and
manifests, push indexes and signatures, and pull what they believe is tagged -- while
the server collects every fraction of a second with a two-second grace period. The only
failures allowed are the clean ones: MANIFEST_BLOB_UNKNOWN for a manifest whose blobs a
collection took first (the client pushes them again) and 503 for an upload racing a
deletion. Afterwards every tag pulls completely with verified digests, a restarted
server still serves them after one more collection, and nothing unreachable remains.
"""

from __future__ import annotations

import os
import random
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.conftest import BACKENDS, start_server
from tests.gc.collection import EXIT_BUSY, make_image, make_index, pull_verified, run_gc_process
from tests.gc.storage import account, with_storage
from tests.images import Image
from tests.server import RegistryServer

GRACE = 2.0
DURATION = {"filesystem": 20.0, "s3": 20.0}
# Operations the clients must at least manage (an S3 push on the test RGW takes a second).
MIN_OPERATIONS = {"filesystem": 300, "s3": 40}
WORKERS = 6
TAGS = ("t0", "t1", "t2", "t3")
SIGNATURE = "application/vnd.example.signature"


@dataclass
class Pool:
    """Blobs pushed so far (many of them garbage by now), shared by the workers."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    blobs: list[tuple[str, str, bytes]] = field(default_factory=list)  # (repo, digest, data)

    def add(self, repo: str, img: Image) -> None:
        with self.lock:
            self.blobs += [(repo, d, b) for d, b in img.blobs.items()]

    def pick(self, rng: random.Random) -> tuple[str, str, bytes] | None:
        with self.lock:
            return rng.choice(self.blobs) if self.blobs else None


class Worker(threading.Thread):
    def __init__(self, index: int, server: RegistryServer, pool: Pool, until: float) -> None:
        super().__init__(name=f"stress-{index}", daemon=True)
        self.repo = f"stress/w{index}"
        self.server, self.pool, self.until = server, pool, until
        self.rng = random.Random(index)
        self.expected: dict[str, str] = {}  # tag -> manifest digest
        self.signatures: dict[str, str] = {}  # referrer digest -> subject digest
        self.ops = 0
        self.clean_failures = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with self.server.client(timeout=60) as client:
                self.client = client
                while time.monotonic() < self.until:
                    self.step()
                    self.ops += 1
        except BaseException as exc:  # reported by the test
            self.error = exc

    def step(self) -> None:
        roll = self.rng.random()
        tag = self.rng.choice(TAGS)
        if roll < 0.35:
            img = make_image([self.layer() for _ in range(self.rng.randint(1, 3))])
            if self.push(img, tag):
                self.expected[tag] = img.digest
        elif roll < 0.45:
            img = make_index([make_image([self.layer()]), make_image([self.layer()])])
            if self.push(img, tag):
                self.expected[tag] = img.digest
        elif roll < 0.52 and self.expected:
            subject = self.rng.choice(sorted(self.expected.values()))
            body = self.client.get(
                f"/v2/{self.repo}/manifests/{subject}",
                headers={
                    "Accept": "application/vnd.oci.image.manifest.v1+json, "
                    "application/vnd.oci.image.index.v1+json"
                },
            )
            if body.status_code == 200:
                target = Image(body.content, body.headers["Content-Type"])
                sig = make_image([os.urandom(64)], subject=target, artifact_type=SIGNATURE)
                if self.push(sig, None):
                    self.signatures[sig.digest] = subject
        elif roll < 0.65 and self.expected:
            source = self.rng.choice(sorted(self.expected))
            r = self.client.get(
                f"/v2/{self.repo}/manifests/{source}",
                headers={
                    "Accept": "application/vnd.oci.image.manifest.v1+json, "
                    "application/vnd.oci.image.index.v1+json"
                },
            )
            assert r.status_code == 200, f"{self.repo}:{source} vanished: {r.text}"
            put = self.client.put(
                f"/v2/{self.repo}/manifests/{tag}",
                content=r.content,
                headers={"Content-Type": r.headers["Content-Type"]},
            )
            # What a tag reaches is never collected, so re-tagging it always works.
            assert put.status_code == 201, put.text
            self.expected[tag] = self.expected[source]
        elif roll < 0.78 and tag in self.expected:
            r = self.client.delete(f"/v2/{self.repo}/manifests/{tag}")
            assert r.status_code == 202, r.text
            del self.expected[tag]
        elif roll < 0.82 and tag in self.expected:
            digest = self.expected[tag]
            r = self.client.delete(f"/v2/{self.repo}/manifests/{digest}")
            assert r.status_code == 202, r.text
            self.expected = {t: d for t, d in self.expected.items() if d != digest}
        elif self.expected:
            tag = self.rng.choice(sorted(self.expected))
            pulled = pull_verified(self.client, self.repo, tag)
            assert pulled[0] == self.expected[tag]

    def layer(self) -> bytes:
        """A new layer, or (half the time) one pushed before -- often garbage by now."""
        if self.rng.random() < 0.5:
            picked = self.pool.pick(self.rng)
            if picked is not None:
                return picked[2]
        return os.urandom(self.rng.randint(500, 6000))

    def push(self, img: Image, tag: str | None) -> bool:
        for attempt in range(3):
            if all(self.push(child, None) for child in img.children) and all(
                self.ensure_blob(d, b, fresh=attempt > 0) for d, b in img.blobs.items()
            ):
                r = self.client.put(
                    f"/v2/{self.repo}/manifests/{tag or img.digest}",
                    content=img.manifest,
                    headers={"Content-Type": img.media_type},
                )
                if r.status_code == 201:
                    self.pool.add(self.repo, img)
                    return True
                assert r.status_code == 400, r.text
                assert r.json()["errors"][0]["code"] == "MANIFEST_BLOB_UNKNOWN", r.text
            self.clean_failures += 1
        return False

    def ensure_blob(self, digest: str, data: bytes, fresh: bool) -> bool:
        if not fresh:
            if self.client.head(f"/v2/{self.repo}/blobs/{digest}").status_code == 200:
                return True  # as clients do: already there, skip the upload
            with self.pool.lock:
                sources = [r for r, d, _ in self.pool.blobs if d == digest and r != self.repo]
            if sources:
                r = self.client.post(
                    f"/v2/{self.repo}/blobs/uploads/",
                    params={"mount": digest, "from": sources[-1]},
                )
                if r.status_code == 201:
                    return True
                assert r.status_code == 202, r.text
                self.client.delete(r.headers["Location"])
        r = self.client.post(
            f"/v2/{self.repo}/blobs/uploads/",
            params={"digest": digest},
            content=data,
            headers={"Content-Type": "application/octet-stream"},
        )
        if r.status_code == 503:  # raced a deletion of this very blob: clean, retry later
            return False
        assert r.status_code == 201, r.text
        return True


def check_tags(server: RegistryServer, workers: list[Worker]) -> None:
    """Every tag a worker expects is listed and pulls whole; so do the signatures of
    every tagged image. One thread per worker's repository."""

    def check(w: Worker) -> None:
        with server.client() as client:
            listed = client.get(f"/v2/{w.repo}/tags/list").json().get("tags") or []
            assert sorted(listed) == sorted(w.expected), w.repo
            for tag, digest in w.expected.items():
                assert pull_verified(client, w.repo, tag)[0] == digest
            tagged = set(w.expected.values())
            for signature, subject in w.signatures.items():
                if subject in tagged:
                    pull_verified(client, w.repo, signature)
                    referrers = client.get(f"/v2/{w.repo}/referrers/{subject}").json()
                    assert signature in {m["digest"] for m in referrers["manifests"]}

    with ThreadPoolExecutor(len(workers)) as pool:
        for done in [pool.submit(check, w) for w in workers]:
            done.result()


@pytest.mark.slow
@pytest.mark.timeout(240)
@pytest.mark.parametrize("backend", BACKENDS)
def test_online_collection_under_concurrent_pushes_loses_nothing(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, backend: str
) -> None:
    config: dict[str, Any] = {
        "gc": {"enabled": True, "interval": "0.2s", "grace_period": f"{GRACE}s"},
        "log": {"access_log": False},
    }
    server = start_server(request, tmp_path_factory.mktemp("stress"), backend, config)
    pool = Pool()
    until = time.monotonic() + DURATION[backend]
    workers = [Worker(i, server, pool, until) for i in range(WORKERS)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=DURATION[backend] + 120)
    for w in workers:
        assert not w.is_alive(), f"{w.name} hangs"
        if w.error is not None:
            raise AssertionError(f"{w.name} after {w.ops} operations") from w.error
    log = server.log()
    deleted = [int(n) for n in re.findall(r"gc run finished .*: deleted (\d+) blobs? ", log)]
    spared = [int(n) for n in re.findall(r"gc run finished .*; (\d+) spared ", log)]
    print(  # shown with -s: how hard the run pressed on the collector
        f"{backend}: {sum(w.ops for w in workers)} operations, "
        f"{sum(w.clean_failures for w in workers)} clean push failures, "
        f"{len(deleted)} collections, {sum(deleted)} blobs deleted, {sum(spared)} spared"
    )
    assert sum(w.ops for w in workers) >= MIN_OPERATIONS[backend]
    check_tags(server, workers)
    assert len(deleted) >= 3, log[-3000:]
    assert sum(deleted) > 0, "the collector never deleted anything while clients pushed"

    # One more collection once everything is older than the grace period: afterwards
    # nothing unreachable remains, and everything tagged is still whole.
    server.stop()
    time.sleep(GRACE + 1.5)
    deadline = time.monotonic() + 30
    while True:
        done = run_gc_process(server, REGISTRY_GC_GRACE_PERIOD=f"{GRACE}s")
        if done.returncode != EXIT_BUSY or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert done.returncode == 0, done.stderr
    found = with_storage(server, account)
    assert found.broken == []
    assert found.unreachable == []
    assert found.tags == {f"{w.repo}:{t}": d for w in workers for t, d in w.expected.items()}
    server.start()
    check_tags(server, workers)
