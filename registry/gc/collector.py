"""Garbage collection: keep what tags reach, delete the rest, while pushes go on.

One run (``Collector.run``) holds the storage lease named ``gc`` and goes:

1. purge upload sessions idle for longer than ``uploads.expiry`` (on S3 the driver's
   delete also aborts their multipart uploads), and remove tombstones a crashed run
   left behind;
2. retention: delete the tags the policies select (``expire.py``, ``retention.py``);
3. mark, in every repository: from every tag -- and, by the untagged policy, from every
   revision pushed within ``max(untagged.older_than, grace_period)`` or from all of
   them -- follow index children, config and layers, and the referrers (signatures,
   SBOMs) of every kept manifest (``mark.py`` over the pure ``graph.py``);
4. sweep manifests: delete the revisions nothing reached, with their referrer entries;
5. sweep blobs: delete the links of repositories whose kept manifests do not use the
   blob, and the data of blobs no repository uses (``sweep.py``);

and reports what went and what the grace period holds back (``report.py``). Listing
goes through the store (``inventory.py``), which alone knows the layout.

Each phase starts after the previous one has finished everywhere, so a manifest is
always deleted before anything it references. Every delete is made in a cycle of the
claim/tombstone protocol that keeps pushes and the collector apart; the protocol and
the argument why it is safe are in ``registry/store/claims.py``.
"""

from __future__ import annotations

import logging

from registry.config import GcConfig
from registry.gc import metrics
from registry.gc.expire import expire_tags
from registry.gc.graph import References
from registry.gc.inventory import blob_folders, repository_names, scan
from registry.gc.mark import mark
from registry.gc.report import CollectionReport
from registry.gc.retention import RetentionPolicy, UntaggedPolicy, untagged_age
from registry.gc.run import Run
from registry.gc.sweep import purge_uploads, sweep_blobs, sweep_manifests
from registry.reference import Digest
from registry.store import (
    SETTLE,
    Cutoff,
    Lease,
    LeaseLostError,
    RegistryStore,
    reference_budget,
)

log = logging.getLogger("registry.gc")

LEASE = "gc"


class CollectionBusyError(Exception):
    """Another process holds the gc lease: a collection is running elsewhere."""


class Collector:
    """Runs collections over one store; the in-server loop and ``registry gc`` share it."""

    def __init__(
        self,
        store: RegistryStore,
        config: GcConfig,
        *,
        upload_expiry: float,
        settle: float = SETTLE,
    ) -> None:
        self.store = store
        self.grace_period = config.grace_period
        self.lease_ttl = config.lease_ttl
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
        # Manifests are content-addressed, so what one references never changes.
        self.references_cache: dict[Digest, References] = {}

    async def run(self, *, dry_run: bool = False) -> CollectionReport:
        """One collection. A dry run writes nothing (not even the lease) and lists what a
        collection would delete now. Raises CollectionBusyError when another process
        holds the lease."""
        clock = self.store.clock
        started = clock.monotonic()
        storage_clock = self.store.storage_clock(LEASE)
        try:
            if dry_run:
                # Writes nothing, not even the clock probe: the local clock stands in.
                report = await self._collect(None, clock.time())
            else:
                lease = self.store.lease(LEASE, self.lease_ttl, settle=self.settle)
                if not await lease.acquire():
                    metrics.RUNS.labels("skipped").inc()
                    raise CollectionBusyError("another garbage collection holds the lease")
                async with lease.kept():
                    report = await self._collect(lease, await storage_clock.now())
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

    async def _collect(self, lease: Lease | None, now: float) -> CollectionReport:
        age = untagged_age(self.untagged, self.grace_period)
        untagged = None if age is None else Cutoff.before(now, age)
        run = Run(
            self.store,
            lease,
            Cutoff.before(now, self.grace_period),
            untagged,
            self.references_cache,
        )
        run.report.grace_period = self.grace_period
        run.report.untagged_older_than = self.untagged.older_than
        await collect(run, self.policies, self.upload_expiry)
        report = run.report
        report.held_back_blobs = {
            str(d): until for d, until in sorted(run.held.items()) if d not in run.firm
        }
        listed = {*report.held_back_blobs, *report.blobs_deleted}
        report.blob_sizes = {d: n for d, n in report.blob_sizes.items() if d in listed}
        return report


async def collect(run: Run, policies: list[RetentionPolicy], upload_expiry: float) -> None:
    """The phases of one collection, in order."""
    names = await repository_names(run)
    blobs = await blob_folders(run)
    uploading = await run.io(run.store.uploads.repositories())
    await purge_uploads(run, sorted(set(names) | set(uploading)), upload_expiry)
    if not run.dry_run:
        # We hold the lease, so no collection is running: these are left by a crashed one.
        stale = [d for d, f in blobs.items() if f.collecting]
        if stale:
            log.warning("gc: removing %d tombstones left by an interrupted collection", len(stale))
            await run.io(run.store.claims.remove_tombstones(stale, run.guard))
    await expire_tags(run, names, policies)
    await run.each(run.repos.values(), lambda repo: scan(run, repo))
    await run.each(run.repos.values(), lambda repo: mark(run, repo))
    if run.unreadable_kept():
        run.report.complete = False
        log.error("gc: some kept manifests cannot be parsed; nothing else is swept")
        return
    await sweep_manifests(run)
    if run.unreadable_kept():  # a manifest kept by a push's claim is unreadable
        run.report.complete = False
        log.error("gc: a rescued manifest cannot be parsed; no blob is swept")
        return
    await sweep_blobs(run, blobs)


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
