"""Who a store change is made for: the request's context in a contextvar, so that the
store's listeners (events, quotas, immutable tags) can read it without HTTP entering the
store's signatures. Work that is not a client request -- a cache fill, a replication,
the garbage collector -- runs under a context of its own (``acting_as``)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Literal

from starlette.requests import Request

Origin = Literal["client", "proxy", "replication", "gc", "internal"]


@dataclass(frozen=True)
class RequestContext:
    origin: Origin = "internal"
    request_id: str = ""
    addr: str = ""  # the client's address
    host: str = ""  # the Host the client asked for
    method: str = ""
    user_agent: str = ""
    actor: str | None = None  # the authenticated user; None: anonymous or no auth
    scheme: str = ""  # http or https, as the client used it (events build URLs from it)


_DEFAULT = RequestContext()  # frozen: safe to share
_CURRENT: ContextVar[RequestContext] = ContextVar("registry_request", default=_DEFAULT)


def current() -> RequestContext:
    return _CURRENT.get()


@contextmanager
def acting_as(context: RequestContext) -> Iterator[RequestContext]:
    """Run the block under ``context`` (background work names its origin)."""
    token = _CURRENT.set(context)
    try:
        yield context
    finally:
        _CURRENT.reset(token)


async def bind_request_context(request: Request) -> None:
    """App-wide dependency, after authorization: the context of this request."""
    caller = getattr(request.state, "caller", None)
    identity = getattr(caller, "identity", None)
    _CURRENT.set(
        RequestContext(
            origin="client",
            request_id=str(request.scope.get("state", {}).get("request_id", "")),
            addr=request.client.host if request.client else "",
            host=request.headers.get("host", ""),
            method=request.method,
            user_agent=request.headers.get("user-agent", ""),
            actor=getattr(identity, "name", None),
            scheme=str(request.scope.get("scheme", "http")),
        )
    )
