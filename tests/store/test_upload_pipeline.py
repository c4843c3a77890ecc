"""A chunk's bytes are written (and hashed) while its body is still arriving: the first
step begins with the first piece, each later one once the previous step is done and
EAGER bytes are there (at most BLOCK), so that the threads do not idle at a request's
start (a 10 MiB PATCH waited for 2 MiB before its first write) and little is left to do
when its body ends."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from registry.reference import parse_digest
from registry.store import RegistryStore, uploads
from storage_backends import CheckedDriver
from storage_backends.filesystem import FilesystemDriver

pytestmark = pytest.mark.anyio

REPO = "pipeline/app"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def _holds(path: Path, size: int) -> bool:
    """Whether the file comes to hold ``size`` bytes, and no more, while the body waits."""
    for _ in range(500):
        if path.exists() and path.stat().st_size >= size:
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)  # a step begun too early would have written by now
    return path.exists() and path.stat().st_size == size


async def _push(
    tmp_path: Path, pieces: list[bytes], written_after: Callable[[int], int | None]
) -> list[bool]:
    """Append ``pieces`` as one chunk; after piece i, if ``written_after(i)`` names a
    size, whether the data file came to hold exactly that before the body went on. The
    upload must verify as what was sent."""
    store = RegistryStore(CheckedDriver(FilesystemDriver(tmp_path)))
    state = await store.uploads.create(REPO, inline=False)
    data_file = tmp_path / "repositories" / REPO / "_uploads" / state.upload_id / "data"
    seen: list[bool] = []

    async def body() -> AsyncIterator[bytes]:
        for i, piece in enumerate(pieces):
            yield piece
            size = written_after(i)
            if size is not None:
                seen.append(await _holds(data_file, size))

    data = b"".join(pieces)
    assert await store.uploads.append(REPO, state, body(), start=0) == len(data)
    digest = parse_digest("sha256:" + hashlib.sha256(data).hexdigest())
    assert (await store.uploads.commit(REPO, state, digest)).size == len(data)
    assert b"".join([chunk async for chunk in store.blobs.read(digest)]) == data
    await store.close()
    return seen


async def test_the_first_piece_is_written_before_the_body_goes_on(tmp_path: Path) -> None:
    pieces = [os.urandom(256 * 1024) for _ in range(12)]
    seen = await _push(tmp_path, pieces, lambda i: len(pieces[0]) if i == 0 else None)
    assert seen == [True]


async def test_a_step_begins_once_the_last_is_done_and_eager_bytes_are_there(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Steps small enough to be written and hashed on the event loop: each is done
    # before the next piece arrives, so when the next one begins is the rule's alone.
    eager = uploads.INLINE_HASH
    monkeypatch.setattr(uploads, "EAGER", eager)
    piece = eager // 4
    pieces = [os.urandom(piece) for _ in range(9)]
    # The first piece at once; then four pieces (EAGER bytes) at a time, not fewer.
    expected = {0: piece, 1: piece, 3: piece, 4: 5 * piece, 7: 5 * piece, 8: 9 * piece}
    seen = await _push(tmp_path, pieces, expected.get)
    assert seen == [True] * len(expected)
