"""The README's map of the tree ("How it is built") names every module, so that a
newcomer finds each one from its name; a module added without a line there fails here."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def mapped_paths() -> set[str]:
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## How it is built") :]
    block = re.search(r"```\n(.*?)```", section, re.S)
    assert block is not None
    folders: list[tuple[int, str]] = []  # (indent, path) of the enclosing folders
    paths: set[str] = set()
    for line in block.group(1).splitlines():
        names = re.split(r"\s{2,}", line.strip())[0]
        if not names:
            continue  # a comment's continuation
        indent = len(line) - len(line.lstrip())
        while folders and folders[-1][0] >= indent:
            folders.pop()
        parent = folders[-1][1] if folders else ""
        for name in names.split(", "):
            paths.add(parent + name)
            if name.endswith("/"):
                folders.append((indent, parent + name))
    return paths


def test_every_module_is_on_the_map() -> None:
    modules = {
        p.relative_to(ROOT).as_posix()
        for package in ("registry", "storage_backends")
        for p in (ROOT / package).rglob("*.py")
        if p.name != "__init__.py"
    }
    assert sorted(modules - mapped_paths()) == []


def test_every_module_on_the_map_exists() -> None:
    listed = {p for p in mapped_paths() if p.endswith(".py")}
    assert sorted(p for p in listed if not (ROOT / p).exists()) == []
