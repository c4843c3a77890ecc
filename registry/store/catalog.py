"""The catalog: one marker per repository, listed flat and in name order."""

from __future__ import annotations

from registry.store import layout
from storage_backends import Driver, PathNotFoundError


class Catalog:
    def __init__(self, driver: Driver) -> None:
        self._driver = driver
        self._known: set[str] = set()  # markers this process has seen; they are never removed

    async def add(self, name: str) -> None:
        if name in self._known:
            return
        if not await self.contains(name):
            await self._driver.put(layout.catalog_marker(name), b"")
        self._known.add(name)

    async def contains(self, name: str) -> bool:
        if name in self._known:
            return True
        try:
            await self._driver.stat(layout.catalog_marker(name))
        except PathNotFoundError:
            return False
        return True

    async def list(self, last: str | None, limit: int) -> list[str]:
        start = None if last is None else last + layout.CATALOG_SUFFIX
        markers = await self._driver.list(
            layout.CATALOG, start_after=start, limit=limit, recursive=True
        )
        return [layout.catalog_name(m) for m in markers if m.endswith(layout.CATALOG_SUFFIX)]
