"""What the collector's last mark found the registry holds, kept in storage.

The mark phase already walks everything a collection keeps, so it counts the bytes on
the way: per repository what it holds and what only it holds (what deleting it would
free), per group of repositories (a quota's namespace) what the group holds, each blob
once, and what the next collection would reclaim. The collector writes one snapshot at
the end of every real run; the web UI and ``registry usage`` read it, so that a page
view never walks the store. Its time says how old the figures are.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from registry.store import layout
from storage_backends import Driver, PathNotFoundError


@dataclass(frozen=True)
class RepositoryUsage:
    name: str
    # Every blob the repository's kept manifests use (configs, layers, the manifests
    # themselves), each counted once.
    held_bytes: int = 0
    # Of those, the bytes no other repository holds: what deleting the repository frees.
    unique_bytes: int = 0
    manifests: int = 0
    tags: int = 0

    @property
    def shared_bytes(self) -> int:
        return self.held_bytes - self.unique_bytes


@dataclass(frozen=True)
class UsageSnapshot:
    finished_at: float  # the storage's clock when the run that counted it ended
    total_bytes: int = 0  # every blob stored, each once
    # What no repository keeps firmly (nothing, or only the grace period does): what
    # collections free once the grace period has passed.
    reclaimable_bytes: int = 0
    repositories: tuple[RepositoryUsage, ...] = ()
    # Bytes held per group of repositories (e.g. a quota's namespace), each blob once per
    # group however many of its repositories hold it.
    groups: Mapping[str, int] = field(default_factory=dict)
    # The storage's clock when the run began (None: not said). Quotas correct their
    # running figures only from groups that changed neither during the run nor near it.
    started_at: float | None = None
    # Of each group's bytes, those no repository outside the group holds: what deleting
    # the group's repositories would free.
    group_unique: Mapping[str, int] = field(default_factory=dict)

    def dump(self) -> bytes:
        doc = asdict(self)
        doc["groups"] = dict(self.groups)
        doc["group_unique"] = dict(self.group_unique)
        return json.dumps(doc, separators=(",", ":")).encode()

    @classmethod
    def load(cls, raw: bytes) -> UsageSnapshot:
        doc: dict[str, Any] = json.loads(raw)
        return cls(
            finished_at=float(doc["finished_at"]),
            total_bytes=int(doc.get("total_bytes", 0)),
            reclaimable_bytes=int(doc.get("reclaimable_bytes", 0)),
            repositories=tuple(RepositoryUsage(**r) for r in doc.get("repositories", ())),
            groups={str(k): int(v) for k, v in doc.get("groups", {}).items()},
            started_at=None if doc.get("started_at") is None else float(doc["started_at"]),
            group_unique={str(k): int(v) for k, v in doc.get("group_unique", {}).items()},
        )


class UsageSnapshots:
    """The last snapshot in storage (one object, replaced whole)."""

    def __init__(self, driver: Driver) -> None:
        self._driver = driver
        self._latest: tuple[tuple[int, float], UsageSnapshot | None] | None = None

    async def latest(self) -> UsageSnapshot | None:
        """``read()`` for a reader on every page view: the object (a megabyte for 10,000
        repositories) is read and parsed again only when its size or modification time
        changed; otherwise this costs one stat."""
        try:
            info = await self._driver.stat(layout.usage_snapshot())
        except PathNotFoundError:
            return None
        stamp = (info.size, info.modified)
        if self._latest is None or self._latest[0] != stamp:
            self._latest = (stamp, await self.read())
        return self._latest[1]

    async def read(self) -> UsageSnapshot | None:
        try:
            raw = await self._driver.get(layout.usage_snapshot())
        except PathNotFoundError:
            return None
        try:
            return UsageSnapshot.load(raw)
        except (ValueError, KeyError, TypeError):
            return None  # torn or written by hand: as if no run had counted yet

    async def write(self, snapshot: UsageSnapshot) -> None:
        await self._driver.put(layout.usage_snapshot(), snapshot.dump())
