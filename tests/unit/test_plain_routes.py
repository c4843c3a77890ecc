"""Endpoints served as plain routes still run the app-wide checks, exactly once, before
the endpoint; endpoints that need FastAPI's parameters stay FastAPI routes, checked by
the app's dependency."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import APIRouter, Depends, FastAPI
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from registry.routes.plain import add_routes

pytestmark = pytest.mark.anyio
router = APIRouter()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@router.get("/v2/{name:path}/things/{thing}")
async def plain_thing(request: Request, name: str, thing: str) -> Response:
    return JSONResponse({"name": name, "thing": thing, "route": request.scope["route"].path})


@router.get("/count")
async def typed(n: int = 3) -> Response:  # a query parameter FastAPI converts
    return JSONResponse({"n": n})


@router.api_route("/v2/", methods=["GET", "HEAD"])
async def no_params() -> Response:
    return Response(status_code=200)


@pytest.fixture
async def client() -> AsyncIterator[tuple[httpx.AsyncClient, list[str]]]:
    checked: list[str] = []

    async def before(request: Request) -> None:
        checked.append(request.url.path)
        if request.headers.get("x-refuse"):
            raise PermissionError("refused")

    app = FastAPI(dependencies=[Depends(before)])

    @app.exception_handler(PermissionError)
    async def refused(request: Request, exc: PermissionError) -> Response:
        return Response(status_code=403)

    add_routes(app, router, before)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        yield c, checked


async def test_a_plain_route_runs_the_checks_once_and_gets_its_path_parameters(
    client: tuple[httpx.AsyncClient, list[str]],
) -> None:
    c, checked = client
    r = await c.get("/v2/a/b/things/x")
    assert r.json() == {"name": "a/b", "thing": "x", "route": "/v2/{name:path}/things/{thing}"}
    assert checked == ["/v2/a/b/things/x"]
    assert (await c.get("/v2/a/things/x", headers={"x-refuse": "1"})).status_code == 403


async def test_a_route_with_other_parameters_stays_checked_by_the_app_dependency(
    client: tuple[httpx.AsyncClient, list[str]],
) -> None:
    c, checked = client
    assert (await c.get("/count", params={"n": "7"})).json() == {"n": 7}
    assert checked == ["/count"]
    assert (await c.get("/count", headers={"x-refuse": "1"})).status_code == 403


async def test_methods_are_the_declared_ones(client: tuple[httpx.AsyncClient, list[str]]) -> None:
    c, _ = client
    assert (await c.head("/v2/")).status_code == 200
    assert (await c.head("/v2/a/things/x")).status_code == 405  # GET only, as declared
