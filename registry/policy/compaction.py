"""Upkeep of the quota ledgers, under the storage lease ``usage`` (one process at a time),
every ``policy.quota.compact_interval``:

1. **count** a ledger that has no checkpoint yet (a quota just configured): walk its
   repositories once -- revisions, manifests, links -- into a first checkpoint; the
   journal entries written meanwhile are applied on top, which set semantics allow;
2. **fold** the journal entries older than ``settle`` (their change has landed or
   failed by then) into a new checkpoint, and delete them;
3. **verify** against storage what those entries say (is the revision, the link there?)
   and follow storage where they differ: an entry is written *before* its change, so a
   change that then failed (a crash, a storage error, a later listener refusing) must
   not count;
4. **correct** from the collector's snapshot (store/usage.py): the mark phase counts
   what every quota's repositories hold (``Collector(usage_groups=...)``), exactly. A
   ledger that no entry changed from ``settle`` before the run started until now takes
   the difference as its correction (``offset``): drift from any cause -- a change made
   by a process without these listeners, a record lost by hand -- is gone after the
   first collection that runs while the namespace is quiet. A namespace changed during
   the run is left alone: the collector and the journal would disagree about pushes it
   may or may not have seen;
5. forget stale reservations and old tag intents; and set the quota gauges.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from registry.errors import RegistryError
from registry.manifest import parse_manifest
from registry.policy import metrics
from registry.policy.book import UsageBook
from registry.policy.ledger import Ledger
from registry.policy.quota_rules import Quota, QuotaRules
from registry.reference import is_valid_name, parse_digest
from registry.store import (
    BlobData,
    Checkpoint,
    JournalEntry,
    LeaseLostError,
    Link,
    RegistryStore,
    Reservation,
    UsageOp,
)
from registry.tasks import stop_task

log = logging.getLogger("registry.policy")

LEASE = "usage"
SETTLE = 120.0  # seconds an entry stays in the journal before it is folded
_CATALOG_PAGE = 1000


@dataclass
class LedgerReport:
    counted: bool = False  # walked from storage (a new ledger)
    folded: int = 0  # journal entries folded into the checkpoint
    fixed: int = 0  # holds that storage contradicted
    corrected: int | None = None  # the correction taken from the collector's count
    checkpoint: str | None = None  # the checkpoint written, if any


@dataclass
class UpkeepReport:
    ledgers: dict[str, LedgerReport] = field(default_factory=dict)
    tag_intents_purged: int = 0


class Compactor:
    def __init__(
        self, store: RegistryStore, rules: QuotaRules, book: UsageBook, *, settle: float = SETTLE
    ) -> None:
        self.store = store
        self.rules = rules
        self.book = book
        self.settle = settle

    async def run_once(self, lease_ttl: float = 60.0) -> UpkeepReport | None:
        """One round under the lease; None when another process holds it."""
        lease = self.store.lease(LEASE, lease_ttl)
        if not await lease.acquire():
            return None
        async with lease.kept():
            return await self.upkeep(lease.check)

    async def upkeep(self, guard: Callable[[], None] | None = None) -> UpkeepReport:
        """One round, without the lease (the caller makes sure nobody else compacts);
        ``guard`` raises when the round must stop (the lease was lost)."""
        report = UpkeepReport()
        for quota in self.rules.quotas:
            if guard is not None:
                guard()
            report.ledgers[quota.name] = await self.compact(quota)
        report.tag_intents_purged = await self.store.tag_intents.purge()
        for quota in self.rules.quotas:
            await self.publish(quota)
        return report

    # ------------------------------------------------------------------ one ledger

    async def compact(self, quota: Quota) -> LedgerReport:
        report = LedgerReport()
        usage_log = self.store.usage_log
        listing = await usage_log.listing(quota.name)
        checkpoint: Checkpoint | None = None
        if listing.checkpoint is not None:
            checkpoint = await usage_log.checkpoint(quota.name, listing.checkpoint)
            if checkpoint is None:
                return report  # replaced meanwhile: another compactor; next round
            ledger = Ledger.from_state(checkpoint.state)
            folded_before = checkpoint.folded
        else:
            ledger = await self.count(quota)
            report.counted = True
            folded_before = frozenset()
        now = self.store.clock.time()
        ripe_names = [
            e
            for e in listing.entries
            if e.key not in folded_before and e.written_at <= now - self.settle
        ]
        fetched = await asyncio.gather(*(usage_log.entry(quota.name, e) for e in ripe_names))
        ripe = sorted((e for e in fetched if e is not None), key=lambda e: e.key)
        for entry in ripe:
            ledger.apply(entry.ops, entry.written_at)
        report.folded = len(ripe)
        report.fixed = await self._verify(ledger, ripe)
        latest = max([ledger.last_change, *(e.written_at for e in listing.entries)], default=0.0)
        seen = ledger.snapshot_seen
        report.corrected = await self._correct(quota, ledger, latest, now)
        changed = (
            report.counted
            or ripe
            or report.fixed
            or report.corrected is not None
            or ledger.snapshot_seen != seen
        )
        stale = self._stale_reservations(listing.reservations, now)
        if changed:
            still_listed = [e.key for e in listing.entries if e.key in folded_before]
            folded = [*still_listed, *(e.key for e in ripe)]
            key = await usage_log.write_checkpoint(quota.name, folded, ledger.to_state())
            report.checkpoint = key
            older = [c for c in listing.checkpoints if c != key]
            await usage_log.remove(quota.name, [*folded, *older, *stale])
        elif stale:
            await usage_log.remove(quota.name, stale)
        return report

    def _stale_reservations(self, reservations: list[Reservation], now: float) -> list[str]:
        """Reservations no reader counts any more: stale, or replaced by a newer one of
        their holder for longer than ``settle``."""
        idle = self.rules.settings.session_idle
        newest: dict[str, float] = {}
        for r in reservations:
            newest[r.holder] = max(newest.get(r.holder, 0.0), r.written_at)
        return [
            r.key
            for r in reservations
            if r.written_at < now - 2 * idle
            or (r.written_at < newest[r.holder] and r.written_at < now - self.settle)
        ]

    async def count(self, quota: Quota) -> Ledger:
        """The ledger of ``quota`` from storage: every revision of its repositories with
        what it references, and every link (releasable unless a manifest holds it)."""
        ledger = Ledger()
        store = self.store
        for repo in await self._repositories(quota):
            for manifest in sorted(await store.manifests.revisions(repo)):
                op = await self._manifest_op(repo, str(manifest))
                if op is not None:
                    ledger.apply([op], 0.0)
            for digest in sorted(await store.blobs.links(repo)):
                info = await store.stat(BlobData(digest))
                linked_at = await store.modified(Link(repo, digest))
                if info is not None and linked_at is not None:
                    ledger.add_link(str(digest), repo, info.size, linked_at)
        ledger.repo_last_change.clear()
        return ledger

    async def _repositories(self, quota: Quota) -> list[str]:
        names: list[str] = []
        last: str | None = None
        while True:
            page = await self.store.catalog.list(last, _CATALOG_PAGE, quota.prefixes())
            names += [n for n in page if is_valid_name(n) and quota.covers(n)]
            if len(page) < _CATALOG_PAGE:
                return names
            last = page[-1]

    async def _manifest_op(self, repo: str, manifest: str) -> UsageOp | None:
        """The "m" op of a stored revision, or None when it cannot be read."""
        manifests = self.store.manifests
        try:
            stored = await manifests.revision(repo, parse_digest(manifest))
            parsed = parse_manifest(await manifests.content(stored), stored.media_type)
        except RegistryError:
            return None
        return ["m", repo, manifest, stored.size, [[str(d.digest), d.size] for d in parsed.blobs]]

    async def _verify(self, ledger: Ledger, entries: list[JournalEntry]) -> int:
        """Follow storage where the folded entries' changes did not land as written."""
        final: dict[tuple[str, str, str], str] = {}
        for entry in entries:
            for op in entry.ops:
                if len(op) >= 3 and op[0] in ("m", "M"):
                    final[("revision", str(op[1]), str(op[2]))] = str(op[0])
                elif len(op) >= 3 and op[0] in ("b", "B"):
                    final[("link", str(op[1]), str(op[2]))] = str(op[0])
        store, fixed = self.store, 0
        for (what, repo, ref), kind in final.items():
            try:
                digest = parse_digest(ref)
            except RegistryError:
                continue
            if what == "revision":
                present = await store.manifests.has_revision(repo, digest)
                if kind == "m" and not present:
                    ledger.release(repo, ref, ledger.repo_last_change.get(repo, 0.0))
                    fixed += 1
                elif kind == "M" and present:
                    again = await self._manifest_op(repo, ref)
                    if again is not None:
                        ledger.apply([again], ledger.repo_last_change.get(repo, 0.0))
                        fixed += 1
            else:
                linked = await store.blobs.is_linked(repo, digest)
                if kind == "b" and not linked:
                    ledger.drop_link(ref, repo)
                    fixed += 1
                elif kind == "B" and linked:
                    info = await store.stat(BlobData(digest))
                    linked_at = await store.modified(Link(repo, digest))
                    if info is not None and linked_at is not None:
                        ledger.add_link(ref, repo, info.size, linked_at)
                        fixed += 1
        return fixed

    async def _correct(self, quota: Quota, ledger: Ledger, latest: float, now: float) -> int | None:
        """Take the collector's count as the correction when the ledger was quiet from
        before its run until now; returns the new correction, or None."""
        snapshot = await self.store.usage.read()
        if snapshot is None or snapshot.finished_at <= ledger.snapshot_seen:
            return None
        if now < snapshot.finished_at + self.settle:
            return None  # entries of changes that landed near its end may still come
        started = snapshot.started_at if snapshot.started_at is not None else ledger.snapshot_seen
        ledger.snapshot_seen = snapshot.finished_at
        if not started or latest >= started - self.settle:
            return None
        if not quota.per_repository:
            counted = snapshot.groups.get(quota.name)
            if counted is None:
                return None
            ledger.offset = counted - ledger.used_bytes
            return ledger.offset
        held = {r.name: r.held_bytes for r in snapshot.repositories if quota.covers(r.name)}
        if not snapshot.repositories:
            return None
        for repo in set(held) | set(ledger.repo_used):
            offset = held.get(repo, 0) - ledger.repo_used.get(repo, 0)
            if offset:
                ledger.repo_offsets[repo] = offset
            else:
                ledger.repo_offsets.pop(repo, None)
        return sum(ledger.repo_offsets.values())

    # ------------------------------------------------------------------ metrics

    async def publish(self, quota: Quota) -> None:
        view = await self.book.view(quota)
        if quota.per_repository:
            repos = view.ledger.repositories() or {""}
            figures = max((view.figures(r) for r in repos), key=lambda f: f.used + f.pending)
        else:
            figures = view.figures()
        in_flight = view.in_flight()
        metrics.QUOTA_LIMIT.labels(quota.name).set(quota.limit)
        metrics.QUOTA_USED.labels(quota.name).set(figures.used)
        metrics.QUOTA_PENDING.labels(quota.name).set(figures.pending)
        metrics.QUOTA_IN_FLIGHT.labels(quota.name).set(in_flight)
        metrics.QUOTA_RELEASABLE.labels(quota.name).set(figures.releasable)
        total = figures.used + figures.pending + in_flight
        metrics.QUOTA_USE_RATIO.labels(quota.name).set(total / quota.limit if quota.limit else 0)


class BackgroundUpkeep:
    """The compactor as a task of ``registry serve``: every worker runs the loop, the
    ``usage`` lease lets one of them (or one replica) do each round."""

    def __init__(self, compactor: Compactor, interval: float) -> None:
        self.compactor = compactor
        self.interval = interval
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name="registry-usage")

    async def stop(self) -> None:
        task, self._task = self._task, None
        await stop_task(task)

    async def _loop(self) -> None:
        clock = self.compactor.store.clock
        while True:
            await clock.sleep(self.interval * random.uniform(0.9, 1.1))
            try:
                await self.compactor.run_once(lease_ttl=max(60.0, 2 * self.interval))
            except LeaseLostError as exc:
                log.error("usage upkeep stopped: %s", exc)
            except Exception:
                log.exception("usage upkeep failed; the next round tries again")
