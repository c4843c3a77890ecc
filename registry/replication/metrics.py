"""Prometheus metrics of replication, on prometheus_client's default registry (served at
/metrics by registry/metrics.py), labelled by ``rule`` (bounded by the configuration).
Event deliveries are also counted by the events' own metrics, with
``consumer="replication/<rule>"`` (queue depth, retries)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

ARTIFACTS = Counter(
    "registry_replication_artifacts",
    "Tags and referrers copied to the target (a top-level manifest put).",
    ["rule"],
)
MANIFESTS = Counter(
    "registry_replication_manifests",
    "Manifests put on the target, index children and referrers included.",
    ["rule"],
)
BLOBS = Counter(
    "registry_replication_blobs",
    "Blobs by what it took: copied (uploaded), mounted (from another repository of the "
    "target) or skipped (the target had it).",
    ["rule", "how"],
)
BYTES = Counter("registry_replication_bytes", "Blob bytes read from the source and sent.", ["rule"])
DELETES = Counter(
    "registry_replication_deletes", "Tags and manifests deleted on the target.", ["rule"]
)
FAILURES = Counter(
    "registry_replication_failures",
    "Jobs that failed for a reason of their own (each recorded, retried later).",
    ["rule"],
)
FAILING = Gauge(
    "registry_replication_failing",
    "Jobs of the rule that failed and have not succeeded since.",
    ["rule"],
    multiprocess_mode="livemax",
)
RUNS = Counter(
    "registry_replication_runs",
    "Full passes by outcome: ok, partial (some jobs failed), failed, skipped (another "
    "process held the rule's lease).",
    ["rule", "outcome"],
)
LAST_SUCCESS = Gauge(
    "registry_replication_last_success_timestamp_seconds",
    "When a delivery or pass of the rule last completed (seconds since the epoch).",
    ["rule"],
    multiprocess_mode="max",
)
LAG = Gauge(
    "registry_replication_lag_seconds",
    "Age of the oldest event the rule has not replicated yet (0: none waits); reported "
    "by the process that delivers events.",
    ["rule"],
    multiprocess_mode="livemax",
)
QUEUED = Gauge(
    "registry_replication_queued_events",
    "Events waiting for the rule (reported by the process that delivers events).",
    ["rule"],
    multiprocess_mode="livemax",
)
