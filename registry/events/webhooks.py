"""A webhook endpoint of the configuration (``notifications.endpoints``) as a consumer:
which events it wants, and one POST per batch.

Filters, all decided when an event is confirmed: ``ignoredmediatypes`` and
``ignore.mediatypes`` (the target's media type), ``ignore.actions``, ``ignore.origins``
and ``repositories`` (docs/patterns.md). Any 2xx or 3xx answer is accepted, as
distribution accepts it (redirects are not followed); anything else, a timeout or a
connection error is a failure to retry. The configured headers and the signing secrets
are never logged.

The request goes out with the standard library's ``http.client`` in a thread, over one
kept-alive connection per endpoint (deliveries to an endpoint are one at a time): it
costs a fraction of an async client's CPU, and delivery shares the processor with the
pushes it reports.
"""

from __future__ import annotations

import asyncio
import http.client
import ssl
import uuid
from collections.abc import Sequence
from urllib.parse import urlsplit

from registry.config import NotificationEndpointConfig
from registry.events import formats, signing
from registry.events.consumer import DeliveryError, DeliveryPolicy, RetryPolicy
from registry.events.model import Event
from registry.patterns import matches_any
from registry.store import Clock

USER_AGENT = "registry-events/1"
# Headers the registry sets itself; the configuration's own values for them are ignored.
_OWN_HEADERS = {"content-type", "webhook-id", "webhook-timestamp", "webhook-signature"}
# What a kept-alive connection that the receiver closed in the meantime fails with.
_STALE = (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError)


class WebhookEndpoint:
    def __init__(self, config: NotificationEndpointConfig, clock: Clock) -> None:
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
        # http.client takes one value per header: repeated ones are joined, as HTTP allows.
        self._headers = {"User-Agent": USER_AGENT}
        self._headers |= {
            k: ", ".join(values)
            for k, values in config.headers.items()
            if k.lower() not in _OWN_HEADERS
        }
        url = urlsplit(config.url)
        self._https = url.scheme == "https"
        self._host = url.hostname or ""
        self._port = url.port
        self._path = (url.path or "/") + (f"?{url.query}" if url.query else "")
        self._connection: http.client.HTTPConnection | None = None

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
        headers["Content-Type"] = content_type
        status = await asyncio.to_thread(self._post, body, {**self._headers, **headers})
        if not 200 <= status < 400:
            raise DeliveryError(f"HTTP {status}")

    def _post(self, body: bytes, headers: dict[str, str]) -> int:
        while True:
            reused = self._connection is not None
            connection = self._connection or self._connect()
            self._connection = None
            try:
                connection.request("POST", self._path, body, headers)
                response = connection.getresponse()
                response.read()
            except (OSError, http.client.HTTPException) as exc:
                connection.close()
                if reused and isinstance(exc, _STALE):
                    continue  # the receiver had closed the kept-alive connection: afresh
                raise DeliveryError(f"{type(exc).__name__}: {exc}".rstrip(": ")) from None
            if response.will_close:
                connection.close()
            else:
                self._connection = connection
            return response.status

    def _connect(self) -> http.client.HTTPConnection:
        if self._https:
            return http.client.HTTPSConnection(
                self._host,
                self._port,
                timeout=self.config.timeout,
                context=ssl.create_default_context(),
            )
        return http.client.HTTPConnection(self._host, self._port, timeout=self.config.timeout)

    async def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


def message_id(events: Sequence[Event]) -> str:
    """The ``webhook-id`` of a request: the event's id, or for a batch an id made from
    its events' ids -- the same on every retry, since a retry sends the same batch."""
    if len(events) == 1:
        return events[0].id
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "registry-events:" + ",".join(e.id for e in events)))
