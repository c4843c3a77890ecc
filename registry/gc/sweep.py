"""The sweeps: expired upload sessions; in a repository, the manifests nothing reached
(with their referrer entries, parents before children); then, blob by blob, links and
data no kept manifest uses. Every delete is made in a cycle of the claim/tombstone
protocol (store/claims.py), after its final check."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field

from registry.errors import RegistryError
from registry.gc.graph import Node, decided_together, parents_first
from registry.gc.mark import keep, read_references
from registry.gc.run import Repository, Run
from registry.reference import Digest, parse_digest
from registry.store import (
    BlobClaim,
    BlobData,
    BlobFiles,
    Cycle,
    Link,
    ReferrerEntry,
    Revision,
)


async def purge_uploads(run: Run, names: Sequence[str], expiry: float) -> None:
    """Remove the upload sessions not touched for ``expiry`` seconds (on S3 the delete
    also aborts their multipart uploads)."""
    uploads = run.store.uploads
    older_than = run.now - expiry

    async def purge(name: str) -> int:
        if run.dry_run:
            return len(await run.io(uploads.expired_ids(name, older_than)))
        run.guard()
        return await run.io(uploads.purge_expired(name, older_than))

    run.report.uploads_purged = sum(await run.each(names, purge))


# ---------------------------------------------------------------------------- manifests


async def sweep_manifests(run: Run, repo: Repository) -> None:
    """Delete the candidates of the mark in ``repo``, in groups decided together
    (graph.py): a group whose final check finds one in use keeps it and what it
    reaches."""
    nodes: list[Node] = [(repo.name, d) for d in repo.candidates if d not in repo.kept.manifests]
    if run.dry_run:
        run.report.manifests_deleted += [f"{name}@{d}" for name, d in nodes]
        repo.deleted |= {d for _, d in nodes}
        return
    await read_references(run, repo, [d for _, d in nodes])
    children = {node: _children(repo, node[1]) for node in nodes}
    edges = {node: children[node] | repo.referrers.get(node[1], set()) for node in nodes}
    groups = decided_together(nodes, edges)
    await run.each(groups, lambda g: run.limited(lambda: _sweep_group(run, repo, g, children)))


def _children(repo: Repository, digest: Digest) -> set[Digest]:
    refs = repo.known.get(digest)
    return set(refs.children) if refs is not None else set()


async def _sweep_group(
    run: Run, repo: Repository, group: list[Node], children: dict[Node, set[Digest]]
) -> None:
    digests = sorted({d for _, d in group})
    async with run.cycle(digests) as cycle:
        fresh = {d for d in digests if await run.io(cycle.claimed_fresh(d))}
        for _, d in group:
            modified = await run.io(run.store.modified(Revision(repo.name, d)))
            if d in fresh or (modified is not None and modified != repo.candidates[d]):
                run.report.spared += 1
                # Kept for now, as the grace period keeps recent untagged manifests: the
                # push that spared it is recent, and the next run looks again.
                await keep(run, repo, [d])
                repo.due_at(run.now)
        doomed = [(name, d) for name, d in group if d not in repo.kept.manifests]
        await _delete_revisions(run, repo, cycle, doomed, children)


async def _delete_revisions(
    run: Run,
    repo: Repository,
    cycle: Cycle,
    doomed: list[Node],
    children: dict[Node, set[Digest]],
) -> None:
    """C3 for manifests: every referrer entry, then the revisions one level of the index
    tree at a time, parents first."""
    found = await run.each(doomed, lambda n: _revision_subject(run, *n))
    stored = [n for n, (present, _) in zip(doomed, found, strict=True) if present]
    entries = [
        ReferrerEntry(name, subject, d)
        for (name, d), (_, subject) in zip(doomed, found, strict=True)
        if subject is not None
    ]
    await run.io(cycle.delete(entries))
    for level in parents_first(stored, children):
        await run.io(cycle.delete([Revision(name, d) for name, d in level]))
        run.report.manifests_deleted += [f"{name}@{d}" for name, d in level]
        repo.deleted |= {d for _, d in level}


async def _revision_subject(run: Run, name: str, digest: Digest) -> tuple[bool, Digest | None]:
    """Whether the revision is still stored, and the subject it names if any."""
    try:
        stored = await run.io(run.store.manifests.revision(name, digest))
    except RegistryError:
        return False, None  # deleted meanwhile (DELETE by digest)
    if stored.subject is not None:
        with contextlib.suppress(RegistryError):
            return True, parse_digest(stored.subject)
    return True, None


# ---------------------------------------------------------------------------- blobs


@dataclass
class BlobOutcome:
    """What the sweep of one blob found and did (in a dry run: would do)."""

    size: int | None = None  # of its data, when it looked
    stored: bool = True  # False: it has no data (any more)
    freed: bool = False  # its data went
    # Unused, and its data (or, without data, its claim) kept by the grace period until
    # then: a later run looks again.
    until: float | None = None
    # Links it found unused but within the grace period: repository -> until.
    links_held: dict[str, float] = field(default_factory=dict)


async def sweep_blob(
    run: Run, digest: Digest, files: BlobFiles, unused: bool, stale_links: list[str]
) -> BlobOutcome:
    """Delete ``stale_links`` (repositories whose kept manifests do not use the blob)
    and, when no repository uses it (``unused``), its data and then its claim."""
    store, cutoff = run.store, run.cutoff
    outcome = BlobOutcome(stored=files.data)
    # A first look without the tombstone: most candidates are fresh, and need none.
    claimed = await run.io(store.claims.claimed_at(digest))
    data = await run.io(store.stat(BlobData(digest))) if unused and files.data else None
    if data is not None:
        outcome.size = data.size
    elif unused:
        outcome.stored = False
    if claimed is not None and cutoff.fresh(claimed):
        if unused:  # its data, or a claim no manifest followed yet
            outcome.until = cutoff.until(max(claimed, data.modified if data else claimed))
        outcome.links_held = {name: cutoff.until(claimed) for name in stale_links}
        return outcome
    link_times = await run.each(
        stale_links, lambda name: run.io(store.modified(Link(name, digest)))
    )
    old_links = [n for n, t in zip(stale_links, link_times, strict=True) if cutoff.old(t)]
    fresh_links = {n: t for n, t in zip(stale_links, link_times, strict=True) if cutoff.fresh(t)}
    outcome.links_held = {n: cutoff.until(t) for n, t in fresh_links.items() if t is not None}
    old_data = data is not None and cutoff.old(data.modified) and not fresh_links
    if data is not None and not old_data:
        newest = max([data.modified, *(t for t in fresh_links.values() if t is not None)])
        outcome.until = cutoff.until(newest)
    orphan_claim = unused and data is None and files.claimed
    if not (old_links or old_data or orphan_claim):
        return outcome
    if run.dry_run:
        run.report.links_deleted += len(old_links)
        if old_data and data is not None:
            _freed(run, digest, data.size, outcome)
        return outcome
    async with run.cycle([digest]) as cycle:
        if await run.io(cycle.claimed_fresh(digest)):
            run.report.spared += 1
            if unused:
                outcome.until = run.now  # a push relies on it now: look again next run
            return outcome
        links = [Link(name, digest) for name in old_links]
        times = await run.each(links, lambda link: run.io(store.modified(link)))
        fresh_link = bool(fresh_links) or any(cutoff.fresh(t) for t in times)
        doomed = [link for link, t in zip(links, times, strict=True) if cutoff.old(t)]
        outcome.links_held |= {
            link.repository: cutoff.until(t)
            for link, t in zip(links, times, strict=True)
            if t is not None and cutoff.fresh(t)
        }
        await run.io(cycle.delete(doomed))  # links, before the data
        run.report.links_deleted += len(doomed)
        if not unused or fresh_link:
            if data is not None and outcome.until is None:
                outcome.until = run.now
            return outcome
        data = await run.io(store.stat(BlobData(digest)))
        if data is not None:
            if cutoff.fresh(data.modified):
                outcome.until, outcome.size = cutoff.until(data.modified), data.size
                return outcome
            await run.io(cycle.delete([BlobData(digest)]))  # the data, before the claim
            _freed(run, digest, data.size, outcome)
        else:
            outcome.stored = False
        await run.io(cycle.delete([BlobClaim(digest)]))
    return outcome


def _freed(run: Run, digest: Digest, size: int, outcome: BlobOutcome) -> None:
    run.report.blobs_deleted.append(str(digest))
    run.report.bytes_freed += size
    run.report.blob_sizes[str(digest)] = size
    outcome.freed, outcome.stored, outcome.size, outcome.until = True, False, size, None
