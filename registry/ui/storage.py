"""The storage page: what the collector's last run counted (store/usage.py), as far as
the viewer may see it. Nothing is walked per page view: one object is read.

Registry-wide figures -- the total, what the next collection would reclaim, and how a
repository's bytes split into shared and its own -- say something about every
repository, so they are shown only to a viewer who may see every repository counted;
others see what their repositories hold.
"""

from __future__ import annotations

from dataclasses import dataclass

from registry.store import RegistryStore, RepositoryUsage, UsageSnapshot
from registry.ui.ordering import Listing, Page, by_key, paginate
from registry.ui.viewer import Viewer

SORTS = {"unique": True, "held": True, "shared": True, "name": False}


@dataclass(frozen=True)
class StorageReport:
    snapshot: UsageSnapshot | None  # None: no collection has counted yet
    page: Page[RepositoryUsage]
    everything: bool  # the viewer sees every counted repository: show registry-wide figures
    held_bytes: int  # held by the repositories shown, summed (shared blobs count in each)


async def storage_report(store: RegistryStore, viewer: Viewer, listing: Listing) -> StorageReport:
    snapshot = await store.usage.latest()
    if snapshot is None:
        return StorageReport(None, paginate([], 1), False, 0)
    counted = list(snapshot.repositories)
    visible = [r for r in counted if viewer.may_pull(r.name)]
    everything = len(visible) == len(counted)
    query = listing.query.lower()
    rows = sorted((r for r in visible if query in r.name), key=lambda r: r.name)
    sort = listing.sort if everything or listing.sort in ("held", "name") else "held"
    if sort == "unique":
        rows = by_key(rows, lambda r: r.unique_bytes, listing.descending)
    elif sort == "shared":
        rows = by_key(rows, lambda r: r.shared_bytes, listing.descending)
    elif sort == "held":
        rows = by_key(rows, lambda r: r.held_bytes, listing.descending)
    elif listing.descending:
        rows.reverse()
    held = sum(r.held_bytes for r in visible)
    return StorageReport(snapshot, paginate(rows, listing.page), everything, held)
