"""The collector inside ``registry serve``: it runs every ``gc.interval``, logs one line
per run, exports metrics, and pauses while the registry is read-only for maintenance."""

from __future__ import annotations

import os
import re
import time
import uuid
from collections.abc import Callable

import pytest

from registry.maintenance import clear_flag, set_flag
from registry.reference import parse_digest
from registry.store import layout
from tests.conftest import BACKENDS, start_server
from tests.gc.collection import make_image
from tests.gc.storage import exists, with_storage
from tests.images import push_image
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
    return with_storage(server, lambda d: exists(d, layout.blob_data(parse_digest(digest))))


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
        for m in (re.search(r"blobs_deleted=(\d+)", ln) for ln in finished)
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


def test_read_only_maintenance_pauses_the_collector(collecting_server: RegistryServer) -> None:
    with_storage(collecting_server, lambda d: set_flag(d, "gc test"))
    try:
        time.sleep(1.5)  # a run in progress when the flag went up finishes
        _, digest = garbage_while_read_only(collecting_server)
        time.sleep(4)  # several intervals, each skipped
        assert blob_stored(collecting_server, digest)
        assert "gc: skipped, the registry is read-only" in collecting_server.log()
    finally:
        with_storage(collecting_server, clear_flag)
    assert eventually(lambda: not blob_stored(collecting_server, digest))


def garbage_while_read_only(server: RegistryServer) -> tuple[str, str]:
    """Garbage written straight to storage (pushes are refused while read-only): an
    unreferenced blob, as an abandoned push leaves."""
    data = os.urandom(3000)
    digest = parse_digest(next(d for d, b in make_image([data]).blobs.items() if b == data))
    with_storage(server, lambda d: d.put(layout.blob_data(digest), data))
    return "", str(digest)
