"""Delivery in virtual time: retries and backoff with a moved clock, dead letters and
replay, the bounded queue, order per repository across an outage, confirmation of what
was recorded (a refused change is never delivered; a change undone before anyone looked
still is), and two processes on one bucket."""

from __future__ import annotations

import itertools

import pytest

from registry import errors
from registry.errors import RegistryError
from registry.events import command, metrics
from registry.events.consumer import DeliveryPolicy, RetryPolicy
from registry.events.model import Event
from registry.store.changes import Change, ManifestPushed
from tests.events.world import FakeConsumer, World, push, pushes

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def manifest_pushes(event: Event) -> bool:
    return event.action == "push" and event.kind == "manifest"


async def test_retries_back_off_exponentially_with_jitter_then_dead_letter() -> None:
    world = World()
    store = world.store()
    retry = RetryPolicy(threshold=2, backoff=1.0, maxbackoff=8.0, maxretries=5)
    consumer = FakeConsumer(
        "hook", DeliveryPolicy(retry=retry), world.clock, up=False, accepts=manifest_pushes
    )
    dispatcher = world.dispatcher(store, consumer)
    await push(store, "team/app", "v1")
    dispatcher.start()
    try:
        await world.until(lambda: len(consumer.attempts) == 6)
        await world.until(lambda: dispatcher.queues["endpoint/hook"].cursor.next == 1)
        times = [t for t, _ in consumer.attempts]
        gaps = [b - a for a, b in itertools.pairwise(times)]
        # backoff while failures <= threshold, then doubling up to maxbackoff; jitter
        # draws each wait between half of it and all of it.
        for gap, full in zip(gaps, [1, 1, 2, 4, 8], strict=True):
            assert full / 2 <= gap <= full + 1e-6, (gaps, full)
        assert len(set(gaps)) == len(gaps)  # jittered, not a fixed schedule
        assert len({ids for _, ids in consumer.attempts}) == 1  # the same event id each time
        await world.clock.advance(60)
        assert len(consumer.attempts) == 6  # no attempt after the last retry

        [state] = await command.statuses(store, ["endpoint/hook"])
        assert (state.queued, state.dead) == (0, 1)
        [letter] = state.dead_letters
        assert (letter.tries, letter.error) == (6, "HTTP 503")
        assert letter.events[0].id == consumer.attempts[0][1][0]

        consumer.up = True
        assert await command.replay(store, "endpoint/hook") == 1
        await world.until(lambda: len(consumer.events) == 1)
        assert consumer.events[0].id == letter.events[0].id
        assert (await command.statuses(store, ["endpoint/hook"]))[0].dead == 0
    finally:
        await dispatcher.stop()


async def test_an_endpoint_down_for_a_while_gets_everything_in_order_per_repository() -> None:
    world = World()
    store = world.store()
    consumer = FakeConsumer("hook", clock=world.clock, up=False)
    dispatcher = world.dispatcher(store, consumer)
    dispatcher.start()
    try:
        expected: list[tuple[str, str]] = []
        for i in range(5):
            for repo in ("team/a", "team/b", "team/c"):
                await push(store, repo, f"v{i}")
                expected.append((repo, f"v{i}"))
            await world.clock.advance(20)
        await world.clock.advance(120)  # down for a few minutes
        assert consumer.events == []
        consumer.up = True
        await world.until(lambda: len(pushes(consumer)) >= len(expected))
        got = pushes(consumer)
        for repo in ("team/a", "team/b", "team/c"):
            assert [t for r, t in got if r == repo] == [t for r, t in expected if r == repo]
        ids = [e.id for e in consumer.events]
        assert len(set(ids)) == len(ids) == 3 + len(expected)  # creates, then the tags
    finally:
        await dispatcher.stop()


async def test_a_dead_endpoint_keeps_storage_bounded_and_replay_delivers() -> None:
    world = World()
    store = world.store()
    retry = RetryPolicy(threshold=1, backoff=1.0, maxbackoff=1.0, maxretries=1)
    policy = DeliveryPolicy(queue_limit=5, retry=retry)
    consumer = FakeConsumer("hook", policy, world.clock, up=False, accepts=manifest_pushes)
    dispatcher = world.dispatcher(store, consumer)
    dropped = metrics.DROPPED.labels("endpoint/hook")._value.get()
    tags = [f"v{i}" for i in range(12)]
    for tag in tags:
        await push(store, "team/app", tag)
    dispatcher.start()
    try:
        await world.until(lambda: dispatcher.queues.get("endpoint/hook") is not None)
        await world.clock.advance(300)
        [state] = await command.statuses(store, ["endpoint/hook"])
        assert state.queued == 0 and state.dead == 5  # the queue's 5, now dead letters
        assert metrics.DROPPED.labels("endpoint/hook")._value.get() - dropped == 7
        stored = [p for p in world.memory.files if p.startswith("events/")]
        assert len([p for p in stored if p.startswith("events/dead/")]) == 5
        assert not [p for p in stored if p.startswith(("events/queues/", "events/pending/"))]

        consumer.up = True
        assert await command.replay(store, "endpoint/hook") == 5
        await world.until(lambda: len(consumer.events) == 5)
        assert [e.target.tag for e in consumer.events] == tags[:5]
        assert [e.id for e in consumer.events] == [
            ids[0] for _, ids in consumer.attempts[: 2 * 5 : 2]
        ]
    finally:
        await dispatcher.stop()


class Refuse:
    """A listener after the recorder that refuses pushes of one tag (as an immutable
    tag or a quota would, had it been added after the recorder)."""

    def __init__(self, tag: str) -> None:
        self.tag = tag

    async def before(self, change: Change) -> None:
        if isinstance(change, ManifestPushed) and self.tag in change.tags:
            raise RegistryError(errors.DENIED, "refused")


async def test_a_refused_change_is_never_delivered_and_holds_up_only_its_repository() -> None:
    world = World()
    store = world.store()
    store.changes.listen(Refuse("bad"))
    consumer = FakeConsumer("hook", clock=world.clock, accepts=manifest_pushes)
    dispatcher = world.dispatcher(store, consumer, inflight_timeout=60.0)
    await push(store, "team/app", "ok1")
    with pytest.raises(RegistryError):
        await push(store, "team/app", "bad")
    await push(store, "team/app", "ok2")
    await push(store, "other/app", "ok")
    dispatcher.start()
    try:
        await world.until(lambda: len(consumer.events) == 2)
        await world.clock.advance(30)
        # The refused push may still be on its way as far as anyone can tell: team/app waits.
        assert pushes(consumer) == [("team/app", "ok1"), ("other/app", "ok")]
        await world.until(lambda: len(consumer.events) == 3, limit=120)
        assert pushes(consumer)[-1] == ("team/app", "ok2")
        await world.clock.advance(60)
        assert ("team/app", "bad") not in pushes(consumer)
        assert not [p for p in world.memory.files if p.startswith("events/pending/")]
    finally:
        await dispatcher.stop()


async def test_a_change_undone_before_confirmation_is_still_delivered() -> None:
    world = World()
    store = world.store()
    consumer = FakeConsumer("hook", clock=world.clock)
    dispatcher = world.dispatcher(store, consumer, inflight_timeout=3600.0)
    await push(store, "team/app", "gone")
    await store.manifests.delete("team/app", "gone")
    await push(store, "team/app", "moved")
    await push(store, "team/app", "moved")
    dispatcher.start()
    try:
        await world.until(lambda: len([e for e in consumer.events if e.kind == "tag"]) == 1)
        await world.until(lambda: len(pushes(consumer)) == 3, limit=60)
        assert pushes(consumer) == [
            ("team/app", "gone"),
            ("team/app", "moved"),
            ("team/app", "moved"),
        ]
    finally:
        await dispatcher.stop()


async def test_two_processes_on_one_bucket_deliver_each_event_once_and_lose_none() -> None:
    world = World()
    stores = [world.store(), world.store()]
    consumers = [FakeConsumer("hook", clock=world.clock) for _ in stores]
    dispatchers = [world.dispatcher(s, c) for s, c in zip(stores, consumers, strict=True)]
    for d in dispatchers:
        d.start()
    try:
        for i in range(10):
            await push(stores[i % 2], f"team/r{i % 3}", f"v{i}")
        await world.until(lambda: sum(len(pushes(c)) for c in consumers) == 10)
        await world.clock.advance(30)
        delivered = [e.id for c in consumers for e in c.events]
        assert len(delivered) == len(set(delivered))
        assert [bool(c.events) for c in consumers].count(True) == 1  # one holder delivers

        holder = next(i for i, c in enumerate(consumers) if c.events)
        await dispatchers[holder].stop()  # it goes away; the other takes over
        other = 1 - holder
        for i in range(10, 15):
            await push(stores[other], "team/r0", f"v{i}")
        await world.until(lambda: len(pushes(consumers[other])) == 5, limit=120)
        got = [t for _, t in pushes(consumers[holder]) + pushes(consumers[other])]
        assert sorted(got, key=lambda t: int(t[1:])) == [f"v{i}" for i in range(15)]
    finally:
        for d in dispatchers:
            await d.stop()


async def test_a_dead_endpoint_holds_up_neither_pushes_nor_other_endpoints() -> None:
    world = World()
    store = world.store()
    dead = FakeConsumer("dead", clock=world.clock, up=False, accepts=manifest_pushes)
    alive = FakeConsumer("alive", clock=world.clock, accepts=manifest_pushes)
    dispatcher = world.dispatcher(store, dead, alive)
    dispatcher.start()
    try:
        for i in range(20):
            await push(store, f"team/r{i % 4}", f"v{i}")  # none waits for an endpoint
            await world.clock.advance(1)
        await world.until(lambda: len(alive.events) == 20)
        assert dead.events == [] and len(dead.attempts) > 1
        assert dispatcher.queues["endpoint/dead"].depth == 20
    finally:
        await dispatcher.stop()
