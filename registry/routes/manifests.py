"""``/v2/<name>/manifests/<reference>``: pull, push and delete manifests by tag or digest."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from registry import errors, events
from registry.errors import RegistryError
from registry.proxy.handlers import proxied_manifest
from registry.routes.params import check_delete_enabled, config_of, repository, store_of

router = APIRouter()


@router.api_route("/v2/{name:path}/manifests/{reference}", methods=["GET", "HEAD"])
async def get_manifest(request: Request, name: str, reference: str) -> Response:
    name = repository(name)
    proxied = await proxied_manifest(request, name, reference)
    if proxied is not None:
        return proxied
    manifests = store_of(request).manifests
    stored = await manifests.resolve(name, reference)
    await events.manifest_pulled(
        request, name, reference, str(stored.digest), stored.media_type, stored.size
    )
    etag = f'"{stored.digest}"'
    headers = {
        "Docker-Content-Digest": str(stored.digest),
        "ETag": etag,
        "Content-Length": str(stored.size),
    }
    if request.headers.get("if-none-match") == etag:
        return Response(
            status_code=304, headers={k: v for k, v in headers.items() if k != "Content-Length"}
        )
    if request.method == "HEAD":
        return Response(headers=headers, media_type=stored.media_type)
    return Response(await manifests.content(stored), headers=headers, media_type=stored.media_type)


async def _read_limited(request: Request, limit: int) -> bytes:
    too_large = RegistryError(
        errors.MANIFEST_TOO_LARGE, f"manifest is larger than the {limit} byte limit"
    )
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large
    parts: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large
        parts.append(chunk)
    return b"".join(parts)


@router.put("/v2/{name:path}/manifests/{reference}")
async def put_manifest(request: Request, name: str, reference: str) -> Response:
    name = repository(name)
    body = await _read_limited(request, config_of(request).manifest_max_size)
    stored, manifest = await store_of(request).manifests.put(
        name,
        reference,
        body,
        request.headers.get("content-type"),
        extra_tags=request.query_params.getlist("tag"),
    )
    headers = {
        "Location": f"/v2/{name}/manifests/{stored.digest}",
        "Docker-Content-Digest": str(stored.digest),
        "Content-Length": "0",
    }
    if manifest.subject is not None:
        headers["OCI-Subject"] = str(manifest.subject.digest)
    return Response(status_code=201, headers=headers)


@router.delete("/v2/{name:path}/manifests/{reference}")
async def delete_manifest(request: Request, name: str, reference: str) -> Response:
    check_delete_enabled(request)
    name = repository(name)
    await store_of(request).manifests.delete(name, reference)
    return Response(status_code=202, headers={"Content-Length": "0"})
