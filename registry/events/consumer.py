"""What reads the confirmed events: a ``Consumer`` (a webhook endpoint, a replication
rule), with the policy the dispatcher applies to it (pure).

A consumer gets its events in order, at least once (the same ``id`` on a retry, after a
crash or a replay), in batches of up to ``policy.batch``; it raises ``DeliveryError``
(or any exception) to have the batch tried again after a backoff. Its queue lives in
storage under ``<kind>/<name>`` (``consumer_id``) and survives restarts and takeovers.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from registry.events.model import Event


class DeliveryError(Exception):
    """A delivery attempt failed; the message says why (it ends up in the dead letters)."""


@dataclass(frozen=True)
class RetryPolicy:
    """How long to wait after a failure, and when to give up on an event.

    After the ``f``-th consecutive failure of a consumer the wait is ``backoff`` while
    ``f <= threshold``, then doubles for each failure beyond it, up to ``maxbackoff``;
    the wait is drawn between half of that and all of it (jitter), so that many
    registries retrying one receiver spread out. An event tried ``maxretries + 1``
    times goes to the dead letters; the consumer's failure count carries on to the next
    event, so a consumer that is down is not hammered event after event."""

    threshold: int = 10
    backoff: float = 1.0
    maxbackoff: float = 300.0
    maxretries: int = 20

    def delay(self, failures: int, rng: random.Random) -> float:
        steps = max(0, failures - self.threshold)
        full = min(self.maxbackoff, self.backoff * float(2 ** min(steps, 32)))
        return full * rng.uniform(0.5, 1.0)


@dataclass(frozen=True)
class DeliveryPolicy:
    batch: int = 1  # events per delivery
    queue_limit: int = 10000  # events waiting in storage; more are dropped
    retry: RetryPolicy = RetryPolicy()


class Consumer(Protocol):
    @property
    def consumer_id(self) -> str:
        """``<kind>/<name>``: where its queue lives and what its metrics are labelled."""
        ...

    @property
    def policy(self) -> DeliveryPolicy: ...

    def wants(self, event: Event) -> bool:
        """Whether ``event`` goes into this consumer's queue (decided once, when the
        event is confirmed)."""
        ...

    async def deliver(self, events: Sequence[Event]) -> None:
        """Hand over one batch; raise to have it tried again later."""
        ...

    async def close(self) -> None: ...
