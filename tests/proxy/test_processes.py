"""Several processes on one bucket (in-process caches sharing one MemoryStore): a process
that wants a blob another one is fetching follows that fetch's spool (one upstream GET
in all); when it cannot open the spool (another host) it relays the blob for its own
clients, unstored, and the claim's owner stores it."""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from typing import Any

from registry.reference import parse_digest
from registry.store import FillClaim, ProxyRecords
from storage_backends.memory import MemoryDriver, MemoryStore
from tests.asgi_registry import InProcessRegistry
from tests.images import sha256
from tests.proxy.conftest import Upstreams, cache_config, repo_name
from tests.proxy.test_fills import seed_blob


def blob_stored(store: MemoryStore, digest: str) -> bool:
    algorithm, hex_ = digest.split(":")
    return f"blobs/{algorithm}/{hex_[:2]}/{hex_}/data" in store.files


def fill_claim(store: MemoryStore, digest: str) -> dict[str, Any] | None:
    file = store.files.get("proxy/fills/" + digest.replace(":", "/"))
    return None if file is None else dict(json.loads(file.data))


def test_a_second_process_follows_the_first_ones_fetch(upstreams: Upstreams) -> None:
    shared = MemoryStore()
    data = os.urandom(6 * 1024 * 1024)
    repo = repo_name()
    digest = seed_blob(upstreams, "dist", repo, data)
    upstreams.dist.fault(method="GET", path="/blobs/", rate=4 * 1024 * 1024)  # 1.5 s
    config = cache_config(upstreams)
    url = f"/v2/dist/{repo}/blobs/{digest}"
    with (
        InProcessRegistry(config, MemoryDriver(shared)) as first,
        InProcessRegistry(config, MemoryDriver(shared)) as second,
    ):
        bodies: dict[str, bytes] = {}

        def pull_first() -> None:
            with first.client(timeout=30) as c:
                bodies["first"] = c.get(url).content

        thread = threading.Thread(target=pull_first)
        thread.start()
        deadline = time.monotonic() + 10
        while (claim := fill_claim(shared, digest)) is None or claim.get("spool") is None:
            assert time.monotonic() < deadline, "the first process announced no fetch"
            time.sleep(0.01)
        assert not blob_stored(shared, digest)  # the first fetch is still running
        with second.client(timeout=30) as c:
            bodies["second"] = c.get(url).content
        thread.join()
    assert bodies == {"first": data, "second": data}
    assert upstreams.dist.count("GET", "/blobs/") == 1
    assert blob_stored(shared, digest)
    assert fill_claim(shared, digest) is None


def test_a_process_that_cannot_follow_relays_unstored(upstreams: Upstreams) -> None:
    shared = MemoryStore()
    data = os.urandom(512 * 1024)
    repo = repo_name()
    digest = seed_blob(upstreams, "reg", repo, data)
    # Another host's fetch: its claim is fresh, its spool is not on this host.
    claim = FillClaim("elsewhere", f"reg/{repo}", time.time(), "/nonexistent/x.spool", len(data))
    records = ProxyRecords(MemoryDriver(shared))
    asyncio.run(records.write_fill_claim(parse_digest(digest), claim))
    with InProcessRegistry(cache_config(upstreams), MemoryDriver(shared)) as cache:
        with cache.client(timeout=30) as c:
            r = c.get(f"/v2/reg/{repo}/blobs/{digest}")
        assert r.status_code == 200 and sha256(r.content) == digest
    assert upstreams.reg.count("GET", "/blobs/") >= 1
    assert not blob_stored(shared, digest)  # the claim's owner stores it, not the relay
