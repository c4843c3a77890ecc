"""The repository list: every repository the viewer may pull, searched, sorted by name,
last push or size, and cut into pages.

Whatever the page, it costs three reads and opens no repository: the catalog (only
below the viewer's prefixes), the last-push markers (store/pushes.py, one listing) and
the usage snapshot of the collector's last run (store/usage.py, one object). Sizes are
as of that run; a repository pushed since has none yet.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from registry.store import RegistryStore, RepositoryUsage, UsageSnapshot
from registry.ui.ordering import Listing, Page, by_key, paginate
from registry.ui.viewer import Viewer

# Sort columns and their natural direction (True: descending -- newest, largest first).
SORTS = {"name": False, "pushed": True, "size": True}
CATALOG_MAX = 10_000_000  # the catalog is read whole (below the viewer's prefixes)


@dataclass(frozen=True)
class RepositoryRow:
    name: str
    pushed_at: float | None  # None: no push recorded since the UI's index existed
    usage: RepositoryUsage | None  # None: not counted by the collector yet


@dataclass(frozen=True)
class RepositoryList:
    page: Page[RepositoryRow]
    listing: Listing
    snapshot: UsageSnapshot | None


async def visible_repositories(store: RegistryStore, viewer: Viewer) -> list[str]:
    """Every repository the viewer may pull, in name order."""
    names = await store.catalog.list(None, CATALOG_MAX, viewer.pull_prefixes())
    return [n for n in names if viewer.may_pull(n)]


async def repository_list(store: RegistryStore, viewer: Viewer, listing: Listing) -> RepositoryList:
    names, pushes, snapshot = await asyncio.gather(
        visible_repositories(store, viewer), store.pushes.all(), store.usage.latest()
    )
    query = listing.query.lower()
    if query:
        names = [n for n in names if query in n]
    usage = {r.name: r for r in snapshot.repositories} if snapshot is not None else {}
    # Rows are made for the page only: the others are just names with a sort key.
    if listing.sort == "pushed":
        names = by_key(names, pushes.get, listing.descending)
    elif listing.sort == "size":
        held = {name: u.held_bytes for name, u in usage.items()}
        names = by_key(names, held.get, listing.descending)
    elif listing.descending:
        names.reverse()
    page = paginate(names, listing.page)
    rows = [RepositoryRow(n, pushes.get(n), usage.get(n)) for n in page.items]
    return RepositoryList(Page(rows, page.number, page.size, page.total), listing, snapshot)
