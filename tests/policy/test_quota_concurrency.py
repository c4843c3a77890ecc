"""Concurrent pushes from several clients through two processes (two registries over one
memory "bucket", each on its own event loop thread) into one namespace: what the
namespace stores -- committed blobs and upload sessions -- never exceeds the quota.
The documented bound is exact: 0 bytes over the limit (docs/governance.md)."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import httpx

from storage_backends.memory import MemoryDriver, MemoryStore
from tests.policy.conftest import (
    CountingBody,
    Factory,
    digest_of,
    policy_config,
    random_blob,
    stored_upload_bytes,
)

MIB = 1024 * 1024
LIMIT = 6 * MIB
CONFIG = policy_config(
    {
        "quotas": [{"name": "team", "repositories": ["team/**"], "limit": LIMIT}],
        "quota": {"upload_grant": MIB},
    }
)


def push(client: httpx.Client, repo: str, data: bytes) -> int:
    """A chunked push of unknown length (as skopeo streams a layer): POST, one PATCH,
    PUT. Returns the status of the last request made."""
    r = client.post(f"/v2/{repo}/blobs/uploads/")
    if r.status_code != 202:
        return r.status_code
    location = r.headers["Location"]
    r = client.patch(location, content=iter(CountingBody(data, piece=128 * 1024)))
    if r.status_code != 202:
        return r.status_code
    r = client.put(location, params={"digest": digest_of(data)})
    return r.status_code


def test_concurrent_pushes_never_store_more_than_the_quota(make_registry: Factory) -> None:
    shared = MemoryStore()
    registries = [make_registry(CONFIG, MemoryDriver(shared)) for _ in range(2)]
    blobs = [random_blob(size) for size in (900_000, 1_500_000, 2_000_000, 1_200_000) * 3]
    lock = threading.Lock()
    committed: list[int] = []
    statuses: list[int] = []

    def client_push(i: int) -> None:
        registry = registries[i % 2]
        with registry.client(timeout=60) as client:
            status = push(client, f"team/app{i % 3}", blobs[i])
        with lock:
            statuses.append(status)
            if status == 201:
                committed.append(len(blobs[i]))

    with ThreadPoolExecutor(max_workers=len(blobs)) as pool:
        list(pool.map(client_push, range(len(blobs))))

    assert 201 in statuses and 403 in statuses, statuses
    assert set(statuses) <= {201, 403}, statuses
    in_sessions = stored_upload_bytes(registries[0])
    assert sum(committed) + in_sessions <= LIMIT
    # Both processes report the same, and it is what was committed.
    rows = [r.client().get("/api/usage").json()["namespaces"][0] for r in registries]
    assert rows[0]["pending_bytes"] == rows[1]["pending_bytes"] == sum(committed)
    assert rows[0]["in_flight_bytes"] == in_sessions
