"""Which repositories changed since the garbage collector last looked at them.

Every change the store makes in a repository (store/changes.py) is preceded by a
*change record* in storage: an empty object ``gc/changed/<name>!/<cover>-<id>``, written
before the change is visible. The collector re-marks the repositories that have
records and trusts what its last mark learned about the others (registry/gc/plan.py).

A record is written before its change, so a collector may list it before the change
lands. It therefore removes a record only once the change it announces has surely
landed: when the record is older than its *cover* -- the time within which the changes
it stands for are issued and land. Until then the repository is re-marked by every
run. A record that a crash kept from being followed by its change is harmless: the
repository is marked once more.

One record per change would add a write to every push. A process writes one for a
repository at most every ``window`` seconds (half the reference budget) and lets the
changes in between shelter under it: those are issued within ``window`` of the
record, and land within the reference budget of being issued (the claims argument's
assumption, store/claims.py), so the record's cover is ``window`` + the budget,
written into its name so that the collector needs no configuration of the writer.
A change waits for a record still being written before it goes ahead.

A change that takes something from a repository without the collector seeing it
go -- a manifest deleted by digest, a blob unlinked -- may leave data that nothing uses
and that no mark will find (a manifest pushed and deleted between two collections).
Its record is always written, and names the digest: the collector looks at it.

The collector's own deletes write no record: it updates its mark state itself, and a
collection that stops before it has written that state leaves ``gc/mark/running``
behind, after which the next collection marks everything (store/mark_state.py).
"""

from __future__ import annotations

import asyncio
import math
import uuid
from collections import OrderedDict
from dataclasses import dataclass

from registry.errors import RegistryError
from registry.reference import Digest, is_valid_name, parse_digest
from registry.store import layout
from registry.store.changes import (
    BlobMounted,
    BlobPushed,
    BlobUnlinked,
    Change,
    ManifestDeleted,
    ManifestPushed,
    RepositoryCreated,
    TagDeleted,
)
from registry.store.clock import Clock
from storage_backends import Driver, PathNotFoundError

_REMEMBERED = 4096  # repositories whose last record a process remembers
_REMOVED_AT_ONCE = 1000  # one request on S3


@dataclass(frozen=True, slots=True)
class ChangeRecord:
    repository: str
    key: str  # "<cover in ms>-<id>", or "<cover in ms>-<id>-<alg>-<hex>"

    @property
    def cover(self) -> float:
        """Seconds after the record was stored by which the changes it stands for landed."""
        return int(self.key.partition("-")[0]) / 1000

    @property
    def digest(self) -> Digest | None:
        """What the change took from the repository (a manifest deleted by digest, a blob
        unlinked): its data may now be used by nothing, and no mark would find it."""
        parts = self.key.split("-", 3)
        if len(parts) != 4:
            return None
        try:
            return parse_digest(f"{parts[2]}:{parts[3]}")
        except RegistryError:
            return None


@dataclass
class _Written:
    monotonic: float
    wall: float
    done: asyncio.Future[bool]


class ChangedRepositories:
    """The writer's half (a change listener, first of the store's) and the collector's."""

    def __init__(self, driver: Driver, clock: Clock, reference_budget: float) -> None:
        self._driver = driver
        self._clock = clock
        self.window = reference_budget / 2
        self.cover = self.window + reference_budget
        self._written: OrderedDict[str, _Written] = OrderedDict()

    # ------------------------------------------------------------------ the writer's half

    async def before(self, change: Change) -> None:
        match change:
            case (
                ManifestDeleted(repository=name, digest=digest)
                | BlobUnlinked(repository=name, digest=digest)
            ):
                await self.record(name, digest)
            case (
                RepositoryCreated(repository=name)
                | ManifestPushed(repository=name)
                | TagDeleted(repository=name)
                | BlobPushed(repository=name)
                | BlobMounted(repository=name)
            ):
                await self.record(name)
            case _:
                return  # the collector's own deletes (Collected)

    async def record(self, name: str, digest: Digest | None = None) -> None:
        """Make sure a record covers a change to ``name`` issued from now on; one that
        takes ``digest`` from the repository is always recorded, with the digest."""
        last = self._written.get(name)
        if last is not None and digest is None:
            if not last.done.done():
                await asyncio.shield(last.done)
            if last.done.result() and self._within_window(last):
                return
        written = _Written(
            self._clock.monotonic(), self._clock.time(), asyncio.get_running_loop().create_future()
        )
        self._written[name] = written
        self._written.move_to_end(name)
        while len(self._written) > _REMEMBERED:
            self._written.popitem(last=False)
        key = f"{math.ceil(self.cover * 1000)}-{uuid.uuid4().hex}"
        if digest is not None:
            key += f"-{digest.algorithm}-{digest.hex}"
        try:
            await self._driver.put(layout.changed_record(name, key), b"")
        except BaseException:
            written.done.set_result(False)
            raise
        written.done.set_result(True)

    def _within_window(self, written: _Written) -> bool:
        # Both clocks: either jumping (a test moving the wall clock, a host resuming
        # from sleep) ends the window early, never late.
        since = (
            self._clock.monotonic() - written.monotonic,
            self._clock.time() - written.wall,
        )
        return all(0 <= s < self.window for s in since)

    # ------------------------------------------------------------------ the collector's half

    async def records(self) -> list[ChangeRecord]:
        """Every record in storage."""
        found = []
        for relative in await self._driver.list(layout.changed(), recursive=True):
            parsed = layout.changed_record_of(relative)
            if parsed is None:
                continue
            name, key = parsed
            cover, dash, rest = key.partition("-")
            if is_valid_name(name) and dash and cover.isdigit() and rest:
                found.append(ChangeRecord(name, key))
        return found

    async def stored_at(self, record: ChangeRecord) -> float | None:
        """When ``record`` was stored (storage time); None when it is gone."""
        try:
            info = await self._driver.stat(layout.changed_record(record.repository, record.key))
        except PathNotFoundError:
            return None
        return info.modified

    async def remove(self, records: list[ChangeRecord]) -> None:
        """Remove records whose changes a collection has seen (only those: a record
        written since stays)."""
        for start in range(0, len(records), _REMOVED_AT_ONCE):
            chunk = records[start : start + _REMOVED_AT_ONCE]
            paths = [layout.changed_record(r.repository, r.key) for r in chunk]
            await self._driver.delete_many(paths)
