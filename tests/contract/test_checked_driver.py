"""The wrapper every production driver runs in: paths checked before the driver sees them,
and each call reported to the observer, on every driver."""

from __future__ import annotations

import pytest

from storage_backends.base import InvalidPathError, PathNotFoundError, StorageError
from tests.contract.conftest import Backend

pytestmark = pytest.mark.anyio


class Calls:
    """An observer that keeps what it is told."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, float, bool]] = []

    def __call__(self, driver: str, operation: str, seconds: float, failed: bool) -> None:
        self.seen.append((driver, operation, seconds, failed))

    def operations(self) -> list[tuple[str, bool]]:
        return [(op, failed) for _, op, _, failed in self.seen]


async def test_every_call_is_reported_once_with_its_driver(backend: Backend) -> None:
    calls = Calls()
    driver = backend.open(calls)
    await driver.put("o/a", b"abc")
    assert await driver.get("o/a") == b"abc"
    await driver.stat("o/a")
    assert await driver.list("o") == ["a"]
    assert b"".join([c async for c in driver.read("o/a")]) == b"abc"
    writer = await driver.writer("o/w")
    await writer.write(b"x")
    await writer.close()
    writer = await driver.writer("o/w", append=True)
    await writer.commit()
    await driver.move("o/w", "o/m")
    await driver.url_for("o/m")
    await driver.delete_many(["o/m"])
    await driver.delete("o")
    assert calls.operations() == [
        (op, False)
        for op in (
            *("put", "get", "stat", "list", "read", "writer", "write", "close", "writer"),
            *("commit", "move", "url_for", "delete_many", "delete"),
        )
    ]
    assert {name for name, *_ in calls.seen} == {backend.name}
    assert all(seconds >= 0 for _, _, seconds, _ in calls.seen)


async def test_missing_paths_are_answers_not_failures(backend: Backend) -> None:
    calls = Calls()
    driver = backend.open(calls)
    with pytest.raises(PathNotFoundError):
        await driver.get("missing")
    with pytest.raises(PathNotFoundError):
        await driver.stat("missing")
    with pytest.raises(PathNotFoundError):
        _ = [c async for c in driver.read("missing")]
    assert calls.operations() == [("get", False), ("stat", False), ("read", False)]


async def test_a_failing_call_is_reported_as_failed(backend: Backend) -> None:
    calls = Calls()
    driver = backend.open(calls)
    writer = await driver.writer("f/w")
    await writer.commit()
    with pytest.raises((StorageError, ValueError)):
        await writer.write(b"late")
    assert calls.operations()[-1] == ("write", True)


async def test_a_read_is_reported_once_when_its_reader_stops_early(backend: Backend) -> None:
    calls = Calls()
    driver = backend.open(calls)
    await driver.put("r/big", b"x" * (3 << 20))
    await driver.put("r/empty", b"")
    stream = driver.read("r/big")
    assert await stream.__anext__()
    await stream.aclose()  # type: ignore[attr-defined]
    assert [c async for c in driver.read("r/empty")] == []
    assert calls.operations()[-2:] == [("read", False), ("read", False)]


async def test_invalid_paths_never_reach_the_driver_or_the_observer(backend: Backend) -> None:
    calls = Calls()
    driver = backend.open(calls)
    for bad in ("../x", "a//b", ".tmp/x", "a/\n", "x\n", "a@upload/b"):
        with pytest.raises(InvalidPathError):
            await driver.put(bad, b"x")
        with pytest.raises(InvalidPathError):
            driver.read(bad)  # refused when asked, before any stream exists
        with pytest.raises(InvalidPathError):
            await driver.list(bad)
    assert calls.seen == []
    assert backend.list_stored() == []
