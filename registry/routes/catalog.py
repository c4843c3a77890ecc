"""``/v2/_catalog``: the repositories in lexical order, paginated."""

from __future__ import annotations

import json

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from registry.routes.params import next_link, page_params, store_of

router = APIRouter()


@router.get("/v2/_catalog")
async def catalog(request: Request) -> Response:
    n, last = page_params(request)
    names = await store_of(request).catalog.list(last, n + 1) if n else []
    headers = {}
    if len(names) > n:
        names = names[:n]
        headers["Link"] = next_link("/v2/_catalog", {"n": str(n), "last": names[-1]})
    return Response(
        json.dumps({"repositories": names}).encode(), headers=headers, media_type="application/json"
    )
