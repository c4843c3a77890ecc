"""A page costs what it returns (issue 11, item 4): on the filesystem a page of a large
directory -- a repository's 5,000 tags -- reads the directory once while it stays
unchanged, and sees a change at once."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from storage_backends import filesystem
from storage_backends.filesystem import FilesystemDriver

pytestmark = pytest.mark.anyio

FOLDER = "repositories/big/_manifests/tags"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def scandirs(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    calls: list[str] = []
    original = os.scandir

    def counted(path: Any) -> Any:
        calls.append(str(path))
        return original(path)

    monkeypatch.setattr(filesystem.os, "scandir", counted)
    yield calls


def settle(root: Path) -> None:
    """Make the folder look unchanged for a while (as a tag listing usually is)."""
    past = time.time() - 10
    os.utime(root / FOLDER, (past, past))


async def test_pages_of_a_large_unchanged_folder_read_it_once(
    tmp_path: Path, scandirs: list[str]
) -> None:
    driver = FilesystemDriver(tmp_path)
    tags = [f"t{i:05d}" for i in range(2000)]
    for tag in tags:
        await driver.put(f"{FOLDER}/{tag}", b"sha256:" + b"a" * 64)
    settle(tmp_path)

    pages, last = [], None
    while True:
        page = await driver.list(FOLDER, start_after=last, limit=300)
        if not page:
            break
        pages.append(page)
        last = page[-1]

    assert [t for p in pages for t in p] == tags
    assert len(scandirs) == 1
    assert await driver.list(FOLDER, start_after="t00099x", limit=2) == ["t00100", "t00101"]
    assert await driver.list(FOLDER, start_after="u") == []
    assert len(scandirs) == 1

    await driver.put(f"{FOLDER}/t00100a", b"sha256:" + b"b" * 64)  # seen at once
    assert await driver.list(FOLDER, start_after="t00100", limit=2) == ["t00100a", "t00101"]
    await driver.delete(f"{FOLDER}/t00101")
    assert await driver.list(FOLDER, start_after="t00100a", limit=1) == ["t00102"]


async def test_a_recently_changed_folder_is_read_every_time(
    tmp_path: Path, scandirs: list[str]
) -> None:
    """Its timestamp may not change again for a change within the same tick."""
    driver = FilesystemDriver(tmp_path)
    for i in range(600):
        await driver.put(f"{FOLDER}/t{i:04d}", b"x")
    await driver.list(FOLDER, limit=10)
    await driver.list(FOLDER, limit=10)
    assert len(scandirs) == 2


async def test_recursive_pages_of_a_large_unchanged_folder_read_it_once(
    tmp_path: Path, scandirs: list[str]
) -> None:
    """The catalog of a flat namespace: 700 markers in one folder, and nested ones."""
    driver = FilesystemDriver(tmp_path)
    names = [f"app-{i:04d}!" for i in range(700)] + ["app-0100/sub!", "app-0100-x!", "zz/a/b!"]
    for name in names:
        await driver.put(f"catalog/{name}", b"")
    past = time.time() - 10
    os.utime(tmp_path / "catalog", (past, past))
    expected = sorted(names)  # byte order of the paths: "app-0100!" < "app-0100-x!" < ".../"

    pages, last = [], None
    while True:
        page = await driver.list("catalog", start_after=last, limit=100, recursive=True)
        if not page:
            break
        pages.append(page)
        last = page[-1]

    assert [n for p in pages for n in p] == expected
    assert scandirs.count(str(tmp_path / "catalog")) == 1
    assert await driver.list("catalog", start_after="app-0100!", limit=3, recursive=True) == [
        "app-0100-x!",
        "app-0100/sub!",
        "app-0101!",
    ]
