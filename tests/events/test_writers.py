"""Every process that changes the store records its changes as ``registry serve`` does
(registry/listeners.py): a ``registry gc`` run by hand beside a serving registry has
its retention deletes delivered by that registry to its webhook endpoint; and events are
recorded whenever something reads them -- a webhook endpoint or a replication rule that
follows events -- whoever makes the change."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from registry.config import Config
from registry.events.model import Record
from registry.gc.command import collect_once
from registry.listeners import install_listeners
from registry.store import CLOCK_RESOLUTION, RegistryStore, open_store
from storage_backends.memory import MemoryDriver
from tests.conftest import start_server
from tests.events.receiver import Receiver
from tests.events.test_processes import endpoint, summary
from tests.events.world import push
from tests.gc.collection import run_gc_process
from tests.images import image, push_image

pytestmark = pytest.mark.anyio

# Retention keeps the newest tag of team/**; nothing is too young to go.
RETENTION = {
    "enabled": False,  # no collection in the background: only the one run by hand
    "grace_period": "0s",
    "retention": [{"repositories": ["team/**"], "keep_last": 1}],
}
PUSH_RULE = {
    "name": "to-b",
    "direction": "push",
    "remote": {"url": "http://b.example"},
    "deletes": True,
}
PULL_RULE = {**PUSH_RULE, "direction": "pull", "trigger": {"interval": "1h"}}
NO_EVENTS = {"events": False, "interval": "1h"}
OFF = "http://h.example"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def old_enough(written: float) -> None:
    """Wait until what was written at ``written`` is past the collector's cutoff: with a
    grace period of 0, anything less than the storage clock's resolution old is fresh."""
    time.sleep(max(0.0, written + CLOCK_RESOLUTION + 0.05 - time.time()))


def test_registry_gc_by_hand_has_its_deletes_delivered_by_the_server(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    receiver = Receiver()
    request.addfinalizer(receiver.close)
    config = {
        "notifications": {
            "lease_ttl": "3s",
            "poll_interval": "200ms",
            "endpoints": [endpoint(receiver)],
        },
        "gc": RETENTION,
    }
    server = start_server(request, tmp_path / "registry", config=config)
    with server.client() as c:
        push_image(c, "team/app", image(layers=1), tag="v1")
        push_image(c, "team/app", image(layers=1), tag="v2")
    pushed = time.time()
    receiver.wait_for(lambda events: ("push", "team/app", "v2") in map(summary, events))
    old_enough(pushed)

    gc = run_gc_process(server, "--json")
    assert gc.returncode == 0, gc.stderr
    with server.client() as c:
        assert c.get("/v2/team/app/tags/list").json()["tags"] == ["v2"]

    events = receiver.wait_for(lambda es: ("delete", "team/app", "v1") in map(summary, es))
    [deleted] = [e for e in events if summary(e) == ("delete", "team/app", "v1")]
    assert deleted["target"] == {"repository": "team/app", "tag": "v1"}


async def test_collect_once_records_what_it_deletes(tmp_path: Path) -> None:
    """The same, in this process: what `registry gc` runs, and what it leaves in the
    outbox for the serving processes to deliver -- here for a replication rule that
    follows events and replicates deletes, with no webhook endpoint at all."""
    config = Config.model_validate(
        {
            "storage": {"filesystem": {"rootdirectory": str(tmp_path / "data")}},
            "replication": {"rules": [PUSH_RULE]},
            "gc": RETENTION,
        }
    )
    store = open_store(config)
    try:
        install_listeners(store, config)
        await push(store, "team/app", "v1")
        await push(store, "team/app", "v2")
        await asyncio.to_thread(old_enough, time.time())
        before = set(await store.outbox.pending())
        await collect_once(config)
        records = await _records(store, exclude=before)
    finally:
        await store.close()
    deletes = [(e.action, e.target.repository, e.target.tag) for r in records for e in r.events]
    assert ("delete", "team/app", "v1") in deletes


@pytest.mark.parametrize(
    ("config", "records"),
    [
        ({"notifications": {"endpoints": [{"name": "hook", "url": "http://h.example"}]}}, True),
        ({"replication": {"rules": [PUSH_RULE]}}, True),  # push rules follow events
        ({"notifications": {"endpoints": [{"name": "off", "url": OFF, "disabled": True}]}}, False),
        ({"replication": {"rules": [PUSH_RULE | {"trigger": NO_EVENTS}]}}, False),
        ({"replication": {"rules": [PULL_RULE]}}, False),
        ({}, False),
    ],
)
async def test_changes_are_recorded_when_something_reads_events(
    config: dict[str, Any], records: bool
) -> None:
    store = RegistryStore(MemoryDriver())
    install_listeners(store, Config.model_validate(config))
    await push(store, "team/app", "v1")
    assert bool(await store.outbox.pending()) is records


async def _records(store: RegistryStore, exclude: set[str]) -> list[Record]:
    keys = [k for k in await store.outbox.pending() if k not in exclude]
    return [Record.load(raw) for raw in (await store.outbox.read_many(keys)).values()]
