"""Recording: the store's change listener that writes each change's events to the outbox
before the change is visible, the pull hooks of the routes, and what the app's error
handlers call when a request which recorded changes failed.

The one write per change is all that events cost a push: delivery happens elsewhere,
later, in whichever process holds the ``events`` lease (registry/events/dispatcher.py).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable
from contextvars import ContextVar

from registry.config import NotificationEventsConfig
from registry.context import current
from registry.events import metrics
from registry.events.bridge import Origin, blob_pulled, manifest_pulled, record_for
from registry.events.model import Record, Source
from registry.store import Clock, Outbox
from registry.store.changes import Change

log = logging.getLogger("registry.events")

# The outbox keys a request recorded, and the request they belong to (a context object is
# made per request, so keys never carry over to the next one).
_KEYS: ContextVar[list[str] | None] = ContextVar("registry_events_keys", default=None)
_KEYS_OF: ContextVar[object] = ContextVar("registry_events_keys_of", default=None)


class LocalRecords:
    """What this process recorded, kept in memory for its dispatcher (when it is the one
    holding the lease), so that it need not read its own records back.
    Bounded: the oldest are forgotten (and then read from storage like anyone else's)."""

    LIMIT = 20000

    def __init__(self) -> None:
        self._records: OrderedDict[str, Record] = OrderedDict()

    def add(self, key: str, record: Record) -> None:
        self._records[key] = record
        while len(self._records) > self.LIMIT:
            self._records.popitem(last=False)

    def get(self, key: str) -> Record | None:
        return self._records.get(key)

    def forget(self, keys: list[str]) -> None:
        for key in keys:
            self._records.pop(key, None)


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
        context = current()
        base = self.settings.baseurl or (
            f"{context.scheme}://{context.host}" if context.scheme and context.host else ""
        )
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
        context = current()
        if context.origin == "client":  # kept for request_failed, per request
            keys = _KEYS.get()
            if keys is None or _KEYS_OF.get() is not context:
                keys = []
                _KEYS.set(keys)
                _KEYS_OF.set(context)
            keys.append(key)
        metrics.RECORDED.inc(len(record.events))
        self._recorded()

    async def request_failed(self) -> None:
        """Called by the app's error handlers: the records this request made are
        settled -- what they describe and is not visible now never will be, so the
        dispatcher need not wait for it."""
        keys = _KEYS.get()
        if keys:
            _KEYS.set(None)
            try:
                await self.outbox.settle(keys)
            except Exception as exc:  # the records then wait for inflight_timeout
                log.warning("events: could not settle %d records: %s", len(keys), exc)
