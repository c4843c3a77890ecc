"""Confirming recorded changes: an event goes out only for a change that happened.

A change is recorded *before* it becomes visible (store/changes.py), so the outbox can
hold a record whose change is still on its way, or never landed: a later listener
refused it, a check after the record failed, or kill -9 cut the request. Each event of
a record names the state its change leaves in storage (``State``: the tag names the
digest, the revision or link is there or gone, the repository exists). The dispatcher
confirms a record in one of three ways:

1. **visible**: every state holds now;
2. **proven**: a later record of the same repository read that state before making its
   own change (a tag delete read the tag, a push read what its tag named before): so
   the earlier change happened even though storage no longer shows it;
3. otherwise it **waits**, and the records after it in the same repositories wait too
   (order per repository), until either of those holds, or the change can no longer
   land: its request ended in an error (``settled``), or it is older than
   ``inflight_timeout`` (the process that was making it is gone). Then the events whose
   state holds go out and the others are discarded (counted, logged).

The order of records is the order of their keys (time of recording); records of other
repositories pass a waiting one.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from registry.errors import RegistryError
from registry.events.model import Event, Record, State, proves
from registry.reference import parse_digest
from registry.store import Outbox, RegistryStore

log = logging.getLogger("registry.events")

_CHECK_CONCURRENCY = 16


@dataclass(frozen=True)
class Decision:
    key: str
    record: Record
    events: tuple[Event, ...]  # to queue
    discarded: int = 0
    done: bool = True  # False: the record waits


async def holds(store: RegistryStore, state: State) -> bool:
    """Whether storage shows ``state`` now."""
    repo = state.repository
    try:
        if state.kind == "repository":
            return await store.catalog.contains(repo)
        digest = parse_digest(state.digest) if state.digest else None
        if state.kind == "tag":
            named = await store.tags.read(repo, state.tag)
            return (digest is not None and named == digest) == state.present
        if digest is None:
            return False
        if state.kind == "revision":
            return await store.manifests.has_revision(repo, digest) == state.present
        return await store.blobs.is_linked(repo, digest) == state.present
    except RegistryError:  # a name or digest the store refuses: nothing to show
        return not state.present


async def confirm(
    store: RegistryStore,
    items: Sequence[tuple[str, Record]],
    settled: set[str],
    now: float,
    inflight_timeout: float,
) -> list[Decision]:
    """Decide every record of ``items`` (oldest first)."""
    checks = list({c for _, r in items if r.to is None for c in r.checks if c is not None})
    shown: dict[State, bool] = {}

    async def worker(todo: Iterator[State]) -> None:
        # A few workers rather than a task per check: a round may hold thousands.
        for state in todo:
            shown[state] = await holds(store, state)

    todo = iter(checks)
    await asyncio.gather(*(worker(todo) for _ in range(min(_CHECK_CONCURRENCY, len(checks)))))
    blocked: set[str] = set()
    decisions: list[Decision] = []
    for i, (key, record) in enumerate(items):
        if record.to is not None:  # a replay: confirmed when it was first delivered
            decisions.append(Decision(key, record, record.events))
            continue
        if record.repositories & blocked:
            blocked |= record.repositories
            decisions.append(Decision(key, record, (), done=False))
            continue
        happened = [c is None or shown[c] for c in record.checks]
        if not all(happened):  # rare: look for evidence in the later records
            later = [f for _, r in items[i + 1 :] for f in r.facts]
            happened = [
                ok or (c is not None and any(proves(f, c) for f in later))
                for c, ok in zip(record.checks, happened, strict=True)
            ]
        if all(happened):
            decisions.append(Decision(key, record, record.events))
            continue
        final = key in settled or now - Outbox.key_time(key) > inflight_timeout
        if not final:
            blocked |= record.repositories
            decisions.append(Decision(key, record, (), done=False))
            continue
        kept = tuple(e for e, ok in zip(record.events, happened, strict=True) if ok)
        lost = len(record.events) - len(kept)
        log.info(
            "events: %d of %d events of %s dropped: their change never became visible",
            lost,
            len(record.events),
            ", ".join(sorted(record.repositories)),
        )
        decisions.append(Decision(key, record, kept, discarded=lost))
    return decisions


async def with_references(store: RegistryStore, event: Event) -> Event:
    """The event with the descriptors its manifest references (config and layers, or
    an index's manifests), read from the stored manifest as distribution does."""
    try:
        raw = await store.blobs.get_small(parse_digest(event.target.digest))
        doc = json.loads(raw)
    except Exception:  # gone since, or unreadable: the event goes without them
        return event.with_references(())
    found: list[Any] = []
    if isinstance(doc, dict):
        if isinstance(doc.get("config"), dict):
            found.append(doc["config"])
        for key in ("layers", "manifests"):
            if isinstance(doc.get(key), list):
                found += doc[key]
    return event.with_references(tuple(_descriptor(d) for d in found if isinstance(d, dict)))


_DESCRIPTOR_FIELDS = ("mediaType", "size", "digest", "urls", "annotations", "platform")


def _descriptor(raw: dict[str, Any]) -> dict[str, Any]:
    """The fields of distribution's Descriptor, in its order, empty ones left out."""
    return {k: raw[k] for k in _DESCRIPTOR_FIELDS if raw.get(k)}
