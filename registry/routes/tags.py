"""``/v2/<name>/tags/list``: a repository's tags in lexical order, paginated."""

from __future__ import annotations

import json

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from registry import errors
from registry.errors import RegistryError
from registry.proxy.handlers import proxied_tags
from registry.routes.params import next_link, page_params, repository, store_of

router = APIRouter()


@router.get("/v2/{name:path}/tags/list")
async def list_tags(request: Request, name: str) -> Response:
    name = repository(name)
    proxied = await proxied_tags(request, name)
    if proxied is not None:
        return proxied
    manifests = store_of(request).manifests
    n, last = page_params(request)
    if not await manifests.repository_exists(name):
        raise RegistryError(errors.NAME_UNKNOWN, detail={"name": name})
    tags = await manifests.list_tags(name, last, n + 1) if n else []
    headers = {}
    if len(tags) > n:
        tags = tags[:n]
        headers["Link"] = next_link(f"/v2/{name}/tags/list", {"n": str(n), "last": tags[-1]})
    body = json.dumps({"name": name, "tags": tags}).encode()
    return Response(body, headers=headers, media_type="application/json")
