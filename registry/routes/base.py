"""``/v2/``: the API version check every client starts with."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import Response

router = APIRouter()


@router.api_route("/v2/", methods=["GET", "HEAD"])
async def version_check() -> Response:
    return Response(b"{}", media_type="application/json")
