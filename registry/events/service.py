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
    """Build it in ``create_app``; add other consumers (``add_consumer``) before the
    app is built, since ``enabled`` decides whether changes are recorded at all."""

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
        self._listening = False

    def wake(self) -> None:
        self.dispatcher.wake()

    async def request_failed(self) -> None:
        """For the app's error handlers (registry/events/recorder.py)."""
        if self._listening:
            await self.recorder.request_failed()

    @property
    def enabled(self) -> bool:
        return bool(self.dispatcher.consumers)

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
        if self.enabled:
            self.listen()
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
