"""Shared helpers of the governance tests: registries with a policy, content pushed in
the ways clients push it, and the usage a registry reports."""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest

from registry.config import Config, GcConfig
from registry.gc import Collector
from registry.policy import Governance, install
from registry.reference import parse_digest
from registry.store import RegistryStore, open_store
from storage_backends.memory import MemoryDriver, MemoryStore
from tests.asgi_registry import InProcessRegistry

NO_GC = {"enabled": False}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def policy_config(policy: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"gc": NO_GC, "policy": policy, **extra}


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def random_blob(size: int) -> bytes:
    return os.urandom(size)


def store_of(registry: InProcessRegistry) -> RegistryStore:
    store: RegistryStore = registry.app.state.store
    return store


def governance_of(registry: InProcessRegistry) -> Governance:
    governance: Governance = registry.app.state.policy
    return governance


def namespace(client: httpx.Client, name: str) -> dict[str, Any]:
    """The /api/usage row of quota ``name``."""
    rows = client.get("/api/usage").json()["namespaces"]
    found = [r for r in rows if r["name"] == name]
    assert found, rows
    row: dict[str, Any] = found[0]
    return row


class StorageTime:
    """The wall clock, moved forward by hand: a MemoryDriver stamping files with it
    makes everything stored look older after ``age`` (the collector's grace period)."""

    def __init__(self) -> None:
        self.shift = 0.0

    def __call__(self) -> float:
        return time.time() + self.shift

    def age(self, seconds: float = 7200.0) -> None:
        self.shift += seconds


def aged_registry(
    make: Callable[..., InProcessRegistry], config: dict[str, Any]
) -> tuple[InProcessRegistry, StorageTime]:
    """A registry whose storage the test can make look older."""
    clock = StorageTime()
    return make(config, MemoryDriver(clock=clock)), clock


def collect(registry: InProcessRegistry, **gc: Any) -> None:
    """One collection over the registry's store (with its listeners)."""
    config = GcConfig.model_validate({"grace_period": 0, **gc})
    collector = Collector(store_of(registry), config, upload_expiry=3600)
    registry.run(collector.run())


def upload_session(client: httpx.Client, name: str) -> str:
    r = client.post(f"/v2/{name}/blobs/uploads/")
    assert r.status_code == 202, r.text
    return str(r.headers["Location"])


class CountingBody:
    """A request body of ``size`` bytes in ``piece`` pieces, counting what was taken."""

    def __init__(self, data: bytes, piece: int = 64 * 1024) -> None:
        self.data = data
        self.piece = piece
        self.taken = 0

    def __iter__(self) -> Iterator[bytes]:
        for start in range(0, len(self.data), self.piece):
            chunk = self.data[start : start + self.piece]
            self.taken += len(chunk)
            yield chunk


def stored_upload_bytes(registry: InProcessRegistry) -> int:
    """Bytes held by upload sessions (closed writers' data included)."""
    from storage_backends.memory import MemoryDriver

    driver = registry.driver
    assert isinstance(driver, MemoryDriver)
    store = driver.store
    total = sum(len(d) for p, d in store.unfinished.items() if "/_uploads/" in p)
    committed = [f for p, f in store.files.items() if "/_uploads/" in p and p.endswith("/data")]
    # A small session holds its bytes in its state file, after the JSON (store/uploads.py).
    states = [f for p, f in store.files.items() if "/_uploads/" in p and p.endswith("/state")]
    inline = sum(len(f.data.partition(b"\n")[2]) for f in states)
    return total + sum(len(f.data) for f in committed) + inline


Factory = Callable[..., InProcessRegistry]


class ManualClock:
    """Time that moves when the test says (sleeps move it, as a lease's settle)."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def time(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds
        await asyncio.sleep(0)


class Stores:
    """Stores over one memory "bucket" with a clock the test moves, each with the
    policy's listeners: several of them are several processes."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.clock = ManualClock()
        self.shared = MemoryStore()
        self.config = Config.model_validate(config)

    def open(self) -> tuple[RegistryStore, Governance]:
        driver = MemoryDriver(self.shared, clock=self.clock.time)
        store = open_store(self.config, driver=driver, clock=self.clock)
        return store, install(store, self.config.policy)


async def one_piece(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def upload(store: RegistryStore, repo: str, data: bytes) -> None:
    """A blob pushed through the store (as replication or a test would)."""
    state = await store.uploads.create(repo)
    await store.uploads.append(repo, state, one_piece(data))
    await store.uploads.commit(repo, state, parse_digest(digest_of(data)))
