"""The state of one collection, shared by its phases: its cutoffs, its report, the
limits on its storage requests and cycles, and what it learns about one repository
at a time (``Repository``: a run holds only the few it is working on)."""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from registry.gc.graph import Kept, References
from registry.gc.report import CollectionReport
from registry.patterns import matches_any
from registry.reference import Digest
from registry.store import Cutoff, Cycle, Lease, RegistryStore, RepositoryRecord

T = TypeVar("T")
R = TypeVar("R")

IO_CONCURRENCY = 16  # storage operations in flight at once
CYCLE_CONCURRENCY = 8  # digests whose tombstone is held at once
# What manifests reference, for manifests read in this run (several repositories often
# hold the same image); the repository records keep it between runs.
REFERENCES_CACHED = 1000


@dataclass
class Repository:
    """What one run learned about one repository."""

    name: str
    record: RepositoryRecord = field(default_factory=RepositoryRecord)  # the last mark's
    tags: dict[str, Digest] = field(default_factory=dict)
    revisions: set[Digest] = field(default_factory=set)
    referrers: dict[Digest, set[Digest]] = field(default_factory=dict)  # subject -> referrers
    links: set[Digest] = field(default_factory=set)
    kept: Kept = field(default_factory=Kept)
    firm: set[Digest] = field(default_factory=set)  # of kept: not only by the grace period
    # What recent untagged manifests alone keep, until when the grace period keeps it.
    blob_until: dict[Digest, float] = field(default_factory=dict)
    candidates: dict[Digest, float] = field(default_factory=dict)  # revision -> modified
    known: dict[Digest, References | None] = field(default_factory=dict)
    unreadable: set[Digest] = field(default_factory=set)
    deleted: set[Digest] = field(default_factory=set)  # revisions the sweep deleted
    # Storage time at which time alone changes what this repository keeps.
    due: float | None = None

    def due_at(self, when: float) -> None:
        self.due = when if self.due is None else min(self.due, when)

    def unreadable_kept(self) -> bool:
        """Whether a kept manifest could not be parsed: what it needs is then unknown."""
        return bool(self.unreadable & self.kept.manifests)


class Run:
    def __init__(
        self,
        store: RegistryStore,
        lease: Lease | None,
        cutoff: Cutoff,
        untagged: Cutoff | None,
        cached: Sequence[str] = (),
    ) -> None:
        self.store = store
        self.lease = lease
        self.dry_run = lease is None
        self.started = store.clock.monotonic()
        self.now = cutoff.now
        # Storage times are compared with the storage's own clock (store/clock.py).
        self.cutoff = cutoff
        # Untagged manifests last pushed after this are kept; None: all are (policy keep).
        self.untagged = untagged
        # Patterns of the repositories a pull-through cache serves (``Collector``).
        self._cached = tuple(cached)
        self.report = CollectionReport(dry_run=self.dry_run)
        # A kept manifest somewhere could not be parsed: no blob may go this run.
        self.unreadable = False
        # A part of the mark state was damaged: the next collection marks everything.
        self.state_damaged = False
        self.references: OrderedDict[Digest, References] = OrderedDict()
        self._io_slots = asyncio.Semaphore(IO_CONCURRENCY)
        self._cycle_slots = asyncio.Semaphore(CYCLE_CONCURRENCY)
        # One tombstone per digest: cycles of several repositories over one digest take
        # turns (their tombstone is one file, and the first to finish would remove it).
        self._digests = DigestLocks()

    async def io(self, operation: Awaitable[T]) -> T:
        async with self._io_slots:
            return await operation

    async def each(self, items: Iterable[T], fn: Callable[[T], Awaitable[R]]) -> list[R]:
        return list(await asyncio.gather(*(fn(i) for i in items)))

    async def limited(self, fn: Callable[[], Awaitable[None]]) -> None:
        """Run ``fn`` (the work on one group of digests) in one of the cycle slots."""
        async with self._cycle_slots:
            await fn()

    def cached(self, name: str) -> bool:
        """Whether ``name`` is served by a pull-through cache: its content comes and goes
        with the cache (fetched on demand, evicted by ``proxy.evict_after``)."""
        return matches_any(self._cached, name)

    def guard(self) -> None:
        """Raise unless this run may still delete (it holds the lease with time to spare)."""
        assert self.lease is not None, "a dry run deletes nothing"
        self.lease.check()

    def remember(self, digest: Digest, refs: References) -> None:
        self.references[digest] = refs
        self.references.move_to_end(digest)
        while len(self.references) > REFERENCES_CACHED:
            self.references.popitem(last=False)

    @contextlib.asynccontextmanager
    async def cycle(self, digests: Sequence[Digest]) -> AsyncIterator[Cycle]:
        """Hold the tombstones of ``digests`` (store/claims.py, C1 ... C4)."""
        assert self.lease is not None, "a dry run holds no tombstones"
        ordered = sorted(set(digests))
        async with (
            self._digests.held(ordered),
            self.store.claims.cycle(
                ordered, self.cutoff, owner=self.lease.owner, guard=self.guard
            ) as cycle,
        ):
            yield cycle


class DigestLocks:
    """One lock per digest, for as long as someone holds or waits for it."""

    def __init__(self) -> None:
        self._locks: dict[Digest, tuple[asyncio.Lock, int]] = {}

    @contextlib.asynccontextmanager
    async def held(self, ordered: Sequence[Digest]) -> AsyncIterator[None]:
        """Hold the locks of ``ordered`` (sorted: two holders never wait on each other)."""
        locks = []
        for d in ordered:
            lock, users = self._locks.get(d) or (asyncio.Lock(), 0)
            self._locks[d] = (lock, users + 1)
            locks.append(lock)
        try:
            async with contextlib.AsyncExitStack() as stack:
                for lock in locks:
                    await stack.enter_async_context(lock)
                yield
        finally:
            for d in ordered:
                lock, users = self._locks[d]
                if users == 1:
                    del self._locks[d]
                else:
                    self._locks[d] = (lock, users - 1)
