"""Which repositories a collection marks: all of them (a *full* mark), or only those
that changed since the last mark or that time alone changes (an *incremental* one).

Why an incremental mark keeps what a full one keeps
===================================================
A full mark reads every repository; an incremental one reads the repositories named
by a change record (store/changed.py), those the summary does not know, and those
whose ``due`` time has come, and takes what the last mark kept in every other one
from its record (store/mark_state.py). The two agree if, for every repository R that
is not re-marked, nothing R keeps has changed since the scan of R that wrote its
record -- apart from changes racing this very collection, which a full mark misses
just the same and which the claim protocol covers (store/claims.py).

What R keeps changes with its tags, revisions and referrer entries (changes) and with
time (a held-back manifest ages past its grace period, a tag past a retention age).

* Changes. Every change to R is preceded by a record -- written by the change itself,
  or by an earlier change of the same process, within ``window`` of which it is issued
  -- and lands within the record's *cover* of it (the reference budget of the claims
  argument bounds how long a write takes to land). A collection removes only records it
  listed at its start and found older than their cover, after it has written the new
  state. So a change to R after the scan that wrote R's record either has its record
  still in storage (written after that collection listed them, or listed and too young
  to remove) -- then R is re-marked now -- or stands under a record that collection
  removed, which was older than its cover when the collection started, so the change
  had landed before that collection scanned R: the record already reflects it.
* Time. A mark notes per repository the earliest time at which time alone changes what
  it keeps (``due``: the end of a held-back manifest's grace, a tag's retention age, a
  link or a spared candidate to look at again); the repository is re-marked from then.
* The collector's own deletes change what it wrote down; it writes the record of a
  repository after its manifest sweep, and the shards after the blob sweep. A
  collection that stops before it has written everything leaves ``gc/mark/running``,
  and the next one marks everything; so does a change of the settings the state was
  computed under, a damaged or missing part of it, and ``gc.full_mark_interval``.

A full mark is what every collection did before: it reads everything, rebuilds the
state from nothing, and lists every blob folder (crash leftovers, claims that no
manifest followed, data an upload left without a link).

What the safety argument of store/claims.py needs of the mark -- that a manifest
whose writes were issued more than half a grace period before the collection started
is seen -- holds for the incremental mark by the above: its writes have landed, so it
is in a record that lists R, or R's record reflects it.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from registry.gc.inventory import repository_names
from registry.gc.retention import RetentionPolicy, UntaggedPolicy
from registry.gc.run import Run
from registry.reference import Digest
from registry.store import CLOCK_RESOLUTION, ChangeRecord, MarkSummary

log = logging.getLogger("registry.gc")

RECORDS_AT_ONCE = 1000


@dataclass(frozen=True)
class Settings:
    """What the mark state depends on: a change of any of these forces a full mark."""

    grace_period: float
    untagged: UntaggedPolicy
    policies: Sequence[RetentionPolicy]
    groups: Mapping[str, Sequence[str]]
    cached: Sequence[str] = ()  # repositories a pull-through cache serves

    def fingerprint(self) -> str:
        doc = {
            "grace_period": self.grace_period,
            "untagged": [self.untagged.delete, self.untagged.older_than],
            "retention": [
                [p.repositories, p.keep_last, p.older_than, p.protect] for p in self.policies
            ],
            "groups": {g: list(p) for g, p in sorted(self.groups.items())},
        }
        if self.cached:  # absent when empty: the fingerprints of earlier versions hold
            doc["cached"] = sorted(self.cached)
        return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:32]


@dataclass
class Plan:
    full: bool
    reason: str  # why a full mark, for the log
    summary: MarkSummary | None  # the last one (None for a full mark)
    names: list[str]  # every repository
    marked: list[str]  # those this collection marks, in order
    consumed: list[ChangeRecord] = field(default_factory=list)  # to remove at the end
    # Digests changes took from repositories: nothing may use their data any more.
    orphans: set[Digest] = field(default_factory=set)


async def make_plan(run: Run, settings: Settings, *, full_every: float, force_full: bool) -> Plan:
    state, changed = run.store.mark_state, run.store.changed
    summary = await run.io(state.summary())
    interrupted = await run.io(state.interrupted())
    records = await run.io(changed.records())
    changed_names: set[str] = set()
    consumed: list[ChangeRecord] = []
    # After a bulk import there may be a record per push: a chunk at a time.
    for start in range(0, len(records), RECORDS_AT_ONCE):
        chunk = records[start : start + RECORDS_AT_ONCE]
        times = await run.each(chunk, lambda r: run.io(changed.stored_at(r)))
        for r, t in zip(chunk, times, strict=True):
            if t is None:
                continue  # removed meanwhile
            changed_names.add(r.repository)
            if t + r.cover + CLOCK_RESOLUTION <= run.now:
                consumed.append(r)
    names = await repository_names(run)
    orphans = {r.digest for r in records if r.digest is not None}
    reason = _full_reason(summary, interrupted, settings, run.now, full_every, force_full)
    if reason is not None or summary is None:
        log.info("gc: marking every repository: %s", reason)
        return Plan(True, reason or "", None, names, names, consumed, orphans)
    known = summary.repositories

    def due(name: str) -> bool:
        when = known[name].due
        return when is not None and when <= run.now

    marked = [n for n in names if n in changed_names or n not in known or due(n)]
    return Plan(False, "", summary, names, marked, consumed, orphans)


def _full_reason(
    summary: MarkSummary | None,
    interrupted: bool,
    settings: Settings,
    now: float,
    full_every: float,
    force_full: bool,
) -> str | None:
    if force_full:
        return "asked for"
    if summary is None:
        return "no mark state yet"
    if interrupted:
        return "the last collection stopped before it had written its mark state"
    if summary.fingerprint != settings.fingerprint():
        return (
            "the settings changed (grace period, untagged, retention, usage groups or "
            "cached namespaces)"
        )
    if now - summary.full_at >= full_every:
        return "gc.full_mark_interval has passed"
    return None
