"""Copying artifacts from a source to a target endpoint, byte for byte.

A copy of a tag fetches the manifest's exact bytes (never re-serialised, so the digest
is the same on both sides), and unless the target's tag names that digest already,
copies what it references first -- index children (with theirs) and blobs, several at
once -- then puts the manifest, then its referrers (signatures, SBOMs) after it. Each
blob is

1. mounted from another repository of the target that has it, when this process knows
   one (remembered from earlier copies, or a copy of it in flight, which is awaited):
   one request, which succeeds too when the repository has the blob already;
2. skipped when the target's repository has it (a HEAD);
3. otherwise uploaded: in one request up to the rule's ``chunk_size``, in chunks beyond,
   and a chunked upload saves the target's session and acknowledged offset after every
   chunk (state.UploadSlots), so that a copy cut by a crash goes on from there in
   whichever process runs the job next, instead of from zero.

Failures come in two kinds (``is_transient``): the target or the storage cannot be
reached now (refused, 5xx, 429, timeouts, credentials) -- the caller retries the whole
delivery later with backoff, and nothing is lost meanwhile --, or a job cannot be done
for a reason of its own (the target refuses the manifest, the content is gone, a name
does not map): ``CopyFailed`` or another error, recorded as a failure of that job and
retried on the next event or pass.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

from registry import errors
from registry.errors import RegistryError
from registry.manifest import Manifest, parse_manifest
from registry.reference import Digest, parse_digest
from registry.remote import TooManyRequests, Unauthorized, Unavailable
from registry.replication import metrics
from registry.replication.endpoints import Artifact, BlobReader, Endpoint
from registry.replication.rules import Rule, referrer_subject
from registry.replication.state import Job, Tally, UploadSlots
from registry.store import LeaseLostError, StorageError

log = logging.getLogger("registry.replication")

MAX_DEPTH = 8  # nested indexes, and referrers of referrers
HINTS = 10_000


class CopyFailed(Exception):
    """A job that cannot be done for a reason of its own; the message says which."""


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` says the target or the storage cannot be reached now (retry the
    delivery later) rather than that this job cannot be done."""
    if isinstance(exc, RegistryError):
        return exc.code is errors.UNAVAILABLE
    return isinstance(
        exc, Unavailable | TooManyRequests | Unauthorized | StorageError | LeaseLostError
    )


def reason_of(exc: BaseException) -> str:
    if isinstance(exc, RegistryError):
        return f"{exc.code.code}: {exc.message}"
    return str(exc) or type(exc).__name__


class MountHints:
    """Digest -> a repository of the target known to hold it (least recently used
    forgotten first)."""

    def __init__(self, limit: int = HINTS) -> None:
        self._items: OrderedDict[Digest, str] = OrderedDict()
        self._limit = limit

    def add(self, digest: Digest, repository: str) -> None:
        self._items[digest] = repository
        self._items.move_to_end(digest)
        while len(self._items) > self._limit:
            self._items.popitem(last=False)

    def get(self, digest: Digest, other_than: str) -> str | None:
        repository = self._items.get(digest)
        return repository if repository != other_than else None

    def drop(self, digest: Digest, repository: str) -> None:
        """The target would not mount ``digest`` from ``repository`` (deleted there)."""
        if self._items.get(digest) == repository:
            del self._items[digest]


class _Inflight:
    def __init__(self, repository: str) -> None:
        self.repository = repository
        self.done = asyncio.Event()
        self.ok = False


class Transfers:
    """What the copies of one rule share in a process: the bound on blobs in flight,
    mount hints, copies in flight (a second copy of a blob waits for the first and
    mounts), and the resume slots."""

    def __init__(self, uploads: UploadSlots, parallel: int) -> None:
        self.uploads = uploads
        self.slots = asyncio.Semaphore(parallel)
        self.parallel = parallel
        self.hints = MountHints()
        self.inflight: dict[Digest, _Inflight] = {}


class Copier:
    """Runs jobs of one rule from ``source`` to ``target``; ``tally`` counts what it did."""

    def __init__(
        self, rule: Rule, source: Endpoint, target: Endpoint, transfers: Transfers
    ) -> None:
        self.rule = rule
        self.source = source
        self.target = target
        self.transfers = transfers
        self.tally = Tally()
        # Called before each job of a pass (its lease's check): raises to stop it.
        self.check: Callable[[], None] | None = None

    def target_of(self, repository: str) -> str:
        mapped = self.rule.mapping.target(repository)
        if mapped is None:
            raise CopyFailed(f"the rule's mapping gives no valid name for {repository!r}")
        return mapped

    async def run(self, job: Job) -> bool:
        """Do ``job``; True when it changed the target."""
        dst = self.target_of(job.repository)
        if job.action == "copy":
            return await self.copy_tag(job.repository, job.reference, dst)
        if job.action == "untag":
            return await self.delete_tag(job.repository, job.reference, dst)
        digest = parse_digest(job.reference)
        if job.action == "referrer":
            return await self.copy_referrer(job.repository, digest, dst)
        if job.action == "referrers":
            return await self.sync_referrers(job.repository, digest, dst)
        return await self.delete_manifest(job.repository, digest, dst)

    # ------------------------------------------------------------------ copies

    async def copy_tag(
        self, repository: str, tag: str, dst: str, *, known: Digest | None = None
    ) -> bool:
        """Make ``dst:tag`` name what ``repository:tag`` names now. ``known``: what the
        target's tag is known to name (saves a HEAD)."""
        subject = referrer_subject(tag)
        # A signature or referrers index goes only where its subject went.
        if (
            subject is not None
            and not self.rule.tags.matches(tag)
            and not await self.target.has_manifest(dst, subject)
        ):
            return False
        artifact = await self.source.manifest(repository, tag)
        if artifact is None:
            return False  # gone since: its delete, if any, is a job of its own
        current = known if known is not None else await self.target.tag_digest(dst, tag)
        if current == artifact.digest:
            return False
        manifest = _parse(artifact, f"{repository}:{tag}")
        await self._content(repository, manifest, dst, 0)
        await self.target.put_manifest(dst, tag, artifact)
        self._copied(artifact)
        log.info(
            "replication %s: %s:%s -> %s:%s (%s)",
            self.rule.name,
            repository,
            tag,
            dst,
            tag,
            artifact.digest,
        )
        if self.rule.referrers:
            await self._referrers(repository, artifact.digest, manifest, dst, 0)
        return True

    async def copy_referrer(self, repository: str, digest: Digest, dst: str) -> bool:
        """A manifest pushed by digest goes along when it refers to a subject the target
        has (index children come with their index instead)."""
        if not self.rule.referrers:
            return False
        artifact = await self.source.manifest(repository, digest)
        if artifact is None:
            return False
        manifest = _parse(artifact, f"{repository}@{digest}")
        if manifest.subject is None:
            return False
        subject = manifest.subject.digest
        if not await self.target.has_manifest(dst, subject):
            return False
        if await self.target.has_manifest(dst, digest):
            return False
        descriptor = manifest.referrer_descriptor(digest, len(artifact.body))
        await self._put_referrer(repository, artifact, manifest, dst, subject, descriptor, 0)
        return True

    async def sync_referrers(self, repository: str, subject: Digest, dst: str) -> bool:
        """Copy the referrers of a manifest the target has that it lacks (a full pass:
        signatures made after their image was copied)."""
        if not self.rule.referrers:
            return False
        before = self.tally.artifacts
        await self._referrers(repository, subject, None, dst, 0)
        return self.tally.artifacts > before

    def _copied(self, artifact: Artifact) -> None:
        self.tally.artifacts += 1
        self.tally.manifests += 1
        metrics.ARTIFACTS.labels(self.rule.name).inc()
        metrics.MANIFESTS.labels(self.rule.name).inc()

    async def _content(self, repository: str, manifest: Manifest, dst: str, depth: int) -> None:
        """Everything ``manifest`` references, on the target, before the manifest."""
        if depth > MAX_DEPTH:
            raise CopyFailed(f"indexes nested deeper than {MAX_DEPTH} levels")
        work: list[Awaitable[None]] = [
            self._child(repository, d.digest, dst, depth) for d in manifest.manifests
        ]
        work += [self._blob(repository, d.digest, d.size, dst) for d in manifest.blobs]
        await all_of(work)

    async def _child(self, repository: str, digest: Digest, dst: str, depth: int) -> None:
        if await self.target.has_manifest(dst, digest):
            return
        artifact = await self.source.manifest(repository, digest)
        if artifact is None:
            raise CopyFailed(f"{digest}, in an index, is not in {repository!r} any more")
        manifest = _parse(artifact, f"{repository}@{digest}")
        await self._content(repository, manifest, dst, depth + 1)
        await self.target.put_manifest(dst, str(digest), artifact)
        self.tally.manifests += 1
        metrics.MANIFESTS.labels(self.rule.name).inc()
        if self.rule.referrers:
            await self._referrers(repository, digest, manifest, dst, depth + 1)

    async def _referrers(
        self,
        repository: str,
        subject: Digest,
        manifest: Manifest | None,
        dst: str,
        depth: int,
    ) -> None:
        if depth > MAX_DEPTH:
            return
        for descriptor in await self.source.referrers(repository, subject):
            try:
                digest = parse_digest(str(descriptor.get("digest")))
            except RegistryError:
                continue
            if await self.target.has_manifest(dst, digest):
                continue
            artifact = await self.source.manifest(repository, digest)
            if artifact is None:
                continue  # deleted meanwhile
            referrer = _parse(artifact, f"{repository}@{digest}")
            await self._put_referrer(
                repository, artifact, referrer, dst, subject, descriptor, depth
            )

    async def _put_referrer(
        self,
        repository: str,
        artifact: Artifact,
        manifest: Manifest,
        dst: str,
        subject: Digest,
        descriptor: dict[str, Any],
        depth: int,
    ) -> None:
        await self._content(repository, manifest, dst, depth + 1)
        await self.target.put_manifest(dst, str(artifact.digest), artifact)
        await self.target.index_referrer(dst, subject, descriptor)
        self._copied(artifact)
        log.info(
            "replication %s: referrer %s of %s -> %s",
            self.rule.name,
            artifact.digest,
            subject,
            dst,
        )
        await self._referrers(repository, artifact.digest, manifest, dst, depth + 1)

    # ------------------------------------------------------------------ blobs

    async def _blob(self, repository: str, digest: Digest, size: int, dst: str) -> None:
        t = self.transfers
        # Known elsewhere on the target: a mount (one request) is all it takes; it
        # succeeds too when the repository has the blob already.
        hint = t.hints.get(digest, other_than=dst)
        if hint is not None and digest not in t.inflight and await self._mount(digest, dst, hint):
            return
        if await self.target.has_blob(dst, digest):
            self._skipped(digest, dst)
            await t.uploads.forget(dst, digest)
            return
        # One upload of a digest at a time in this process: the next copy waits for it,
        # then mounts from where it went.
        while (running := t.inflight.get(digest)) is not None:
            await running.done.wait()
            if not running.ok:
                continue
            if running.repository == dst:
                self._skipped(digest, dst)
                return
            if await self._mount(digest, dst, running.repository):
                return
        flight = t.inflight[digest] = _Inflight(dst)
        try:
            async with t.slots:
                reader = self._counted(self.source.blob_reader(repository, digest, size))
                slot = t.uploads.slot(dst, digest)
                await self.target.push_blob(dst, digest, size, reader, slot, self.rule.chunk_size)
            self.tally.blobs += 1
            metrics.BLOBS.labels(self.rule.name, "copied").inc()
            t.hints.add(digest, dst)
            flight.ok = True
        finally:
            flight.done.set()
            del t.inflight[digest]

    async def _mount(self, digest: Digest, dst: str, source: str) -> bool:
        hints = self.transfers.hints
        if not await self.target.mount_blob(dst, digest, source):
            hints.drop(digest, source)
            return False
        self.tally.mounted += 1
        metrics.BLOBS.labels(self.rule.name, "mounted").inc()
        hints.add(digest, dst)
        return True

    def _skipped(self, digest: Digest, dst: str) -> None:
        self.tally.skipped += 1
        metrics.BLOBS.labels(self.rule.name, "skipped").inc()
        self.transfers.hints.add(digest, dst)

    def _counted(self, reader: BlobReader) -> BlobReader:
        tally = self.tally
        counter = metrics.BYTES.labels(self.rule.name)

        async def read(offset: int) -> AsyncIterator[bytes]:
            async for chunk in reader(offset):
                tally.bytes += len(chunk)
                counter.inc(len(chunk))
                yield chunk

        return read

    # ------------------------------------------------------------------ deletes

    async def delete_tag(self, repository: str, tag: str, dst: str) -> bool:
        """Delete ``dst:tag`` unless the source has the tag again."""
        if not self.rule.deletes or await self.source.tag_digest(repository, tag) is not None:
            return False
        return self._deleted(await self.target.delete_tag(dst, tag))

    async def delete_manifest(self, repository: str, digest: Digest, dst: str) -> bool:
        """Delete ``dst@digest`` (and so its tags) unless the source has it again."""
        if not self.rule.deletes or await self.source.has_manifest(repository, digest):
            return False
        return self._deleted(await self.target.delete_manifest(dst, digest))

    def _deleted(self, done: bool) -> bool:
        if done:
            self.tally.deletes += 1
            metrics.DELETES.labels(self.rule.name).inc()
        return done


def _parse(artifact: Artifact, what: str) -> Manifest:
    try:
        return parse_manifest(artifact.body, artifact.media_type)
    except RegistryError as exc:
        raise CopyFailed(f"{what}: the source's manifest is not valid: {exc.message}") from None


async def all_of(work: Sequence[Awaitable[None]]) -> None:
    """Run ``work`` at once; when one fails the others are cancelled, and the error
    raised is a transient one if any was (the whole job is then tried again later)."""
    if not work:
        return
    if len(work) == 1:
        await work[0]
        return
    try:
        async with asyncio.TaskGroup() as group:
            for item in work:
                group.create_task(_run(item))
    except BaseExceptionGroup as group_error:
        found = _leaves(group_error)
        transient = [e for e in found if is_transient(e)]
        raise (transient or found)[0] from None


async def _run(item: Awaitable[None]) -> None:
    await item


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    out: list[BaseException] = []
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            out += _leaves(exc)
        else:
            out.append(exc)
    return out
