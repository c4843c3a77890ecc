"""Request parsing shared by the routes: the store, repository names, pagination."""

from __future__ import annotations

from urllib.parse import urlencode

from starlette.requests import Request

from registry import errors
from registry.config import Config
from registry.errors import RegistryError
from registry.reference import check_name
from registry.store import RegistryStore

PAGE_MAX = 10_000  # largest page of tags or repositories served at once


def store_of(request: Request) -> RegistryStore:
    store: RegistryStore = request.app.state.store
    return store


def config_of(request: Request) -> Config:
    config: Config = request.app.state.config
    return config


def repository(name: str) -> str:
    return check_name(name)


def check_delete_enabled(request: Request) -> None:
    if not config_of(request).storage.delete.enabled:
        raise RegistryError(errors.UNSUPPORTED, "deletion is disabled on this registry")


def page_params(request: Request) -> tuple[int, str | None]:
    """``n`` (page size, clamped to PAGE_MAX) and ``last`` (exclusive) of a listing."""
    raw_n = request.query_params.get("n")
    if raw_n is None or raw_n == "":
        n = PAGE_MAX
    else:
        try:
            n = int(raw_n)
        except ValueError:
            raise RegistryError(
                errors.PAGINATION_NUMBER_INVALID, f"invalid n: {raw_n[:50]!r}"
            ) from None
        if n < 0:
            raise RegistryError(errors.PAGINATION_NUMBER_INVALID, f"invalid n: {n}")
    return min(n, PAGE_MAX), request.query_params.get("last") or None


def next_link(path: str, params: dict[str, str]) -> str:
    """An RFC 5988 ``Link`` header value for the next page."""
    return f'<{path}?{urlencode(params)}>; rel="next"'
