"""The blob phase, one shard (``<alg>/<hex[:2]>``) at a time: apply what the marks
changed to the shard's entries (which repositories keep each blob), sweep the blobs
that changed or were due -- unused links, and the data of blobs no repository keeps --
and keep the usage sums (usage.py) and the list of blobs nothing keeps up to date.

A full mark lists every blob folder first (``list_blob_folders``), removes the
tombstones a crashed collection left, and rebuilds every shard from nothing; an
incremental one reads only the shards that its repositories' lines touch or whose
unkept blobs are due, and looks at each candidate's folder on its own.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from dataclasses import dataclass, field, replace

from registry.gc.repositories import FIRM, HELD
from registry.gc.run import Run
from registry.gc.spill import Spill
from registry.gc.sweep import sweep_blob
from registry.gc.usage import Tally
from registry.reference import Digest
from registry.store import BlobFiles, BlobHolders, MarkStateError

log = logging.getLogger("registry.gc")

SHARD_CONCURRENCY = 4


@dataclass
class BlobPhase:
    """What the blob phase produces for the summary."""

    tally: Tally
    # Per shard, every stored blob nothing keeps (hex) -> when to look at it again.
    unkept: dict[str, dict[str, float]]
    shard_sizes: dict[str, int]
    dues: dict[str, float] = field(default_factory=dict)  # repository -> look again at


async def list_blob_folders(run: Run, spill: Spill) -> set[str]:
    """A full mark's listing of every blob folder, shard by shard, into the spill; the
    tombstones a crashed collection left are removed on the way (the lease is ours, so
    no collection is running). Returns the shards listed."""
    blobs = run.store.blobs
    shards = await run.io(blobs.shards())
    stale: list[Digest] = []

    async def one(shard: str) -> None:
        for digest, files in (await run.io(blobs.files_in(shard))).items():
            spill.add(shard, ["f", digest.hex, files.data, files.claimed, files.collecting])
            if files.collecting:
                stale.append(digest)

    await run.each(shards, one)
    if stale and not run.dry_run:
        log.warning("gc: removing %d tombstones left by an interrupted collection", len(stale))
        await run.io(run.store.claims.remove_tombstones(sorted(stale), run.guard))
    return set(shards)


async def blob_phase(
    run: Run,
    spill: Spill,
    shards: set[str],
    phase: BlobPhase,
    *,
    full: bool,
    expected: dict[str, int],
    sweep: bool,
) -> None:
    """Process ``shards`` (a few at a time); ``expected`` holds the entry count the last
    summary gave each shard."""
    slots = asyncio.Semaphore(SHARD_CONCURRENCY)

    async def one(shard: str) -> None:
        async with slots:
            await _shard(run, spill, shard, phase, full=full, expected=expected, sweep=sweep)

    await run.each(sorted(shards), one)


@dataclass
class _Lines:
    listed: dict[str, BlobFiles] = field(default_factory=dict)
    kept: dict[str, list[tuple[str, int, int]]] = field(default_factory=lambda: defaultdict(list))
    links: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    candidates: set[str] = field(default_factory=set)
    held_until: dict[str, float] = field(default_factory=dict)


def _read_lines(spill: Spill, shard: str) -> _Lines:
    lines = _Lines()
    for line in spill.lines(shard):
        kind, hexa = line[0], line[1]
        if kind == "k":
            lines.kept[hexa].append((line[2], line[3], line[4]))
        elif kind == "l":
            lines.links[hexa].append(line[2])
        elif kind == "c":
            lines.candidates.add(hexa)
        elif kind == "h":
            lines.held_until[hexa] = max(lines.held_until.get(hexa, line[2]), line[2])
        elif kind == "f":
            lines.listed[hexa] = BlobFiles(data=line[2], claimed=line[3], collecting=line[4])
    return lines


async def _shard(
    run: Run,
    spill: Spill,
    shard: str,
    phase: BlobPhase,
    *,
    full: bool,
    expected: dict[str, int],
    sweep: bool,
) -> None:
    algorithm = shard.partition("/")[0]
    state = run.store.mark_state
    entries: dict[str, BlobHolders] = {}
    if not full:
        try:
            entries = await run.io(state.shard(shard))
            if len(entries) != expected.get(shard, 0):
                raise MarkStateError(f"the mark shard {shard} does not hold what the summary says")
        except MarkStateError as exc:
            # Without it, what other repositories keep here is unknown: sweep nothing of
            # it, and mark everything next run.
            log.warning("gc: %s; marking everything next run", exc)
            run.state_damaged = True
            return
    lines = _read_lines(spill, shard)
    before: dict[str, BlobHolders | None] = {}

    def changing(hexa: str) -> BlobHolders | None:
        if hexa not in before:
            entry = entries.get(hexa)
            before[hexa] = (
                None
                if entry is None
                else replace(entry, firm=set(entry.firm), held=set(entry.held))
            )
        return entries.get(hexa)

    for hexa, changes in lines.kept.items():
        entry = changing(hexa) or BlobHolders(0)
        for repository, kept_as, size in changes:
            entry.firm.discard(repository)
            entry.held.discard(repository)
            if kept_as == FIRM:
                entry.firm.add(repository)
            elif kept_as == HELD:
                entry.held.add(repository)
            if not entry.size:
                entry.size = size
        entries[hexa] = entry

    old_unkept = phase.unkept.pop(shard, {})
    due = {h for h, t in old_unkept.items() if t <= run.now}
    unheld = {h for h, e in entries.items() if not e.holders()}
    candidates = (
        (unheld & (set(before) | due)) | lines.candidates | set(lines.links) | (due - set(entries))
    )
    if full:
        candidates |= unheld | {h for h in lines.listed if h not in entries}

    async def look(hexa: str) -> None:
        digest = Digest(algorithm, hexa)
        entry = entries.get(hexa)
        unused = entry is None or not entry.holders()
        stale = lines.links.get(hexa, [])
        if not sweep:  # look again next run
            for repository in stale:
                phase.dues[repository] = run.now
            if unused:
                old_unkept[hexa] = run.now
            return
        files = (
            lines.listed.get(hexa, BlobFiles())
            if full
            else await run.io(run.store.blobs.files(digest))
        )
        outcome = await sweep_blob(run, digest, files, unused, stale)
        for repository, until in outcome.links_held.items():
            phase.dues[repository] = min(phase.dues.get(repository, until), until)
        if not unused:
            return
        if outcome.stored:
            if entry is None and outcome.size is not None:
                changing(hexa)
                entries[hexa] = BlobHolders(outcome.size)
            old_unkept[hexa] = run.now if outcome.until is None else outcome.until
            if outcome.until is not None and outcome.until > run.now:
                _held_back(run, digest, outcome.until, entries.get(hexa))
            return
        if entry is not None:
            changing(hexa)
            del entries[hexa]
        if outcome.until is not None:  # a claim no manifest followed (yet)
            old_unkept[hexa] = outcome.until
        else:
            old_unkept.pop(hexa, None)

    await run.each(sorted(candidates), lambda h: run.limited(lambda: look(h)))

    for hexa, until in old_unkept.items():
        if hexa not in candidates and until > run.now and hexa in entries:
            _held_back(run, Digest(algorithm, hexa), until, entries[hexa])
    for hexa, until in lines.held_until.items():
        held = entries.get(hexa)
        if held is not None and not held.firm and held.holders():
            _held_back(run, Digest(algorithm, hexa), until, held)

    for hexa, old in before.items():
        phase.tally.change(old, entries.get(hexa))
    if old_unkept:
        phase.unkept[shard] = old_unkept
    if entries:
        phase.shard_sizes[shard] = len(entries)
    else:
        phase.shard_sizes.pop(shard, None)
    if not run.dry_run and (before or full):
        run.guard()
        await run.io(state.write_shard(shard, entries))


def _held_back(run: Run, digest: Digest, until: float, entry: BlobHolders | None) -> None:
    key = str(digest)
    held = run.report.held_back_blobs
    held[key] = max(held.get(key, until), until)
    if entry is not None:
        run.report.blob_sizes[key] = entry.size
