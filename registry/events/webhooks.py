"""A webhook endpoint of the configuration (``notifications.endpoints``) as a consumer:
which events it wants, and one POST per batch.

Filters, all decided when an event is confirmed: ``ignoredmediatypes`` and
``ignore.mediatypes`` (the target's media type), ``ignore.actions``, ``ignore.origins``
and ``repositories`` (docs/patterns.md). Any 2xx or 3xx answer is accepted, as
distribution accepts it (redirects are not followed); anything else, a timeout or a
connection error is a failure to retry. The configured headers and the signing secrets
are never logged.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import httpx

from registry.config import NotificationEndpointConfig
from registry.events import formats, signing
from registry.events.consumer import DeliveryError, DeliveryPolicy, RetryPolicy
from registry.events.model import Event
from registry.patterns import matches_any
from registry.store import Clock

USER_AGENT = "registry-events/1"
# Headers the registry sets itself; the configuration's own values for them are ignored.
_OWN_HEADERS = {"content-type", "webhook-id", "webhook-timestamp", "webhook-signature"}


class WebhookEndpoint:
    def __init__(
        self,
        config: NotificationEndpointConfig,
        clock: Clock,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.config = config
        self.name = config.name
        self._clock = clock
        self._policy = DeliveryPolicy(
            batch=config.batch,
            queue_limit=config.queue_limit,
            retry=RetryPolicy(
                threshold=config.threshold,
                backoff=config.backoff,
                maxbackoff=config.maxbackoff,
                maxretries=config.maxretries,
            ),
        )
        self._keys = [signing.secret_key(s.get_secret_value()) for s in config.secrets]
        self._ignored_types = {*config.ignoredmediatypes, *config.ignore.mediatypes}
        headers = [
            (k, v)
            for k, values in config.headers.items()
            if k.lower() not in _OWN_HEADERS
            for v in values
        ]
        self._client = httpx.AsyncClient(
            timeout=config.timeout,
            follow_redirects=False,
            headers=[("user-agent", USER_AGENT), *headers],
            transport=transport,
        )

    @property
    def consumer_id(self) -> str:
        return f"endpoint/{self.name}"

    @property
    def policy(self) -> DeliveryPolicy:
        return self._policy

    def wants(self, event: Event) -> bool:
        return (
            event.target.media_type not in self._ignored_types
            and event.action not in self.config.ignore.actions
            and event.origin not in self.config.ignore.origins
            and matches_any(self.config.repositories, event.target.repository)
        )

    async def deliver(self, events: Sequence[Event]) -> None:
        content_type, body = formats.render(self.config.format, events)
        headers = signing.sign(self._keys, message_id(events), int(self._clock.time()), body)
        headers["content-type"] = content_type
        try:
            response = await self._client.post(self.config.url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            raise DeliveryError(f"{type(exc).__name__}: {exc}".rstrip(": ")) from None
        if not 200 <= response.status_code < 400:
            raise DeliveryError(f"HTTP {response.status_code}")

    async def close(self) -> None:
        await self._client.aclose()


def message_id(events: Sequence[Event]) -> str:
    """The ``webhook-id`` of a request: the event's id, or for a batch an id made from
    its events' ids -- the same on every retry, since a retry sends the same batch."""
    if len(events) == 1:
        return events[0].id
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "registry-events:" + ",".join(e.id for e in events)))
