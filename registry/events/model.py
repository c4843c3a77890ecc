"""What an event is, and the records the outbox keeps of them (pure: no I/O).

An ``Event`` holds exactly what CNCF distribution's notification carries (its
``notifications/event.go``), plus two things it does not send: the ``origin`` of the
change (client, proxy, replication, gc) and its ``kind`` (manifest, blob, tag,
repository), which filters and other consumers (replication) read. Its ``id`` is made
once, when the change is recorded, and stays with it through every retry and replay.

A ``Record`` is one change as the outbox keeps it until it is confirmed: its events,
and for each event the ``State`` that must hold in storage for the change to have
happened (``checks``), plus what the store read just before it (``facts``, e.g. the
digest a tag named before a push moved it). A later record's facts prove an earlier
record's checks when storage no longer shows them (a tag pushed, then deleted, before
anyone looked): see registry/events/confirm.py.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from typing import Any, Literal

Action = Literal["push", "pull", "mount", "delete", "create"]
Kind = Literal["manifest", "blob", "tag", "repository"]
BLOB_MEDIA_TYPE = "application/octet-stream"  # what distribution says of every blob


@dataclass(frozen=True)
class Target:
    repository: str
    media_type: str = ""
    digest: str = ""
    size: int = 0
    url: str = ""
    tag: str = ""
    from_repository: str = ""
    # Raw descriptors the manifest references (``includereferences``).
    references: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True)
class RequestRecord:
    id: str = ""
    addr: str = ""
    host: str = ""
    method: str = ""
    useragent: str = ""


@dataclass(frozen=True)
class Source:
    addr: str = ""
    instance_id: str = ""


@dataclass(frozen=True)
class Event:
    id: str
    timestamp: str  # RFC 3339, UTC, as recorded
    action: Action
    kind: Kind
    target: Target
    request: RequestRecord = RequestRecord()
    actor: str = ""  # the authenticated user; "" for anonymous and background work
    source: Source = Source()
    origin: str = "client"
    # A manifest event whose references are still to be read (includereferences).
    wants_references: bool = False

    def dump(self) -> dict[str, Any]:
        # By hand: dataclasses.asdict deep-copies, and this runs on every push.
        t, r, s = self.target, self.request, self.source
        return {
            "id": self.id,
            "timestamp": self.timestamp,
            "action": self.action,
            "kind": self.kind,
            "target": {
                "repository": t.repository,
                "media_type": t.media_type,
                "digest": t.digest,
                "size": t.size,
                "url": t.url,
                "tag": t.tag,
                "from_repository": t.from_repository,
                "references": list(t.references),
            },
            "request": {
                "id": r.id,
                "addr": r.addr,
                "host": r.host,
                "method": r.method,
                "useragent": r.useragent,
            },
            "actor": self.actor,
            "source": {"addr": s.addr, "instance_id": s.instance_id},
            "origin": self.origin,
            "wants_references": self.wants_references,
        }

    @classmethod
    def load(cls, doc: dict[str, Any]) -> Event:
        target = dict(doc["target"])
        target["references"] = tuple(target.get("references") or ())
        return cls(
            id=str(doc["id"]),
            timestamp=str(doc["timestamp"]),
            action=doc["action"],
            kind=doc["kind"],
            target=Target(**target),
            request=RequestRecord(**doc.get("request", {})),
            actor=str(doc.get("actor", "")),
            source=Source(**doc.get("source", {})),
            origin=str(doc.get("origin", "client")),
            wants_references=bool(doc.get("wants_references", False)),
        )

    def with_references(self, references: tuple[dict[str, Any], ...]) -> Event:
        return replace(
            self, target=replace(self.target, references=references), wants_references=False
        )


StateKind = Literal["tag", "revision", "link", "repository"]


@dataclass(frozen=True)
class State:
    """Something storage shows or does not show. For a tag: ``present`` says that the
    tag names ``digest``, absent that it does not (it names another, or nothing); as a
    fact, a tag state with ``present`` false and no digest says that the tag named
    nothing."""

    kind: StateKind
    repository: str
    digest: str = ""
    tag: str = ""
    present: bool = True

    def dump(self) -> list[Any]:
        return [self.kind, self.repository, self.digest, self.tag, self.present]

    @classmethod
    def load(cls, raw: list[Any]) -> State:
        kind, repository, digest, tag, present = raw
        return cls(kind, str(repository), str(digest), str(tag), bool(present))


def proves(fact: State, check: State) -> bool:
    """Whether ``fact`` (what a later change found in storage) shows that the state
    ``check`` held at some point after the earlier change -- so that it happened."""
    if fact.repository != check.repository:
        return False
    if check.kind == "tag" and fact.kind == "tag" and fact.tag == check.tag:
        named = fact.digest if fact.present else ""
        return (named == check.digest) == check.present
    if check.kind == "revision" and check.present:
        # A tag naming the digest, or the revision itself, was there.
        return (fact.kind in ("revision", "tag") and fact.present) and fact.digest == check.digest
    if check.kind in ("link", "revision", "repository"):
        return (
            fact.kind == check.kind
            and fact.digest == check.digest
            and fact.present == (check.present)
        )
    return False


@dataclass(frozen=True)
class Record:
    """One change as the outbox keeps it until it is confirmed (or one replay)."""

    events: tuple[Event, ...]
    checks: tuple[State | None, ...]  # per event; None: nothing to confirm (a pull)
    facts: tuple[State, ...] = ()
    # A replay from the dead letters: confirmed already, for this consumer only.
    to: str | None = None

    @property
    def repositories(self) -> frozenset[str]:
        return frozenset(e.target.repository for e in self.events)

    def dump(self) -> bytes:
        doc: dict[str, Any] = {
            "events": [e.dump() for e in self.events],
            "checks": [c.dump() if c is not None else None for c in self.checks],
        }
        if self.facts:
            doc["facts"] = [f.dump() for f in self.facts]
        if self.to is not None:
            doc["to"] = self.to
        return json.dumps(doc, separators=(",", ":")).encode()

    @classmethod
    def load(cls, raw: bytes) -> Record:
        doc = json.loads(raw)
        events = tuple(Event.load(e) for e in doc["events"])
        checks = tuple(State.load(c) if c is not None else None for c in doc["checks"])
        if len(checks) != len(events):
            raise ValueError("a record needs one check per event")
        facts = tuple(State.load(f) for f in doc.get("facts", ()))
        return cls(events, checks, facts, doc.get("to"))


@dataclass
class Segment:
    """Confirmed events of one consumer's queue, from sequence number ``first`` on."""

    first: int
    events: list[Event] = field(default_factory=list)

    @property
    def end(self) -> int:
        return self.first + len(self.events)

    def dump(self) -> bytes:
        return json.dumps(
            {"first": self.first, "events": [e.dump() for e in self.events]},
            separators=(",", ":"),
        ).encode()

    @classmethod
    def load(cls, raw: bytes) -> Segment:
        doc = json.loads(raw)
        return cls(int(doc["first"]), [Event.load(e) for e in doc["events"]])
