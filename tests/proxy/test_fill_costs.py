"""What a cold fill costs the cache: each byte of the blob is hashed once (by the remote
client's verifying stream; the store does not hash it again), and still the blob is
stored only as its digest. An in-process cache of the shared upstreams."""

from __future__ import annotations

import os
import time
from collections.abc import Callable

import pytest

from registry.reference import parse_digest
from registry.store import RegistryStore
from tests.asgi_registry import InProcessRegistry
from tests.hashes import CountingHashes
from tests.proxy.conftest import Upstreams, repo_name
from tests.proxy.test_fills import seed_blob

MakeCache = Callable[..., InProcessRegistry]


def test_a_cold_fill_hashes_each_byte_once(
    upstreams: Upstreams, in_process_cache: MakeCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = in_process_cache()
    store: RegistryStore = cache.app.state.store
    data = os.urandom(3 * 1024 * 1024 + 17)
    repo = repo_name()
    digest = seed_blob(upstreams, "dist", repo, data)
    hashes = CountingHashes(monkeypatch)

    with cache.client() as c:
        r = c.get(f"/v2/dist/{repo}/blobs/{digest}")
        assert r.status_code == 200 and r.content == data
    deadline = time.monotonic() + 30
    while not cache.run(store.blobs.exists(parse_digest(digest))):  # committed after
        assert time.monotonic() < deadline, "the blob was not stored"
        time.sleep(0.02)

    assert len(data) <= hashes.hashed < len(data) + 64 * 1024
    stored = b"".join(cache.run(_read(store, digest)))
    assert stored == data


async def _read(store: RegistryStore, digest: str) -> list[bytes]:
    return [chunk async for chunk in store.blobs.read(parse_digest(digest))]
