"""The last-push markers (store/pushes.py): one per repository, listed in one go, with
the newest time winning when concurrent processes left two."""

from __future__ import annotations

import pytest

from registry.store import PushTimes
from storage_backends import CheckedDriver
from storage_backends.memory import MemoryDriver, MemoryStore
from tests.ui.test_sessions import ManualClock

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def markers(shared: MemoryStore) -> list[str]:
    return sorted(p for p in shared.files if p.startswith("pushed/"))


async def test_each_repository_keeps_one_marker_with_its_last_push() -> None:
    shared = MemoryStore()
    pushes = PushTimes(CheckedDriver(MemoryDriver(store=shared)), ManualClock())
    await pushes.record("team/app", at=100.0)
    await pushes.record("team/app-b", at=150.0)
    await pushes.record("team/app/sub", at=160.0)
    await pushes.record("team/app", at=200.5)
    assert await pushes.all() == {"team/app": 200.5, "team/app-b": 150.0, "team/app/sub": 160.0}
    assert markers(shared) == [
        "pushed/team/app!/000000000200500",
        "pushed/team/app-b!/000000000150000",
        "pushed/team/app/sub!/000000000160000",
    ]


async def test_a_process_that_did_not_write_the_marker_finds_and_replaces_it() -> None:
    shared = MemoryStore()
    clock = ManualClock()
    first = PushTimes(CheckedDriver(MemoryDriver(store=shared)), clock)
    second = PushTimes(CheckedDriver(MemoryDriver(store=shared)), clock)
    await first.record("a/b", at=10.0)
    await second.record("a/b", at=20.0)
    assert markers(shared) == ["pushed/a/b!/000000000020000"]
    # Each process removes the marker it wrote before: while both push, each leaves
    # at most one, and readers take the newest.
    for at in (30.0, 40.0, 50.0):
        await (first if at != 40.0 else second).record("a/b", at=at)
        assert await first.all() == {"a/b": at}
        assert len(markers(shared)) <= 2


async def test_a_newer_marker_of_another_process_is_never_removed() -> None:
    shared = MemoryStore()
    clock = ManualClock()
    late = PushTimes(CheckedDriver(MemoryDriver(store=shared)), clock)
    early = PushTimes(CheckedDriver(MemoryDriver(store=shared)), clock)
    await late.record("x", at=50.0)
    await early.record("x", at=40.0)  # its clock is behind: it lists and keeps the newer
    assert await early.all() == {"x": 50.0}


async def test_a_longest_name_component_fits_its_marker() -> None:
    """A component of NAME_COMPONENT_MAX characters keeps a marker folder that fits a
    file name on the filesystem (the stamp is a child, not a suffix)."""
    from registry.reference import NAME_COMPONENT_MAX

    name = "a" * NAME_COMPONENT_MAX
    shared = MemoryStore()
    pushes = PushTimes(CheckedDriver(MemoryDriver(store=shared)), ManualClock())
    await pushes.record(name, at=1.0)
    assert await pushes.all() == {name: 1.0}
    assert all(len(part) <= 255 for p in markers(shared) for part in p.split("/"))
