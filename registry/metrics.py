"""Prometheus metrics: what the HTTP layer and the storage driver do, with bounded labels.

A request is labelled with the route *template* it matched (``/v2/{name}/blobs/{digest}``),
never its path, so the number of series does not grow with repositories, tags or digests.
With ``--workers N`` every worker writes its figures to prometheus_client's multiprocess
directory (``PROMETHEUS_MULTIPROC_DIR``, made by ``registry serve``) and a scrape of any
worker sums them all; with one worker the default registry is exposed as it is, with
whatever else is defined on it (the garbage collector's metrics in ``registry/gc``).
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from collections.abc import AsyncIterator, Iterator, Sequence
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
from storage_backends import (
    Driver,
    FileInfo,
    FileWriter,
    InvalidOffsetError,
    InvalidPathError,
    PathNotFoundError,
)

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
# Outcomes the caller expects and handles: not failures of the backend.
_NOT_STORAGE_ERRORS = (PathNotFoundError, InvalidPathError, InvalidOffsetError)

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
            # No response started: the exception went on to the server error handler.
            REQUESTS.labels(method, route, str(stats.status or 500)).inc()
            REQUEST_DURATION.labels(method, route).observe(time.perf_counter() - started)
            if stats.bytes_in:
                BYTES_IN.labels(method, route).inc(stats.bytes_in)
            if stats.bytes_out:
                BYTES_OUT.labels(method, route).inc(stats.bytes_out)


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


class _Timed:
    """Times one driver call and counts it as an error when it fails."""

    def __init__(self, driver: str) -> None:
        self.driver = driver

    @contextlib.contextmanager
    def __call__(self, operation: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        except _NOT_STORAGE_ERRORS:
            raise
        except Exception:
            STORAGE_ERRORS.labels(self.driver, operation).inc()
            raise
        finally:
            STORAGE_DURATION.labels(self.driver, operation).observe(time.perf_counter() - started)


class InstrumentedWriter:
    def __init__(self, inner: FileWriter, timed: _Timed) -> None:
        self._inner = inner
        self._timed = timed

    @property
    def size(self) -> int:
        return self._inner.size

    async def write(self, data: bytes) -> None:
        with self._timed("write"):
            await self._inner.write(data)

    async def commit(self) -> None:
        with self._timed("commit"):
            await self._inner.commit()

    async def close(self) -> None:
        with self._timed("close"):
            await self._inner.close()

    async def cancel(self) -> None:
        with self._timed("cancel"):
            await self._inner.cancel()


class InstrumentedDriver:
    """A Driver that times every call of the one it wraps and counts its failures.

    The operation label is the driver method's name, so the label set is fixed. Any
    other attribute is the wrapped driver's."""

    def __init__(self, inner: Driver) -> None:
        self.inner = inner
        self.name = inner.name
        self._timed = _Timed(inner.name)

    def __getattr__(self, attribute: str) -> Any:
        return getattr(self.inner, attribute)

    async def get(self, path: str) -> bytes:
        with self._timed("get"):
            return await self.inner.get(path)

    async def put(self, path: str, data: bytes) -> None:
        with self._timed("put"):
            await self.inner.put(path, data)

    async def read(
        self, path: str, offset: int = 0, length: int | None = None
    ) -> AsyncIterator[bytes]:
        started = time.perf_counter()
        first = True
        chunks = self.inner.read(path, offset, length)
        try:
            async for chunk in chunks:
                if first:
                    first = False
                    STORAGE_DURATION.labels(self.name, "read").observe(
                        time.perf_counter() - started
                    )
                yield chunk
        except _NOT_STORAGE_ERRORS:
            raise
        except Exception:
            STORAGE_ERRORS.labels(self.name, "read").inc()
            raise
        finally:
            # A consumer that stops early closes this generator: close the driver's
            # now, so that it releases its file or connection at once.
            aclose = getattr(chunks, "aclose", None)
            if aclose is not None:
                await aclose()

    async def writer(self, path: str, append: bool = False) -> FileWriter:
        with self._timed("writer"):
            inner = await self.inner.writer(path, append)
        return InstrumentedWriter(inner, self._timed)

    async def stat(self, path: str) -> FileInfo:
        with self._timed("stat"):
            return await self.inner.stat(path)

    async def list(
        self,
        prefix: str,
        *,
        start_after: str | None = None,
        limit: int | None = None,
        recursive: bool = False,
    ) -> list[str]:
        with self._timed("list"):
            return await self.inner.list(
                prefix, start_after=start_after, limit=limit, recursive=recursive
            )

    async def move(self, src: str, dst: str) -> None:
        with self._timed("move"):
            await self.inner.move(src, dst)

    async def delete(self, path: str) -> None:
        with self._timed("delete"):
            await self.inner.delete(path)

    async def delete_many(self, paths: Sequence[str]) -> None:
        with self._timed("delete_many"):
            await self.inner.delete_many(paths)

    async def url_for(self, path: str, expires_in: int = 1200) -> str | None:
        with self._timed("url_for"):
            return await self.inner.url_for(path, expires_in)

    async def close(self) -> None:
        await self.inner.close()
