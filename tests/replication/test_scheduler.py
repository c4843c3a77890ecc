"""Full passes under a rule's lease: of two processes on one storage that find a rule due
at once, one passes and the other stands aside; and a process that takes the lease just
after a pass elsewhere sees the pass in storage and does not pass again."""

from __future__ import annotations

import asyncio

import pytest

from registry.replication.scheduler import RuleBusyError, run_leased
from registry.replication.state import RunRecord
from registry.store import RegistryStore
from storage_backends.memory import MemoryDriver, MemoryStore
from tests.images import image
from tests.replication.stores import manifest_bytes, new_store, put_image, runner

pytestmark = pytest.mark.anyio
INTERVAL = 3600.0


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def due(last: RunRecord | None) -> bool:
    import time

    return last is None or last.started + INTERVAL <= time.time()


async def test_one_process_of_two_passes_a_rule() -> None:
    bucket = MemoryStore()  # the storage both processes share
    first, second = RegistryStore(MemoryDriver(bucket)), RegistryStore(MemoryDriver(bucket))
    target = new_store()
    img = image()
    await put_image(first, "team/app", img, "v1")
    runners = [runner(first, target), runner(second, target)]

    outcomes = await asyncio.gather(
        *(run_leased(r.store, r, "schedule", 10.0, due=due) for r in runners),
        return_exceptions=True,
    )

    passed = [o for o in outcomes if isinstance(o, RunRecord)]
    assert len(passed) == 1 and passed[0].outcome == "ok"
    assert [type(o) for o in outcomes if not isinstance(o, RunRecord)] == [RuleBusyError]
    assert await manifest_bytes(target, "team/app", "v1") == img.manifest
    # Later, the other process finds the rule due in its memory, takes the lease, and
    # reads the pass that was made meanwhile: nothing to do.
    loser = runners[0] if outcomes[0] is not passed[0] else runners[1]
    assert await run_leased(loser.store, loser, "schedule", 10.0, due=due) is None
