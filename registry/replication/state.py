"""The documents replication keeps in storage (store/replication.py), and their format:

- ``Job``: one unit of work -- copy a tag, copy a referrer pushed by digest, copy the
  referrers a manifest on the target lacks, delete a tag, delete a manifest -- named by
  the *source* repository and reference, so that running it again later does what is
  right *then* (a retried copy copies what the tag names now);
- ``FailureRecord``: a job that failed for a reason of its own (the target refused the
  manifest, the content is gone, a quota said no), kept until it succeeds: retried on
  the rule's next event for that repository and on its next full pass;
- ``Tally``: what a delivery or a pass did; ``StatusRecord``: the last one and the
  totals, one document per writer (``events`` deliveries, full ``runs``);
- ``UploadSlots``: the ``Resume`` slots of blob uploads in flight, keyed by the target,
  its repository and the digest.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

from registry.reference import Digest
from registry.replication.endpoints import Endpoint
from registry.store import ReplicationState

log = logging.getLogger("registry.replication")

Action = Literal["copy", "referrer", "referrers", "untag", "delete"]
REASON_MAX = 500
# An upload slot not written for this long belongs to a copy that no one resumes (its
# rule went or changed, its blob went, the target was gone for a day): it is dropped
# (docs/replication.md). A day is this registry's own default ``uploads.expiry``; a
# copy in progress writes its slot at every chunk the target acknowledges.
UPLOAD_EXPIRY = 24 * 3600.0


def _key(*parts: str) -> str:
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


@dataclass(frozen=True)
class Job:
    action: Action
    repository: str  # on the source
    reference: str  # a tag, or a digest for "referrer", "referrers" and "delete"

    @property
    def key(self) -> str:
        return _key(self.action, self.repository, self.reference)

    def __str__(self) -> str:
        sep = "@" if ":" in self.reference else ":"
        return f"{self.action} {self.repository}{sep}{self.reference}"


@dataclass
class FailureRecord:
    job: Job
    target: str  # the target repository ("" when the name does not map)
    reason: str
    attempts: int = 1
    first: float = 0.0
    last: float = 0.0

    def dump(self) -> bytes:
        doc = asdict(self)
        return json.dumps(doc, separators=(",", ":")).encode()

    @classmethod
    def load(cls, raw: bytes) -> FailureRecord:
        doc = json.loads(raw)
        job = doc["job"]
        return cls(
            Job(job["action"], str(job["repository"]), str(job["reference"])),
            str(doc.get("target", "")),
            str(doc.get("reason", "")),
            int(doc.get("attempts", 1)),
            float(doc.get("first", 0.0)),
            float(doc.get("last", 0.0)),
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "action": self.job.action,
            "repository": self.job.repository,
            "reference": self.job.reference,
            "target": self.target,
            "reason": self.reason,
            "attempts": self.attempts,
            "first": self.first,
            "last": self.last,
        }


class Failures:
    """The failed jobs of one rule, as this process last read or wrote them."""

    def __init__(self, state: ReplicationState, rule: str) -> None:
        self._state = state
        self.rule = rule
        self.known: dict[str, FailureRecord] = {}

    async def load(self) -> dict[str, FailureRecord]:
        found: dict[str, FailureRecord] = {}
        for key, raw in (await self._state.failures(self.rule)).items():
            try:
                found[key] = FailureRecord.load(raw)
            except (ValueError, KeyError, TypeError):
                log.warning("replication %s: an unreadable failure record; dropped", self.rule)
                await self._state.delete_failure(self.rule, key)
        self.known = found
        return found

    def of(self, repository: str) -> list[Job]:
        return [r.job for r in self.known.values() if r.job.repository == repository]

    async def record(self, job: Job, target: str, reason: str, now: float) -> FailureRecord:
        previous = self.known.get(job.key)
        record = FailureRecord(
            job,
            target,
            reason[:REASON_MAX],
            attempts=previous.attempts + 1 if previous else 1,
            first=previous.first if previous else now,
            last=now,
        )
        await self._state.write_failure(self.rule, job.key, record.dump())
        self.known[job.key] = record
        return record

    async def clear(self, job: Job) -> None:
        if self.known.pop(job.key, None) is not None:
            await self._state.delete_failure(self.rule, job.key)


@dataclass
class Tally:
    """What one delivery or pass did."""

    artifacts: int = 0  # tags and referrers copied (a top-level manifest put)
    manifests: int = 0  # manifests put, index children and referrers included
    blobs: int = 0  # blobs uploaded
    mounted: int = 0  # blobs mounted from another repository of the target
    skipped: int = 0  # blobs the target had already
    bytes: int = 0  # blob bytes read from the source and sent
    deletes: int = 0  # tags and manifests deleted on the target
    failed: int = 0  # jobs that failed (recorded as failures)

    def add(self, other: Tally) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    def as_dict(self) -> dict[str, int]:
        return asdict(self)

    @classmethod
    def load(cls, doc: Any) -> Tally:
        if not isinstance(doc, dict):
            return cls()
        return cls(**{f.name: int(doc.get(f.name, 0) or 0) for f in fields(cls)})


@dataclass
class RunRecord:
    """One delivery of events, or one full pass."""

    trigger: str  # events | schedule | manual
    started: float
    finished: float = 0.0
    outcome: str = "running"  # ok | partial (some jobs failed) | failed | running
    error: str = ""
    jobs: int = 0
    tally: Tally = field(default_factory=Tally)

    def as_dict(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["tally"] = self.tally.as_dict()
        return doc

    @classmethod
    def load(cls, doc: Any) -> RunRecord | None:
        if not isinstance(doc, dict):
            return None
        return cls(
            str(doc.get("trigger", "")),
            float(doc.get("started", 0.0)),
            float(doc.get("finished", 0.0)),
            str(doc.get("outcome", "")),
            str(doc.get("error", "")),
            int(doc.get("jobs", 0)),
            Tally.load(doc.get("tally")),
        )


@dataclass
class StatusRecord:
    """A writer's document: its last run, its last success, its totals."""

    last: RunRecord | None = None
    last_success: float = 0.0
    totals: Tally = field(default_factory=Tally)

    def dump(self) -> bytes:
        doc = {
            "last": self.last.as_dict() if self.last else None,
            "last_success": self.last_success,
            "totals": self.totals.as_dict(),
        }
        return json.dumps(doc, separators=(",", ":")).encode()

    @classmethod
    def load(cls, raw: bytes | None) -> StatusRecord:
        if raw is None:
            return cls()
        try:
            doc = json.loads(raw)
            return cls(
                RunRecord.load(doc.get("last")),
                float(doc.get("last_success", 0.0)),
                Tally.load(doc.get("totals")),
            )
        except (ValueError, TypeError, AttributeError):
            return cls()


class StatusBook:
    """One writer's status document of one rule, written after each delivery or pass.
    One process writes it at a time (under the rule's lease), but which one changes: the
    events lease moves, ``registry replicate run`` runs beside ``serve``. So each save
    reads the document again first, and adds to the totals stored, not to a copy."""

    def __init__(self, state: ReplicationState, rule: str, writer: str) -> None:
        self._state = state
        self.rule = rule
        self.writer = writer
        self.record: StatusRecord | None = None

    async def load(self) -> StatusRecord:
        self.record = StatusRecord.load(await self._state.read_status(self.rule, self.writer))
        return self.record

    async def save(self, run: RunRecord) -> None:
        record = await self.load()
        if run.outcome != "running":
            record.totals.add(run.tally)
            if run.outcome in ("ok", "partial"):
                record.last_success = run.finished
        record.last = run
        await self._state.write_status(self.rule, self.writer, record.dump())


class UploadSlots:
    """The resume slots of one rule's blob uploads in flight."""

    def __init__(self, state: ReplicationState, rule: str, target: str) -> None:
        self._state = state
        self.rule = rule
        self.target = target  # the target's identity (a remote's origin, or "local")
        self.pending: set[str] = set()  # keys known to be in storage

    async def load(self) -> None:
        self.pending = set(await self._state.uploads(self.rule))

    def slot(self, repository: str, digest: Digest) -> UploadSlot:
        return UploadSlot(self, _key(self.target, repository, str(digest)))

    async def expired(self, now: float, expiry: float = UPLOAD_EXPIRY) -> list[UploadSlot]:
        """The slots not written for ``expiry`` seconds before ``now`` (storage time)."""
        found = []
        for key in await self._state.uploads(self.rule):
            written = await self._state.upload_written(self.rule, key)
            if written is not None and now - written > expiry:
                found.append(UploadSlot(self, key))
        return found

    async def forget(self, repository: str, digest: Digest) -> None:
        """The target has the blob: a slot left by an upload that completed just before
        a crash is of no use any more."""
        key = _key(self.target, repository, str(digest))
        if key in self.pending:
            self.pending.discard(key)
            await self._state.delete_upload(self.rule, key)


async def expire_uploads(
    slots: UploadSlots, now: float, target: Endpoint | None = None, expiry: float = UPLOAD_EXPIRY
) -> int:
    """Drop the slots of ``slots`` not written for ``expiry`` seconds, after asking
    ``target`` (None: the rule is gone, and with it the way to the target) to cancel
    the upload session each holds -- best effort: an unreachable target keeps its
    session until its own expiry. Returns how many."""
    expired = await slots.expired(now, expiry)
    for slot in expired:
        doc = await slot.load()
        if doc is not None and target is not None:
            try:
                await target.abandon_upload(doc)
            except Exception as exc:
                log.info(
                    "replication %s: an expired upload stays on the target: %s", slots.rule, exc
                )
        await slot.clear()
    if expired:
        log.info(
            "replication %s: %d upload slots not written for %.0fh dropped",
            slots.rule,
            len(expired),
            expiry / 3600,
        )
    return len(expired)


class UploadSlot:
    """``Resume`` (registry/replication/endpoints.py) over one stored document."""

    def __init__(self, slots: UploadSlots, key: str) -> None:
        self._slots = slots
        self.key = key

    async def load(self) -> dict[str, Any] | None:
        raw = await self._slots._state.read_upload(self._slots.rule, self.key)
        if raw is None:
            return None
        try:
            doc = json.loads(raw)
        except ValueError:
            return None
        return doc if isinstance(doc, dict) else None

    async def save(self, doc: dict[str, Any]) -> None:
        await self._slots._state.write_upload(
            self._slots.rule, self.key, json.dumps(doc, separators=(",", ":")).encode()
        )
        self._slots.pending.add(self.key)

    async def clear(self) -> None:
        self._slots.pending.discard(self.key)
        await self._slots._state.delete_upload(self._slots.rule, self.key)
