"""``/v2/_catalog``: the repositories in lexical order, paginated."""

from __future__ import annotations

import json
from collections.abc import Callable

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from registry.auth import repository_filter
from registry.routes.params import next_link, page_params, store_of
from registry.store import Catalog

router = APIRouter()


@router.get("/v2/_catalog")
async def catalog(request: Request) -> Response:
    n, last = page_params(request)
    visible = repository_filter(request)
    names = await _visible_names(store_of(request).catalog, last, n + 1, visible) if n else []
    headers = {}
    if len(names) > n:
        names = names[:n]
        headers["Link"] = next_link("/v2/_catalog", {"n": str(n), "last": names[-1]})
    return Response(
        json.dumps({"repositories": names}).encode(), headers=headers, media_type="application/json"
    )


async def _visible_names(
    catalog: Catalog, last: str | None, limit: int, visible: Callable[[str], bool]
) -> list[str]:
    """Up to ``limit`` names after ``last`` that the caller may pull (with auth on, the
    catalog shows nothing else), reading further pages while some are hidden."""
    out: list[str] = []
    while len(out) < limit:
        page = await catalog.list(last, limit)
        out.extend(name for name in page if visible(name))
        if len(page) < limit:
            break
        last = page[-1]
    return out[:limit]
