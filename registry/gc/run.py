"""The state of one collection, shared by its phases: what it learned about each
repository, what it keeps, its cutoffs, its report, and the limits on its storage
requests and cycles."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from registry.gc.graph import Kept, References
from registry.gc.report import CollectionReport
from registry.reference import Digest
from registry.store import Cutoff, Cycle, Lease, RegistryStore

T = TypeVar("T")
R = TypeVar("R")

IO_CONCURRENCY = 16  # storage operations in flight at once
CYCLE_CONCURRENCY = 8  # digests whose tombstone is held at once


@dataclass
class Repository:
    """What one run learned about one repository."""

    name: str
    tags: dict[str, Digest] = field(default_factory=dict)
    revisions: set[Digest] = field(default_factory=set)
    referrers: dict[Digest, set[Digest]] = field(default_factory=dict)  # subject -> referrers
    links: set[Digest] = field(default_factory=set)
    kept: Kept = field(default_factory=Kept)
    candidates: dict[Digest, float] = field(default_factory=dict)  # revision -> modified


class Run:
    def __init__(
        self,
        store: RegistryStore,
        lease: Lease | None,
        cutoff: Cutoff,
        untagged: Cutoff | None,
        references: dict[Digest, References],
    ) -> None:
        self.store = store
        self.lease = lease
        self.dry_run = lease is None
        self.now = cutoff.now
        # Storage times are compared with the storage's own clock (store/clock.py).
        self.cutoff = cutoff
        # Untagged manifests last pushed after this are kept; None: all are (policy keep).
        self.untagged = untagged
        self.report = CollectionReport(dry_run=self.dry_run)
        self.repos: dict[str, Repository] = {}
        self.marked: set[Digest] = set()  # every digest some repository keeps
        # Kept only because of the grace period: digest -> when it may go.
        self.held: dict[Digest, float] = {}
        self.firm: set[Digest] = set()  # kept for any other reason
        # Manifests are content-addressed, so what one references never changes: the
        # collector keeps this between runs. Unreadable ones are known for this run only.
        self.references = references
        self.known: dict[Digest, References | None] = {}
        self.unreadable: set[Digest] = set()
        self._io_slots = asyncio.Semaphore(IO_CONCURRENCY)
        self._cycle_slots = asyncio.Semaphore(CYCLE_CONCURRENCY)

    async def io(self, operation: Awaitable[T]) -> T:
        async with self._io_slots:
            return await operation

    async def each(self, items: Iterable[T], fn: Callable[[T], Awaitable[R]]) -> list[R]:
        return list(await asyncio.gather(*(fn(i) for i in items)))

    async def limited(self, fn: Callable[[], Awaitable[None]]) -> None:
        """Run ``fn`` (the work on one group of digests) in one of the cycle slots."""
        async with self._cycle_slots:
            await fn()

    def guard(self) -> None:
        """Raise unless this run may still delete (it holds the lease with time to spare)."""
        assert self.lease is not None, "a dry run deletes nothing"
        self.lease.check()

    @contextlib.asynccontextmanager
    async def cycle(self, digests: Sequence[Digest]) -> AsyncIterator[Cycle]:
        """Hold the tombstones of ``digests`` (store/claims.py, C1 ... C4)."""
        assert self.lease is not None, "a dry run holds no tombstones"
        async with self.store.claims.cycle(
            digests, self.cutoff, owner=self.lease.owner, guard=self.guard
        ) as cycle:
            yield cycle

    def unreadable_kept(self) -> bool:
        """Whether a kept manifest could not be parsed: what it needs is then unknown."""
        return any(self.unreadable & repo.kept.manifests for repo in self.repos.values())
