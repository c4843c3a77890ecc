"""The running hash of an upload session stays the hash of what the session's file holds:
a chunk whose write failed leaves no trace in the hash that verifies the upload."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest

from registry import errors
from registry.errors import RegistryError
from registry.reference import parse_digest
from registry.store import RegistryStore
from storage_backends import CheckedDriver, FileWriter
from storage_backends.filesystem import FilesystemDriver
from storage_backends.memory import MemoryDriver

pytestmark = pytest.mark.anyio

REPO = "hashing/app"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class FailingWrites:
    """A driver whose writers fail while ``failing`` is set (a full disk), after the
    hash of the same bytes may already have run."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.name = inner.name
        self.failing = False

    def __getattr__(self, attr: str) -> Any:
        return getattr(self.inner, attr)

    async def writer(self, path: str, append: bool = False) -> FileWriter:
        return _Writer(await self.inner.writer(path, append), self)


class _Writer:
    def __init__(self, inner: Any, driver: FailingWrites) -> None:
        self._inner = inner
        self._driver = driver

    @property
    def size(self) -> int:
        size: int = self._inner.size
        return size

    async def write(self, data: bytes) -> None:
        if self._driver.failing:
            raise OSError(28, "No space left on device")
        await self._inner.write(data)

    async def write_pieces(self, pieces: Sequence[bytes]) -> None:
        await self.write(b"".join(pieces))

    async def commit(self) -> None:
        await self._inner.commit()

    async def close(self) -> None:
        await self._inner.close()

    async def cancel(self) -> None:
        await self._inner.cancel()


async def body(data: bytes) -> AsyncIterator[bytes]:
    for i in range(0, len(data), 100_000):
        yield data[i : i + 100_000]


@pytest.fixture(params=["memory", "filesystem"])
def driver(request: pytest.FixtureRequest, tmp_path: Any) -> FailingWrites:
    inner = MemoryDriver() if request.param == "memory" else FilesystemDriver(tmp_path)
    return FailingWrites(inner)


async def test_a_chunk_whose_write_failed_is_not_in_the_running_hash(
    driver: FailingWrites,
) -> None:
    store = RegistryStore(CheckedDriver(driver))  # type: ignore[arg-type]
    a, b, c = b"a" * 3_000_000, b"b" * 3_000_000, b"c" * 1_000
    state = await store.uploads.create(REPO)
    await store.uploads.append(REPO, state, body(a))
    driver.failing = True
    with pytest.raises(OSError):
        await store.uploads.append(REPO, state, body(b))
    driver.failing = False
    assert await store.uploads.size(REPO, state) == len(a)
    # A client that goes on without resending the lost chunk: the file holds a + c.
    await store.uploads.append(REPO, state, body(c))
    lying = parse_digest("sha256:" + hashlib.sha256(a + b + c).hexdigest())
    with pytest.raises(RegistryError) as refused:
        await store.uploads.commit(REPO, state, lying)
    assert refused.value.code == errors.DIGEST_INVALID
    await store.close()


async def test_the_stored_bytes_verify_after_a_failed_chunk(driver: FailingWrites) -> None:
    store = RegistryStore(CheckedDriver(driver))  # type: ignore[arg-type]
    a, b = b"a" * 3_000_000, b"b" * 2_500_000
    state = await store.uploads.create(REPO)
    await store.uploads.append(REPO, state, body(a))
    driver.failing = True
    with pytest.raises(OSError):
        await store.uploads.append(REPO, state, body(b))
    driver.failing = False
    # The client resumes where the session's size says, as the spec tells it to.
    await store.uploads.append(REPO, state, body(b), start=len(a))
    digest = parse_digest("sha256:" + hashlib.sha256(a + b).hexdigest())
    info = await store.uploads.commit(REPO, state, digest)
    assert info.size == len(a + b)
    assert b"".join([chunk async for chunk in store.blobs.read(digest)]) == a + b
    await store.close()
