"""The repository phase: for each repository a collection marks, retention, the scan
and the mark (``mark_repository``), then -- once every repository is marked -- the
manifest sweep and what the mark state and the blob phase need to know of it
(``finish_repository``). A few repositories at a time are in memory; the rest wait in
the spill (spill.py)."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from registry.errors import RegistryError
from registry.gc.expire import expire_tags
from registry.gc.inventory import scan
from registry.gc.mark import facts_of, mark
from registry.gc.retention import RetentionPolicy
from registry.gc.run import Repository, Run
from registry.gc.spill import Spill
from registry.gc.sweep import sweep_manifests
from registry.reference import Digest, parse_digest
from registry.store import BlobStore, MarkStateError, RepositoryRecord, RepositorySummary

log = logging.getLogger("registry.gc")

# A blob's or manifest's state in a repository, as the blob phase's lines carry it.
NOT_KEPT, HELD, FIRM = 0, 1, 2


async def mark_repository(run: Run, name: str, policies: Sequence[RetentionPolicy]) -> Repository:
    repo = Repository(name)
    try:
        repo.record = await run.io(run.store.mark_state.repository(name))
    except MarkStateError as exc:
        # Its record only saves reading manifests again, and says what it kept: the
        # shards then keep this repository as a holder of too much, never too little.
        log.warning("gc: %s; marking everything next run", exc)
        run.state_damaged = True
    await expire_tags(run, repo, policies)
    await scan(run, repo)
    await mark(run, repo)
    if repo.unreadable:
        repo.due_at(run.now)  # read them again next run
    if repo.unreadable_kept():
        run.unreadable = True
    return repo


async def finish_repository(
    run: Run, repo: Repository, spill: Spill, *, full: bool
) -> RepositorySummary:
    """Sweep ``repo``'s manifests (unless a kept manifest somewhere is unreadable),
    write its record, and tell the blob phase what changed: the blobs and manifests
    whose state in ``repo`` differs from the last mark (every kept one, for a full mark),
    links it does not use, the content of manifests it deleted, and until when the
    grace period alone keeps what recent untagged manifests use."""
    if not run.unreadable:
        await sweep_manifests(run, repo)
    kept = repo.kept
    sizes = _sizes(repo)
    record = RepositoryRecord(
        manifests={
            str(d): facts_of(refs)
            for d in sorted(repo.revisions - repo.deleted)
            if (refs := repo.known.get(d)) is not None
        },
        firm={str(d): sizes.get(d, 0) for d in sorted((kept.manifests | kept.blobs) & repo.firm)},
        held={str(d): sizes.get(d, 0) for d in sorted((kept.manifests | kept.blobs) - repo.firm)},
    )
    _tell_blob_phase(repo, record, spill, full=full)
    if not run.dry_run and record != repo.record:
        run.guard()
        await run.io(run.store.mark_state.write_repository(repo.name, record))
    return RepositorySummary(
        held_bytes=sum(record.firm.values()) + sum(record.held.values()),
        manifests=len(kept.manifests),
        tags=len(repo.tags),
        due=repo.due,
    )


def _sizes(repo: Repository) -> dict[Digest, int]:
    """The size of each kept manifest (its bytes) and blob (as its descriptors say)."""
    sizes: dict[Digest, int] = {}
    for manifest in repo.kept.manifests:
        refs = repo.known.get(manifest)
        if refs is None:
            continue
        sizes[manifest] = refs.size
        for blob, size in refs.blobs.items():
            sizes.setdefault(blob, size)
    return sizes


def _tell_blob_phase(
    repo: Repository, record: RepositoryRecord, spill: Spill, *, full: bool
) -> None:
    def add(digest: Digest, line: list[object]) -> None:
        spill.add(BlobStore.shard_of(digest), line)

    old = repo.record
    was_kept = set() if full else {d for d in map(_parse, [*old.firm, *old.held]) if d}
    for digest in repo.kept.manifests | repo.kept.blobs | was_kept:
        text = str(digest)
        state = FIRM if text in record.firm else HELD if text in record.held else NOT_KEPT
        before = FIRM if text in old.firm else HELD if text in old.held else NOT_KEPT
        if full or state != before:
            size = record.firm.get(text) or record.held.get(text) or 0
            add(digest, ["k", digest.hex, repo.name, state, size])
    for digest in repo.links - repo.kept.blobs:
        add(digest, ["l", digest.hex, repo.name])
    for digest in repo.deleted:
        add(digest, ["c", digest.hex])
    for digest, until in repo.blob_until.items():
        if digest not in repo.firm:
            add(digest, ["h", digest.hex, until])


def _parse(text: str) -> Digest | None:
    try:
        return parse_digest(text)
    except RegistryError:
        return None
