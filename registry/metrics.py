"""Prometheus metrics: what the HTTP layer and the storage driver do, with bounded labels.

A request is labelled with the route *template* it matched (``/v2/{name}/blobs/{digest}``),
never its path, so the number of series does not grow with repositories, tags or digests.
With ``--workers N`` every worker writes its figures to prometheus_client's multiprocess
directory (``PROMETHEUS_MULTIPROC_DIR``, made by ``registry serve``) and a scrape of any
worker sums them all; with one worker the default registry is exposed as it is, with
whatever else is defined on it (the garbage collector's metrics in ``registry/gc``).
"""

from __future__ import annotations

import functools
import os
import re
import time
from typing import Any

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client import multiprocess as _multiprocess
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

from registry.request_log import ASGIApp, Receive, RequestStats, Scope, Send

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# The text format every Prometheus version reads (the names need no UTF-8 escaping).
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
UNMATCHED = "unmatched"  # the route label of a request no route matched (a 404)

_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# Requests that carry blob data into an upload session (monolithic POST, PATCH, final PUT).
_UPLOAD_PATH = re.compile(r"^/v2/.+/blobs/uploads/?[^/]*$")
_UPLOAD_METHODS = frozenset({"POST", "PATCH", "PUT"})
# Uploads of large layers take minutes: the buckets reach that far.
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
_STORAGE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10)

REQUESTS = Counter(
    "registry_http_requests",
    "HTTP requests answered, by method, route template and status.",
    ["method", "route", "status"],
)
REQUEST_DURATION = Histogram(
    "registry_http_request_duration_seconds",
    "Time from a request's arrival to the end of its response body.",
    ["method", "route"],
    buckets=_LATENCY_BUCKETS,
)
BYTES_IN = Counter(
    "registry_http_request_body_bytes",
    "Request body bytes received.",
    ["method", "route"],
)
BYTES_OUT = Counter(
    "registry_http_response_body_bytes",
    "Response body bytes sent.",
    ["method", "route"],
)
UPLOADS_IN_PROGRESS = Gauge(
    "registry_uploads_in_progress",
    "Blob upload requests (POST, PATCH, PUT of an upload session) being received now.",
    multiprocess_mode="livesum",
)
STORAGE_DURATION = Histogram(
    "registry_storage_operation_duration_seconds",
    "Storage driver calls, by driver and operation (a read: until its first bytes).",
    ["driver", "operation"],
    buckets=_STORAGE_BUCKETS,
)
STORAGE_ERRORS = Counter(
    "registry_storage_errors",
    "Storage driver calls that failed (not counting paths that do not exist).",
    ["driver", "operation"],
)


def route_label(scope: Scope) -> str:
    """The template of the route that handled the request: bounded, never a name."""
    route = scope.get("route")
    template = getattr(route, "path_format", None) or getattr(route, "path", None)
    return template if isinstance(template, str) else UNMATCHED


def method_label(method: str) -> str:
    return method if method in _METHODS else "OTHER"


class MetricsMiddleware:
    """Counts requests, latency and body bytes by route template and status.

    Pure ASGI, so streamed blob bodies pass through untouched. It runs inside
    RequestLogMiddleware and reads the figures that one counted (``RequestStats``), and
    the route after the app ran, when routing has put it in the scope."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        method = method_label(scope["method"])
        upload = method in _UPLOAD_METHODS and _UPLOAD_PATH.match(scope["path"]) is not None
        if upload:
            UPLOADS_IN_PROGRESS.inc()
        try:
            await self.app(scope, receive, send)
        finally:
            if upload:
                UPLOADS_IN_PROGRESS.dec()
            stats: RequestStats = scope["state"]["stats"]
            route = route_label(scope)
            series = _request_series(method, route)
            # No response started: the exception went on to the server error handler.
            _request_counter(method, route, stats.status or 500).inc()
            series[0].observe(time.perf_counter() - started)
            if stats.bytes_in:
                series[1].inc(stats.bytes_in)
            if stats.bytes_out:
                series[2].inc(stats.bytes_out)


def render() -> bytes:
    """The text exposition of every metric, summed over workers in multiprocess mode."""
    path = os.environ.get(MULTIPROC_ENV)
    if not path:
        return generate_latest(REGISTRY)
    registry = CollectorRegistry()
    _multiprocess.MultiProcessCollector(registry, path=path)  # type: ignore[no-untyped-call]
    return generate_latest(registry)


def process_exit() -> None:
    """Drop this worker's live gauges (uploads in progress) from the multiprocess sum."""
    path = os.environ.get(MULTIPROC_ENV)
    if path:
        _multiprocess.mark_process_dead(os.getpid(), path)  # type: ignore[no-untyped-call]


def observe_storage(driver: str, operation: str, seconds: float, failed: bool) -> None:
    """The storage observer (``storage_backends.checked``): each driver call's duration,
    and its failure. The operation label is a driver method's name: a fixed set."""
    duration, errors = _storage_series(driver, operation)
    duration.observe(seconds)
    if failed:
        errors.inc()


# Looking a labelled child up costs more than counting into it; the labels are few (the
# methods, the route templates, the statuses), so the children are kept.
@functools.cache
def _request_series(method: str, route: str) -> tuple[Any, Any, Any]:
    return (
        REQUEST_DURATION.labels(method, route),
        BYTES_IN.labels(method, route),
        BYTES_OUT.labels(method, route),
    )


@functools.cache
def _request_counter(method: str, route: str, status: int) -> Any:
    return REQUESTS.labels(method, route, str(status))


@functools.cache
def _storage_series(driver: str, operation: str) -> tuple[Any, Any]:
    # Looking a labelled child up costs more than observing into it; the labels are few.
    return (
        STORAGE_DURATION.labels(driver, operation),
        STORAGE_ERRORS.labels(driver, operation),
    )
