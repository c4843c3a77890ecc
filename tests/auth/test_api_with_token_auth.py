"""The API suite (tests/api) again, against a registry with token auth on, as a user with
full rights whose client does the token dance: auth must change nothing for such a user.

The tests are imported from their modules; the fixtures below replace the suite's own for
them: in this process, and in a real process for the tests that need one (those that
ask for ``api_server``: sockets, the server log)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.api.test_base import *  # noqa: F403
from tests.api.test_blobs import *  # noqa: F403
from tests.api.test_manifests import *  # noqa: F403
from tests.api.test_referrers import *  # noqa: F403
from tests.api.test_tags import *  # noqa: F403
from tests.api.test_uploads import *  # noqa: F403
from tests.asgi_registry import InProcessRegistry
from tests.auth.conftest import PASSWORD, token_section
from tests.auth.token_client import DockerTokenAuth
from tests.conftest import start_server
from tests.server import RegistryServer
from tests.targets import RegistryTarget, ServerTarget


@pytest.fixture(scope="module")
def token_api_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessRegistry]:
    workdir = tmp_path_factory.mktemp("api-token")
    with InProcessRegistry({"auth": token_section(workdir)}) as registry:
        yield registry


@pytest.fixture(scope="module")
def token_api_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> ServerTarget:
    workdir = tmp_path_factory.mktemp("api-token-server")
    return ServerTarget(start_server(request, workdir, config={"auth": token_section(workdir)}))


@pytest.fixture
def api_target(request: pytest.FixtureRequest) -> RegistryTarget:
    if "api_server" in request.fixturenames:
        target: RegistryTarget = request.getfixturevalue("token_api_server")
    else:
        target = request.getfixturevalue("token_api_registry")
    return target


@pytest.fixture
def api_server(api_target: RegistryTarget) -> RegistryServer:
    assert isinstance(api_target, ServerTarget)
    return api_target.server


@pytest.fixture
def client(api_target: RegistryTarget) -> Iterator[httpx.Client]:
    if isinstance(api_target, ServerTarget):
        url = api_target.server.url
    else:
        assert isinstance(api_target, InProcessRegistry)
        url = api_target.url
    auth = DockerTokenAuth("admin", PASSWORD, f"{url}/auth/token", "registry")
    with api_target.client(auth=auth) as c:
        yield c


def test_the_client_really_uses_tokens(client: httpx.Client, api_target: RegistryTarget) -> None:
    assert client.get("/v2/").status_code == 200
    with api_target.client() as anonymous:
        assert anonymous.get("/v2/").status_code == 401
