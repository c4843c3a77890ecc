"""Recording: the store's change listener that writes each change's events to the outbox
before the change is visible, the pull hooks of the routes, and the request scope that
says when a request which recorded changes failed.

The one write per change is all that events cost a push: delivery happens elsewhere,
later, in whichever process holds the ``events`` lease (registry/events/dispatcher.py).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from contextvars import ContextVar
from dataclasses import replace

from starlette.requests import Request

from registry.config import NotificationEventsConfig
from registry.context import current
from registry.events import metrics
from registry.events.bridge import Origin, blob_pulled, manifest_pulled, record_for
from registry.events.model import Record, Source
from registry.store import Clock, Outbox
from registry.store.changes import Change

log = logging.getLogger("registry.events")

# Per request: the registry's URL as the client used it, and the outbox keys recorded.
_BASE_URL: ContextVar[str] = ContextVar("registry_events_base_url", default="")
_KEYS: ContextVar[list[str] | None] = ContextVar("registry_events_keys", default=None)
_CLIENT: ContextVar[str] = ContextVar("registry_events_client", default="")


class LocalRecords:
    """What this process recorded, kept in memory for its dispatcher (when it is the one
    holding the lease): the records themselves, so that it need not read them back, and
    which of them belong to requests that completed -- their changes are visible, so
    they need no look at storage to be confirmed. Bounded: the oldest are forgotten
    (and then read and confirmed from storage like anyone else's)."""

    LIMIT = 20000

    def __init__(self) -> None:
        self._records: OrderedDict[str, Record] = OrderedDict()
        self._completed: set[str] = set()

    def add(self, key: str, record: Record) -> None:
        self._records[key] = record
        while len(self._records) > self.LIMIT:
            old, _ = self._records.popitem(last=False)
            self._completed.discard(old)

    def completed(self, keys: list[str]) -> None:
        self._completed.update(k for k in keys if k in self._records)

    def get(self, key: str) -> tuple[Record | None, bool]:
        return self._records.get(key), key in self._completed

    def forget(self, keys: list[str]) -> None:
        for key in keys:
            self._records.pop(key, None)
            self._completed.discard(key)


class EventRecorder:
    """A ``ChangeListener`` (store/changes.py); add it after the listeners that may
    refuse a change, so that a refused change is rarely recorded at all."""

    def __init__(
        self,
        outbox: Outbox,
        settings: NotificationEventsConfig,
        source: Source,
        clock: Clock,
        recorded: Callable[[], None] = lambda: None,
    ) -> None:
        self.outbox = outbox
        self.settings = settings
        self.source = source
        self.clock = clock
        self._recorded = recorded  # wakes the local dispatcher
        self.local = LocalRecords()

    def origin(self) -> Origin:
        base = self.settings.baseurl or _BASE_URL.get()
        context = current()
        addr = _CLIENT.get()
        if addr and context.origin == "client":  # with its port, as distribution has it
            context = replace(context, addr=addr)
        return Origin(context, base.rstrip("/"), self.source, self.clock.time())

    async def before(self, change: Change) -> None:
        record = record_for(change, self.origin(), references=self.settings.includereferences)
        if record is not None:
            await self.write(record)

    def _records_pull(self, method: str) -> bool:
        return self.settings.pulls and (method != "HEAD" or self.settings.headpulls)

    async def manifest_pulled(
        self, method: str, repository: str, digest: str, media_type: str, size: int, tag: str
    ) -> None:
        if not self._records_pull(method):
            return
        await self.write(
            manifest_pulled(
                self.origin(),
                repository,
                digest,
                media_type,
                size,
                tag,
                references=self.settings.includereferences,
            )
        )

    async def blob_pulled(self, method: str, repository: str, digest: str, size: int) -> None:
        if self._records_pull(method):
            await self.write(blob_pulled(self.origin(), repository, digest, size))

    async def write(self, record: Record) -> None:
        key = self.outbox.new_key()
        await self.outbox.add(key, record.dump())
        self.local.add(key, record)
        keys = _KEYS.get()
        if keys is not None:
            keys.append(key)
        metrics.RECORDED.inc(len(record.events))
        self._recorded()

    async def request_scope(self, request: Request) -> AsyncIterator[None]:
        """App-wide dependency: the URL the client used, and on an error the records
        this request made are settled -- what they describe and is not visible now
        never will be, so the dispatcher need not wait for it."""
        _BASE_URL.set(f"{request.url.scheme}://{request.url.netloc}")
        if request.client is not None:
            _CLIENT.set(f"{request.client.host}:{request.client.port}")
        keys: list[str] = []
        _KEYS.set(keys)
        try:
            yield
        except BaseException:
            if keys:
                try:
                    await self.outbox.settle(keys)
                except Exception as exc:  # the records then wait for inflight_timeout
                    log.warning("events: could not settle %d records: %s", len(keys), exc)
            raise
        self.local.completed(keys)
