"""The API suite (tests/api) again, against a registry with token auth on, as a user with
full rights whose client does the token dance: auth must change nothing for such a user.

The tests are imported from their modules; the ``api_target`` and ``client`` fixtures below
replace the suite's own for them."""

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
from tests.auth.conftest import PASSWORD, auth_section
from tests.auth.token_client import DockerTokenAuth
from tests.conftest import start_server
from tests.server import RegistryServer
from tests.targets import ServerTarget


@pytest.fixture(scope="module")
def api_target(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> ServerTarget:
    workdir = tmp_path_factory.mktemp("api-token")
    auth = auth_section(workdir, "token", token={"key_file": str(workdir / "token.pem")})
    return ServerTarget(start_server(request, workdir, config={"auth": auth}))


@pytest.fixture
def client(api_server: RegistryServer) -> Iterator[httpx.Client]:
    auth = DockerTokenAuth("admin", PASSWORD, f"{api_server.url}/auth/token", "registry")
    with api_server.client(auth=auth) as c:
        yield c


def test_the_client_really_uses_tokens(client: httpx.Client, api_server: RegistryServer) -> None:
    assert client.get("/v2/").status_code == 200
    with api_server.client() as anonymous:
        assert anonymous.get("/v2/").status_code == 401
