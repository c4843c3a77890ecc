"""``GET /api/usage``: per quota (namespace) and repository the bytes held, the bytes held
only there, the quota and how full it is, tags and manifests (registry/policy/report.py).
Admins see everything; other callers the repositories they may pull and their
namespaces. ``?namespace=NAME``: one quota, or the repositories below a name."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from registry.auth import is_admin, repository_filter
from registry.policy import governance_of
from registry.policy.quota_rules import QuotaRules
from registry.policy.report import build_report
from registry.routes.params import store_of

router = APIRouter()


@router.get("/api/usage")
async def usage(request: Request) -> Response:
    governance = governance_of(request)
    report = await build_report(
        store_of(request),
        governance.rules if governance is not None else QuotaRules(),
        governance.book if governance is not None else None,
        visible=repository_filter(request),
        admin=is_admin(request),
        only=request.query_params.get("namespace") or None,
    )
    return JSONResponse(report.as_dict())
