"""Garbage collection: keep what tags reach, delete the rest, while pushes go on.

One run (``Collector.run``) holds the storage lease named ``gc`` and goes:

1. plan (``plan.py``): mark every repository (a *full* mark), or only those that
   changed since the last mark -- every push, tag and delete leaves a change record
   first (store/changed.py) -- and those time alone changes; what the last mark
   learned about the others is in the mark state (store/mark_state.py);
2. purge upload sessions idle for longer than ``uploads.expiry`` (on S3 the driver's
   delete also aborts their multipart uploads), at least every quarter of it; a full
   mark lists every blob folder and removes tombstones a crashed run left behind;
3. per repository marked, a few at a time (``repositories.py``): retention deletes the
   tags the policies select (``expire.py``, ``retention.py``); the mark, from every
   tag -- and, by the untagged policy, from every revision pushed within
   ``max(untagged.older_than, grace_period)`` or from all of them -- follows index
   children, config and layers, and the referrers (signatures, SBOMs) of every kept
   manifest (``mark.py`` over the pure ``graph.py``);
4. per repository marked, once all are: sweep the revisions nothing reached, with their
   referrer entries, and write its record;
5. per blob shard (``shards.py``): bring the shard's entries (which repositories keep
   each blob) up to date, delete the links of repositories whose kept manifests do not
   use the blob and the data of blobs no repository keeps (``sweep.py``);

then writes the summary and the usage snapshot (``usage.py``), and reports what went
and what the grace period holds back (``report.py``). Listing goes through the store
(``inventory.py``), which alone knows the layout. What a run learns waits in a spill
on local disk (``spill.py``), so that its memory does not grow with the registry.

Each phase starts after the previous one has finished everywhere, so a manifest is
always deleted before anything it references. Every delete is made in a cycle of the
claim/tombstone protocol that keeps pushes and the collector apart; the protocol and
the argument why it is safe are in ``registry/store/claims.py``, and why an
incremental mark keeps what a full one keeps in ``plan.py``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import TypeVar

from registry.config import GcConfig
from registry.gc import metrics
from registry.gc.plan import Plan, Settings, make_plan
from registry.gc.report import CollectionReport
from registry.gc.repositories import finish_repository, mark_repository
from registry.gc.retention import RetentionPolicy, UntaggedPolicy, untagged_age
from registry.gc.run import Run
from registry.gc.shards import BlobPhase, blob_phase, list_blob_folders
from registry.gc.spill import Spill
from registry.gc.sweep import purge_uploads
from registry.gc.usage import Groups, Tally, snapshot
from registry.reference import parse_digest
from registry.store import (
    SETTLE,
    BlobStore,
    Cutoff,
    Lease,
    LeaseLostError,
    MarkSummary,
    RegistryStore,
    RepositorySummary,
    reference_budget,
)

log = logging.getLogger("registry.gc")

LEASE = "gc"
T = TypeVar("T")
REPOSITORY_CONCURRENCY = 8  # repositories in memory at once


class CollectionBusyError(Exception):
    """Another process holds the gc lease: a collection is running elsewhere."""


class Collector:
    """Runs collections over one store; the in-server loop and ``registry gc`` share it.

    ``usage_groups`` names groups of repositories (group -> patterns of
    registry/patterns.py, e.g. a quota's namespace) whose held bytes the usage snapshot
    counts, each blob once per group. ``cached`` are the patterns of the repositories a
    pull-through cache serves (``registry.proxy.cached_namespaces``): there the cache's
    eviction, not the untagged policy, decides when a manifest goes (mark.py)."""

    def __init__(
        self,
        store: RegistryStore,
        config: GcConfig,
        *,
        upload_expiry: float,
        settle: float = SETTLE,
        usage_groups: Mapping[str, Sequence[str]] | None = None,
        cached: Sequence[str] = (),
    ) -> None:
        self.store = store
        self.grace_period = config.grace_period
        self.lease_ttl = config.lease_ttl
        self.full_mark_interval = config.full_mark_interval
        self.settle = settle
        self.untagged = UntaggedPolicy(
            delete=config.untagged.policy == "delete", older_than=config.untagged.older_than
        )
        self.policies = [
            RetentionPolicy(
                repositories=tuple(p.repositories),
                keep_last=p.keep_last,
                older_than=p.older_than,
                protect=tuple(p.protect),
            )
            for p in config.retention
        ]
        self.upload_expiry = upload_expiry
        self.usage_groups = {g: tuple(p) for g, p in (usage_groups or {}).items()}
        self.cached = tuple(cached)
        self.settings = Settings(
            self.grace_period,
            self.untagged,
            tuple(self.policies),
            self.usage_groups,
            self.cached,
        )

    async def run(self, *, dry_run: bool = False, full: bool = False) -> CollectionReport:
        """One collection. A dry run writes nothing (not even the lease) and lists what a
        collection would delete now. ``full`` marks every repository, whatever the mark
        state says. Raises CollectionBusyError when another process holds the lease."""
        clock = self.store.clock
        started = clock.monotonic()
        storage_clock = self.store.storage_clock(LEASE)
        try:
            if dry_run:
                # Writes nothing, not even the clock probe: the local clock stands in.
                report = await self._collect(None, clock.time(), full)
            else:
                lease = self.store.lease(LEASE, self.lease_ttl, settle=self.settle)
                if not await lease.acquire():
                    metrics.RUNS.labels("skipped").inc()
                    raise CollectionBusyError("another garbage collection holds the lease")
                async with lease.kept():
                    report = await self._collect(lease, await storage_clock.now(), full)
        except CollectionBusyError:
            raise
        except Exception:
            if not dry_run:
                metrics.RUNS.labels("failed").inc()
            raise
        report.duration = clock.monotonic() - started
        if not dry_run:
            _count(report)
        return report

    async def _collect(self, lease: Lease | None, now: float, full: bool) -> CollectionReport:
        age = untagged_age(self.untagged, self.grace_period)
        untagged = None if age is None else Cutoff.before(now, age)
        cutoff = Cutoff.before(now, self.grace_period)
        run = Run(self.store, lease, cutoff, untagged, self.cached)
        run.report.grace_period = self.grace_period
        run.report.untagged_older_than = self.untagged.older_than
        spill = Spill()
        try:
            await self._phases(run, spill, full)
        finally:
            spill.close()
        return run.report

    async def _phases(self, run: Run, spill: Spill, force_full: bool) -> None:
        store, report = self.store, run.report
        plan = await make_plan(
            run, self.settings, full_every=self.full_mark_interval, force_full=force_full
        )
        report.full_mark = plan.full
        report.repositories = len(plan.names)
        report.repositories_marked = len(plan.marked)
        if not run.dry_run:
            run.guard()
            await run.io(store.mark_state.begin(run.lease.owner if run.lease else ""))
        last = plan.summary
        uploads_at = last.uploads_at if last else 0.0
        if plan.full or run.now - uploads_at >= self.upload_expiry / 4:
            uploading = await run.io(store.uploads.repositories())
            await purge_uploads(run, sorted(set(plan.names) | set(uploading)), self.upload_expiry)
            uploads_at = run.now
        listed = await list_blob_folders(run, spill) if plan.full else set()

        # Every repository is marked before any manifest is swept.
        parked: list[int] = []

        async def mark_one(name: str) -> None:
            parked.append(spill.park(await mark_repository(run, name, self.policies)))

        await _bounded(plan.marked, mark_one)
        if run.unreadable:
            log.error("gc: some kept manifests cannot be parsed; nothing else is swept")
        summaries: dict[str, RepositorySummary] = {}

        async def finish_one(number: int) -> None:
            repo = spill.unpark(number)
            summaries[repo.name] = await finish_repository(run, repo, spill, full=plan.full)

        unreadable_before = run.unreadable
        await _bounded(sorted(parked), finish_one)
        if run.unreadable and not unreadable_before:
            log.error("gc: a rescued manifest cannot be parsed; no blob is swept")
        report.complete = not run.unreadable
        for digest in plan.orphans:
            spill.add(BlobStore.shard_of(digest), ["c", digest.hex])
        spill.flush()

        phase = _blob_phase_start(plan, self.usage_groups)
        await blob_phase(
            run,
            spill,
            _shards_to_look_at(run, spill, plan, listed) | (await self._stored_shards(run, plan)),
            phase,
            full=plan.full,
            expected=dict(last.shards) if last else {},
            sweep=not run.unreadable,
        )
        summary = self._summary(run, plan, summaries, phase, uploads_at)
        if run.dry_run:
            return
        run.guard()
        await run.io(store.mark_state.write_summary(summary))
        elapsed = max(store.clock.monotonic() - run.started, 0.0)
        await run.io(store.usage.write(snapshot(summary, run.now + elapsed)))
        await run.io(store.changed.remove(plan.consumed))
        await run.io(store.mark_state.end())

    async def _stored_shards(self, run: Run, plan: Plan) -> set[str]:
        """For a full mark, the shards stored now: those left with no blob are removed."""
        return set(await run.io(self.store.mark_state.shards())) if plan.full else set()

    def _summary(
        self,
        run: Run,
        plan: Plan,
        marked: dict[str, RepositorySummary],
        phase: BlobPhase,
        uploads_at: float,
    ) -> MarkSummary:
        last = plan.summary
        repositories: dict[str, RepositorySummary] = {}
        for name in plan.names:
            entry = marked.get(name) or (last.repositories.get(name) if last else None)
            if entry is None:
                continue
            entry.unique_bytes = phase.tally.unique.get(name, 0)
            due = phase.dues.get(name)
            if due is not None:
                entry.due = due if entry.due is None else min(entry.due, due)
            repositories[name] = entry
        full_at = run.now if plan.full else (last.full_at if last else run.now)
        return MarkSummary(
            # A damaged part of the state: the next collection marks everything.
            fingerprint="" if run.state_damaged else self.settings.fingerprint(),
            full_at=full_at,
            uploads_at=uploads_at,
            repositories=repositories,
            unkept={
                f"{shard.partition('/')[0]}:{hexa}": until
                for shard, blobs in sorted(phase.unkept.items())
                for hexa, until in sorted(blobs.items())
            },
            groups=dict(phase.tally.group_bytes),
            total_bytes=phase.tally.total,
            reclaimable_bytes=phase.tally.reclaimable,
            shards=dict(sorted(phase.shard_sizes.items())),
        )


def _blob_phase_start(plan: Plan, usage_groups: Mapping[str, Sequence[str]]) -> BlobPhase:
    last = plan.summary
    unkept: dict[str, dict[str, float]] = {}
    if last is not None:
        for text, until in last.unkept.items():
            digest = parse_digest(text)
            unkept.setdefault(BlobStore.shard_of(digest), {})[digest.hex] = until
    return BlobPhase(
        tally=Tally(Groups(usage_groups), last),
        unkept=unkept,
        shard_sizes=dict(last.shards) if last else {},
    )


def _shards_to_look_at(run: Run, spill: Spill, plan: Plan, listed: Iterable[str]) -> set[str]:
    shards = spill.shards() | set(listed)
    if plan.summary is not None:
        for text, until in plan.summary.unkept.items():
            if until <= run.now:
                shards.add(BlobStore.shard_of(parse_digest(text)))
    return shards


async def _bounded(items: Iterable[T], fn: Callable[[T], Awaitable[None]]) -> None:
    """``fn`` on every item, REPOSITORY_CONCURRENCY at a time (no more in memory)."""
    pending = iter(items)

    async def worker() -> None:
        for item in pending:
            await fn(item)

    await asyncio.gather(*(worker() for _ in range(REPOSITORY_CONCURRENCY)))


def _count(report: CollectionReport) -> None:
    metrics.RUNS.labels("completed").inc()
    metrics.BLOBS_DELETED.inc(len(report.blobs_deleted))
    metrics.BYTES_FREED.inc(report.bytes_freed)
    metrics.MANIFESTS_DELETED.inc(len(report.manifests_deleted))
    metrics.TAGS_DELETED.inc(len(report.tags_deleted))
    metrics.LINKS_DELETED.inc(report.links_deleted)
    metrics.UPLOADS_PURGED.inc(report.uploads_purged)
    metrics.SPARED.inc(report.spared)
    metrics.DURATION.observe(report.duration)
    metrics.LAST_SUCCESS.set_to_current_time()


__all__ = [
    "CollectionBusyError",
    "CollectionReport",
    "Collector",
    "LeaseLostError",
    "reference_budget",
]
