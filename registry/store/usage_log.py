"""The records quotas keep in storage: per ledger (one per configured quota) a journal of
usage changes, its checkpoints, and the bytes pushes in flight hold.

::

    quotas/<ledger>/e-<ms>-<random>        one journal entry: the usage ops of one change
    quotas/<ledger>/c-<ms>-<random>        a checkpoint: the journal folded up to then
    quotas/<ledger>/r-<ms>-<bytes>-<id>    empty: <bytes> held by push <id> since <ms>

S3 has no atomic increment, so nothing here is ever read, changed and written back by
two writers: every change is an object of its own, named uniquely, and a reader folds
the latest checkpoint and the entries after it (registry/policy/ledger.py says how).
One compactor at a time (the ``usage`` lease) writes a new checkpoint, then deletes the
entries it folded; a reader that lists between the two finds them named in the
checkpoint's ``folded`` set and skips them. A reservation is written *before* the push
it covers lists the others (``reserve`` then ``listing``), so of two pushes racing for
the last bytes at least one sees the other (as login attempts, store/login_attempts.py).

One listing of the ledger's folder answers a quota check: the newest checkpoint's name,
the entries, and every reservation with its size and age (all in the names).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from registry.store import layout
from registry.store.clock import Clock
from storage_backends import Driver, PathNotFoundError

_MS_DIGITS = 15  # zero-padded milliseconds since the epoch: names sort by time
ENTRY, CHECKPOINT, RESERVATION = "e", "c", "r"

# One op of a journal entry, as JSON (registry/policy/ledger.py gives them meaning):
#   ["b", repository, digest, size]                   a blob pushed or mounted (linked)
#   ["B", repository, digest]                         a blob's link removed
#   ["m", repository, manifest, size, [[digest, size], ...]]   a manifest pushed
#   ["M", repository, manifest]                       a manifest's revision removed
UsageOp = list[Any]


def _stamp(moment: float) -> str:
    return f"{max(int(moment * 1000), 0):0{_MS_DIGITS}d}"


def _time(stamp: str) -> float | None:
    return int(stamp) / 1000 if len(stamp) == _MS_DIGITS and stamp.isdigit() else None


@dataclass(frozen=True)
class EntryName:
    key: str
    written_at: float


@dataclass(frozen=True)
class JournalEntry:
    key: str
    written_at: float
    ops: tuple[UsageOp, ...]


@dataclass(frozen=True)
class Reservation:
    key: str
    written_at: float
    amount: int
    holder: str  # the upload session's id, or a one-off id


@dataclass(frozen=True)
class Checkpoint:
    key: str
    written_at: float
    folded: frozenset[str]  # entry keys the state includes (deleted soon after)
    state: dict[str, Any]


@dataclass
class Listing:
    """One listing of a ledger's folder."""

    entries: list[EntryName] = field(default_factory=list)  # in key order
    checkpoints: list[str] = field(default_factory=list)  # in key order: the last is newest
    reservations: list[Reservation] = field(default_factory=list)

    @property
    def checkpoint(self) -> str | None:
        return self.checkpoints[-1] if self.checkpoints else None


def _parse(name: str, listing: Listing) -> None:
    kind, _, rest = name.partition("-")
    stamp, _, tail = rest.partition("-")
    written_at = _time(stamp)
    if written_at is None or not tail:
        return
    if kind == ENTRY:
        listing.entries.append(EntryName(name, written_at))
    elif kind == CHECKPOINT:
        listing.checkpoints.append(name)
    elif kind == RESERVATION:
        amount, _, holder = tail.partition("-")
        if amount.isdigit() and holder:
            listing.reservations.append(Reservation(name, written_at, int(amount), holder))


class UsageLog:
    """The ledgers' records over one driver; ``clock`` stamps what is written."""

    def __init__(self, driver: Driver, clock: Clock) -> None:
        self._driver = driver
        self._clock = clock
        self._last_entry = 0.0

    def _entry_time(self) -> float:
        """The clock, but never the same millisecond twice and never backwards in this
        process: its entries sort in the order it wrote them."""
        now = max(self._clock.time(), self._last_entry + 0.001)
        self._last_entry = now
        return now

    async def listing(self, ledger: str) -> Listing:
        listing = Listing()
        for name in await self._driver.list(layout.usage_ledger(ledger)):
            _parse(name, listing)
        return listing

    async def ledgers(self) -> list[str]:
        return await self._driver.list(layout.QUOTAS)

    # ------------------------------------------------------------------ the journal

    async def append(self, ledger: str, ops: Sequence[UsageOp]) -> JournalEntry:
        """Write one entry; it is visible to every reader once this returns."""
        now = self._entry_time()
        key = f"{ENTRY}-{_stamp(now)}-{secrets.token_hex(6)}"
        body = json.dumps({"ops": list(ops)}, separators=(",", ":")).encode()
        await self._driver.put(layout.usage_record(ledger, key), body)
        return JournalEntry(key, now, tuple(ops))

    async def entry(self, ledger: str, name: EntryName) -> JournalEntry | None:
        """The entry, or None when it was compacted away meanwhile (or is unreadable)."""
        try:
            raw = await self._driver.get(layout.usage_record(ledger, name.key))
            ops = json.loads(raw)["ops"]
        except PathNotFoundError:
            return None
        except (ValueError, KeyError, TypeError):
            return JournalEntry(name.key, name.written_at, ())  # torn by hand: no ops
        return JournalEntry(name.key, name.written_at, tuple(o for o in ops if isinstance(o, list)))

    # ------------------------------------------------------------------ checkpoints

    async def checkpoint(self, ledger: str, key: str) -> Checkpoint | None:
        try:
            doc = json.loads(await self._driver.get(layout.usage_record(ledger, key)))
        except PathNotFoundError:
            return None
        except ValueError:
            return None
        stamp = key.split("-")[1] if key.count("-") >= 2 else ""
        return Checkpoint(
            key,
            _time(stamp) or 0.0,
            frozenset(str(k) for k in doc.get("folded", ())),
            dict(doc.get("state", {})),
        )

    async def write_checkpoint(
        self, ledger: str, folded: Iterable[str], state: dict[str, Any]
    ) -> str:
        key = f"{CHECKPOINT}-{_stamp(self._clock.time())}-{secrets.token_hex(6)}"
        body = json.dumps({"folded": sorted(folded), "state": state}, separators=(",", ":"))
        await self._driver.put(layout.usage_record(ledger, key), body.encode())
        return key

    async def remove(self, ledger: str, keys: Iterable[str]) -> None:
        """Delete records (folded entries, older checkpoints, stale reservations)."""
        paths = [layout.usage_record(ledger, k) for k in keys]
        if paths:
            await self._driver.delete_many(paths)

    # ------------------------------------------------------------------ reservations

    async def reserve(self, ledger: str, holder: str, amount: int) -> Reservation:
        """Write a reservation of ``amount`` bytes for ``holder`` (a name of a-z 0-9)."""
        now = self._clock.time()
        key = f"{RESERVATION}-{_stamp(now)}-{max(amount, 0)}-{holder}"
        await self._driver.put(layout.usage_record(ledger, key), b"")
        return Reservation(key, now, max(amount, 0), holder)


def new_holder() -> str:
    """A one-off reservation holder id (a mount or a manifest PUT)."""
    return secrets.token_hex(8)
