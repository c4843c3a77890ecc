"""Endpoints for operators: ``/health/live``, ``/health/ready`` and ``/metrics``.

Outside ``/v2/`` and without authentication, as probes and scrapers expect; keep them
off the public side of a reverse proxy (docs/operations.md).
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from registry import metrics
from registry.health import ReadinessCheck
from registry.maintenance import ReadOnlyState
from registry.routes.params import config_of

router = APIRouter()
metrics_router = APIRouter()  # included only when metrics.enabled


@router.api_route("/health/live", methods=["GET", "HEAD"])
async def live() -> Response:
    """The process serves requests: its event loop is not stuck."""
    return JSONResponse({"status": "ok"})


@router.api_route("/health/ready", methods=["GET", "HEAD"])
async def ready(request: Request) -> Response:
    """The storage backend answers: 200, else 503. Read-only mode is still ready."""
    check: ReadinessCheck = request.app.state.readiness
    readonly: ReadOnlyState = request.app.state.readonly
    storage = await check.storage()
    body: dict[str, Any] = {
        "status": "ok" if storage.ok else "unavailable",
        "storage": {
            "driver": config_of(request).storage.driver,
            "ok": storage.ok,
            "latency_ms": storage.latency_ms,
        },
        # A backend that failed the check would make the flag's read hang or fail too.
        "mode": await readonly.mode(refresh=storage.ok),
    }
    if storage.error:
        body["storage"]["error"] = storage.error
    return JSONResponse(body, status_code=200 if storage.ok else 503)


@metrics_router.get("/metrics")
async def metrics_endpoint() -> Response:
    # Multiprocess mode reads one file per worker: off the event loop.
    body = await asyncio.to_thread(metrics.render)
    return Response(body, media_type=metrics.CONTENT_TYPE)
