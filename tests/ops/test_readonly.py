"""Read-only mode: from the configuration (405) and from `registry readonly on|off` (503),
the latter seen by every worker of a multi-worker server (a real one, and the real
command); the configured mode and the flag's caching in this process."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest

from registry.maintenance import ReadOnlyState
from registry.store import RegistryStore
from storage_backends.memory import MemoryDriver, MemoryStore
from tests.asgi_registry import InProcessRegistry
from tests.conftest import start_server
from tests.gated_driver import GatedDriver
from tests.gc.storage import with_store
from tests.images import image, push_image
from tests.server import RegistryServer


def writes(client: httpx.Client, name: str, digest: str) -> dict[str, httpx.Response]:
    """One of each kind of write a client can attempt."""
    return {
        "start upload": client.post(f"/v2/{name}/blobs/uploads/"),
        "monolithic upload": client.post(
            f"/v2/{name}/blobs/uploads/", params={"digest": digest}, content=b"data"
        ),
        "put manifest": client.put(
            f"/v2/{name}/manifests/v2",
            content=b"{}",
            headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"},
        ),
        "delete manifest": client.delete(f"/v2/{name}/manifests/{digest}"),
        "delete blob": client.delete(f"/v2/{name}/blobs/{digest}"),
    }


def test_configured_readonly_refuses_writes_with_405_and_serves_pulls() -> None:
    name = f"ro/{uuid.uuid4().hex[:8]}"
    img = image()
    storage = MemoryStore()  # one storage, served first read-write, then read-only
    with InProcessRegistry(driver=MemoryDriver(storage)) as writable, writable.client() as c:
        digest = push_image(c, name, img, tag="v1")

    config = {"storage": {"readonly": True}}
    readonly = InProcessRegistry(config, MemoryDriver(storage))
    with readonly, readonly.client() as client:
        for what, r in writes(client, name, digest).items():
            assert r.status_code == 405, what
            error = r.json()["errors"][0]
            assert error["code"] == "UNSUPPORTED", what
            assert "read-only" in error["message"], what
        assert client.get(f"/v2/{name}/manifests/v1").content == img.manifest
        for blob_digest, data in img.blobs.items():
            assert client.get(f"/v2/{name}/blobs/{blob_digest}").content == data
        assert client.get(f"/v2/{name}/tags/list").json()["tags"] == ["v1"]
        assert client.get("/health/ready").json()["mode"] == "read-only"


def readonly_cli(server: RegistryServer, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
    env["REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY"] = str(server.data_dir)
    result = subprocess.run(
        [sys.executable, "-m", "registry", "readonly", *args, "--config", str(server.config_file)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_maintenance_switch_reaches_every_worker(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    # Every write reads the flag: no waiting here for a TTL to pass (the test below
    # pins how long a process trusts its last read).
    server = start_server(
        request, tmp_path, config={"storage": {"readonly_flag_ttl": "0s"}}, workers=3
    )
    name = f"maint/{uuid.uuid4().hex[:8]}"
    img = image()
    with server.client() as client:
        digest = push_image(client, name, img, tag="v1")

    out = readonly_cli(server, "on", "--reason", "moving to new disks")
    assert "maintenance: read-only since" in out and "moving to new disks" in out
    stored = with_store(server, lambda store: store.readonly_flag.read())
    assert stored is not None and stored.reason == "moving to new disks"
    # New connections, so that the requests land on all the workers.
    for _ in range(12):
        with server.client() as client:
            r = client.post(f"/v2/{name}/blobs/uploads/")
            assert r.status_code == 503
            assert r.headers["Retry-After"] == "60"
            error = r.json()["errors"][0]
            assert error["code"] == "UNAVAILABLE"
            assert "read-only maintenance" in error["message"]
            assert "moving to new disks" in error["message"]
            assert client.get(f"/v2/{name}/manifests/v1").content == img.manifest
    with server.client() as client:
        for what, r in writes(client, name, digest).items():
            assert r.status_code == 503, what
        assert client.get("/health/ready").json()["mode"] == "maintenance"
    assert "maintenance: read-only" in readonly_cli(server, "status")

    assert "read-write" in readonly_cli(server, "off")
    for _ in range(12):
        with server.client() as client:
            assert client.post(f"/v2/{name}/blobs/uploads/").status_code == 202


def test_flag_is_read_at_most_once_per_ttl_and_survives_a_storage_outage() -> None:
    driver = GatedDriver(MemoryDriver())
    stored = RegistryStore(driver).readonly_flag
    now = [100.0]
    state = ReadOnlyState(stored, forced=False, ttl=2.0, clock=lambda: now[0])

    def reads() -> int:
        return driver.count("get")

    async def refused() -> bool:
        results = await asyncio.gather(*(state.refusal() for _ in range(10)))
        return all(r is not None for r in results)

    assert asyncio.run(refused()) is False
    assert reads() == 1
    asyncio.run(stored.set("r"))
    now[0] += 1.0
    assert asyncio.run(refused()) is False  # still the cached state
    assert reads() == 1
    now[0] += 1.5
    assert asyncio.run(refused()) is True
    assert reads() == 2
    # The backend fails: the last known state holds, and it is not hammered.
    driver.fail("get")
    now[0] += 2.5
    assert asyncio.run(refused()) is True
    assert asyncio.run(refused()) is True
    assert reads() == 3
