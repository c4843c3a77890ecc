"""Events in one process of ``registry serve``: the recorder on the store's changes,
the pull hooks, and the dispatcher that delivers when this process holds the lease."""

from __future__ import annotations

import socket
import uuid

from starlette.requests import Request

from registry.config import Config
from registry.events.consumer import Consumer
from registry.events.dispatcher import Dispatcher
from registry.events.model import Source
from registry.events.recorder import EventRecorder
from registry.events.webhooks import WebhookEndpoint
from registry.store import RegistryStore


class EventService:
    """Built by ``install_listeners`` (registry/listeners.py) in every process that
    changes content; only ``registry serve`` starts it (delivery). Changes are recorded
    when the configuration has a reader of events: an active webhook endpoint, or a
    replication rule that follows events (whose consumer ``add_consumer`` adds)."""

    def __init__(
        self,
        store: RegistryStore,
        config: Config,
    ) -> None:
        settings = config.notifications
        self.store = store
        self.settings = settings
        self.source = Source(f"{socket.gethostname()}:{config.http.port}", str(uuid.uuid4()))
        self.recorder = EventRecorder(
            store.outbox, settings.events, self.source, store.clock, self.wake
        )
        self.dispatcher = Dispatcher(
            store,
            [WebhookEndpoint(e, store.clock) for e in settings.active_endpoints],
            lease_ttl=settings.lease_ttl,
            poll_interval=settings.poll_interval,
            inflight_timeout=settings.inflight_timeout,
            local=self.recorder.local,
        )
        # Decided by the configuration, not by the consumers added so far: a process
        # that records but never delivers (``registry gc``) adds none.
        self.configured = bool(settings.active_endpoints) or any(
            rule.on_events for rule in config.replication.rules
        )
        self._listening = False

    def wake(self) -> None:
        self.dispatcher.wake()

    async def request_failed(self) -> None:
        """For the app's error handlers (registry/events/recorder.py)."""
        if self._listening:
            await self.recorder.request_failed()

    @property
    def enabled(self) -> bool:
        return self.configured or bool(self.dispatcher.consumers)

    def add_consumer(self, consumer: Consumer) -> None:
        """Another reader of the outbox (replication): its own queue, retries and dead
        letters, delivered by the same lease holder (registry/events/consumer.py)."""
        self.dispatcher.add(consumer)
        self.listen()

    def listen(self) -> None:
        """Record changes from now on. Called once the other listeners (those that may
        refuse a change) are in place: the recorder comes last."""
        if self.enabled and not self._listening:
            self.store.changes.listen(self.recorder)
            self._listening = True

    def start(self) -> None:
        """Deliver (``registry serve``): when this process holds the events lease."""
        self.listen()
        if self.dispatcher.consumers:
            self.dispatcher.start()

    async def stop(self) -> None:
        await self.dispatcher.stop()


def events_of(request: Request) -> EventService | None:
    service: EventService | None = getattr(request.app.state, "events", None)
    return service if service is not None and service.enabled else None


async def manifest_pulled(
    request: Request, name: str, reference: str, digest: str, media_type: str, size: int
) -> None:
    """The routes' pull hook for a manifest GET or HEAD (``notifications.events.pulls``)."""
    service = events_of(request)
    if service is not None:
        tag = "" if ":" in reference else reference
        await service.recorder.manifest_pulled(request.method, name, digest, media_type, size, tag)


async def blob_pulled(request: Request, name: str, digest: str, size: int) -> None:
    """The routes' pull hook for a blob GET or HEAD."""
    service = events_of(request)
    if service is not None:
        await service.recorder.blob_pulled(request.method, name, digest, size)
