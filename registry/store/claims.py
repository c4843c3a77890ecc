"""The claim/tombstone protocol that keeps pushes and the garbage collector apart: both
of its halves, and the argument why they are safe together.

Safety while pushes go on
=========================
Everything the collector deletes *holds* a digest: a blob's data and its links hold the
blob; a revision, its referrer entry and a tag hold a manifest. Two files per digest
(``store/layout.py``) coordinate deletes with pushes:

* ``claimed``: written by every push about to rely on the digest -- an upload or mount
  of the blob, and a manifest PUT for the manifest itself, each blob and child it
  references, and the manifest each of its tags names before the PUT rewrites it. Its
  modification time, with the data's, is the digest's freshness.
* ``collecting``: the tombstone, written by the collector before its final check of a
  digest and removed after its deletes.

A push claims a digest (``Claims.claim``): (W1) write ``claimed``; (W2) read
``collecting`` -- if present, wait until it goes and start again at W1 -- and see that
``claimed`` is still there (a cycle that ended meanwhile may have deleted it: start
again at W1); (W3) check the data (W2 and the data in one listing of the blob's folder,
which reads ``collecting`` no later than ``data``), then the link or revision it relies
on. It issues the writes that make anything depend on the digest (revision, tags,
referrer entry, link) within the *reference budget* -- half the grace period -- of W1,
or claims again. An upload or mount claims before placing data and link, and claims
again if that took longer than the budget, answering 201 only if the data is there.

The collector deletes what holds a digest in a *cycle*: (C1) write ``collecting``;
(C2) re-read ``claimed``, the modification time of the object to delete and, for a
tag, its target: anything newer than the cutoff -- run start minus the grace period --
or changed since the mark spares the digest; (C3) delete referrer entries before
revisions, parents before index children, links before data, data before ``claimed``;
(C4) remove ``collecting``. The files of one step of C3 (all the links, all the referrer
entries, a level of the index tree) go in one ``Driver.delete_many`` -- on S3 one
request per 1000 files -- which has finished before the next step starts; files that
must go in order are never in one batch.

Why a racing manifest PUT either succeeds with its blobs kept or fails cleanly with
MANIFEST_BLOB_UNKNOWN, and never succeeds pointing at a deleted blob. Take a PUT that
succeeds and a cycle that deletes something holding digest D the PUT relies on. The
PUT's last W2 for D found no tombstone, so it ran before C1 or after C4.

* Before C1: then its W1 ran before C2, and C2 reads that ``claimed``. If W1 is newer
  than the cutoff, C2 spares D. If W1 is older, the PUT issued its writes within the
  budget of W1, so more than half a grace period before this run started: the mark
  phase saw the new tag (and kept D) or the untagged revision (then older than the
  grace period, collected with what it references, revisions first).
* After C4: everything this cycle deletes is gone before W3, which therefore finds the
  data, link or revision missing and fails the PUT with MANIFEST_BLOB_UNKNOWN; a tag or
  revision the cycle deleted and the PUT writes afterwards stands.

The same argument covers uploads and mounts (a 201 means a claim newer than the budget:
the blob outlives the grace period) and retention racing a tag push (the push claims
what the tag named, so the cycle for that digest spares the tag or finished before).
Reads never see a manifest whose references are gone because of the deletion order.
The mark need not read every repository again: an incremental mark re-reads those
that a change record names and trusts what the last mark recorded of the others
(registry/gc/plan.py). The argument above asks of the mark only that it sees the writes
issued more than half a grace period before the run started; every change is covered
by a record written before its writes (store/changed.py), and a collector removes a
record only once it is older than the time within which the changes it covers land,
after re-reading the repository -- so such writes are either in a repository the mark
re-reads or in what it recorded (every process that changes the registry must write
records: see docs/gc.md on upgrades).

What remains assumed: one collector at a time (the lease; a collector that cannot renew
it stops before its next cycle), the storage's read-after-write consistency (S3 and RGW
give it), and storage writes landing well within half a grace period of being issued.

In this module: ``Claims.claim`` (W1-W3) and ``Claims.confirm`` are the push's half;
``Claims.cycle`` (C1, C4), ``Cycle.claimed_fresh`` and ``Cutoff`` (C2) and
``Cycle.delete`` (C3) the collector's. The pushes (``store/uploads.py``,
``store/manifests.py``, ``BlobStore.mount``) and the collector (``registry/gc``) call
them and nothing else of the protocol.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from registry.reference import Digest
from registry.store import layout
from registry.store.changes import Changes, Collected
from registry.store.clock import CLOCK_RESOLUTION, Clock
from registry.store.objects import StoredObject
from storage_backends import Driver, PathNotFoundError

# Longest a push waits for the collector to finish with a digest it needs. A collector
# holds a tombstone for a few storage operations; only a crashed one leaves it longer
# (until its next run), and the push then fails cleanly instead of hanging.
CLAIM_WAIT = 30.0
# Half the default grace period (1 h); create_app passes the configured one.
DEFAULT_REFERENCE_BUDGET = 1800.0
# The reference budget never drops below this, or no push could finish in time.
MIN_REFERENCE_BUDGET = 0.25
_POLL_FIRST = 0.02
_POLL_MAX = 0.25


def reference_budget(grace_period: float) -> float:
    """How soon after its claims a push must issue its writes: half the grace period.
    The other half is the margin for those writes to land before a collection that
    considers the claim old has started."""
    return max(grace_period / 2, MIN_REFERENCE_BUDGET)


class BlobBusyError(Exception):
    """The collector kept deleting something that holds the digest for CLAIM_WAIT."""

    def __init__(self, digest: Digest) -> None:
        super().__init__(f"{digest} is being garbage-collected")
        self.digest = digest


@dataclass(frozen=True)
class Cutoff:
    """C2's line in storage time: what was written or claimed after it is fresh. A run
    starting at ``now`` draws it ``window`` earlier -- the grace period, plus the
    storage clock's resolution, since times may be truncated to whole seconds."""

    now: float
    window: float

    @classmethod
    def before(cls, now: float, period: float) -> Cutoff:
        return cls(now, period + CLOCK_RESOLUTION)

    @property
    def time(self) -> float:
        return self.now - self.window

    def fresh(self, modified: float | None) -> bool:
        return modified is not None and modified > self.time

    def old(self, modified: float | None) -> bool:
        """Stored (``modified`` is not None) and not fresh."""
        return modified is not None and modified <= self.time

    def until(self, modified: float) -> float:
        """When something last written at ``modified`` stops being fresh."""
        return modified + self.window


class Claims:
    """Both halves of the protocol over one driver."""

    def __init__(
        self,
        driver: Driver,
        clock: Clock,
        reference_budget: float,
        changes: Changes,
        after_delete: Callable[[Sequence[StoredObject]], Awaitable[None]] | None = None,
    ) -> None:
        self._driver = driver
        # Told once the collector's deletes landed (tags.py: its version of the tags).
        self._after_delete = after_delete
        self.clock = clock
        self._changes = changes
        # A claim protects a digest for the collector's grace period only if what the
        # push writes on its strength is written within this many seconds of it.
        self.reference_budget = reference_budget

    # ------------------------------------------------------------------ the push's half

    def start(self) -> float:
        """The moment a push begins to claim: pass it to ``confirm``/``within_budget``."""
        return self.clock.monotonic()

    def within_budget(self, started: float) -> bool:
        return self.clock.monotonic() - started <= self.reference_budget

    async def claim(self, digests: Iterable[Digest], wait: float = CLAIM_WAIT) -> set[Digest]:
        """Tell the garbage collector that a push relies on ``digests`` now, wait until it
        is not deleting anything that holds them, and return those whose data exists.

        Per digest: write ``claimed``, then read the tombstone (if present: wait for it to
        go and start again), then look for the data -- in this order, which the
        safety argument rests on (the last two in one listing). A claim that took longer
        than the reference budget is made again, so the returned claims are all recent.
        Raises BlobBusyError when a tombstone stays for ``wait`` seconds."""
        ordered = list(dict.fromkeys(digests))
        deadline = self.clock.monotonic() + wait
        present = await asyncio.gather(*(self._claim(d, deadline) for d in ordered))
        return {d for d, here in zip(ordered, present, strict=True) if here}

    async def confirm(self, digest: Digest, claimed_at: float) -> bool:
        """After a push placed what its claim (begun at ``claimed_at``, from ``start``)
        allowed: True if that was within the reference budget; otherwise claim again and
        say whether the data is still there. Raises BlobBusyError like ``claim``."""
        if self.within_budget(claimed_at):
            return True
        return digest in await self.claim([digest])

    async def _claim(self, digest: Digest, deadline: float) -> bool:
        while True:
            started = self.clock.monotonic()
            await self._driver.put(layout.blob_claimed(digest), b"")
            # One listing of the blob's folder answers both: is there a tombstone, and
            # (read no earlier) is there data. A listing of a few names is a snapshot on
            # both drivers, and an in-order scan reads "collecting" before "data".
            files = await self._driver.list(layout.blob_dir(digest))
            if layout.COLLECTING in files:
                await self._wait_collected(digest, deadline)
                continue
            # No "claimed": a collection that finished meanwhile deleted ours with the
            # blob's other files; claim again, or the next collection would not see it.
            if layout.CLAIMED in files and self.within_budget(started):
                return layout.DATA in files
            if self.clock.monotonic() >= deadline:
                raise BlobBusyError(digest)

    async def _is_collecting(self, digest: Digest) -> bool:
        # A read rather than a stat: on S3 a stat of a missing key costs a second request.
        try:
            await self._driver.get(layout.blob_collecting(digest))
        except PathNotFoundError:
            return False
        return True

    async def _wait_collected(self, digest: Digest, deadline: float) -> None:
        delay = _POLL_FIRST
        while await self._is_collecting(digest):
            if self.clock.monotonic() >= deadline:
                raise BlobBusyError(digest)
            await self.clock.sleep(delay)
            delay = min(delay * 2, _POLL_MAX)

    # ------------------------------------------------------------------ the collector's half

    async def claimed_at(self, digest: Digest) -> float | None:
        """When a push last claimed ``digest`` (storage time), if one did."""
        try:
            return (await self._driver.stat(layout.blob_claimed(digest))).modified
        except PathNotFoundError:
            return None

    async def claimed_fresh(self, digest: Digest, cutoff: Cutoff) -> bool:
        return cutoff.fresh(await self.claimed_at(digest))

    @contextlib.asynccontextmanager
    async def cycle(
        self,
        digests: Sequence[Digest],
        cutoff: Cutoff,
        *,
        owner: str,
        guard: Callable[[], None],
    ) -> AsyncIterator[Cycle]:
        """Hold the tombstones of ``digests`` for the block (C1 ... C4). ``guard`` raises
        when the collector may no longer delete (its lease is lost); it is called before
        the tombstones go up and before every step of C3."""
        guard()
        marker = owner.encode()
        written: list[Digest] = []

        async def write(d: Digest) -> None:
            await self._driver.put(layout.blob_collecting(d), marker)
            written.append(d)

        async def remove() -> None:
            if written:
                await self._driver.delete_many([layout.blob_collecting(d) for d in written])

        try:
            await asyncio.gather(*(write(d) for d in digests))
            yield Cycle(self, cutoff, guard)
        finally:
            # Shielded: when the run is cancelled (server shutdown) the tombstones still go,
            # or pushes of these digests would wait for the next run.
            await asyncio.shield(remove())

    async def remove_tombstones(self, digests: Sequence[Digest], guard: Callable[[], None]) -> None:
        """Remove tombstones a crashed collection left. Only for the lease holder, before
        it starts cycles of its own: no other collection is running then."""
        if digests:
            guard()
            await self._driver.delete_many([layout.blob_collecting(d) for d in digests])

    async def _delete(self, objects: Sequence[StoredObject]) -> None:
        try:
            await self._driver.delete_many([layout.path_of(o) for o in objects])
        finally:
            if self._after_delete is not None:
                await self._after_delete(objects)


class Cycle:
    """The collector's side of one cycle, between C1 and C4."""

    def __init__(self, claims: Claims, cutoff: Cutoff, guard: Callable[[], None]) -> None:
        self._claims = claims
        self.cutoff = cutoff
        self._guard = guard

    async def claimed_fresh(self, digest: Digest) -> bool:
        """C2: a push claimed ``digest`` after the cutoff, so the cycle spares it."""
        return await self._claims.claimed_fresh(digest, self.cutoff)

    async def delete(
        self, objects: Sequence[StoredObject], tag_targets: Mapping[str, Digest] | None = None
    ) -> None:
        """One step of C3: ``objects`` may go in any order or at once (on S3 one request
        per 1000). Steps that must follow one another are separate calls: each returns
        only when all its deletes are done. ``tag_targets`` says what the deleted tags
        named (``str(Tag)`` -> digest), for the change listeners."""
        if objects:
            self._guard()
            await self._claims._changes.before(Collected(tuple(objects), tag_targets or {}))
            await self._claims._delete(objects)
