"""Listing, through the store: the repositories, and per repository its tags,
revisions, referrer entries and links. (A full mark also lists every blob folder,
shard by shard: ``shards.py``.)"""

from __future__ import annotations

import asyncio

from registry.gc.run import Repository, Run
from registry.reference import is_valid_name

CATALOG_PAGE = 1000


async def repository_names(run: Run) -> list[str]:
    names: list[str] = []
    last: str | None = None
    while True:
        page = await run.io(run.store.catalog.list(last, CATALOG_PAGE))
        names.extend(n for n in page if is_valid_name(n))
        if len(page) < CATALOG_PAGE:
            return names
        last = page[-1]


async def read_tags(run: Run, repo: Repository) -> None:
    """The tags of ``repo`` and what they point at (tags that do not hold a digest are
    left out: they keep nothing)."""
    tags = run.store.tags
    names = await run.io(tags.names(repo.name))
    targets = await run.each(names, lambda t: run.io(tags.read(repo.name, t)))
    repo.tags = {t: d for t, d in zip(names, targets, strict=True) if d is not None}


async def scan(run: Run, repo: Repository) -> None:
    """The revisions, referrer entries and links of ``repo``."""
    store = run.store
    repo.revisions, repo.referrers, repo.links = await asyncio.gather(
        run.io(store.manifests.revisions(repo.name)),
        run.io(store.referrers.entries(repo.name)),
        run.io(store.blobs.links(repo.name)),
    )
