"""The collector inside ``registry serve``: it runs every ``gc.interval``, logs one line
per run, exports metrics, and pauses while the registry is read-only for maintenance."""

from __future__ import annotations

import logging
import os
import re
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from registry.config import load_config
from registry.gc import background_collector
from registry.maintenance import ReadOnlyState
from registry.reference import parse_digest
from registry.store import RegistryStore
from storage_backends import Driver
from storage_backends.filesystem import FilesystemDriver
from tests.clocks import ClockedDriver, VirtualClock
from tests.conftest import BACKENDS, start_server
from tests.gc.collection import make_image
from tests.gc.storage import with_store
from tests.images import push_image, sha256
from tests.server import RegistryServer

GC = {"gc": {"enabled": True, "interval": "0.5s", "grace_period": "1s"}}


@pytest.fixture(scope="module", params=BACKENDS)
def collecting_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> RegistryServer:
    return start_server(request, tmp_path_factory.mktemp("gc-background"), request.param, GC)


def eventually(condition: Callable[[], bool], timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return condition()


def blob_stored(server: RegistryServer, digest: str) -> bool:
    return with_store(server, lambda store: store.blobs.exists(parse_digest(digest)))


def garbage(server: RegistryServer) -> tuple[str, str]:
    """Push an image and drop its tag; returns (repository, manifest digest)."""
    repo = f"bg/{uuid.uuid4().hex[:10]}"
    img = make_image([os.urandom(2000)])
    with server.client() as client:
        push_image(client, repo, img, "v1")
        assert client.delete(f"/v2/{repo}/manifests/v1").status_code == 202
    return repo, img.digest


def test_the_server_collects_on_its_interval_and_reports(
    collecting_server: RegistryServer,
) -> None:
    kept_repo = f"bg/{uuid.uuid4().hex[:10]}"
    kept = make_image([os.urandom(1000)])
    with collecting_server.client() as client:
        push_image(client, kept_repo, kept, "v1")
    _, digest = garbage(collecting_server)

    assert eventually(lambda: not blob_stored(collecting_server, digest))
    assert all(blob_stored(collecting_server, d) for d in [kept.digest, *kept.blobs])

    lines = [ln for ln in collecting_server.log().splitlines() if "registry.gc" in ln]
    finished = [ln for ln in lines if "gc run finished in" in ln]
    assert finished, collecting_server.log()[-3000:]
    assert any(
        int(m.group(1)) > 0
        for m in (re.search(r"deleted (\d+) blobs? ", ln) for ln in finished)
        if m is not None
    )
    with collecting_server.client() as client:
        metrics = client.get("/metrics").text
    runs = re.search(r'registry_gc_runs_total\{outcome="completed"\} (\d+(?:\.\d+)?)', metrics)
    assert runs is not None and float(runs.group(1)) >= 1, metrics[:2000]
    freed = re.search(r"registry_gc_freed_bytes_total (\d+(?:\.\d+)?)", metrics)
    assert freed is not None and float(freed.group(1)) >= 2000
    assert "registry_gc_duration_seconds_count" in metrics
    assert "registry_gc_last_success_timestamp_seconds" in metrics


@pytest.mark.anyio
@pytest.mark.parametrize("backend", BACKENDS)
async def test_read_only_maintenance_pauses_the_collector(
    request: pytest.FixtureRequest, backend: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """In one process and in virtual time: the loop of ``registry serve``, as
    ``background_collector`` wires it, over a store whose clock the test moves."""
    caplog.set_level(logging.INFO, logger="registry.gc")
    clock = VirtualClock()
    inner: Driver = FilesystemDriver(tmp_path)
    if backend == "s3":
        from storage_backends.s3 import S3Driver

        rgw = request.getfixturevalue("rgw")
        s3 = rgw.s3_config(prefix=f"gc-pause-{uuid.uuid4().hex[:12]}")
        inner = S3Driver(s3.driver_settings())
    store = RegistryStore(ClockedDriver(inner, clock), clock=clock)
    config = load_config(
        None, environ={"REGISTRY_GC_INTERVAL": "0.5s", "REGISTRY_GC_GRACE_PERIOD": "1s"}
    )
    readonly = ReadOnlyState(store.readonly_flag, False, ttl=2.0, clock=clock.monotonic)
    loop = background_collector(store, config, readonly)
    assert loop is not None
    # An unreferenced blob, as an abandoned push leaves (pushes are refused while
    # read-only).
    data = os.urandom(3000)
    digest = parse_digest(sha256(data))
    await store.readonly_flag.set("gc test")
    await store.blobs.put_small(digest, data)
    loop.start()
    try:
        await clock.advance(5)  # several intervals, each skipped
        assert await store.blobs.exists(digest)
        assert "gc: skipped, the registry is read-only" in caplog.text
        assert "gc run finished" not in caplog.text
        await store.readonly_flag.clear()
        await clock.advance(5)  # the flag's TTL, then a run
        assert not await store.blobs.exists(digest)
        assert "gc run finished" in caplog.text
    finally:
        await loop.stop()
        await store.close()
