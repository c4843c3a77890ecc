"""Events and webhooks that are never lost (docs/events.md).

Every change the store makes is recorded in the outbox in storage *before* it becomes
visible (``recorder``, one write per change), so that a push acknowledged to a client is
never without its event, even with kill -9 right after. One process of all -- the holder
of the ``events`` lease -- confirms each record against storage (``confirm``: a record
whose change never landed is not delivered as if it had), queues its events per
consumer in storage (``queue``) and delivers them (``dispatcher``): in order per
repository, at least once with the same event id on every retry, with exponential
backoff and jitter, a bounded queue per endpoint and dead letters after ``maxretries``.
Webhook endpoints (``webhooks``) receive distribution's envelope or CloudEvents
(``formats``), signed as Standard Webhooks define (``signing``). Other readers of the
outbox (replication) are ``Consumer``s too.
"""

from registry.events.consumer import Consumer, DeliveryError, DeliveryPolicy, RetryPolicy
from registry.events.model import Event, RequestRecord, Source, Target
from registry.events.service import EventService, blob_pulled, manifest_pulled

__all__ = [
    "Consumer",
    "DeliveryError",
    "DeliveryPolicy",
    "Event",
    "EventService",
    "RequestRecord",
    "RetryPolicy",
    "Source",
    "Target",
    "blob_pulled",
    "manifest_pulled",
]
