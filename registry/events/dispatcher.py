"""Delivery: one process of all (the holder of the ``events`` lease) confirms recorded
changes, queues their events per consumer and delivers them.

Every process of ``registry serve`` runs a ``Dispatcher``; all but one wait for the
lease (store/lease.py), so each event is delivered by one process at a time, whichever
processes and replicas come and go. The holder runs

* the **sequencer**: a round every ``poll_interval`` (at once when this process
  recorded something): list the pending records oldest first, confirm them
  (registry/events/confirm.py), append each confirmed event to the queue of every
  consumer that wants it (one segment per queue per round), then delete the records.
  A crash between the appends and the delete makes the next round queue them again:
  duplicates with the same ids, never a loss;
* one **deliverer** per consumer, so that a slow or dead endpoint holds up only its own
  queue: take the batch at the cursor, deliver it, move the cursor (stored) on success;
  on failure store the retry state and wait the backoff (registry/events/consumer.py),
  and after ``maxretries`` move the batch to the dead letters.

Delivery is at least once: a batch delivered but not yet recorded as such when the
holder dies is delivered again by the next holder, with the same event ids (receivers
de-duplicate on them). Order per consumer is the order of the queue, which follows the
order of recording within each repository.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Sequence
from datetime import datetime

from registry.context import RequestContext, acting_as
from registry.events import metrics
from registry.events.confirm import confirm, with_references
from registry.events.consumer import Consumer
from registry.events.model import Event, Record
from registry.events.queue import ConsumerQueue
from registry.events.recorder import LocalRecords
from registry.store import Clock, Lease, LeaseLostError, RegistryStore
from registry.tasks import stop_task

log = logging.getLogger("registry.events")

LEASE = "events"
ROUND_LIMIT = 1000  # pending records confirmed per round
# After a local record wakes the sequencer, it waits this long for more: one round (one
# segment per queue) for a burst of pushes rather than one per push.
GATHER = 0.05
# A deliverer with fewer events than a batch waits this long for more: one request for a
# burst rather than one per event.
LINGER = 0.1
STOP_TIMEOUT = 10.0


class Dispatcher:
    def __init__(
        self,
        store: RegistryStore,
        consumers: Sequence[Consumer] = (),
        *,
        lease_ttl: float = 30.0,
        poll_interval: float = 1.0,
        inflight_timeout: float = 300.0,
        rng: random.Random | None = None,
        local: LocalRecords | None = None,
    ) -> None:
        self.store = store
        self.local = local or LocalRecords()
        self.consumers: list[Consumer] = list(consumers)
        self.lease_ttl = lease_ttl
        self.poll_interval = poll_interval
        self.inflight_timeout = inflight_timeout
        self.rng = rng or random.Random()
        self.queues: dict[str, ConsumerQueue] = {}
        self._wake = asyncio.Event()
        self._delivery_wakes: dict[str, asyncio.Event] = {}
        self._task: asyncio.Task[None] | None = None
        self.holding = False

    @property
    def clock(self) -> Clock:
        return self.store.clock

    def add(self, consumer: Consumer) -> None:
        self.consumers.append(consumer)

    def wake(self) -> None:
        """Something was recorded in this process: look now rather than at the next poll."""
        self._wake.set()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="registry-events")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if not await stop_task(task, STOP_TIMEOUT):
            log.warning("events: delivery did not stop within %.0fs", STOP_TIMEOUT)
        for consumer in self.consumers:
            with contextlib.suppress(Exception):
                await consumer.close()

    # ------------------------------------------------------------------ the lease

    async def _run(self) -> None:
        with acting_as(RequestContext(origin="internal")):
            while True:
                lease = self.store.lease(LEASE, self.lease_ttl)
                try:
                    acquired = await lease.acquire()
                except Exception as exc:
                    log.warning("events: could not take the lease: %s", exc)
                    acquired = False
                if not acquired:
                    await self.clock.sleep(self.lease_ttl / 4)
                    continue
                try:
                    async with lease.kept():
                        await self.hold(lease)
                except LeaseLostError as exc:
                    log.warning("events: stopped delivering: %s", exc)
                except Exception:
                    log.exception("events: delivery failed; trying again")
                    await self.clock.sleep(self.poll_interval)

    async def hold(self, lease: Lease) -> None:
        """Work as the holder of ``lease`` until it is lost (LeaseLostError)."""
        self.holding = True
        log.info("events: this process delivers now (it holds the events lease)")
        self.queues = {}
        tasks: list[asyncio.Task[None]] = []
        try:
            for consumer in self.consumers:
                queue = ConsumerQueue(self.store.outbox, consumer.consumer_id, consumer.policy)
                await queue.load()
                self.queues[consumer.consumer_id] = queue
                wake = self._delivery_wakes.setdefault(consumer.consumer_id, asyncio.Event())
                tasks.append(
                    asyncio.create_task(
                        self._deliver_forever(lease, consumer, queue, wake),
                        name=f"registry-events-{consumer.consumer_id}",
                    )
                )
            while True:
                lease.check()
                for task in tasks:
                    if task.done():
                        task.result()  # a deliverer that stopped: its error, or the lease's
                if await self.sequence(lease) < ROUND_LIMIT:
                    await _nap(self.clock, self._wake, self.poll_interval)
                    if self._wake.is_set():  # woken by a record: let a few more gather
                        await self.clock.sleep(min(GATHER, self.poll_interval))
        finally:
            self.holding = False
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for queue in self.queues.values():
                metrics.QUEUE_DEPTH.labels(queue.consumer_id).set(0)
            metrics.PENDING.set(0)

    # ------------------------------------------------------------------ the sequencer

    async def sequence(self, lease: Lease | None = None) -> int:
        """One round: confirm what is pending and queue it. Returns how many records
        were looked at (ROUND_LIMIT: there may be more)."""
        outbox = self.store.outbox
        self._wake.clear()
        keys = await outbox.pending(limit=ROUND_LIMIT)
        if not keys:
            metrics.PENDING.set(0)
            return 0
        # This process's own records need not be read back.
        local = {k: self.local.get(k) for k in keys}
        raw = await outbox.read_many([k for k in keys if local[k] is None])
        items: list[tuple[str, Record]] = []
        unreadable: list[str] = []
        for key in keys:
            record = local[key]
            if record is None and key in raw:
                try:
                    record = Record.load(raw[key])
                except (ValueError, KeyError, TypeError):
                    log.error("events: the pending record %s is unreadable; dropped", key)
                    unreadable.append(key)
            if record is not None:
                items.append((key, record))
        settled = await outbox.settled()
        decisions = await confirm(
            self.store, items, settled, self.clock.time(), self.inflight_timeout
        )
        queued: dict[str, list[Event]] = {cid: [] for cid in self.queues}
        for decision in decisions:
            for event in decision.events:
                if event.wants_references:
                    event = await with_references(self.store, event)
                for consumer in self.consumers:
                    cid = consumer.consumer_id
                    to = decision.record.to
                    if cid in queued and (to == cid if to is not None else consumer.wants(event)):
                        queued[cid].append(event)
            if decision.record.to is not None and decision.record.to not in queued:
                log.warning(
                    "events: a replay for %s, not configured here: dropped", decision.record.to
                )
            if decision.discarded:
                metrics.DISCARDED.inc(decision.discarded)
        if lease is not None:
            lease.check()
        for cid, events in queued.items():
            if events:
                await self.queues[cid].append(events)
                self._delivery_wakes[cid].set()
        done = [d.key for d in decisions if d.done] + unreadable
        # Markers of records already gone (their request failed after they were queued).
        present = {k for k, _ in items}
        orphans = [m for m in settled if m not in present and m < keys[-1]]
        await outbox.remove(done, markers=[m for m in done if m in settled] + orphans)
        self.local.forget(done)
        metrics.PENDING.set(len(keys) - len(done))
        return len(keys)

    # ------------------------------------------------------------------ deliverers

    async def _deliver_forever(
        self, lease: Lease, consumer: Consumer, queue: ConsumerQueue, wake: asyncio.Event
    ) -> None:
        while True:
            try:
                await self.deliver_next(consumer, queue, wake, lease)
            except (LeaseLostError, asyncio.CancelledError):
                raise
            except Exception as exc:  # storage trouble: try again shortly
                log.warning("events: %s: %s", consumer.consumer_id, exc)
                await self.clock.sleep(self.poll_interval)

    async def deliver_next(
        self,
        consumer: Consumer,
        queue: ConsumerQueue,
        wake: asyncio.Event,
        lease: Lease | None = None,
    ) -> None:
        """One step: wait for an event or for the backoff to end, or deliver one batch."""
        if queue.depth <= 0:
            wake.clear()
            await _nap(self.clock, wake, self.poll_interval)
            return
        wait = queue.cursor.due - self.clock.time()
        if wait > 0:
            await self.clock.sleep(wait)
            return
        if not queue.lingered and queue.depth < consumer.policy.batch and not queue.cursor.tries:
            queue.lingered = True
            await self.clock.sleep(min(LINGER, self.poll_interval))
            return
        queue.lingered = False
        if lease is not None:
            lease.check()
        events = await queue.batch()
        if not events:
            return
        try:
            await consumer.deliver(events)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            error = str(exc) or type(exc).__name__
            outcome = await queue.failed(len(events), error, self.clock.time(), self.rng)
            if outcome == "retry":
                log.warning(
                    "events: %s: delivery failed (%s), attempt %d of %d; next in %.1fs",
                    consumer.consumer_id,
                    error,
                    queue.cursor.tries,
                    consumer.policy.retry.maxretries + 1,
                    max(0.0, queue.cursor.due - self.clock.time()),
                )
            return
        now = self.clock.time()
        await queue.delivered(len(events))
        metrics.DELIVERED.labels(consumer.consumer_id).inc(len(events))
        # Once per delivery, for its oldest event: the latency the batch bounds.
        metrics.LATENCY.labels(consumer.consumer_id).observe(max(0.0, now - _time(events[0])))


def _time(event: Event) -> float:
    try:
        return datetime.fromisoformat(event.timestamp).timestamp()
    except ValueError:
        return 0.0


async def _nap(clock: Clock, wake: asyncio.Event, seconds: float) -> None:
    """Sleep ``seconds`` on ``clock``, or less if ``wake`` is set."""
    if wake.is_set():
        return
    sleeper = asyncio.ensure_future(clock.sleep(seconds))
    waker = asyncio.ensure_future(wake.wait())
    try:
        await asyncio.wait({sleeper, waker}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (sleeper, waker):
            task.cancel()
        await asyncio.gather(sleeper, waker, return_exceptions=True)
