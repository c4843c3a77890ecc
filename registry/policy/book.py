"""The ledgers as this process last read them: the newest checkpoint with the journal
entries after it applied (ledger.py), refreshed by one listing per look.

A look lists the ledger's folder: a new checkpoint is loaded (once per compaction), and
only entries not seen before are read (once each; the ones this process wrote are
known without reading). Entries are applied in the order of their names; an entry that
turns up late with a name before one already applied -- a writer whose clock lags --
makes the ledger be folded again from its checkpoint, so that every process applies
the same entries in the same order and gets the same figures.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass, field

from registry import errors
from registry.errors import RegistryError
from registry.policy.ledger import Figures, Ledger
from registry.policy.quota_rules import Quota, QuotaSettings, repository_key
from registry.store import EntryName, JournalEntry, Listing, RegistryStore, Reservation

_ATTEMPTS = 5  # listings tried while a compaction replaces what the last one showed


@dataclass
class LedgerView:
    """A ledger and its reservations as of one listing."""

    quota: Quota
    ledger: Ledger
    reservations: list[Reservation]
    now: float
    settings: QuotaSettings
    complete: bool  # counted from storage once (a checkpoint exists)

    def live_reservations(self, repo: str | None = None) -> list[Reservation]:
        """The newest reservation of each holder that is not stale (of ``repo``'s
        holders only, in a per-repository quota)."""
        fresh = self.now - self.settings.session_idle
        suffix = None
        if repo is not None and self.quota.per_repository:
            suffix = "-" + repository_key(repo)
        newest: dict[str, Reservation] = {}
        for r in self.reservations:
            if r.written_at <= fresh or (suffix is not None and not r.holder.endswith(suffix)):
                continue
            known = newest.get(r.holder)
            if known is None or (r.written_at, r.key) > (known.written_at, known.key):
                newest[r.holder] = r
        return list(newest.values())

    def in_flight(self, repo: str | None = None, *, without: str | None = None) -> int:
        return sum(r.amount for r in self.live_reservations(repo) if r.holder != without)

    def figures(self, repo: str | None = None) -> Figures:
        scope = repo if self.quota.per_repository else None
        return self.ledger.figures(self.now, self.settings.pending_window, scope)

    def counted(self, repo: str) -> int:
        """What counts against the quota for a push into ``repo``: used and pending."""
        figures = self.figures(repo)
        return figures.used + figures.pending


@dataclass
class _Cached:
    checkpoint: str | None
    folded: frozenset[str]
    ledger: Ledger
    applied: dict[str, JournalEntry] = field(default_factory=dict)
    last_key: str = ""


class UsageBook:
    def __init__(self, store: RegistryStore, settings: QuotaSettings) -> None:
        self.store = store
        self.settings = settings
        self._cached: dict[str, _Cached] = {}
        self._written: dict[str, dict[str, JournalEntry]] = {}  # what this process wrote
        self._locks: dict[str, asyncio.Lock] = {}

    def note(self, ledger: str, entry: JournalEntry) -> None:
        """An entry this process wrote: known without reading it back."""
        written = self._written.setdefault(ledger, {})
        written[entry.key] = entry
        if len(written) > 10_000:
            written.pop(next(iter(written)))

    async def view(self, quota: Quota) -> LedgerView:
        """The ledger of ``quota`` as of a listing made now (after anything this task
        wrote before the call)."""
        lock = self._locks.setdefault(quota.name, asyncio.Lock())
        for _ in range(_ATTEMPTS):
            listing = await self.store.usage_log.listing(quota.name)
            async with lock:
                cached = await self._refresh(quota.name, listing)
            if cached is not None:
                return LedgerView(
                    quota,
                    cached.ledger,
                    listing.reservations,
                    self.store.clock.time(),
                    self.settings,
                    cached.checkpoint is not None,
                )
        raise RegistryError(
            errors.UNAVAILABLE, f"the usage records of quota {quota.name!r} keep changing; retry"
        )

    async def _refresh(self, name: str, listing: Listing) -> _Cached | None:
        """Bring the cached ledger up to ``listing``; None when a record it names was
        removed meanwhile (a compaction ran: list again)."""
        log = self.store.usage_log
        cached = self._cached.get(name)
        if cached is None or cached.checkpoint != listing.checkpoint:
            if listing.checkpoint is None:
                cached = _Cached(None, frozenset(), Ledger())
            else:
                checkpoint = await log.checkpoint(name, listing.checkpoint)
                if checkpoint is None:
                    return None
                cached = _Cached(
                    checkpoint.key, checkpoint.folded, Ledger.from_state(checkpoint.state)
                )
            self._cached[name] = cached
        written = self._written.get(name, {})
        unseen = [
            e for e in listing.entries if e.key not in cached.folded and e.key not in cached.applied
        ]

        async def read(entry: EntryName) -> JournalEntry | None:
            return written.get(entry.key) or await log.entry(name, entry)

        fetched = await asyncio.gather(*(read(e) for e in unseen))
        if any(entry is None for entry in fetched):
            return None
        new = sorted((e for e in fetched if e is not None), key=lambda e: e.key)
        if new and new[0].key < cached.last_key:
            # A late entry: fold again from the checkpoint, in name order.
            base = Ledger()
            if cached.checkpoint is not None:
                checkpoint = await log.checkpoint(name, cached.checkpoint)
                if checkpoint is None:
                    return None
                base = Ledger.from_state(checkpoint.state)
            cached.ledger = base
            entries: Iterable[JournalEntry] = sorted(
                [*cached.applied.values(), *new], key=lambda e: e.key
            )
        else:
            entries = new
        for entry in entries:
            cached.ledger.apply(entry.ops, entry.written_at)
        for entry in new:
            cached.applied[entry.key] = entry
            cached.last_key = max(cached.last_key, entry.key)
        return cached
