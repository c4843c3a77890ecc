"""What the filesystem driver does beyond the contract every driver keeps."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from storage_backends.filesystem import FilesystemDriver

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_a_put_of_the_bytes_a_file_holds_refreshes_its_modification_time(
    tmp_path: Path,
) -> None:
    """The collector's grace period runs from a link's modification time, and a push
    rewrites the link to refresh it: a rewrite with the same bytes must do that too."""
    driver = FilesystemDriver(tmp_path)
    for data in (b"sha256:" + b"a" * 64, b""):
        await driver.put("links/a", data)
        old = 1_000_000.0
        os.utime(tmp_path / "links/a", (old, old))
        await driver.put("links/a", data)
        info = await driver.stat("links/a")
        assert info.modified > old + 1e6
        assert await driver.get("links/a") == data
    assert os.listdir(tmp_path / ".tmp") == []


async def test_a_put_of_other_bytes_replaces_the_file(tmp_path: Path) -> None:
    driver = FilesystemDriver(tmp_path)
    await driver.put("t/current", b"sha256:" + b"a" * 64)
    await driver.put("t/current", b"sha256:" + b"b" * 64)
    assert await driver.get("t/current") == b"sha256:" + b"b" * 64
    await driver.put("t/current", b"sha256:" + b"b" * 63)  # a prefix of what is there
    assert await driver.get("t/current") == b"sha256:" + b"b" * 63
    assert os.listdir(tmp_path / ".tmp") == []


async def test_a_writer_refuses_writes_once_closed(tmp_path: Path) -> None:
    """Its descriptor number may belong to another file by then."""
    driver = FilesystemDriver(tmp_path)
    writer = await driver.writer("u/data")
    await writer.write(b"abc")
    await writer.close()
    other = os.open(tmp_path / "other", os.O_WRONLY | os.O_CREAT)
    try:
        with pytest.raises(Exception, match="closed"):
            await writer.write(b"late")
    finally:
        os.close(other)
    assert (tmp_path / "other").read_bytes() == b""
    assert (tmp_path / "u/data").read_bytes() == b"abc"


async def test_remove_folder_removes_only_an_empty_folder(tmp_path: Path) -> None:
    driver = FilesystemDriver(tmp_path)
    await driver.put("s/a/state", b"x")
    await driver.put("s/b/state", b"x")
    await driver.put("s/b/data", b"y")
    await driver.delete_many(["s/a/state", "s/b/state"])
    await driver.remove_folder("s/a")
    await driver.remove_folder("s/b")  # holds a file still: stays
    await driver.remove_folder("s/missing")
    await driver.remove_folder("s/b/data")  # a file, not a folder: stays
    assert await driver.list("s") == ["b"]
    assert await driver.get("s/b/data") == b"y"
