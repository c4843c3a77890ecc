"""A rule's status document written by one process, then another, then the first again
(the events lease moved; `registry replicate run` ran beside `serve`): the totals add
up, none of the writes is lost to a stale copy."""

from __future__ import annotations

import pytest

from registry.replication.state import RunRecord, StatusBook, Tally
from registry.store import RegistryStore
from storage_backends.memory import MemoryDriver, MemoryStore

pytestmark = pytest.mark.anyio


def run(artifacts: int, at: float) -> RunRecord:
    return RunRecord("manual", at, at + 1, "ok", jobs=artifacts, tally=Tally(artifacts=artifacts))


async def test_totals_add_up_across_writers() -> None:
    shared = MemoryStore()
    a = StatusBook(RegistryStore(MemoryDriver(shared)).replication, "rule", "runs")
    b = StatusBook(RegistryStore(MemoryDriver(shared)).replication, "rule", "runs")
    await a.save(run(1, 10.0))
    await b.save(run(2, 20.0))
    await a.save(run(4, 30.0))
    record = await StatusBook(
        RegistryStore(MemoryDriver(shared)).replication, "rule", "runs"
    ).load()
    assert record.totals.artifacts == 7
    assert record.last is not None and record.last.started == 30.0
