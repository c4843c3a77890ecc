"""Small uploads (registry/store/uploads.py): a session keeps up to INLINE_MAX bytes in
its state file and gets a data file only beyond; a whole small blob pushed in one
request needs no session. Two stores over one MemoryStore are two processes."""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from registry import errors
from registry.errors import RegistryError
from registry.reference import Digest, parse_digest
from registry.store import RegistryStore, UploadOffsetError
from registry.store.uploads import INLINE_MAX
from storage_backends import CheckedDriver
from storage_backends.filesystem import FilesystemDriver
from storage_backends.memory import MemoryDriver, MemoryStore

pytestmark = pytest.mark.anyio
NAME = "team/app"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def files() -> MemoryStore:
    return MemoryStore()


@pytest.fixture
async def store(files: MemoryStore) -> AsyncIterator[RegistryStore]:
    s = RegistryStore(CheckedDriver(MemoryDriver(files)))
    yield s
    await s.close()


def digest_of(data: bytes) -> Digest:
    return parse_digest("sha256:" + hashlib.sha256(data).hexdigest())


async def body(*chunks: bytes) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


def session_files(files: MemoryStore) -> list[str]:
    """What upload sessions hold, data of unfinished writers included."""
    return sorted(p for p in [*files.files, *files.unfinished] if "/_uploads/" in p)


async def test_a_small_session_never_has_a_data_file(
    store: RegistryStore, files: MemoryStore
) -> None:
    data = os.urandom(5000)
    state = await store.uploads.create(NAME)
    assert await store.uploads.append(NAME, state, body(data[:3000]), start=0) == 3000
    assert await store.uploads.append(NAME, state, body(data[3000:]), start=3000) == 5000
    assert session_files(files) == [f"repositories/{NAME}/_uploads/{state.upload_id}/state"]
    assert await store.uploads.size(NAME, state) == 5000
    info = await store.uploads.commit(NAME, state, digest_of(data))
    assert info.size == 5000
    assert session_files(files) == []
    assert b"".join([c async for c in store.blobs.read(digest_of(data))]) == data


async def test_a_session_continues_on_another_process(files: MemoryStore) -> None:
    a = RegistryStore(CheckedDriver(MemoryDriver(files)))
    b = RegistryStore(CheckedDriver(MemoryDriver(files)))
    data = os.urandom(INLINE_MAX + 1000)
    state = await a.uploads.create(NAME)
    await a.uploads.append(NAME, state, body(data[:1000]))
    on_b = await b.uploads.get(NAME, state.upload_id)
    assert (on_b.offset, on_b.inline) == (1000, data[:1000])
    await b.uploads.append(NAME, on_b, body(data[1000:]), start=1000)  # spills to a file
    on_a = await a.uploads.get(NAME, state.upload_id)
    assert on_a.inline is None  # the data file says how much it holds
    assert await a.uploads.size(NAME, on_a) == len(data)
    await a.uploads.commit(NAME, on_a, digest_of(data))
    assert b"".join([c async for c in b.blobs.read(digest_of(data))]) == data
    assert session_files(files) == []


async def test_a_session_that_outgrows_its_state_moves_to_a_data_file(
    store: RegistryStore, files: MemoryStore
) -> None:
    data = os.urandom(INLINE_MAX + 1)
    state = await store.uploads.create(NAME)
    await store.uploads.append(NAME, state, body(data[:100]))
    # Pieces as a client sends them: the one that crosses the limit moves everything.
    pieces = [data[i : i + 7000] for i in range(100, len(data), 7000)]
    await store.uploads.append(NAME, state, body(*pieces))
    assert state.inline is None and state.offset == len(data)
    prefix = f"repositories/{NAME}/_uploads/{state.upload_id}"
    # The data file, the digest of what it holds (progress), the state.
    assert session_files(files) == [
        f"{prefix}/data",
        f"{prefix}/sha256-{len(data)}",
        f"{prefix}/state",
    ]
    raw = json.loads(files.files[f"{prefix}/state"].data)  # no bytes after the JSON
    assert raw["inline"] is False
    await store.uploads.commit(NAME, state, digest_of(data))
    assert b"".join([c async for c in store.blobs.read(digest_of(data))]) == data


async def test_a_chunk_at_the_wrong_offset_is_refused_with_the_held_size(
    store: RegistryStore,
) -> None:
    state = await store.uploads.create(NAME)
    await store.uploads.append(NAME, state, body(b"x" * 10))
    with pytest.raises(UploadOffsetError) as refused:
        await store.uploads.append(NAME, state, body(b"y"), start=11)
    assert refused.value.size == 10


async def test_what_arrived_before_the_client_went_away_is_kept(store: RegistryStore) -> None:
    state = await store.uploads.create(NAME)

    async def cut() -> AsyncIterator[bytes]:
        yield b"a" * 100
        raise OSError("client went away")

    with pytest.raises(OSError):
        await store.uploads.append(NAME, state, cut())
    again = await store.uploads.get(NAME, state.upload_id)
    assert (again.offset, again.inline) == (100, b"a" * 100)


async def test_a_wrong_digest_removes_the_session(store: RegistryStore, files: MemoryStore) -> None:
    state = await store.uploads.create(NAME)
    await store.uploads.append(NAME, state, body(b"abc"))
    with pytest.raises(RegistryError) as refused:
        await store.uploads.commit(NAME, state, digest_of(b"abd"))
    assert refused.value.code == errors.DIGEST_INVALID
    assert session_files(files) == []
    assert not await store.blobs.exists(digest_of(b"abc"))


async def test_a_small_blob_in_one_request_needs_no_session(
    store: RegistryStore, files: MemoryStore
) -> None:
    written: list[str] = []

    def observe(driver: str, operation: str, seconds: float, failed: bool) -> None:
        written.append(operation)

    observed = RegistryStore(CheckedDriver(MemoryDriver(files), observe))
    data = os.urandom(INLINE_MAX)
    info = await observed.uploads.push(NAME, digest_of(data), body(data[:10], data[10:]))
    assert info.size == len(data)
    # The collector's change record, the claim (a write and a listing), the data, the
    # catalog marker (looked for first), the link.
    assert sorted(written) == ["list", "put", "put", "put", "put", "put", "stat"]
    assert session_files(files) == []
    assert await observed.blobs.is_linked(NAME, digest_of(data))
    with pytest.raises(RegistryError) as refused:
        await observed.uploads.push(NAME, digest_of(b"other"), body(b"not it"))
    assert refused.value.code == errors.DIGEST_INVALID
    assert not await observed.blobs.exists(digest_of(b"not it"))


async def test_a_large_blob_in_one_request_leaves_no_session(
    store: RegistryStore, files: MemoryStore
) -> None:
    data = os.urandom(INLINE_MAX + 5)
    await store.uploads.push(NAME, digest_of(data), body(data[:1000], data[1000:]))
    assert session_files(files) == []
    assert b"".join([c async for c in store.blobs.read(digest_of(data))]) == data
    with pytest.raises(RegistryError):
        await store.uploads.push(NAME, digest_of(b"x"), body(data))
    assert session_files(files) == []


async def test_a_session_begun_by_the_previous_version_continues(
    store: RegistryStore, files: MemoryStore
) -> None:
    """Its state is JSON alone and its bytes are in the data file."""
    upload_id = "0123456789abcdef0123456789abcdef"
    prefix = f"repositories/{NAME}/_uploads/{upload_id}"
    driver = MemoryDriver(files)
    writer = await driver.writer(f"{prefix}/data")
    await writer.write(b"first")
    await writer.close()
    old = {"started_at": 1.0, "offset": 5, "sha256": hashlib.sha256(b"first").hexdigest()}
    await driver.put(f"{prefix}/state", json.dumps(old).encode())
    state = await store.uploads.get(NAME, upload_id)
    assert state.inline is None
    assert await store.uploads.append(NAME, state, body(b"second"), start=5) == 11
    await store.uploads.commit(NAME, state, digest_of(b"firstsecond"))
    assert await store.blobs.get_small(digest_of(b"firstsecond")) == b"firstsecond"


async def test_a_data_file_a_crashed_request_left_is_never_continued(
    store: RegistryStore, files: MemoryStore
) -> None:
    """A request that crashed while it moved the bytes to a data file left the file, and
    a state that still holds the bytes: the next move starts the file afresh."""
    state = await store.uploads.create(NAME)
    await store.uploads.append(NAME, state, body(b"kept"))
    left = f"repositories/{NAME}/_uploads/{state.upload_id}/data"
    writer = await MemoryDriver(files).writer(left)
    await writer.write(b"left by the crash")
    await writer.close()
    rest = os.urandom(INLINE_MAX)
    assert await store.uploads.append(NAME, state, body(rest), start=4) == 4 + len(rest)
    await store.uploads.commit(NAME, state, digest_of(b"kept" + rest))
    assert session_files(files) == []


async def test_a_committed_small_session_costs_one_delete_and_leaves_no_folder(
    tmp_path: Path,
) -> None:
    """Its state file is all it holds: one ``delete_many`` (one request on S3), not a
    removal of everything below its prefix; on the filesystem its folder goes too."""
    operations: list[str] = []

    def observe(driver: str, operation: str, seconds: float, failed: bool) -> None:
        operations.append(operation)

    fs = RegistryStore(CheckedDriver(FilesystemDriver(tmp_path), observe))
    data = os.urandom(4096)
    state = await fs.uploads.create(NAME)
    await fs.uploads.append(NAME, state, body(data))
    operations.clear()
    await fs.uploads.commit(NAME, state, digest_of(data))
    # The claim's write and listing, the data, the catalog marker (looked for first),
    # the link; then the state file and its folder.
    assert operations[-2:] == ["delete_many", "delete"]
    assert "delete" not in operations[:-2]
    assert list((tmp_path / "repositories" / NAME / "_uploads").iterdir()) == []
    assert await fs.blobs.get_small(digest_of(data)) == data
    await fs.close()


async def test_what_a_stray_request_left_in_a_small_session_goes_when_it_expires(
    tmp_path: Path,
) -> None:
    """A concurrent request of a misbehaving client may begin a data file in a session
    that another request commits from its state: the commit leaves that file, which
    the expiry of sessions removes."""
    fs = RegistryStore(CheckedDriver(FilesystemDriver(tmp_path)))
    state = await fs.uploads.create(NAME)
    await fs.uploads.append(NAME, state, body(b"small"))
    folder = tmp_path / "repositories" / NAME / "_uploads" / state.upload_id
    (folder / "data").write_bytes(b"left by another request")
    await fs.uploads.commit(NAME, state, digest_of(b"small"))
    assert sorted(p.name for p in folder.iterdir()) == ["data"]
    with pytest.raises(RegistryError) as gone:
        await fs.uploads.get(NAME, state.upload_id)
    assert gone.value.code == errors.BLOB_UPLOAD_UNKNOWN
    assert await fs.uploads.purge_expired(NAME, time.time() + 1) == 1
    assert not folder.exists()
    await fs.close()
