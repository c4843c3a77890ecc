"""Prometheus metrics of events, on prometheus_client's default registry (served at
/metrics by registry/metrics.py). ``consumer`` is ``endpoint/<name>`` (or another
consumer of the outbox, such as ``replication/<rule>``): bounded by the configuration."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

RECORDED = Counter(
    "registry_events_recorded", "Events written to the outbox (before their change)."
)
DISCARDED = Counter(
    "registry_events_discarded",
    "Recorded events whose change never became visible (refused, failed or cut by a crash).",
)
EMITTED = Counter(
    "registry_events_emitted", "Confirmed events queued for a consumer.", ["consumer"]
)
DELIVERED = Counter("registry_events_delivered", "Events a consumer accepted.", ["consumer"])
FAILED = Counter(
    "registry_events_failed", "Delivery attempts that failed (each event counted).", ["consumer"]
)
RETRIED = Counter(
    "registry_events_retried",
    "Events whose failed delivery is tried again after a backoff.",
    ["consumer"],
)
DROPPED = Counter(
    "registry_events_dropped",
    "Events not queued because the consumer's queue was full (queue_limit).",
    ["consumer"],
)
DEAD_LETTERED = Counter(
    "registry_events_dead_lettered",
    "Events moved to the dead letters after maxretries failed attempts.",
    ["consumer"],
)
LATENCY = Histogram(
    "registry_events_delivery_latency_seconds",
    "From the timestamp of a delivery's oldest event to the consumer's acceptance.",
    ["consumer"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600),
)
QUEUE_DEPTH = Gauge(
    "registry_events_queue_depth",
    "Events waiting for a consumer (the delivering process reports it).",
    ["consumer"],
    multiprocess_mode="livemax",
)
PENDING = Gauge(
    "registry_events_pending",
    "Recorded changes not yet confirmed (the delivering process reports it).",
    multiprocess_mode="livemax",
)
