"""A short soak against a real `registry serve --workers 2` whose online collector runs
every second: a hundred clients push images (monolithic and chunked), pull and check
them, list tags and the catalog, HEAD blobs and delete some of their tags, all at once.
No request may fail (no 5xx, no dropped connection, no unexpected status), and
afterwards every image whose push was answered 201 and whose tag is still there pulls
whole, byte for byte."""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.conftest import start_server
from tests.images import OCI_CONFIG, OCI_LAYER, OCI_MANIFEST, descriptor, sha256

CLIENTS = 100
SECONDS = 15.0
GRACE = 3.0


@dataclass
class Soak:
    url: str
    statuses: Counter[tuple[str, int]] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    # (repository, tag): (manifest bytes, {digest: blob}) of pushes answered 201
    acknowledged: dict[tuple[str, str], tuple[bytes, dict[str, bytes]]] = field(
        default_factory=dict
    )

    def expect(self, r: httpx.Response, what: str, *ok: int) -> bool:
        self.statuses[(what, r.status_code)] += 1
        if r.status_code in ok:
            return True
        self.failures.append(f"{what}: {r.request.method} {r.url.path} -> {r.status_code}")
        return False

    async def push_blob(self, c: httpx.AsyncClient, repo: str, data: bytes) -> bool:
        digest = sha256(data)
        if len(data) < 100_000:
            r = await c.post(f"/v2/{repo}/blobs/uploads/", params={"digest": digest}, content=data)
            return self.expect(r, "blob POST", 201)
        r = await c.post(f"/v2/{repo}/blobs/uploads/")
        if not self.expect(r, "upload start", 202):
            return False
        location, offset = r.headers["location"], 0
        for chunk in (data[: len(data) // 2], data[len(data) // 2 :]):
            r = await c.patch(
                location,
                content=chunk,
                headers={
                    "Content-Range": f"{offset}-{offset + len(chunk) - 1}",
                    "Content-Type": "application/octet-stream",
                },
            )
            if not self.expect(r, "upload PATCH", 202):
                return False
            location, offset = r.headers["location"], offset + len(chunk)
        r = await c.put(location, params={"digest": digest})
        return self.expect(r, "upload PUT", 201)

    async def push_image(
        self, c: httpx.AsyncClient, rnd: random.Random, repo: str, tag: str
    ) -> None:
        config = json.dumps({"architecture": "amd64", "os": "linux", "n": rnd.random()}).encode()
        layers = [os.urandom(rnd.choice([700, 30_000, 400_000])) for _ in range(2)]
        blobs = {sha256(b): b for b in (config, *layers)}
        for data in blobs.values():
            if not await self.push_blob(c, repo, data):
                return
        doc = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": descriptor(OCI_CONFIG, config),
            "layers": [descriptor(OCI_LAYER, layer) for layer in layers],
        }
        body = json.dumps(doc).encode()
        r = await c.put(
            f"/v2/{repo}/manifests/{tag}", content=body, headers={"Content-Type": OCI_MANIFEST}
        )
        if self.expect(r, "manifest PUT", 201):
            self.acknowledged[(repo, tag)] = (body, blobs)

    async def pull(self, c: httpx.AsyncClient, rnd: random.Random) -> None:
        key = rnd.choice(list(self.acknowledged))
        body, blobs = self.acknowledged[key]
        repo, tag = key
        r = await c.get(f"/v2/{repo}/manifests/{tag}", headers={"Accept": OCI_MANIFEST})
        if key not in self.acknowledged:
            return  # its tag was deleted meanwhile
        if self.expect(r, "manifest GET", 200) and r.content != body:
            self.failures.append(f"manifest {repo}:{tag}: other bytes")
        digest = rnd.choice(list(blobs))
        r = await c.get(f"/v2/{repo}/blobs/{digest}")
        if self.expect(r, "blob GET", 200) and sha256(r.content) != digest:
            self.failures.append(f"blob {digest}: other bytes")

    async def client(self, number: int, until: float) -> None:
        rnd = random.Random(number)
        async with httpx.AsyncClient(base_url=self.url, timeout=60) as c:
            pushed = 0
            while time.monotonic() < until:
                repo = f"soak/r{rnd.randrange(10)}"
                roll = rnd.random()
                try:
                    if roll < 0.35 or not self.acknowledged:
                        await self.push_image(c, rnd, repo, f"c{number}-{pushed}")
                        pushed += 1
                    elif roll < 0.75:
                        await self.pull(c, rnd)
                    elif roll < 0.85:
                        r = await c.get(f"/v2/{repo}/tags/list", params={"n": 20})
                        self.expect(r, "tags page", 200, 404)  # 404: nothing pushed there yet
                    elif roll < 0.9:
                        self.expect(await c.get("/v2/_catalog"), "catalog", 200)
                    elif roll < 0.97:
                        (repo, tag), (_, blobs) = rnd.choice(list(self.acknowledged.items()))
                        r = await c.head(f"/v2/{repo}/blobs/{next(iter(blobs))}")
                        self.expect(r, "blob HEAD", 200)
                    else:
                        mine = [k for k in self.acknowledged if k[1].startswith(f"c{number}-")]
                        if mine:
                            repo, tag = rnd.choice(mine)
                            del self.acknowledged[(repo, tag)]
                            r = await c.delete(f"/v2/{repo}/manifests/{tag}")
                            self.expect(r, "tag DELETE", 202)
                except httpx.HTTPError as e:
                    self.failures.append(f"{type(e).__name__}: {e}")

    async def check_everything(self) -> None:
        async with httpx.AsyncClient(base_url=self.url, timeout=60) as c:
            for (repo, tag), (body, blobs) in self.acknowledged.items():
                r = await c.get(f"/v2/{repo}/manifests/{tag}", headers={"Accept": OCI_MANIFEST})
                if r.status_code != 200 or r.content != body:
                    self.failures.append(f"lost: manifest {repo}:{tag} ({r.status_code})")
                for digest in blobs:
                    r = await c.get(f"/v2/{repo}/blobs/{digest}")
                    if r.status_code != 200 or sha256(r.content) != digest:
                        self.failures.append(f"lost: blob {digest} of {repo}:{tag}")


def test_a_hundred_clients_with_the_collector_running_lose_nothing(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    config = {
        "gc": {"interval": "1s", "grace_period": f"{GRACE:.0f}s", "full_mark_interval": "5s"},
        "log": {"access_log": False},
    }
    server = start_server(request, tmp_path, config=config, workers=2)
    soak = Soak(server.url)

    async def run() -> None:
        until = time.monotonic() + SECONDS
        await asyncio.gather(*(soak.client(n, until) for n in range(CLIENTS)))
        await asyncio.sleep(GRACE + 2)  # the collector has had its turn at what is left
        await soak.check_everything()

    asyncio.run(run())
    assert not soak.failures, soak.failures[:20]
    assert soak.statuses[("manifest PUT", 201)] >= 100, soak.statuses
    assert soak.statuses[("blob GET", 200)] >= 100, soak.statuses
    log = server.log()
    assert "Traceback" not in log and "gc run finished" in log
