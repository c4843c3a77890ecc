"""A chunk's bytes are written (and hashed) while its body is still arriving: a step
begins once the previous one is done and EAGER bytes are there, not only a BLOCK at a
time, so that the threads do not idle at a request's start (a 10 MiB PATCH waited for
2 MiB before its first write)."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from registry.reference import parse_digest
from registry.store import RegistryStore
from registry.store.uploads import BLOCK, EAGER
from storage_backends import CheckedDriver
from storage_backends.filesystem import FilesystemDriver

pytestmark = pytest.mark.anyio

REPO = "pipeline/app"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def _grows_to(path: Path, size: int) -> bool:
    for _ in range(500):
        if path.exists() and path.stat().st_size >= size:
            return True
        await asyncio.sleep(0.01)
    return False


async def test_a_chunk_is_written_while_its_body_arrives(tmp_path: Path) -> None:
    assert EAGER < BLOCK
    store = RegistryStore(CheckedDriver(FilesystemDriver(tmp_path)))
    state = await store.uploads.create(REPO, inline=False)
    data_file = tmp_path / "repositories" / REPO / "_uploads" / state.upload_id / "data"
    pieces = [os.urandom(EAGER // 4) for _ in range(12)]  # 3 x EAGER, in pieces
    seen: list[bool] = []

    async def body() -> AsyncIterator[bytes]:
        for i, piece in enumerate(pieces):
            yield piece
            if i == 3:  # EAGER bytes: written before the body goes on
                seen.append(await _grows_to(data_file, EAGER))

    assert await store.uploads.append(REPO, state, body(), start=0) == 3 * EAGER
    assert seen == [True]
    data = b"".join(pieces)
    digest = parse_digest("sha256:" + hashlib.sha256(data).hexdigest())
    assert (await store.uploads.commit(REPO, state, digest)).size == len(data)
    assert b"".join([chunk async for chunk in store.blobs.read(digest)]) == data
    await store.close()
