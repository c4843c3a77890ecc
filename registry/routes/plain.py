"""The endpoints as plain Starlette routes: FastAPI's declarations, without its
per-request dependency solving.

Every registry endpoint takes the request and its path parameters (strings), and the
one thing FastAPI's dependency injection does for them is to run the app-wide checks
before the endpoint. Solving that per request (signatures, caches, parameter
validation) cost more CPU than serving most requests (a manifest GET, a blob HEAD), so
``add_routes`` turns each such route into a Starlette route whose handler runs the
checks itself, then the endpoint. Routes that take anything else (query or body models,
dependencies of their own) stay FastAPI routes, checked by the app's dependency as
before. Access rules, metrics and logs see the same route templates either way.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable

from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

Check = Callable[[Request], Awaitable[None]]


def add_routes(app: FastAPI, router: APIRouter, before: Check) -> None:
    """Add ``router``'s routes to ``app``, in order: each a plain route of the app's own
    router that runs ``before`` then its endpoint when its signature allows, otherwise
    included as declared (the app's dependencies then run ``before``).

    Plain routes sit in the app's router itself: an included router costs two scans of
    its routes per request (FastAPI matches, then matches again to handle)."""
    for route in router.routes:
        plain = _plain(route, before)
        if plain is not None:
            app.router.routes.append(plain)
        else:
            app.include_router(APIRouter(routes=[route]))


def _plain(route: BaseRoute, before: Check) -> Route | None:
    if not isinstance(route, APIRoute) or route.dependencies or route.response_model:
        return None
    takes_request, names = _signature(route)
    if names is None:
        return None
    endpoint = route.endpoint
    plain: Route

    async def handle(request: Request) -> Response:
        # FastAPI names the route it picked for its own routes only; the access rules
        # and the metrics read it.
        request.scope["route"] = plain
        await before(request)
        params = request.path_params
        kwargs = {name: params[name] for name in names}
        response: Response = await (
            endpoint(request, **kwargs) if takes_request else endpoint(**kwargs)
        )
        return response

    plain = Route(route.path, handle, methods=sorted(route.methods or ()), name=route.name)
    plain.methods = set(route.methods or ())  # Starlette would answer HEAD with every GET
    return plain


def _signature(route: APIRoute) -> tuple[bool, list[str] | None]:
    """Whether the endpoint takes the request first, and the path parameters it takes
    (None: it takes something else)."""
    if not inspect.iscoroutinefunction(route.endpoint):
        return False, None
    params = list(inspect.signature(route.endpoint, eval_str=True).parameters.values())
    takes_request = bool(params) and params[0].annotation is Request
    if takes_request:
        params = params[1:]
    names: list[str] = []
    for param in params:
        plain_str = param.annotation is str and param.default is inspect.Parameter.empty
        if not plain_str or param.name not in route.param_convertors:
            return takes_request, None
        names.append(param.name)
    return takes_request, names
