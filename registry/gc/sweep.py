"""The sweeps: expired upload sessions; manifests nothing reached (with their referrer
entries, parents before children); then links and blobs no kept manifest uses. Every
delete is made in a cycle of the claim/tombstone protocol (store/claims.py), after its
final check."""

from __future__ import annotations

import contextlib
from collections import defaultdict
from collections.abc import Sequence

from registry.errors import RegistryError
from registry.gc.graph import Node, decided_together, parents_first
from registry.gc.mark import hold, keep, read_references
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
            return len(await uploads.expired_ids(name, older_than))
        run.guard()
        return await uploads.purge_expired(name, older_than)

    run.report.uploads_purged = sum(await run.each(names, purge))


# ---------------------------------------------------------------------------- manifests


async def sweep_manifests(run: Run) -> None:
    """Delete the candidates of the mark, in groups decided together (graph.py): a group
    whose final check finds one in use keeps it and what it reaches."""
    nodes: list[Node] = [
        (repo.name, d)
        for repo in run.repos.values()
        for d in repo.candidates
        if d not in repo.kept.manifests
    ]
    if run.dry_run:
        run.report.manifests_deleted += [f"{name}@{d}" for name, d in nodes]
        return
    await read_references(run, [d for _, d in nodes])
    children = {node: _children(run, node[1]) for node in nodes}
    edges = {
        (name, d): children[(name, d)] | run.repos[name].referrers.get(d, set())
        for name, d in nodes
    }
    groups = decided_together(nodes, edges)
    await run.each(groups, lambda g: run.limited(lambda: _sweep_group(run, g, children)))


def _children(run: Run, digest: Digest) -> set[Digest]:
    refs = run.known.get(digest)
    return set(refs.children) if refs is not None else set()


async def _sweep_group(run: Run, group: list[Node], children: dict[Node, set[Digest]]) -> None:
    digests = sorted({d for _, d in group})
    async with run.cycle(digests) as cycle:
        fresh = {d for d in digests if await run.io(cycle.claimed_fresh(d))}
        for name, d in group:
            repo = run.repos[name]
            modified = await run.io(run.store.modified(Revision(name, d)))
            if d in fresh or (modified is not None and modified != repo.candidates[d]):
                run.report.spared += 1
                added = await keep(run, repo, [d])
                run.firm |= added.manifests | added.blobs.keys()
        doomed = [(name, d) for name, d in group if d not in run.repos[name].kept.manifests]
        await _delete_revisions(run, cycle, doomed, children)


async def _delete_revisions(
    run: Run, cycle: Cycle, doomed: list[Node], children: dict[Node, set[Digest]]
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


async def sweep_blobs(run: Run, blobs: dict[Digest, BlobFiles]) -> None:
    """Delete the links of repositories whose kept manifests do not use the blob, and
    the data (then the claim) of blobs no repository uses."""
    linked_in: dict[Digest, list[Repository]] = defaultdict(list)
    for repo in run.repos.values():
        for d in repo.links:
            linked_in[d].append(repo)
    work = []
    for digest in sorted(set(blobs) | set(linked_in)):
        files = blobs.get(digest, BlobFiles())
        unused = digest not in run.marked
        stale_links = [r for r in linked_in.get(digest, []) if digest not in r.kept.blobs]
        if stale_links or (unused and (files.data or files.claimed)):
            work.append((digest, files, unused, stale_links))
    await run.each(work, lambda w: run.limited(lambda: _sweep_blob(run, *w)))


async def _sweep_blob(
    run: Run, digest: Digest, files: BlobFiles, unused: bool, stale_links: list[Repository]
) -> None:
    store, cutoff = run.store, run.cutoff
    # A first look without the tombstone: most candidates are fresh, and need none.
    claimed = await run.io(store.claims.claimed_at(digest))
    if cutoff.fresh(claimed):
        if unused and files.data and claimed is not None:
            data = await run.io(store.stat(BlobData(digest)))
            hold(run, digest, cutoff.until(claimed), None if data is None else data.size)
        return
    link_times = await run.each(stale_links, lambda r: run.io(store.modified(Link(r.name, digest))))
    old_links = [r for r, t in zip(stale_links, link_times, strict=True) if cutoff.old(t)]
    fresh_links = [t for t in link_times if t is not None and cutoff.fresh(t)]
    data = await run.io(store.stat(BlobData(digest))) if unused and files.data else None
    old_data = data is not None and cutoff.old(data.modified) and not fresh_links
    if data is not None and not old_data:
        hold(run, digest, cutoff.until(max([data.modified, *fresh_links])), data.size)
    orphan_claim = unused and data is None and files.claimed
    if not (old_links or old_data or orphan_claim):
        return
    if run.dry_run:
        run.report.links_deleted += len(old_links)
        if old_data and data is not None:
            _freed(run, digest, data.size)
        return
    async with run.cycle([digest]) as cycle:
        if await run.io(cycle.claimed_fresh(digest)):
            run.report.spared += 1
            return
        links = [Link(repo.name, digest) for repo in old_links]
        times = await run.each(links, lambda link: run.io(store.modified(link)))
        fresh_link = bool(fresh_links) or any(cutoff.fresh(t) for t in times)
        doomed = [link for link, t in zip(links, times, strict=True) if cutoff.old(t)]
        await run.io(cycle.delete(doomed))  # links, before the data
        run.report.links_deleted += len(doomed)
        if not unused or fresh_link:
            return
        data = await run.io(store.stat(BlobData(digest)))
        if data is not None:
            if cutoff.fresh(data.modified):
                return
            await run.io(cycle.delete([BlobData(digest)]))  # the data, before the claim
            _freed(run, digest, data.size)
        await run.io(cycle.delete([BlobClaim(digest)]))


def _freed(run: Run, digest: Digest, size: int) -> None:
    run.report.blobs_deleted.append(str(digest))
    run.report.bytes_freed += size
    run.report.blob_sizes[str(digest)] = size
