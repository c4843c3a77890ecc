"""Prometheus metrics of quotas and immutable tags. Labels are the configured quota and
rule names (bounded by the configuration); a per-repository quota is reported for the
repository that uses most of its limit, never per repository."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

QUOTA_LIMIT = Gauge(
    "registry_quota_limit_bytes",
    "The configured limit of each quota (per repository for per-repository quotas).",
    ["quota"],
    multiprocess_mode="mostrecent",
)
QUOTA_USED = Gauge(
    "registry_quota_used_bytes",
    "Bytes held by the manifests of a quota's repositories, each blob once (for a "
    "per-repository quota: of its fullest repository).",
    ["quota"],
    multiprocess_mode="mostrecent",
)
QUOTA_PENDING = Gauge(
    "registry_quota_pending_bytes",
    "Bytes pushed into a quota's repositories that no manifest uses yet (pushes in "
    "progress; they count against the limit, not as usage).",
    ["quota"],
    multiprocess_mode="mostrecent",
)
QUOTA_IN_FLIGHT = Gauge(
    "registry_quota_in_flight_bytes",
    "Bytes reserved by upload sessions and pushes in progress.",
    ["quota"],
    multiprocess_mode="mostrecent",
)
QUOTA_RELEASABLE = Gauge(
    "registry_quota_releasable_bytes",
    "Bytes released from a quota's usage (deleted manifests, failed pushes) that the "
    "storage keeps until the next garbage collection.",
    ["quota"],
    multiprocess_mode="mostrecent",
)
QUOTA_USE_RATIO = Gauge(
    "registry_quota_use_ratio",
    "(used + pending + in flight) / limit of each quota.",
    ["quota"],
    multiprocess_mode="mostrecent",
)
QUOTA_REFUSALS = Counter(
    "registry_quota_refusals",
    "Pushes refused because a quota would be exceeded, by quota and stage (upload: at "
    "the start of a body, chunk: within one, mount, manifest, blob: a commit from "
    "another path).",
    ["quota", "stage"],
)
IMMUTABLE_REFUSALS = Counter(
    "registry_immutable_tag_refusals",
    "Changes refused because they would move or delete an immutable tag, by rule.",
    ["rule"],
)
