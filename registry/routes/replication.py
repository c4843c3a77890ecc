"""``GET /api/replication``: per replication rule the last delivery and pass, the lag,
what was copied and the jobs that failed (registry/replication/status.py). For
administrators: it names remotes and repositories of every namespace.
``?rule=NAME``: one rule."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from registry import errors
from registry.auth import is_admin
from registry.errors import RegistryError
from registry.replication.service import ReplicationService
from registry.replication.status import report
from registry.routes.params import store_of

router = APIRouter()


@router.get("/api/replication")
async def replication_status(request: Request) -> Response:
    if not is_admin(request):
        raise RegistryError(errors.DENIED, "replication status is for administrators")
    service: ReplicationService = request.app.state.replication
    rules = [runner.config for runner in service.runners.values()]
    only = request.query_params.get("rule")
    if only is not None and only not in service.runners:
        raise RegistryError(errors.ENDPOINT_UNKNOWN, f"no replication rule named {only[:100]!r}")
    store = store_of(request)
    return JSONResponse(await report(store, rules, store.clock.time(), only))
