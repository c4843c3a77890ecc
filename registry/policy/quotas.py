"""Quotas: usage kept as pushes and deletes happen, and pushes refused before the bytes
that would exceed a limit are stored.

``QuotaGuard`` is a store change listener: every change in a repository a quota covers
is written to the quota's journal (store/usage_log.py) *before* it becomes visible,
whichever path makes it -- the API, replication, the collector. Pushes that add bytes
reserve them first (write, then list): an upload session before each stretch of its
bytes is stored, a mount, a manifest whose blobs are not counted yet. A reservation is
granted only if what is counted -- used, pending, and every live reservation, its own
included -- fits the limit; so

    stored and reserved bytes of a quota never exceed its limit,

whatever the number of clients, workers and replicas: of two pushes racing for the last
bytes, each lists after its own write, so at least one sees the other. (Near the limit
both may see each other and both be refused; each then tries again after a short
random pause, up to three times, before the client is told.) A chunk of known length is
reserved whole before its first byte is read; a body of unknown length is reserved in
grants of ``policy.quota.upload_grant`` bytes, each before its bytes are stored.

Cache fills of the pull-through cache (origin ``proxy``) are counted but never refused.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextvars import ContextVar

from registry import errors
from registry.context import current
from registry.errors import RegistryError
from registry.policy import metrics
from registry.policy.book import LedgerView, UsageBook
from registry.policy.quota_rules import Quota, QuotaRules, human, repository_key
from registry.store import Link, RegistryStore, Revision, UsageOp, new_holder
from registry.store.changes import (
    BlobMounted,
    BlobPushed,
    BlobUnlinked,
    Change,
    Collected,
    ManifestDeleted,
    ManifestPushed,
)

# The upload session whose reservation covers the blob being committed now: its
# BlobPushed needs no reservation of its own.
_COVERED: ContextVar[str | None] = ContextVar("quota_covered_session", default=None)
_ATTEMPTS = 3


class QuotaExceeded(RegistryError):
    def __init__(
        self,
        quota: Quota,
        view: LedgerView,
        repo: str,
        needed: int,
        stage: str,
        holder: str | None = None,
    ) -> None:
        figures = view.figures(repo)
        others = view.in_flight(repo, without=holder)
        where = f" in {repo}" if quota.per_repository else ""
        super().__init__(
            errors.DENIED,
            f"{quota.describe()} exceeded{where}: {human(figures.used)} used, "
            f"{human(figures.pending)} pending, {human(others)} in flight; this push "
            f"needs {human(needed)} more, over the limit of {human(quota.limit)}",
            detail={
                "quota": quota.name,
                "limit": quota.limit,
                "used": figures.used,
                "pending": figures.pending,
                "in_flight": others,
                "requested": needed,
                "stage": stage,
            },
        )
        metrics.QUOTA_REFUSALS.labels(quota.name, stage).inc()


class QuotaGuard:
    """The change listener and the checks the upload routes call."""

    def __init__(self, store: RegistryStore, rules: QuotaRules, book: UsageBook) -> None:
        self.store = store
        self.rules = rules
        self.book = book

    def _enforced(self, repository: str) -> list[Quota]:
        """The quotas a push into ``repository`` must fit (none for cache fills)."""
        return [] if current().origin == "proxy" else self.rules.of(repository)

    # ------------------------------------------------------------------ reservations

    @staticmethod
    def _holder(quota: Quota, repo: str, holder: str) -> str:
        return f"{holder}-{repository_key(repo)}" if quota.per_repository else holder

    async def _reserve(
        self,
        quota: Quota,
        repo: str,
        holder: str,
        wanted: int,
        minimum: int,
        stage: str,
        needed: int,
    ) -> tuple[str, int]:
        """Write a reservation of ``wanted`` bytes for ``holder`` (replacing its earlier
        ones), then list: keep it if everything counted fits the limit; else take what
        room there is if that is at least ``minimum``, or remove it and refuse.
        ``needed`` is what the refusal says this push asked for. Returns its key and
        the amount granted."""
        log = self.store.usage_log
        key = self._holder(quota, repo, holder)
        amount = wanted
        for attempt in range(_ATTEMPTS + 1):
            mine = await log.reserve(quota.name, key, amount)
            view = await self.book.view(quota)
            counted = view.counted(repo) + view.in_flight(repo, without=key)
            if counted + amount <= quota.limit:
                older = [r.key for r in view.reservations if r.holder == key and r.key != mine.key]
                await log.remove(quota.name, older)
                return mine.key, amount
            await log.remove(quota.name, [mine.key])
            room = quota.limit - counted
            if minimum <= room < amount:
                amount = room  # a smaller grant still lets the next bytes pass
                continue
            racing = [
                r
                for r in view.live_reservations(repo)
                if r.holder != key and r.written_at >= mine.written_at - 1.0
            ]
            if not racing or attempt >= _ATTEMPTS - 1:
                raise QuotaExceeded(quota, view, repo, needed, stage, key)
            await self.store.clock.sleep(random.uniform(0.02, 0.1) * (attempt + 1))
        raise QuotaExceeded(quota, view, repo, needed, stage, key)

    async def hold(
        self,
        repo: str,
        holder: str,
        wanted: int,
        stage: str,
        *,
        minimum: int | None = None,
        needed: int | None = None,
    ) -> int:
        """Reserve ``wanted`` bytes (or at least ``minimum``) for ``holder`` in every
        quota of ``repo``; DENIED when one has no room for it. Returns what was granted
        in all of them."""
        least = wanted if minimum is None else minimum
        granted = wanted
        for quota in self._enforced(repo):
            asked = least if needed is None else needed
            _, amount = await self._reserve(quota, repo, holder, wanted, least, stage, asked)
            granted = min(granted, amount)
        return granted

    async def release(self, repo: str, holder: str) -> None:
        """Drop every reservation of ``holder`` (the session ended, or the push landed)."""
        for quota in self.rules.of(repo):
            key = self._holder(quota, repo, holder)
            listing = await self.store.usage_log.listing(quota.name)
            await self.store.usage_log.remove(
                quota.name, [r.key for r in listing.reservations if r.holder == key]
            )

    # ------------------------------------------------------------------ upload sessions

    async def check_room(self, repo: str) -> None:
        """At the start of an upload session: refuse at once when a quota is full."""
        for quota in self._enforced(repo):
            view = await self.book.view(quota)
            if view.counted(repo) + view.in_flight(repo) >= quota.limit:
                raise QuotaExceeded(quota, view, repo, 1, "upload")

    async def settle_session(self, repo: str, upload_id: str, stored: int) -> None:
        """After a request of the session: hold exactly what the session stores."""
        if stored == 0:
            await self.release(repo, upload_id)
            return
        log = self.store.usage_log
        for quota in self._enforced(repo):
            key = self._holder(quota, repo, upload_id)
            mine = await log.reserve(quota.name, key, stored)
            listing = await log.listing(quota.name)
            await log.remove(
                quota.name,
                [r.key for r in listing.reservations if r.holder == key and r.key != mine.key],
            )

    async def ensure_session(self, repo: str, upload_id: str, stored: int) -> None:
        """Before a commit: the session's reservation must cover what it stores (it may
        have gone stale while the client paused, or never have been made)."""
        for quota in self._enforced(repo):
            key = self._holder(quota, repo, upload_id)
            view = await self.book.view(quota)
            held = [r.amount for r in view.live_reservations(repo) if r.holder == key]
            if max(held, default=-1) < stored:
                await self._reserve(quota, repo, upload_id, stored, stored, "upload", stored)

    def limit(
        self,
        repo: str,
        upload_id: str,
        stream: AsyncIterator[bytes],
        stored: int,
        declared: int | None,
    ) -> AsyncIterator[bytes]:
        """``stream`` with its bytes reserved before they pass: the whole body at once
        when its length is declared, else a grant at a time."""
        if not self._enforced(repo):
            return stream
        return self._limited(repo, upload_id, stream, stored, declared)

    async def _limited(
        self,
        repo: str,
        upload_id: str,
        stream: AsyncIterator[bytes],
        stored: int,
        declared: int | None,
    ) -> AsyncIterator[bytes]:
        grant = self.rules.settings.upload_grant
        clock = self.store.clock
        if declared is None:
            # Unknown length: a grant at a time, smaller near the limit.
            reserved = await self.hold(
                repo, upload_id, stored + grant, "upload", minimum=stored + 1, needed=1
            )
        else:
            total = stored + declared
            reserved = await self.hold(repo, upload_id, total, "upload", needed=declared)
        renewed = clock.monotonic()
        received = 0
        async for piece in stream:
            end = stored + received + len(piece)
            if end > reserved:
                reserved = await self.hold(
                    repo, upload_id, end + grant, "chunk", minimum=end, needed=end - stored
                )
                renewed = clock.monotonic()
            elif clock.monotonic() - renewed > self.rules.settings.session_idle / 3:
                await self.hold(repo, upload_id, reserved, "chunk", needed=0)  # still alive
                renewed = clock.monotonic()
            received += len(piece)
            yield piece

    @contextlib.contextmanager
    def covering(self, upload_id: str) -> Iterator[None]:
        """The blob committed in this block is covered by the session's reservation."""
        token = _COVERED.set(upload_id)
        try:
            yield
        finally:
            _COVERED.reset(token)

    # ------------------------------------------------------------------ the listener

    async def before(self, change: Change) -> None:
        match change:
            case BlobPushed(repository=repo, digest=digest, size=size):
                op: UsageOp = ["b", repo, str(digest), size]
                covered = _COVERED.get() is not None
                await self._journal(repo, [op], {} if covered else {str(digest): size}, "blob")
            case BlobMounted(repository=repo, digest=digest, size=size):
                op = ["b", repo, str(digest), size]
                await self._journal(repo, [op], {str(digest): size}, "mount")
            case ManifestPushed(repository=repo, digest=digest, size=size, manifest=manifest):
                blobs = {str(d.digest): d.size for d in manifest.blobs}
                op = ["m", repo, str(digest), size, [[d, s] for d, s in blobs.items()]]
                await self._journal(repo, [op], {str(digest): size, **blobs}, "manifest")
            case ManifestDeleted(repository=repo, digest=digest):
                await self._journal(repo, [["M", repo, str(digest)]], {}, "delete")
            case BlobUnlinked(repository=repo, digest=digest):
                await self._journal(repo, [["B", repo, str(digest)]], {}, "delete")
            case Collected(objects=objects):
                await self._collected(objects)

    async def _journal(
        self, repo: str, ops: Sequence[UsageOp], adds: Mapping[str, int], stage: str
    ) -> None:
        """Reserve what ``ops`` add (if anything), write them to the journal of every
        quota of ``repo``, then drop the reservation: the journal counts it now."""
        quotas = self.rules.of(repo)
        if not quotas:
            return
        holder = new_holder()
        held: list[tuple[str, str]] = []  # (quota, reservation)
        try:
            if adds:
                for quota in self._enforced(repo):
                    view = await self.book.view(quota)
                    added = view.ledger.added_by(
                        repo,
                        adds,
                        view.now,
                        self.rules.settings.pending_window,
                        per_repository=quota.per_repository,
                    )
                    if added:
                        key, _ = await self._reserve(
                            quota, repo, holder, added, added, stage, added
                        )
                        held.append((quota.name, key))
            for quota in quotas:
                entry = await self.store.usage_log.append(quota.name, ops)
                self.book.note(quota.name, entry)
        finally:
            for name, key in held:
                await self.store.usage_log.remove(name, [key])

    async def _collected(self, objects: Sequence[object]) -> None:
        by_repo: dict[str, list[UsageOp]] = {}
        for obj in objects:
            if isinstance(obj, Revision | Link):
                kind = "M" if isinstance(obj, Revision) else "B"
                op = [kind, obj.repository, str(obj.digest)]
                by_repo.setdefault(obj.repository, []).append(op)
        by_quota: dict[str, list[UsageOp]] = {}
        for repo, ops in by_repo.items():
            for quota in self.rules.of(repo):
                by_quota.setdefault(quota.name, []).extend(ops)
        for name, ops in by_quota.items():
            self.book.note(name, await self.store.usage_log.append(name, ops))
