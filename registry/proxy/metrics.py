"""Prometheus metrics of the pull-through cache, labelled by upstream name (bounded by the
configuration) and never by repository or digest."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

from registry.remote import UpstreamRequest

HITS = Counter(
    "registry_proxy_hits",
    "Pulls answered from the cache, by upstream and kind (manifest, blob, referrers).",
    ["upstream", "kind"],
)
MISSES = Counter(
    "registry_proxy_misses",
    "Pulls that needed the upstream (a fetch, or a tag revalidated after its TTL).",
    ["upstream", "kind"],
)
COALESCED = Counter(
    "registry_proxy_coalesced_waits",
    "Blob requests that followed a fetch already running instead of starting one.",
    ["upstream"],
)
UPSTREAM_REQUESTS = Counter(
    "registry_proxy_upstream_requests",
    "Requests sent to upstreams, by upstream, operation and status (none: no answer).",
    ["upstream", "operation", "status"],
)
UPSTREAM_BYTES = Counter(
    "registry_proxy_upstream_bytes",
    "Body bytes received from upstreams.",
    ["upstream"],
)
SERVED_BYTES = Counter(
    "registry_proxy_served_bytes",
    "Blob bytes answered to clients of cached repositories (hits and misses).",
    ["upstream"],
)
STALE = Counter(
    "registry_proxy_stale_serves",
    "Cached tags or referrers lists served past their TTL because the upstream failed.",
    ["upstream"],
)
FILLS_FAILED = Counter(
    "registry_proxy_fills_failed",
    "Blob fetches that did not complete (cut, padded or corrupt body, upstream error).",
    ["upstream"],
)
EVICTIONS = Counter(
    "registry_proxy_evictions",
    "Cached manifests evicted, by reason (age, size).",
    ["reason"],
)
RATELIMIT_REMAINING = Gauge(
    "registry_proxy_ratelimit_remaining",
    "Docker Hub's ratelimit-remaining of the upstream's last answer that carried it.",
    ["upstream"],
    multiprocess_mode="mostrecent",
)


def upstream_request(event: UpstreamRequest) -> None:
    """The remote client's report of one exchange (its ``on_request`` hook)."""
    status = str(event.status) if event.status is not None else "none"
    UPSTREAM_REQUESTS.labels(event.upstream, event.operation, status).inc()
    if event.bytes_received:
        UPSTREAM_BYTES.labels(event.upstream).inc(event.bytes_received)
    if event.rate_limit is not None and event.rate_limit.remaining is not None:
        RATELIMIT_REMAINING.labels(event.upstream).set(event.rate_limit.remaining)
