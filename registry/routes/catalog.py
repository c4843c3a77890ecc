"""``/v2/_catalog``: the repositories in lexical order, paginated."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from registry.auth import repository_filter, repository_prefixes
from registry.routes.params import PAGE_MAX, next_link, page_params, store_of
from registry.store import Catalog

router = APIRouter()


@router.get("/v2/_catalog")
async def catalog(request: Request) -> Response:
    n, last = page_params(request)
    visible = repository_filter(request)
    prefixes = repository_prefixes(request)
    catalog = store_of(request).catalog
    names = await _visible_names(catalog, last, n + 1, visible, prefixes) if n else []
    headers = {}
    if len(names) > n:
        names = names[:n]
        headers["Link"] = next_link("/v2/_catalog", {"n": str(n), "last": names[-1]})
    return Response(
        json.dumps({"repositories": names}).encode(), headers=headers, media_type="application/json"
    )


async def _visible_names(
    catalog: Catalog,
    last: str | None,
    limit: int,
    visible: Callable[[str], bool],
    prefixes: Sequence[str],
) -> list[str]:
    """Up to ``limit`` names after ``last`` that the caller may pull (with auth on, the
    catalog shows nothing else). Only names with the caller's prefixes are read; while
    some of those are hidden, the next pages double in size, so that a page takes a few
    listings however many hidden names it passes."""
    out: list[str] = []
    size = limit
    while len(out) < limit:
        page = await catalog.list(last, size, prefixes)
        out.extend(name for name in page if visible(name))
        if len(page) < size:
            break
        last = page[-1]
        size = min(2 * size, PAGE_MAX)
    return out[:limit]
