"""``/v2/<name>/referrers/<digest>``: an image index of the manifests whose subject is
``<digest>``, read from the per-subject index, filtered by ``artifactType``."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from registry.manifest import OCI_INDEX
from registry.proxy.handlers import proxied_referrers
from registry.reference import parse_digest
from registry.routes.params import next_link, repository, store_of

router = APIRouter()

PAGE = 1000  # descriptors per response


# ``{digest:path}``: a digest with a slash in it (``sha256:..%2ftmp``) must reach
# parse_digest and get DIGEST_INVALID, not fall through to a 404.
@router.get("/v2/{name:path}/referrers/{digest:path}")
async def list_referrers(request: Request, name: str, digest: str) -> Response:
    name, subject = repository(name), parse_digest(digest)
    proxied = await proxied_referrers(request, name, subject)
    if proxied is not None:
        return proxied
    index = store_of(request).referrers
    artifact_type = request.query_params.get("artifactType")
    last = request.query_params.get("last") or None
    found: list[dict[str, Any]] = []
    more = True
    while more and len(found) < PAGE:
        entries, more = await index.page(name, subject, last, PAGE)
        for key, descriptor in entries:
            last = key
            if artifact_type is None or descriptor.get("artifactType") == artifact_type:
                found.append(descriptor)
                if len(found) == PAGE:
                    more = more or key != entries[-1][0]
                    break
    headers = {}
    if artifact_type is not None:
        headers["OCI-Filters-Applied"] = "artifactType"
    if more and last is not None:
        params = {"last": last}
        if artifact_type is not None:
            params["artifactType"] = artifact_type
        headers["Link"] = next_link(f"/v2/{name}/referrers/{subject}", params)
    body = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": found}
    return Response(json.dumps(body).encode(), headers=headers, media_type=OCI_INDEX)
