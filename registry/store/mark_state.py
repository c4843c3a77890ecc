"""What the garbage collector's last mark learned, kept in storage for the next one.

Three kinds of object (paths in store/layout.py), all JSON, each replaced whole:

* the *summary* (``gc/mark/summary``): per repository its usage figures and when time
  alone changes what it keeps (``due``); the blobs nothing keeps with when to look at
  them again; the sums of the usage snapshot; when the last full mark ran, and the
  settings the state was computed under (a change of them forces a full mark);
* a *repository record* per repository (``gc/mark/repositories/<name>!``): what each of
  its manifests references -- facts about content-addressed bytes, never stale -- and
  which blobs and manifests its last mark kept, firmly or only because the grace period
  holds back recent untagged manifests;
* a *shard* per ``<alg>/<hex[:2]>`` (``gc/mark/blobs/...``): each stored blob the
  collector knows of, with its size and the repositories that keep it.

``gc/mark/running`` is written when a collection starts writing any of them and
removed once it has written all of them and removed the change records it consumed:
left behind, it tells the next collection that the state may be half new and that it
must mark everything (registry/gc/plan.py). Digests are kept as text (``sha256:...``);
the collector parses those it uses.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from registry.store import layout
from storage_backends import Driver, PathNotFoundError

VERSION = 1


@dataclass
class RepositorySummary:
    held_bytes: int = 0
    unique_bytes: int = 0
    manifests: int = 0
    tags: int = 0
    # Storage time at which time alone changes what the repository keeps (a held-back
    # manifest ages, a tag expires, a link leaves the grace period); None: never.
    due: float | None = None

    def dump(self) -> list[Any]:
        return [self.held_bytes, self.unique_bytes, self.manifests, self.tags, self.due]

    @classmethod
    def load(cls, raw: list[Any]) -> RepositorySummary:
        held, unique, manifests, tags, due = raw
        when = None if due is None else float(due)
        return cls(int(held), int(unique), int(manifests), int(tags), when)


@dataclass
class MarkSummary:
    fingerprint: str
    full_at: float  # storage time of the last full mark
    uploads_at: float = 0.0  # storage time of the last purge of expired upload sessions
    repositories: dict[str, RepositorySummary] = field(default_factory=dict)
    # Stored blobs no repository keeps (held back by the grace period, or not looked
    # at yet): digest -> storage time after which a collection looks at them again.
    unkept: dict[str, float] = field(default_factory=dict)
    groups: dict[str, int] = field(default_factory=dict)
    total_bytes: int = 0
    reclaimable_bytes: int = 0
    # Entries per shard: a shard that reads otherwise is damaged (or half written).
    shards: dict[str, int] = field(default_factory=dict)
    version: int = VERSION

    def dump(self) -> bytes:
        doc = {
            "version": self.version,
            "fingerprint": self.fingerprint,
            "full_at": self.full_at,
            "uploads_at": self.uploads_at,
            "repositories": {n: s.dump() for n, s in self.repositories.items()},
            "unkept": self.unkept,
            "groups": self.groups,
            "total_bytes": self.total_bytes,
            "reclaimable_bytes": self.reclaimable_bytes,
            "shards": self.shards,
        }
        return json.dumps(doc, separators=(",", ":")).encode()

    @classmethod
    def load(cls, raw: bytes) -> MarkSummary:
        doc: dict[str, Any] = json.loads(raw)
        return cls(
            version=int(doc["version"]),
            fingerprint=str(doc["fingerprint"]),
            full_at=float(doc["full_at"]),
            uploads_at=float(doc["uploads_at"]),
            repositories={
                str(n): RepositorySummary.load(s) for n, s in doc["repositories"].items()
            },
            unkept={str(d): float(t) for d, t in doc["unkept"].items()},
            groups={str(g): int(b) for g, b in doc["groups"].items()},
            total_bytes=int(doc["total_bytes"]),
            reclaimable_bytes=int(doc["reclaimable_bytes"]),
            shards={str(k): int(n) for k, n in doc["shards"].items()},
        )


@dataclass(frozen=True)
class ManifestFacts:
    """What a manifest's bytes say: its size, the blobs it references with the sizes its
    descriptors give, and its index children."""

    size: int
    blobs: Mapping[str, int]
    children: tuple[str, ...]


@dataclass
class RepositoryRecord:
    manifests: dict[str, ManifestFacts] = field(default_factory=dict)  # of its revisions
    firm: dict[str, int] = field(default_factory=dict)  # kept by tags (or the keep policy)
    held: dict[str, int] = field(default_factory=dict)  # kept only by recent untagged ones

    def empty(self) -> bool:
        return not (self.manifests or self.firm or self.held)

    def dump(self) -> bytes:
        doc = {
            "manifests": {
                d: [m.size, dict(m.blobs), list(m.children)] for d, m in self.manifests.items()
            },
            "firm": self.firm,
            "held": self.held,
        }
        return json.dumps(doc, separators=(",", ":")).encode()

    @classmethod
    def load(cls, raw: bytes) -> RepositoryRecord:
        doc: dict[str, Any] = json.loads(raw)
        return cls(
            manifests={
                str(d): ManifestFacts(
                    int(size), {str(b): int(n) for b, n in blobs.items()}, tuple(map(str, children))
                )
                for d, (size, blobs, children) in doc["manifests"].items()
            },
            firm={str(d): int(n) for d, n in doc["firm"].items()},
            held={str(d): int(n) for d, n in doc["held"].items()},
        )


@dataclass
class BlobHolders:
    """A stored blob: its size, and the repositories that keep it firmly or only
    because the grace period holds back a recent untagged manifest."""

    size: int
    firm: set[str] = field(default_factory=set)
    held: set[str] = field(default_factory=set)

    def holders(self) -> set[str]:
        return self.firm | self.held


Shard = dict[str, BlobHolders]  # blob hex -> holders


def _dump_shard(shard: Shard) -> bytes:
    doc = {h: [b.size, sorted(b.firm), sorted(b.held)] for h, b in sorted(shard.items())}
    return json.dumps(doc, separators=(",", ":")).encode()


def _load_shard(raw: bytes) -> Shard:
    doc: dict[str, Any] = json.loads(raw)
    return {
        str(h): BlobHolders(int(size), set(firm), set(held))
        for h, (size, firm, held) in doc.items()
    }


class MarkStateError(Exception):
    """A part of the mark state is damaged: the collector marks everything again."""


class MarkState:
    def __init__(self, driver: Driver) -> None:
        self._driver = driver

    async def _get(self, path: str) -> bytes | None:
        try:
            return await self._driver.get(path)
        except PathNotFoundError:
            return None

    # ------------------------------------------------------------------ summary

    async def summary(self) -> MarkSummary | None:
        """The last summary; None when there is none, it is damaged or from another
        version of the state."""
        raw = await self._get(layout.mark_summary())
        if raw is None:
            return None
        try:
            summary = MarkSummary.load(raw)
        except (ValueError, KeyError, TypeError):
            return None
        return summary if summary.version == VERSION else None

    async def write_summary(self, summary: MarkSummary) -> None:
        await self._driver.put(layout.mark_summary(), summary.dump())

    # ------------------------------------------------------------------ running marker

    async def begin(self, owner: str) -> None:
        await self._driver.put(layout.mark_running(), owner.encode())

    async def interrupted(self) -> bool:
        """Whether a collection began writing the state and did not finish."""
        return await self._get(layout.mark_running()) is not None

    async def end(self) -> None:
        await self._driver.delete_many([layout.mark_running()])

    # ------------------------------------------------------------------ repositories

    async def repository(self, name: str) -> RepositoryRecord:
        """The record of ``name``; empty when there is none. Raises MarkStateError when
        it is damaged."""
        raw = await self._get(layout.mark_repository(name))
        if raw is None:
            return RepositoryRecord()
        try:
            return RepositoryRecord.load(raw)
        except (ValueError, KeyError, TypeError) as exc:
            raise MarkStateError(f"the mark record of {name} is damaged") from exc

    async def write_repository(self, name: str, record: RepositoryRecord) -> None:
        if record.empty():
            await self._driver.delete_many([layout.mark_repository(name)])
        else:
            await self._driver.put(layout.mark_repository(name), record.dump())

    # ------------------------------------------------------------------ shards

    async def shard(self, shard: str) -> Shard:
        """The blobs of shard ``<alg>/<hex[:2]>``; raises MarkStateError when damaged."""
        algorithm, _, folder = shard.partition("/")
        raw = await self._get(layout.mark_shard(algorithm, folder))
        if raw is None:
            return {}
        try:
            return _load_shard(raw)
        except (ValueError, KeyError, TypeError) as exc:
            raise MarkStateError(f"the mark shard {shard} is damaged") from exc

    async def write_shard(self, shard: str, blobs: Shard) -> None:
        algorithm, _, folder = shard.partition("/")
        path = layout.mark_shard(algorithm, folder)
        if blobs:
            await self._driver.put(path, _dump_shard(blobs))
        else:
            await self._driver.delete_many([path])

    async def shards(self) -> list[str]:
        """Every shard stored (``<alg>/<hex[:2]>``)."""
        found = []
        for relative in await self._driver.list(layout.mark_shards(), recursive=True):
            algorithm, _, folder = relative.partition("/")
            if algorithm and folder and "/" not in folder:
                found.append(relative)
        return found
