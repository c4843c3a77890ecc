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
from tests.hashes import CountingHashes

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
    store = RegistryStore(CheckedDriver(driver))
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
    store = RegistryStore(CheckedDriver(driver))
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


async def test_a_session_is_active_while_its_chunks_keep_coming() -> None:
    """Progress goes to a new file per request (never rewriting the state): the newest
    of them says when the session was last touched."""
    now = [0.0]
    hour = 3600.0
    store = RegistryStore(CheckedDriver(MemoryDriver(clock=lambda: now[0])))
    busy = await store.uploads.create(REPO)
    idle = await store.uploads.create(REPO)
    for t in (10, 20, 30):
        now[0] = t * hour
        await store.uploads.append(REPO, busy, body(b"x" * 1000))
    assert await store.uploads.expired_ids(REPO, older_than=6 * hour) == [idle.upload_id]
    assert sorted(await store.uploads.expired_ids(REPO, older_than=31 * hour)) == sorted(
        [busy.upload_id, idle.upload_id]
    )
    await store.close()


async def test_the_digest_written_after_a_chunk_finishes_the_upload_elsewhere() -> None:
    """A PATCH on one process, the PUT on another (no live hasher): the digest written
    after the PATCH verifies the upload without reading the data again."""
    shared = MemoryDriver()
    first, second = RegistryStore(CheckedDriver(shared)), RegistryStore(CheckedDriver(shared))
    data = b"y" * 5_000_000
    state = await first.uploads.create(REPO)
    await first.uploads.append(REPO, state, body(data))
    reads: list[str] = []
    original = shared.read

    def counting_read(path: str, offset: int = 0, length: int | None = None) -> Any:
        reads.append(path)
        return original(path, offset, length)

    shared.read = counting_read  # type: ignore[method-assign]
    digest = parse_digest("sha256:" + hashlib.sha256(data).hexdigest())
    again = await second.uploads.get(REPO, state.upload_id)
    assert (await second.uploads.commit(REPO, again, digest)).size == len(data)
    assert reads == []
    await first.close()
    await second.close()


async def test_a_stream_that_verifies_itself_is_not_hashed_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data = b"v" * 3_000_000
    digest = parse_digest("sha256:" + hashlib.sha256(data).hexdigest())
    store = RegistryStore(CheckedDriver(MemoryDriver()))
    hashes = CountingHashes(monkeypatch)
    state = await store.uploads.create(REPO)

    await store.uploads.append(REPO, state, body(data), verified=digest)
    assert (await store.uploads.commit(REPO, state, digest)).size == len(data)

    assert hashes.hashed == 0
    assert b"".join([chunk async for chunk in store.blobs.read(digest)]) == data
    await store.close()


async def test_a_verified_stream_commits_only_as_its_digest() -> None:
    data = b"w" * 3_000_000
    digest = parse_digest("sha256:" + hashlib.sha256(data).hexdigest())
    other = parse_digest("sha256:" + hashlib.sha256(data + b"!").hexdigest())
    store = RegistryStore(CheckedDriver(MemoryDriver()))
    state = await store.uploads.create(REPO)
    await store.uploads.append(REPO, state, body(data), verified=digest)
    with pytest.raises(RegistryError) as refused:
        await store.uploads.commit(REPO, state, other)
    assert refused.value.code == errors.DIGEST_INVALID
    await store.close()


async def test_what_follows_or_breaks_off_a_verified_stream_is_hashed_from_storage() -> None:
    a, b = b"a" * 3_000_000, b"b" * 1_000_000
    whole = parse_digest("sha256:" + hashlib.sha256(a).hexdigest())
    store = RegistryStore(CheckedDriver(MemoryDriver()))
    # More bytes after a verified blob: the session's digest is that of all it holds.
    state = await store.uploads.create(REPO)
    await store.uploads.append(REPO, state, body(a), verified=whole)
    await store.uploads.append(REPO, state, body(b))
    with pytest.raises(RegistryError):
        await store.uploads.commit(REPO, state, whole)
    state = await store.uploads.create(REPO)
    await store.uploads.append(REPO, state, body(a), verified=whole)
    await store.uploads.append(REPO, state, body(b))
    both = parse_digest("sha256:" + hashlib.sha256(a + b).hexdigest())
    assert (await store.uploads.commit(REPO, state, both)).size == len(a + b)

    # A stream that stops before its end (it would not have verified): not trusted.
    async def broken() -> AsyncIterator[bytes]:
        yield a[:2_000_000]
        raise OSError("the remote closed the connection")

    state = await store.uploads.create(REPO)
    with pytest.raises(OSError):
        await store.uploads.append(REPO, state, broken(), verified=whole)
    with pytest.raises(RegistryError) as refused:
        await store.uploads.commit(REPO, state, whole)
    assert refused.value.code == errors.DIGEST_INVALID
    await store.close()
