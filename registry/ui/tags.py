"""A repository's tags: searched, sorted by name, version or push time, cut into pages,
and the rows of one page with what each tag names.

Sorting by name or version needs only the tag names (one listing); by push time it
needs every tag's modification time (one stat each: about 30 ms for 5,000 tags on the
filesystem, one request each on S3). Only the tags on the page are opened: what each
points at, and the summary of that manifest (cached by digest, registry/ui/contents.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

from registry.errors import RegistryError
from registry.reference import Digest
from registry.store import RegistryStore, Tag
from registry.ui.contents import Contents, ManifestSummary
from registry.ui.ordering import Listing, Page, by_key, by_version, paginate

SORTS = {"name": False, "version": True, "pushed": True}
_STATS_AT_ONCE = 256  # tags read or stat'ed in parallel (S3 answers each in milliseconds)


@dataclass(frozen=True)
class TagRow:
    name: str
    digest: Digest | None  # None: the tag went away while the page was read
    pushed_at: float | None
    summary: ManifestSummary | None


async def push_times(store: RegistryStore, name: str, tags: Sequence[str]) -> dict[str, float]:
    """When each tag was last pushed (its modification time); gone tags left out."""
    out: dict[str, float] = {}
    for start in range(0, len(tags), _STATS_AT_ONCE):
        batch = tags[start : start + _STATS_AT_ONCE]
        times = await asyncio.gather(*(store.modified(Tag(name, t)) for t in batch))
        out.update((t, m) for t, m in zip(batch, times, strict=True) if m is not None)
    return out


async def tags_naming(store: RegistryStore, name: str, digest: Digest) -> list[str]:
    """The tags of ``name`` that point at ``digest``, in name order: every tag is read,
    a batch at a time (on S3 a request each, so they go in parallel)."""
    names = await store.tags.names(name)
    out: list[str] = []
    for start in range(0, len(names), _STATS_AT_ONCE):
        batch = names[start : start + _STATS_AT_ONCE]
        targets = await store.tags.targets(name, batch)
        out += [t for t, d in zip(batch, targets, strict=True) if d == digest]
    return out


async def tag_list(
    store: RegistryStore, contents: Contents, name: str, listing: Listing
) -> Page[TagRow]:
    tags = await store.tags.names(name)
    if listing.query:
        query = listing.query.casefold()
        tags = [t for t in tags if query in t.casefold()]
    times: dict[str, float] = {}
    if listing.sort == "version":
        tags = by_version(tags, listing.descending)
    elif listing.sort == "pushed":
        times = await push_times(store, name, tags)
        tags = by_key(tags, times.get, listing.descending)
    elif listing.descending:
        tags.reverse()
    page = paginate(tags, listing.page)
    rows = await asyncio.gather(*(_row(store, contents, name, t, times) for t in page.items))
    return Page(list(rows), page.number, page.size, page.total)


async def _row(
    store: RegistryStore, contents: Contents, name: str, tag: str, times: dict[str, float]
) -> TagRow:
    digest = await store.tags.read(name, tag)
    pushed = times.get(tag)
    if pushed is None:
        pushed = await store.modified(Tag(name, tag))
    summary = None
    if digest is not None:
        try:
            summary = await contents.summary(name, digest)
        except RegistryError:
            summary = None  # the manifest went away meanwhile
    return TagRow(tag, digest, pushed, summary)
