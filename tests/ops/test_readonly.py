"""Read-only mode: from the configuration (405) and from `registry readonly on|off` (503),
the latter seen by every worker of a multi-worker server."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest

from registry.maintenance import ReadOnlyState
from registry.store import MaintenanceFlag
from storage_backends import StorageError
from tests.conftest import start_server
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


def test_configured_readonly_refuses_writes_with_405_and_serves_pulls(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    name = f"ro/{uuid.uuid4().hex[:8]}"
    img = image()
    writable = start_server(request, tmp_path)
    with writable.client() as client:
        digest = push_image(client, name, img, tag="v1")
    writable.stop()

    server = start_server(request, tmp_path, config={"storage": {"readonly": True}})
    with server.client() as client:
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
    ttl = 0.5
    server = start_server(
        request, tmp_path, config={"storage": {"readonly_flag_ttl": f"{ttl}s"}}, workers=3
    )
    name = f"maint/{uuid.uuid4().hex[:8]}"
    img = image()
    with server.client() as client:
        digest = push_image(client, name, img, tag="v1")

    out = readonly_cli(server, "on", "--reason", "moving to new disks")
    assert "maintenance: read-only since" in out and "moving to new disks" in out
    stored = with_store(server, lambda store: store.readonly_flag.read())
    assert stored is not None and stored.reason == "moving to new disks"
    time.sleep(ttl + 0.2)
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
    time.sleep(ttl + 0.2)
    for _ in range(12):
        with server.client() as client:
            assert client.post(f"/v2/{name}/blobs/uploads/").status_code == 202


class _StoredFlag:
    """The store's flag, counting reads; ``broken``: the backend is down."""

    def __init__(self) -> None:
        self.reads = 0
        self.flag: MaintenanceFlag | None = None
        self.broken = False

    async def read(self) -> MaintenanceFlag | None:
        self.reads += 1
        if self.broken:
            raise StorageError("backend down")
        return self.flag


def test_flag_is_read_at_most_once_per_ttl_and_survives_a_storage_outage() -> None:
    stored = _StoredFlag()
    now = [100.0]
    state = ReadOnlyState(stored, forced=False, ttl=2.0, clock=lambda: now[0])  # type: ignore[arg-type]

    async def refused() -> bool:
        results = await asyncio.gather(*(state.refusal() for _ in range(10)))
        return all(r is not None for r in results)

    assert asyncio.run(refused()) is False
    assert stored.reads == 1
    stored.flag = MaintenanceFlag(1.0, "r")
    now[0] += 1.0
    assert asyncio.run(refused()) is False  # still the cached state
    assert stored.reads == 1
    now[0] += 1.5
    assert asyncio.run(refused()) is True
    assert stored.reads == 2
    # The backend fails: the last known state holds, and it is not hammered.
    stored.broken = True
    now[0] += 2.5
    assert asyncio.run(refused()) is True
    assert asyncio.run(refused()) is True
    assert stored.reads == 3
