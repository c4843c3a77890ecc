"""Remotes for the client's tests: this registry with token auth, CNCF distribution
(anonymous and with Basic auth), and fault proxies in front of them."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.auth.conftest import auth_section
from tests.conftest import start_server
from tests.distribution import distribution, distribution_basic  # noqa: F401 -- fixtures
from tests.faults import FaultProxy
from tests.server import RegistryServer


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def token_registry(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> RegistryServer:
    """This registry with the built-in token service and the users of tests/auth."""
    workdir = tmp_path_factory.mktemp("remote-token-registry")
    auth = auth_section(workdir, "token", token={"key_file": str(workdir / "token.pem")})
    return start_server(request, workdir, config={"auth": auth})


@pytest.fixture
def proxies() -> Iterator[Callable[..., FaultProxy]]:
    """``proxies(url, **options)`` starts a FaultProxy in front of ``url``; all are
    stopped after the test."""
    started: list[FaultProxy] = []

    def make(upstream: str, **options: Any) -> FaultProxy:
        proxy = FaultProxy(upstream, **options).start()
        started.append(proxy)
        return proxy

    yield make
    for proxy in started:
        proxy.stop()
