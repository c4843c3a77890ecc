"""Prometheus metrics of the garbage collector, on prometheus_client's default registry
(served at /metrics by registry/metrics.py). Dry runs are not counted."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

RUNS = Counter(
    "registry_gc_runs",
    "Garbage collections by outcome: completed, failed, or skipped (another held the lease).",
    ["outcome"],
)
BLOBS_DELETED = Counter("registry_gc_blobs_deleted", "Blobs whose data the collector deleted.")
BYTES_FREED = Counter("registry_gc_freed_bytes", "Bytes of blob data the collector deleted.")
MANIFESTS_DELETED = Counter(
    "registry_gc_manifests_deleted", "Manifest revisions (per repository) the collector deleted."
)
TAGS_DELETED = Counter("registry_gc_tags_deleted", "Tags deleted by retention policies.")
LINKS_DELETED = Counter(
    "registry_gc_links_deleted", "Blob links of repositories that no longer use the blob."
)
UPLOADS_PURGED = Counter("registry_gc_uploads_purged", "Expired upload sessions purged.")
SPARED = Counter(
    "registry_gc_spared",
    "Digests the final check found in use by a concurrent push, and so kept.",
)
DURATION = Histogram(
    "registry_gc_duration_seconds",
    "Duration of completed garbage collections.",
    buckets=(0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600, 4 * 3600),
)
LAST_SUCCESS = Gauge(
    "registry_gc_last_success_timestamp_seconds",
    "When the last garbage collection completed (seconds since the epoch).",
    multiprocess_mode="max",
)
