"""The catalog: one marker per repository, listed flat and in name order."""

from __future__ import annotations

import builtins
from collections.abc import Sequence

from registry.reference import is_valid_name
from registry.store import layout
from registry.store.changes import Changes, RepositoryCreated
from storage_backends import Driver, PathNotFoundError


class Catalog:
    def __init__(self, driver: Driver, changes: Changes) -> None:
        self._driver = driver
        self._changes = changes
        self._known: set[str] = set()  # markers this process has seen; they are never removed

    async def add(self, name: str) -> None:
        if name in self._known:
            return
        if not await self.contains(name):
            await self._changes.before(RepositoryCreated(name))
            await self._driver.put(layout.catalog_marker(name), b"")
        self._known.add(name)

    async def contains(self, name: str) -> bool:
        if name in self._known:
            return True
        try:
            await self._driver.stat(layout.catalog_marker(name))
        except PathNotFoundError:
            return False
        self._known.add(name)
        return True

    async def list(
        self, last: str | None, limit: int, prefixes: Sequence[str] = ("",)
    ) -> list[str]:
        """Up to ``limit`` names after ``last``, in order, of the repositories whose names
        start with one of ``prefixes``. Only the markers below the prefixes are read: a
        call costs what it returns, whatever lies outside them."""
        names: list[str] = []
        for prefix in _disjoint(prefixes):
            if len(names) >= limit:
                break
            if last is not None and prefix < last and not last.startswith(prefix):
                continue  # every name with this prefix is before last
            names += await self._list_prefix(prefix, last, limit - len(names))
        return names

    async def _list_prefix(self, prefix: str, last: str | None, limit: int) -> builtins.list[str]:
        # The listing starts in the deepest folder the prefix names, at the prefix (or
        # after last): the names with the prefix follow each other from there.
        folder, slash, start = prefix.rpartition("/")
        if slash and not is_valid_name(folder):
            return []  # no repository lies below what no name can be
        if last is not None and last.startswith(prefix):
            start = last.removeprefix(folder + slash) + layout.CATALOG_SUFFIX
        markers = await self._driver.list(
            f"{layout.CATALOG}/{folder}" if folder else layout.CATALOG,
            start_after=start or None,
            limit=limit,
            recursive=True,
        )
        names = []
        for marker in markers:
            name = folder + slash + layout.catalog_name(marker)
            if not name.startswith(prefix):
                break
            if marker.endswith(layout.CATALOG_SUFFIX):
                names.append(name)
        return names


def _disjoint(prefixes: Sequence[str]) -> list[str]:
    """The prefixes in order, without those that extend another: then the names of each
    follow all names of the one before."""
    out: list[str] = []
    for prefix in sorted(set(prefixes)):
        if not out or not prefix.startswith(out[-1]):
            out.append(prefix)
    return out
