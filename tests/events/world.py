"""Events in this process, in virtual time: stores over one MemoryStore (processes on one
bucket), the recorder on their changes, dispatchers, and consumers that a test takes
down and brings back up. No test waits for a backoff, a lease's TTL or a poll."""

from __future__ import annotations

import hashlib
import json
import os
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from registry.config import NotificationEventsConfig
from registry.events.consumer import DeliveryError, DeliveryPolicy
from registry.events.dispatcher import Dispatcher
from registry.events.model import Event, Source
from registry.events.recorder import EventRecorder
from registry.reference import Digest
from registry.store import RegistryStore
from storage_backends.memory import MemoryDriver, MemoryStore
from tests.clocks import VirtualClock

OCI = "application/vnd.oci.image.manifest.v1+json"


@dataclass
class FakeConsumer:
    """Keeps what it is given; ``up`` False makes every delivery fail."""

    name: str
    policy: DeliveryPolicy = field(default_factory=DeliveryPolicy)
    clock: VirtualClock | None = None
    up: bool = True
    batches: list[list[Event]] = field(default_factory=list)
    attempts: list[tuple[float, tuple[str, ...]]] = field(default_factory=list)  # (time, ids)
    accepts: Callable[[Event], bool] = lambda e: True

    @property
    def consumer_id(self) -> str:
        return f"endpoint/{self.name}"

    def wants(self, event: Event) -> bool:
        return self.accepts(event)

    async def deliver(self, events: Sequence[Event]) -> None:
        now = self.clock.now if self.clock is not None else 0.0
        self.attempts.append((now, tuple(e.id for e in events)))
        if not self.up:
            raise DeliveryError("HTTP 503")
        self.batches.append(list(events))

    async def close(self) -> None:
        pass

    @property
    def events(self) -> list[Event]:
        return [e for b in self.batches for e in b]


class World:
    def __init__(self) -> None:
        self.clock = VirtualClock()
        self.memory = MemoryStore()

    def store(self) -> RegistryStore:
        """A process's store on the shared bucket, recording its changes."""
        store = RegistryStore(MemoryDriver(self.memory, clock=self.clock.time), clock=self.clock)
        recorder = EventRecorder(
            store.outbox, NotificationEventsConfig(), Source("node:5000", "i-1"), self.clock
        )
        store.changes.listen(recorder)
        return store

    def dispatcher(
        self, store: RegistryStore, *consumers: FakeConsumer, inflight_timeout: float = 300.0
    ) -> Dispatcher:
        return Dispatcher(
            store,
            consumers,
            lease_ttl=10.0,
            poll_interval=1.0,
            inflight_timeout=inflight_timeout,
            rng=random.Random(7),
        )

    async def until(self, done: Callable[[], bool], limit: float = 600.0) -> None:
        """Let virtual time pass until ``done()``, at most ``limit`` seconds."""
        waited = 0.0
        while not done():
            assert waited < limit, "the condition did not come true in time"
            await self.clock.advance(0.5)
            waited += 0.5


async def push(store: RegistryStore, repository: str, tag: str) -> Digest:
    """A small image pushed under ``tag`` (its config linked first, as a client does)."""
    config = json.dumps({"nonce": os.urandom(8).hex()}).encode()
    config_digest = Digest("sha256", hashlib.sha256(config).hexdigest())
    await store.blobs.put_small(config_digest, config)
    await store.blobs.link(repository, config_digest)
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": str(config_digest),
                "size": len(config),
            },
            "layers": [],
        }
    ).encode()
    stored, _ = await store.manifests.put(repository, tag, manifest, OCI)
    return stored.digest


def pushes(consumer: FakeConsumer) -> list[tuple[str, str]]:
    """(repository, tag) of the manifest pushes a consumer got, in order."""
    return [
        (e.target.repository, e.target.tag)
        for e in consumer.events
        if e.action == "push" and e.kind == "manifest"
    ]
