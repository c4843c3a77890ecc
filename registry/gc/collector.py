"""Garbage collection: keep what tags reach, delete the rest, while pushes go on.

One run (``Collector.run``) holds the storage lease (``lease.py``) and goes:

1. purge upload sessions idle for longer than ``uploads.expiry`` (on S3 the driver's
   delete also aborts their multipart uploads), and remove tombstones a crashed run
   left behind;
2. retention: delete the tags the policies select (``retention.py``);
3. mark, in every repository: from every tag -- and, by the untagged policy, from every
   revision pushed within ``max(untagged.older_than, grace_period)`` or from all of
   them -- follow index children, config and layers, and the referrers (signatures,
   SBOMs) of every kept manifest;
4. sweep manifests: delete the revisions nothing reached, with their referrer entries;
5. sweep blobs: delete the links of repositories whose kept manifests do not use the
   blob, and the data of blobs no repository uses.

Each phase starts after the previous one has finished everywhere, so a manifest is
always deleted before anything it references.

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

A push claims a digest (``BlobStore.claim``): (W1) write ``claimed``; (W2) read
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
What remains assumed: one collector at a time (the lease; a collector that cannot renew
it stops before its next cycle), the storage's read-after-write consistency (S3 and RGW
give it), and storage writes landing well within half a grace period of being issued.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, TypeVar

from registry.config import GcConfig
from registry.errors import RegistryError
from registry.gc import metrics
from registry.gc.clock import CLOCK_RESOLUTION, storage_now
from registry.gc.lease import SETTLE, Lease, LeaseLostError
from registry.gc.retention import (
    RetentionPolicy,
    TagRecord,
    UntaggedPolicy,
    expired_tags,
    policy_for,
    untagged_cutoff,
)
from registry.manifest import parse_manifest
from registry.reference import ALGORITHMS, Digest, is_valid_name, is_valid_tag, parse_digest
from registry.store import RegistryStore, layout
from storage_backends import FileInfo, PathNotFoundError

log = logging.getLogger("registry.gc")

T = TypeVar("T")
R = TypeVar("R")

IO_CONCURRENCY = 16  # storage operations in flight at once
CYCLE_CONCURRENCY = 8  # digests whose tombstone is held at once
CATALOG_PAGE = 1000
_REFERENCES_CACHE_SIZE = 200_000
# The reference budget never drops below this, or no push could finish in time.
MIN_REFERENCE_BUDGET = 0.25


def reference_budget(grace_period: float) -> float:
    """How soon after its claims a push must issue its writes: half the grace period.
    The other half is the margin for those writes to land before a collection that
    considers the claim old has started."""
    return max(grace_period / 2, MIN_REFERENCE_BUDGET)


class CollectionBusyError(Exception):
    """Another process holds the gc lease: a collection is running elsewhere."""


@dataclass
class CollectionReport:
    dry_run: bool = False
    tags_deleted: list[str] = field(default_factory=list)  # "<repository>:<tag>"
    manifests_deleted: list[str] = field(default_factory=list)  # "<repository>@<digest>"
    blobs_deleted: list[str] = field(default_factory=list)  # digests
    bytes_freed: int = 0
    links_deleted: int = 0
    uploads_purged: int = 0
    spared: int = 0  # candidates the final check found in use
    duration: float = 0.0
    # False when a kept manifest could not be parsed: its references are unknown, so
    # nothing but tags and upload sessions was deleted.
    complete: bool = True

    def summary(self) -> str:
        """One line: what went (or, in a dry run, would go) and how long it took."""
        what = "gc dry run (nothing deleted)" if self.dry_run else "gc run"
        text = (
            f"{what} finished in {self.duration:.2f}s: "
            f"blobs_deleted={len(self.blobs_deleted)} bytes_freed={self.bytes_freed} "
            f"manifests_deleted={len(self.manifests_deleted)} "
            f"tags_deleted={len(self.tags_deleted)} links_deleted={self.links_deleted} "
            f"uploads_purged={self.uploads_purged} spared={self.spared}"
        )
        return text if self.complete else text + " incomplete=unreadable-manifests"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class _References:
    blobs: frozenset[Digest]
    children: frozenset[Digest]


@dataclass
class _Repository:
    """What one run learned about one repository."""

    name: str
    tags: dict[str, Digest] = field(default_factory=dict)
    revisions: set[Digest] = field(default_factory=set)
    referrers: dict[Digest, set[Digest]] = field(default_factory=dict)  # subject -> referrers
    links: set[Digest] = field(default_factory=set)
    kept: set[Digest] = field(default_factory=set)  # manifests
    kept_blobs: set[Digest] = field(default_factory=set)  # configs and layers
    candidates: dict[Digest, float] = field(default_factory=dict)  # revision -> modified


@dataclass
class _BlobFiles:
    data: bool = False
    claimed: bool = False
    collecting: bool = False


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
        self.references_cache: dict[Digest, _References] = {}

    async def run(self, *, dry_run: bool = False) -> CollectionReport:
        """One collection. A dry run writes nothing (not even the lease) and lists what a
        collection would delete now. Raises CollectionBusyError when another process
        holds the lease."""
        started = time.monotonic()
        try:
            if dry_run:
                report = await _Run(self, None, time.time()).collect()
            else:
                lease = Lease(self.store.driver, self.lease_ttl, settle=self.settle)
                if not await lease.acquire():
                    metrics.RUNS.labels("skipped").inc()
                    raise CollectionBusyError("another garbage collection holds the lease")
                async with lease.kept():
                    now = await storage_now(self.store.driver)
                    report = await _Run(self, lease, now).collect()
        except CollectionBusyError:
            raise
        except Exception:
            if not dry_run:
                metrics.RUNS.labels("failed").inc()
            raise
        report.duration = time.monotonic() - started
        log.info(report.summary())
        if not dry_run:
            _count(report)
        return report


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


class _Run:
    """The state of one collection."""

    def __init__(self, collector: Collector, lease: Lease | None, now: float) -> None:
        self.collector = collector
        self.store = collector.store
        self.driver = collector.store.driver
        self.lease = lease
        self.dry_run = lease is None
        self.now = now
        # Storage times are compared with the storage's own clock; they may be truncated
        # to whole seconds, hence the resolution.
        self.cutoff = now - collector.grace_period - CLOCK_RESOLUTION
        untagged = untagged_cutoff(collector.untagged, now, collector.grace_period)
        self.untagged_cutoff = None if untagged is None else untagged - CLOCK_RESOLUTION
        self.report = CollectionReport(dry_run=self.dry_run)
        self.repos: dict[str, _Repository] = {}
        self.marked: set[Digest] = set()  # every digest some repository keeps
        self._io_slots = asyncio.Semaphore(IO_CONCURRENCY)
        self._cycle_slots = asyncio.Semaphore(CYCLE_CONCURRENCY)

    async def collect(self) -> CollectionReport:
        names = await self._repository_names()
        blobs = await self._list_blobs()
        await self._purge_uploads(sorted(set(names) | set(await self._uploading_names())))
        if not self.dry_run:
            await self._clear_tombstones(blobs)
        await self._apply_retention(names)
        await asyncio.gather(*(self._scan(r) for r in self.repos.values()))
        await asyncio.gather(*(self._mark(r) for r in self.repos.values()))
        if not self.report.complete:
            log.error("gc: some kept manifests cannot be parsed; nothing else is swept")
            return self.report
        await self._sweep_manifests()
        if not self.report.complete:  # a manifest kept by a push's claim is unreadable
            log.error("gc: a rescued manifest cannot be parsed; no blob is swept")
            return self.report
        await self._sweep_blobs(blobs)
        return self.report

    # ------------------------------------------------------------------ storage access

    async def _io(self, operation: Awaitable[T]) -> T:
        async with self._io_slots:
            return await operation

    async def _each(self, items: Iterable[T], fn: Callable[[T], Awaitable[R]]) -> list[R]:
        return list(await asyncio.gather(*(fn(i) for i in items)))

    async def _stat(self, path: str) -> FileInfo | None:
        try:
            return await self._io(self.driver.stat(path))
        except PathNotFoundError:
            return None

    async def _modified(self, path: str) -> float | None:
        info = await self._stat(path)
        return None if info is None else info.modified

    async def _read(self, path: str) -> bytes | None:
        try:
            return await self._io(self.driver.get(path))
        except PathNotFoundError:
            return None

    async def _list(self, prefix: str, recursive: bool = False) -> list[str]:
        return await self._io(self.driver.list(prefix, recursive=recursive))

    async def _delete(self, paths: Sequence[str]) -> None:
        """Delete the files ``paths`` of one step of C3, which may go in any order or
        at once (on S3 one request per 1000). Steps that must follow one another are
        separate calls: each returns only when all its deletes are done."""
        assert self.lease is not None, "a dry run deletes nothing"
        if not paths:
            return
        self.lease.check()
        await self._io(self.driver.delete_many(paths))

    async def _claimed_fresh(self, digest: Digest) -> bool:
        claimed = await self._modified(layout.blob_claimed(digest))
        return claimed is not None and claimed > self.cutoff

    @contextlib.asynccontextmanager
    async def _collecting(self, digests: Sequence[Digest]) -> AsyncIterator[None]:
        """Hold the tombstones of ``digests`` (C1 ... C4 of the module docstring)."""
        assert self.lease is not None, "a dry run holds no tombstones"
        self.lease.check()
        marker = self.lease.owner.encode()
        written: list[Digest] = []

        async def write(d: Digest) -> None:
            await self._io(self.driver.put(layout.blob_collecting(d), marker))
            written.append(d)

        async def remove() -> None:
            if written:
                paths = [layout.blob_collecting(d) for d in written]
                await self._io(self.driver.delete_many(paths))

        try:
            await asyncio.gather(*(write(d) for d in digests))
            yield
        finally:
            # Shielded: when the run is cancelled (server shutdown) the tombstones still go,
            # or pushes of these digests would wait for the next run.
            await asyncio.shield(remove())

    async def _cycle(self, fn: Callable[[], Awaitable[None]]) -> None:
        async with self._cycle_slots:
            await fn()

    # ------------------------------------------------------------------ inventory

    async def _repository_names(self) -> list[str]:
        names: list[str] = []
        last: str | None = None
        while True:
            page = await self._io(self.store.catalog.list(last, CATALOG_PAGE))
            names.extend(n for n in page if is_valid_name(n))
            if len(page) < CATALOG_PAGE:
                return names
            last = page[-1]

    async def _uploading_names(self) -> list[str]:
        markers = await self._list(layout.UPLOADING, True)
        names = [layout.catalog_name(m) for m in markers if m.endswith(layout.CATALOG_SUFFIX)]
        return [n for n in names if is_valid_name(n)]

    async def _list_blobs(self) -> dict[Digest, _BlobFiles]:
        """Every blob folder, by the files it holds. Listed shard by shard, so that no
        listing is larger than 1/256 of the store."""
        found: dict[Digest, _BlobFiles] = defaultdict(_BlobFiles)
        for algorithm in await self._list(layout.BLOBS):
            if algorithm not in ALGORITHMS:
                continue
            shards = await self._list(layout.blob_shards(algorithm))
            paths = [layout.blob_shard(algorithm, shard) for shard in shards]
            listings = await self._each(paths, lambda path: self._list(path, True))
            for listing in listings:
                for relative in listing:
                    parsed = layout.blob_file_in_shard(relative)
                    if parsed is None:
                        continue
                    try:
                        digest = parse_digest(f"{algorithm}:{parsed[0]}")
                    except RegistryError:
                        continue
                    files = found[digest]
                    if parsed[1] == layout.DATA:
                        files.data = True
                    elif parsed[1] == layout.CLAIMED:
                        files.claimed = True
                    elif parsed[1] == layout.COLLECTING:
                        files.collecting = True
        return dict(found)

    async def _purge_uploads(self, names: list[str]) -> None:
        older_than = self.now - self.collector.upload_expiry

        async def purge(name: str) -> int:
            if self.dry_run:
                return len(await self.store.uploads.expired_ids(name, older_than))
            assert self.lease is not None
            self.lease.check()
            return await self.store.uploads.purge_expired(name, older_than)

        self.report.uploads_purged = sum(await self._each(names, purge))

    async def _clear_tombstones(self, blobs: dict[Digest, _BlobFiles]) -> None:
        # We hold the lease, so no collection is running: these are left by a crashed one.
        stale = [d for d, f in blobs.items() if f.collecting]
        if stale:
            log.warning("gc: removing %d tombstones left by an interrupted collection", len(stale))
            await self._delete([layout.blob_collecting(d) for d in stale])

    # ------------------------------------------------------------------ retention

    async def _apply_retention(self, names: list[str]) -> None:
        expired: dict[Digest, list[tuple[_Repository, TagRecord]]] = defaultdict(list)

        async def scan_tags(name: str) -> None:
            repo = self.repos[name] = _Repository(name)
            tags = [t for t in await self._list(layout.tags(name)) if is_valid_tag(t)]
            policy = policy_for(name, self.collector.policies)
            targets = await self._each(tags, lambda t: self._tag_target(name, t))
            records: list[TagRecord] = []
            for tag, target in zip(tags, targets, strict=True):
                if target is None:
                    continue
                repo.tags[tag] = target
            if policy is None:
                return
            times = await self._each(repo.tags, lambda t: self._modified(layout.tag(name, t)))
            for (tag, target), pushed_at in zip(repo.tags.items(), times, strict=True):
                if pushed_at is not None:
                    records.append(TagRecord(tag, str(target), pushed_at))
            for record in expired_tags(records, policy, self.now):
                expired[parse_digest(record.digest)].append((repo, record))

        await self._each(names, scan_tags)
        if self.dry_run:
            for group in expired.values():
                for repo, record in group:
                    del repo.tags[record.name]
                    self.report.tags_deleted.append(f"{repo.name}:{record.name}")
            return

        async def untag(digest: Digest) -> None:
            async with self._collecting([digest]):
                if await self._claimed_fresh(digest):
                    self.report.spared += len(expired[digest])
                    return
                unchanged = await self._each(expired[digest], lambda e: self._tag_unchanged(*e))
                doomed = [e for e, same in zip(expired[digest], unchanged, strict=True) if same]
                self.report.spared += len(expired[digest]) - len(doomed)  # pushed again
                await self._delete([layout.tag(repo.name, record.name) for repo, record in doomed])
                for repo, record in doomed:
                    del repo.tags[record.name]
                    self.report.tags_deleted.append(f"{repo.name}:{record.name}")

        await self._each(expired, lambda d: self._cycle(lambda: untag(d)))

    async def _tag_unchanged(self, repo: _Repository, record: TagRecord) -> bool:
        """Whether the tag still names what it named, and was not pushed again, since the
        run looked at it."""
        target, modified = await asyncio.gather(
            self._tag_target(repo.name, record.name),
            self._modified(layout.tag(repo.name, record.name)),
        )
        return str(target) == record.digest and modified == record.pushed_at

    async def _tag_target(self, name: str, tag: str) -> Digest | None:
        raw = await self._read(layout.tag(name, tag))
        if raw is None:
            return None
        try:
            return parse_digest(raw.decode())
        except (RegistryError, UnicodeDecodeError):
            log.warning("gc: tag %s:%s does not hold a digest", name, tag)
            return None

    # ------------------------------------------------------------------ mark

    async def _scan(self, repo: _Repository) -> None:
        revisions, referrers, links = await asyncio.gather(
            self._list(layout.revisions(repo.name), True),
            self._list(layout.referrers_index(repo.name), True),
            self._list(layout.layers(repo.name), True),
        )
        repo.revisions = _digests(revisions)
        repo.links = _digests(links)
        for entry in referrers:
            subject_path, _, key = entry.rpartition("/")
            subject, referrer = _digest_or_none(subject_path), _digest_or_none(key)
            if subject is not None and referrer is not None:
                repo.referrers.setdefault(subject, set()).add(referrer)

    async def _mark(self, repo: _Repository) -> None:
        await self._reach(repo, repo.tags.values())
        rest = sorted(repo.revisions - repo.kept)
        if self.untagged_cutoff is None:
            await self._reach(repo, rest)
            return
        times = await self._each(rest, lambda d: self._modified(layout.revision(repo.name, d)))
        modified = {d: t for d, t in zip(rest, times, strict=True) if t is not None}
        await self._reach(repo, [d for d, t in modified.items() if t > self.untagged_cutoff])
        repo.candidates = {d: t for d, t in modified.items() if d not in repo.kept}

    async def _reach(self, repo: _Repository, starts: Iterable[Digest]) -> None:
        """Keep ``starts`` in ``repo`` and everything they reach there."""
        frontier = [d for d in dict.fromkeys(starts) if d not in repo.kept]
        while frontier:
            repo.kept.update(frontier)
            self.marked.update(frontier)
            found = await self._each(frontier, self._references)
            following: set[Digest] = set()
            for digest, refs in zip(frontier, found, strict=True):
                following |= repo.referrers.get(digest, set())
                if refs is not None:
                    repo.kept_blobs |= refs.blobs
                    self.marked |= refs.blobs
                    following |= refs.children
            frontier = sorted(following - repo.kept)

    async def _references(self, digest: Digest, kept: bool = True) -> _References | None:
        """What a manifest references, or None when its content is gone or unreadable.
        An unreadable *kept* manifest marks the run incomplete: what it needs is unknown,
        so nothing that might be it may be swept."""
        cache = self.collector.references_cache
        if digest in cache:
            return cache[digest]
        body = await self._read(layout.blob_data(digest))
        if body is None:
            # A revision whose content is gone cannot be served; it needs nothing.
            log.warning("gc: manifest %s has no content", digest)
            return None
        try:
            manifest = parse_manifest(body, None)
        except RegistryError as exc:
            log.error("gc: manifest %s cannot be parsed: %s", digest, exc.message)
            if kept:
                self.report.complete = False
            return None
        refs = _References(
            frozenset(d.digest for d in manifest.blobs),
            frozenset(d.digest for d in manifest.manifests),
        )
        if len(cache) >= _REFERENCES_CACHE_SIZE:
            cache.clear()
        cache[digest] = refs
        return refs

    # ------------------------------------------------------------------ sweep manifests

    async def _sweep_manifests(self) -> None:
        nodes = [
            (repo, d) for repo in self.repos.values() for d in repo.candidates if d not in repo.kept
        ]
        if self.dry_run:
            for repo, d in nodes:
                self.report.manifests_deleted.append(f"{repo.name}@{d}")
            return
        found = await self._each(nodes, lambda n: self._references(n[1], kept=False))
        # Candidates that must be decided together: a rescued one keeps what it reaches
        # (index children, referrers), and one digest has one tombstone in all repositories.
        parent: dict[tuple[str, Digest], tuple[str, Digest]] = {}

        def root(key: tuple[str, Digest]) -> tuple[str, Digest]:
            while parent.setdefault(key, key) != key:
                key = parent[key]
            return key

        def union(a: tuple[str, Digest], b: tuple[str, Digest]) -> None:
            parent[root(a)] = root(b)

        children: dict[tuple[str, Digest], set[Digest]] = {}
        by_digest: dict[Digest, tuple[str, Digest]] = {}
        for (repo, d), refs in zip(nodes, found, strict=True):
            key = (repo.name, d)
            root(key)
            children[key] = set(refs.children) if refs is not None else set()
            for linked in children[key] | repo.referrers.get(d, set()):
                if linked in repo.candidates and linked not in repo.kept:
                    union(key, (repo.name, linked))
            if d in by_digest:
                union(key, by_digest[d])
            by_digest[d] = key
        components: dict[tuple[str, Digest], list[tuple[_Repository, Digest]]] = defaultdict(list)
        for repo, d in nodes:
            components[root((repo.name, d))].append((repo, d))

        async def sweep(component: list[tuple[_Repository, Digest]]) -> None:
            await self._sweep_component(component, children)

        await self._each(components.values(), lambda c: self._cycle(lambda: sweep(c)))

    async def _sweep_component(
        self,
        component: list[tuple[_Repository, Digest]],
        children: dict[tuple[str, Digest], set[Digest]],
    ) -> None:
        digests = sorted({d for _, d in component})
        async with self._collecting(digests):
            fresh = {d for d in digests if await self._claimed_fresh(d)}
            for repo, d in component:
                modified = await self._modified(layout.revision(repo.name, d))
                if d in fresh or (modified is not None and modified != repo.candidates[d]):
                    self.report.spared += 1
                    await self._reach(repo, [d])
            doomed = [(repo, d) for repo, d in component if d not in repo.kept]
            await self._delete_revisions(doomed, children)

    async def _delete_revisions(
        self,
        doomed: list[tuple[_Repository, Digest]],
        children: dict[tuple[str, Digest], set[Digest]],
    ) -> None:
        """C3 for manifests: every referrer entry, then the revisions one level of the
        index tree at a time, parents first."""
        found = await self._each(doomed, lambda n: self._revision_subject(*n))
        stored = [n for n, (present, _) in zip(doomed, found, strict=True) if present]
        entries = [
            layout.referrer(repo.name, subject, d)
            for (repo, d), (_, subject) in zip(doomed, found, strict=True)
            if subject is not None
        ]
        await self._delete(entries)
        for level in _parents_first(stored, children):
            await self._delete([layout.revision(repo.name, d) for repo, d in level])
            self.report.manifests_deleted += [f"{repo.name}@{d}" for repo, d in level]

    async def _revision_subject(
        self, repo: _Repository, digest: Digest
    ) -> tuple[bool, Digest | None]:
        """Whether the revision is still stored, and the subject it names if any."""
        try:
            stored = await self._io(self.store.manifests.revision(repo.name, digest))
        except RegistryError:
            return False, None  # deleted meanwhile (DELETE by digest)
        if stored.subject is not None:
            with contextlib.suppress(RegistryError):
                return True, parse_digest(stored.subject)
        return True, None

    # ------------------------------------------------------------------ sweep blobs

    async def _sweep_blobs(self, blobs: dict[Digest, _BlobFiles]) -> None:
        linked_in: dict[Digest, list[_Repository]] = defaultdict(list)
        for repo in self.repos.values():
            for d in repo.links:
                linked_in[d].append(repo)
        work = []
        for digest in sorted(set(blobs) | set(linked_in)):
            files = blobs.get(digest, _BlobFiles())
            unused = digest not in self.marked
            stale_links = [r for r in linked_in.get(digest, []) if digest not in r.kept_blobs]
            if stale_links or (unused and (files.data or files.claimed)):
                work.append((digest, files, unused, stale_links))
        await self._each(work, lambda w: self._cycle(lambda: self._sweep_blob(*w)))

    async def _sweep_blob(
        self, digest: Digest, files: _BlobFiles, unused: bool, stale_links: list[_Repository]
    ) -> None:
        # A first look without the tombstone: most candidates are fresh, and need none.
        if await self._claimed_fresh(digest):
            return
        link_times = await self._each(
            stale_links, lambda r: self._modified(layout.layer_link(r.name, digest))
        )
        old_links = [
            r
            for r, t in zip(stale_links, link_times, strict=True)
            if t is not None and t <= self.cutoff
        ]
        fresh_link = any(t is not None and t > self.cutoff for t in link_times)
        data = await self._stat(layout.blob_data(digest)) if unused and files.data else None
        old_data = data is not None and data.modified <= self.cutoff and not fresh_link
        orphan_claim = unused and data is None and files.claimed
        if not (old_links or old_data or orphan_claim):
            return
        if self.dry_run:
            self.report.links_deleted += len(old_links)
            if old_data and data is not None:
                self.report.blobs_deleted.append(str(digest))
                self.report.bytes_freed += data.size
            return
        async with self._collecting([digest]):
            if await self._claimed_fresh(digest):
                self.report.spared += 1
                return
            paths = [layout.layer_link(repo.name, digest) for repo in old_links]
            times = await self._each(paths, self._modified)
            fresh_link |= any(t is not None and t > self.cutoff for t in times)
            doomed = [
                p for p, t in zip(paths, times, strict=True) if t is not None and t <= self.cutoff
            ]
            await self._delete(doomed)  # links, before the data
            self.report.links_deleted += len(doomed)
            if not unused or fresh_link:
                return
            data = await self._stat(layout.blob_data(digest))
            if data is not None:
                if data.modified > self.cutoff:
                    return
                await self._delete([layout.blob_data(digest)])  # the data, before the claim
                self.report.blobs_deleted.append(str(digest))
                self.report.bytes_freed += data.size
            await self._delete([layout.blob_claimed(digest)])


def _digest_or_none(listed: str) -> Digest | None:
    try:
        return parse_digest(layout.listed_digest(listed))
    except RegistryError:
        return None


def _digests(listing: Iterable[str]) -> set[Digest]:
    return {d for d in map(_digest_or_none, listing) if d is not None}


def _parents_first(
    nodes: list[tuple[_Repository, Digest]],
    children: dict[tuple[str, Digest], set[Digest]],
) -> list[list[tuple[_Repository, Digest]]]:
    """``nodes`` in levels, each index in a level before the children it lists (content
    addressing rules out cycles), so that no served index lacks a child. No node lists
    another of its own level, so a level may be deleted at once."""
    keys = {(repo.name, d): (repo, d) for repo, d in nodes}
    pending = {k: 0 for k in keys}
    for name, d in keys:
        for child in children.get((name, d), set()):
            if (name, child) in pending:
                pending[(name, child)] += 1
    level = sorted(k for k, n in pending.items() if n == 0)
    levels: list[list[tuple[_Repository, Digest]]] = []
    seen: set[tuple[str, Digest]] = set()
    while level:
        levels.append([keys[k] for k in level])
        seen.update(level)
        following: list[tuple[str, Digest]] = []
        for key in level:
            for child in children.get(key, set()):
                ck = (key[0], child)
                if ck in pending:
                    pending[ck] -= 1
                    if pending[ck] == 0:
                        following.append(ck)
        level = sorted(following)
    rest = [keys[k] for k in sorted(keys) if k not in seen]
    return [*levels, rest] if rest else levels


__all__ = [
    "CollectionBusyError",
    "CollectionReport",
    "Collector",
    "LeaseLostError",
    "reference_budget",
]
