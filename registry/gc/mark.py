"""Mark: in every repository, keep what tags reach -- and, by the untagged policy, what
every revision pushed within ``max(untagged.older_than, grace_period)`` or every
revision reaches: index children, config and layers, and the referrers (signatures,
SBOMs) of every kept manifest. The walk is ``graph.expand``; this module reads what it
needs. What only recent untagged revisions keep is held back by the grace period: the
report says so, and until when."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from registry.errors import RegistryError
from registry.gc.graph import Expansion, References, expand
from registry.gc.run import Repository, Run
from registry.manifest import parse_manifest
from registry.reference import Digest
from registry.store import Revision
from storage_backends import PathNotFoundError

log = logging.getLogger("registry.gc")

_REFERENCES_CACHE_SIZE = 200_000


async def mark(run: Run, repo: Repository) -> None:
    """Keep what ``repo`` needs; the untagged revisions it does not keep become the
    candidates of the manifest sweep (with the modification time the mark saw)."""
    await read_references(run, [*repo.tags.values(), *repo.revisions])
    await keep(run, repo, repo.tags.values())
    rest = sorted(repo.revisions - repo.kept.manifests)
    if run.untagged is None:
        await keep(run, repo, rest)
        run.firm |= repo.kept.manifests | repo.kept.blobs
        return
    times = await run.each(rest, lambda d: run.io(run.store.modified(Revision(repo.name, d))))
    modified = {d: t for d, t in zip(rest, times, strict=True) if t is not None}
    run.firm |= repo.kept.manifests | repo.kept.blobs
    # Recent untagged revisions keep what they reach, the latest first: what several
    # keep is held back until the latest of them may go.
    recent = [d for d, t in modified.items() if run.untagged.fresh(t)]
    for digest in sorted(recent, key=lambda d: (modified[d], d), reverse=True):
        until = run.untagged.until(modified[digest])
        added = await keep(run, repo, [digest])
        for manifest in added.manifests:
            run.report.held_back_manifests[f"{repo.name}@{manifest}"] = until
        for blob, size in added.blobs.items():
            hold(run, blob, until, size)
    repo.candidates = {d: t for d, t in modified.items() if d not in repo.kept.manifests}


def hold(run: Run, digest: Digest, until: float, size: int | None) -> None:
    """Record that only the grace period keeps ``digest`` now, until ``until``."""
    run.held[digest] = max(run.held.get(digest, until), until)
    if size is not None:
        run.report.blob_sizes[str(digest)] = size


async def keep(run: Run, repo: Repository, starts: Iterable[Digest]) -> Expansion:
    """Keep ``starts`` in ``repo`` and everything they reach there; returns what was
    added."""
    added = Expansion()
    pending = list(starts)
    while True:
        step = expand(repo.kept, pending, run.known, repo.referrers)
        added.manifests |= step.manifests
        added.blobs.update(step.blobs)
        run.marked |= step.manifests | step.blobs.keys()
        if not step.missing:
            return added
        pending = sorted(step.missing)
        await read_references(run, pending)


async def read_references(run: Run, digests: Iterable[Digest]) -> None:
    """Read what each manifest references into ``run.known``, unless known already."""
    wanted = [d for d in dict.fromkeys(digests) if d not in run.known]
    for digest, refs in zip(wanted, await run.each(wanted, lambda d: _read(run, d)), strict=True):
        run.known[digest] = refs


async def _read(run: Run, digest: Digest) -> References | None:
    """What a manifest references, or None when its content is gone or unreadable. An
    unreadable manifest is remembered: if it is kept, what it needs is unknown, and
    nothing that might be it may be swept."""
    cache = run.references
    if digest in cache:
        return cache[digest]
    try:
        body = await run.io(run.store.blobs.get_small(digest))
    except PathNotFoundError:
        # A revision whose content is gone cannot be served; it needs nothing.
        log.warning("gc: manifest %s has no content", digest)
        return None
    try:
        manifest = parse_manifest(body, None)
    except RegistryError as exc:
        log.error("gc: manifest %s cannot be parsed: %s", digest, exc.message)
        run.unreadable.add(digest)
        return None
    refs = References(
        {d.digest: d.size for d in manifest.blobs},
        frozenset(d.digest for d in manifest.manifests),
    )
    if len(cache) >= _REFERENCES_CACHE_SIZE:
        cache.clear()
    cache[digest] = refs
    return refs
