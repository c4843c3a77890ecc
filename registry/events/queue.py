"""One consumer's queue in storage, as the holder of the ``events`` lease works it.

Segments of confirmed events (``Segment``, named by their first sequence number) are
appended by the dispatcher after each confirmation round; the cursor says which event
comes next, and the retry state of the batch that starts there (how often it failed,
when to try again, and how many events it holds, so that a retry sends the same batch).
Delivered segments are deleted; a batch that failed ``maxretries + 1`` times is written
to the dead letters and passed. Storage stays bounded: the queue holds at most
``queue_limit`` events (more are dropped, counted and logged) and the dead letters at
most ``queue_limit`` too (the oldest go first).
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from registry.events import metrics
from registry.events.consumer import DeliveryPolicy
from registry.events.model import Event, Segment
from registry.store import Outbox

log = logging.getLogger("registry.events")

_CACHED_SEGMENTS = 4


@dataclass
class Cursor:
    next: int = 0  # sequence number of the next event to deliver
    tries: int = 0  # failed attempts of the batch starting at ``next``
    batch: int = 0  # events in that batch (0: none tried yet)
    due: float = 0.0  # wall-clock time of its next attempt
    failures: int = 0  # consecutive failures of the consumer
    error: str = ""  # the last failure

    def dump(self) -> bytes:
        return json.dumps(
            {
                "next": self.next,
                "tries": self.tries,
                "batch": self.batch,
                "due": self.due,
                "failures": self.failures,
                "error": self.error,
            },
            separators=(",", ":"),
        ).encode()

    @classmethod
    def load(cls, raw: bytes) -> Cursor:
        doc: dict[str, Any] = json.loads(raw)
        return cls(
            next=int(doc.get("next", 0)),
            tries=int(doc.get("tries", 0)),
            batch=int(doc.get("batch", 0)),
            due=float(doc.get("due", 0.0)),
            failures=int(doc.get("failures", 0)),
            error=str(doc.get("error", "")),
        )


@dataclass(frozen=True)
class DeadLetter:
    seq: int
    events: tuple[Event, ...]
    tries: int
    error: str
    at: float

    def dump(self) -> bytes:
        doc = {
            "first": self.seq,
            "events": [e.dump() for e in self.events],
            "tries": self.tries,
            "error": self.error,
            "at": self.at,
        }
        return json.dumps(doc, separators=(",", ":")).encode()

    @classmethod
    def load(cls, seq: int, raw: bytes) -> DeadLetter:
        doc = json.loads(raw)
        events = tuple(Event.load(e) for e in doc["events"])
        return cls(seq, events, int(doc["tries"]), str(doc["error"]), float(doc["at"]))


class ConsumerQueue:
    def __init__(self, outbox: Outbox, consumer_id: str, policy: DeliveryPolicy) -> None:
        self.outbox = outbox
        self.consumer_id = consumer_id
        self.policy = policy
        self.cursor = Cursor()
        self.tail = 0  # sequence number the next appended event gets
        self._segments: list[int] = []  # first sequence numbers, ascending
        self._cache: dict[int, Segment] = {}
        self.lingered = False  # the deliverer waited for a fuller batch already

    @property
    def depth(self) -> int:
        return self.tail - self.cursor.next

    async def load(self) -> None:
        """Read the queue's state from storage (on taking the lease)."""
        raw = await self.outbox.read_cursor(self.consumer_id)
        self._segments = await self.outbox.segments(self.consumer_id)
        self._cache.clear()
        if raw is not None:
            try:
                self.cursor = Cursor.load(raw)
            except (ValueError, TypeError):
                log.warning("events: %s: unreadable cursor, starting over", self.consumer_id)
                self.cursor = Cursor()
        elif self._segments:
            self.cursor = Cursor(next=self._segments[0])
        self.tail = self.cursor.next
        if self._segments:
            last = await self._segment(self._segments[-1])
            self.tail = max(self.tail, last.end if last else self._segments[-1])
        self._report()

    async def append(self, events: Sequence[Event]) -> None:
        """Queue confirmed events (one segment), as many as ``queue_limit`` leaves room for."""
        room = max(0, self.policy.queue_limit - self.depth)
        kept = list(events[:room])
        dropped = len(events) - len(kept)
        if dropped:
            metrics.DROPPED.labels(self.consumer_id).inc(dropped)
            log.warning(
                "events: %s: queue full (%d events), %d events dropped",
                self.consumer_id,
                self.policy.queue_limit,
                dropped,
            )
        if not kept:
            return
        segment = Segment(self.tail, kept)
        await self.outbox.write_segment(self.consumer_id, segment.first, segment.dump())
        self._segments.append(segment.first)
        self._remember(segment)
        self.tail = segment.end
        metrics.EMITTED.labels(self.consumer_id).inc(len(kept))
        self._report()

    async def batch(self) -> list[Event]:
        """The events of the next delivery: the batch that failed before, or up to
        ``batch`` events from the cursor on."""
        want = self.cursor.batch or self.policy.batch
        out: list[Event] = []
        seq = self.cursor.next
        while len(out) < want and seq < self.tail:
            found = await self._locate(seq)
            if found is None:  # the segment is gone (purged by hand): skip past it
                following = [s for s in self._segments if s > seq]
                seq = following[0] if following else self.tail
                if not out:
                    self.cursor.next = seq
                continue
            segment, index = found
            take = segment.events[index : index + want - len(out)]
            out += take
            seq += len(take)
        return out

    async def delivered(self, count: int) -> None:
        self.cursor = Cursor(next=self.cursor.next + count)
        await self._save_and_trim()

    async def failed(
        self, count: int, error: str, now: float, rng: random.Random
    ) -> Literal["retry", "dead"]:
        retry = self.policy.retry
        c = self.cursor
        c.tries += 1
        c.failures += 1
        c.batch = count
        c.error = error[:500]
        metrics.FAILED.labels(self.consumer_id).inc(count)
        if c.tries <= retry.maxretries:
            c.due = now + retry.delay(c.failures, rng)
            metrics.RETRIED.labels(self.consumer_id).inc(count)
            await self.outbox.write_cursor(self.consumer_id, c.dump())
            return "retry"
        events = await self.batch()
        letter = DeadLetter(c.next, tuple(events), c.tries, c.error, now)
        await self.outbox.write_dead_letter(self.consumer_id, letter.seq, letter.dump())
        await self._bound_dead_letters()
        metrics.DEAD_LETTERED.labels(self.consumer_id).inc(len(events))
        log.error(
            "events: %s: %d events moved to the dead letters after %d attempts: %s",
            self.consumer_id,
            len(events),
            c.tries,
            c.error,
        )
        # The consumer's failure count and wait carry on to the next batch.
        self.cursor = Cursor(next=c.next + len(events), failures=c.failures, due=c.due)
        await self._save_and_trim()
        return "dead"

    async def _bound_dead_letters(self) -> None:
        letters = await self.outbox.dead_letters(self.consumer_id)
        excess = len(letters) - self.policy.queue_limit
        if excess > 0:
            await self.outbox.delete_dead_letters(self.consumer_id, letters[:excess])
            log.warning("events: %s: %d oldest dead letters dropped", self.consumer_id, excess)

    async def _save_and_trim(self) -> None:
        await self.outbox.write_cursor(self.consumer_id, self.cursor.dump())
        done = []
        for i, first in enumerate(self._segments):
            following = self._segments[i + 1] if i + 1 < len(self._segments) else self.tail
            if following > self.cursor.next:
                break
            done.append(first)
        if done:
            await self.outbox.delete_segments(self.consumer_id, done)
            self._segments = self._segments[len(done) :]
            for first in done:
                self._cache.pop(first, None)
        self._report()

    async def _locate(self, seq: int) -> tuple[Segment, int] | None:
        starts = [s for s in self._segments if s <= seq]
        if not starts:
            return None
        segment = await self._segment(starts[-1])
        if segment is None or seq >= segment.end:
            return None
        return segment, seq - segment.first

    async def _segment(self, first: int) -> Segment | None:
        if first in self._cache:
            return self._cache[first]
        raw = await self.outbox.read_segment(self.consumer_id, first)
        if raw is None:
            self._segments = [s for s in self._segments if s != first]
            return None
        segment = Segment.load(raw)
        self._remember(segment)
        return segment

    def _remember(self, segment: Segment) -> None:
        """Keep the first few undelivered segments in memory (the deliverer reads them
        next, and need not read back what this process just wrote); a queue that is
        not moving holds no more than that."""
        if len(self._cache) < _CACHED_SEGMENTS:
            self._cache[segment.first] = segment

    def _report(self) -> None:
        metrics.QUEUE_DEPTH.labels(self.consumer_id).set(self.depth)
