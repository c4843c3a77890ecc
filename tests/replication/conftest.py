"""Sites for the replication tests: real `registry serve` processes and CNCF
distribution 2.8 (a foreign registry), shared where a test only needs its own
repository names; helpers that wait for content to arrive and read it back."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from tests.conftest import start_server
from tests.distribution import distribution  # noqa: F401 -- a fixture
from tests.server import RegistryServer

T = TypeVar("T")

ACCEPT = ", ".join(
    [
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    ]
)
# Delivery settles quickly in tests: the lease is retaken within seconds after a kill,
# retries wait at most a second.
FAST_EVENTS = {"lease_ttl": "6s", "poll_interval": "100ms"}
FAST_RETRY = {"threshold": 1, "backoff": "100ms", "maxbackoff": "1s"}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def unique(prefix: str) -> str:
    return f"{prefix}/{uuid.uuid4().hex[:8]}"


def push_rule(name: str, url: str, **fields: Any) -> dict[str, Any]:
    return {
        "name": name,
        "direction": "push",
        "remote": {"url": url, "timeouts": {"connect": "2s"}},
        "retry": FAST_RETRY,
        **fields,
    }


def site(rules: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"notifications": FAST_EVENTS, "replication": {"rules": rules}, **extra}


def wait_until(check: Callable[[], T | None], timeout: float = 30.0, what: str = "") -> T:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {what or check}")
        time.sleep(0.1)


def get_manifest(client: httpx.Client, repository: str, reference: str) -> httpx.Response:
    return client.get(f"/v2/{repository}/manifests/{reference}", headers={"Accept": ACCEPT})


def arrived(client: httpx.Client, repository: str, reference: str, body: bytes) -> bool:
    r = get_manifest(client, repository, reference)
    return r.status_code == 200 and r.content == body


def tag_gone(client: httpx.Client, repository: str, reference: str) -> bool:
    return get_manifest(client, repository, reference).status_code == 404


@pytest.fixture(scope="session")
def site_b(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> RegistryServer:
    """A target (and a pull rule's remote): this registry without auth."""
    return start_server(request, tmp_path_factory.mktemp("site-b"))


def serve(request: pytest.FixtureRequest, workdir: Path, config: dict[str, Any]) -> RegistryServer:
    return start_server(request, workdir, config=config)


@pytest.fixture(scope="session")
def auth_b(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> RegistryServer:
    """A target with token auth and the users of tests/auth (alice writes team-a/*)."""
    from tests.auth.conftest import auth_section

    workdir = tmp_path_factory.mktemp("site-b-auth")
    auth = auth_section(workdir, "token", token={"key_file": str(workdir / "token.pem")})
    return start_server(request, workdir, config={"auth": auth})
