"""Mark: in a repository, keep what tags reach -- and, by the untagged policy, what
every revision pushed within ``max(untagged.older_than, grace_period)`` or every
revision reaches: index children, config and layers, and the referrers (signatures,
SBOMs) of every kept manifest. The walk is ``graph.expand``; this module reads what it
needs: what a manifest references comes from the repository's record of the last mark
(content-addressed, so never stale), from this run's cache, or else from its bytes.
What only recent untagged revisions keep is held back by the grace period: the report
says so, and until when.

In a repository a pull-through cache serves (``Run.cached``) every revision is kept:
a manifest pulled by digest is untagged there by nature, and the cache's eviction
(``proxy.evict_after``, ``max_size``; registry/proxy/eviction.py), not the untagged
policy, decides when it goes -- eviction deletes it, and the next collection sweeps what
it alone used. There, too, an index's child whose content is absent is normal (the cache
fetches a child when a client asks for it), not a fault worth a warning."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from registry.errors import RegistryError
from registry.gc.graph import Expansion, References, expand
from registry.gc.run import Repository, Run
from registry.manifest import parse_manifest
from registry.reference import Digest, parse_digest
from registry.store import ManifestFacts, Revision
from storage_backends import PathNotFoundError

log = logging.getLogger("registry.gc")


async def mark(run: Run, repo: Repository) -> None:
    """Keep what ``repo`` needs; the untagged revisions it does not keep become the
    candidates of the manifest sweep (with the modification time the mark saw)."""
    await read_references(run, repo, [*repo.tags.values(), *repo.revisions])
    await keep(run, repo, repo.tags.values())
    rest = sorted(repo.revisions - repo.kept.manifests)
    untagged = None if run.cached(repo.name) else run.untagged
    if untagged is None:
        await keep(run, repo, rest)
        repo.firm = repo.kept.manifests | repo.kept.blobs
        return
    times = await run.each(rest, lambda d: run.io(run.store.modified(Revision(repo.name, d))))
    modified = {d: t for d, t in zip(rest, times, strict=True) if t is not None}
    repo.firm = repo.kept.manifests | repo.kept.blobs
    # Recent untagged revisions keep what they reach, the latest first: what several
    # keep is held back until the latest of them may go.
    recent = [d for d, t in modified.items() if untagged.fresh(t)]
    for digest in sorted(recent, key=lambda d: (modified[d], d), reverse=True):
        until = untagged.until(modified[digest])
        added = await keep(run, repo, [digest])
        for manifest in added.manifests:
            run.report.held_back_manifests[f"{repo.name}@{manifest}"] = until
        for blob in added.blobs:
            repo.blob_until[blob] = max(repo.blob_until.get(blob, until), until)
        repo.due_at(until)
    repo.candidates = {d: t for d, t in modified.items() if d not in repo.kept.manifests}


async def keep(run: Run, repo: Repository, starts: Iterable[Digest]) -> Expansion:
    """Keep ``starts`` in ``repo`` and everything they reach there; returns what was
    added."""
    added = Expansion()
    pending = list(starts)
    while True:
        step = expand(repo.kept, pending, repo.known, repo.referrers)
        added.manifests |= step.manifests
        added.blobs.update(step.blobs)
        if not step.missing:
            return added
        pending = sorted(step.missing)
        await read_references(run, repo, pending)


async def read_references(run: Run, repo: Repository, digests: Iterable[Digest]) -> None:
    """Learn what each manifest references (into ``repo.known``), unless known already."""
    wanted = [d for d in dict.fromkeys(digests) if d not in repo.known]
    facts = repo.record.manifests
    unread = []
    for digest in wanted:
        cached = run.references.get(digest)
        if cached is None and str(digest) in facts:
            cached = _from_facts(facts[str(digest)])
        if cached is None:
            unread.append(digest)
        else:
            repo.known[digest] = cached
    read = await run.each(unread, lambda d: _read(run, repo, d))
    for digest, refs in zip(unread, read, strict=True):
        repo.known[digest] = refs
        if refs is not None:
            run.remember(digest, refs)


def _from_facts(facts: ManifestFacts) -> References | None:
    try:
        return References(
            {parse_digest(d): n for d, n in facts.blobs.items()},
            frozenset(parse_digest(c) for c in facts.children),
            facts.size,
        )
    except RegistryError:
        return None  # damaged: read the manifest again


def facts_of(refs: References) -> ManifestFacts:
    blobs = {str(d): n for d, n in refs.blobs.items()}
    return ManifestFacts(refs.size, blobs, tuple(sorted(map(str, refs.children))))


async def _read(run: Run, repo: Repository, digest: Digest) -> References | None:
    """What a manifest references, or None when its content is gone or unreadable. An
    unreadable manifest is remembered: if it is kept, what it needs is unknown, and
    nothing that might be it may be swept."""
    try:
        body = await run.io(run.store.blobs.get_small(digest))
    except PathNotFoundError:
        # A revision whose content is gone cannot be served; it needs nothing. In a cache
        # a child of an index is fetched when a client first asks for it.
        level = logging.DEBUG if run.cached(repo.name) else logging.WARNING
        log.log(level, "gc: manifest %s has no content (in %s)", digest, repo.name)
        return None
    try:
        manifest = parse_manifest(body, None)
    except RegistryError as exc:
        log.error("gc: manifest %s cannot be parsed: %s", digest, exc.message)
        repo.unreadable.add(digest)
        return None
    return References(
        {d.digest: d.size for d in manifest.blobs},
        frozenset(d.digest for d in manifest.manifests),
        len(body),
    )
