"""Auth fixtures: users with fast bcrypt hashes, a policy that exercises users, groups,
patterns and the anonymous grants, and registries in each mode shared by the modules of
this folder (each test uses its own repository names).

Fixture names:
  token_registry  token mode with the built-in token service, in this process
  basic_registry  HTTP Basic mode, in this process
  http            a client of token_registry with no credentials of its own
  token_server    token mode in a real `registry serve` process (for real clients)
  basic_server    HTTP Basic mode in a real `registry serve` process (for real clients)
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bcrypt
import httpx
import pytest

from tests.asgi_registry import InProcessRegistry
from tests.conftest import start_server
from tests.server import RegistryServer
from tests.targets import RegistryTarget

PASSWORD = "s3cret-pw"
ROUNDS = 4  # bcrypt's minimum: the tests check behaviour, not cost


def bcrypt_hash(password: str = PASSWORD) -> str:
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(ROUNDS)).decode()


def auth_section(workdir: Path, mode: str, **extra: Any) -> dict[str, Any]:
    """The shared policy:

    - admin: admin on everything (`**`)
    - alice (group team-a): writer on team-a/*
    - bob: reader on team-a/*
    - carol (group ops): maintainer on team-b/*
    - dave: in the htpasswd file, group team-a through `auth.groups`
    - erin, throttled, frank: no grants of their own
    - every authenticated user: reader on shared/*
    - anonymous: reader on public/*
    """
    htpasswd = workdir / "htpasswd"
    htpasswd.write_text(f"dave:{bcrypt_hash()}\n")
    section: dict[str, Any] = {
        "mode": mode,
        "htpasswd": str(htpasswd),
        "users": {
            "admin": {"password_hash": bcrypt_hash()},
            "alice": {"password_hash": bcrypt_hash(), "groups": ["team-a"]},
            "bob": {"password_hash": bcrypt_hash()},
            "carol": {"password_hash": bcrypt_hash(), "groups": ["ops"]},
            "erin": {"password_hash": bcrypt_hash()},  # bound to nothing
            "throttled": {"password_hash": bcrypt_hash()},  # for the failed-login limit
            "frank": {"password_hash": bcrypt_hash()},  # for wrong passwords from skopeo
        },
        "groups": {"team-a": ["dave"]},
        "grants": [
            {"repositories": ["**"], "role": "admin", "users": ["admin"]},
            {"repositories": ["team-a/*"], "role": "writer", "groups": ["team-a"]},
            {"repositories": ["team-a/*"], "role": "reader", "users": ["bob"]},
            {"repositories": ["team-b/*"], "role": "maintainer", "groups": ["ops"]},
            {"repositories": ["shared/*"], "role": "reader", "users": ["*"]},
        ],
        "anonymous": [{"repositories": ["public/*"], "role": "reader"}],
        # Every test logs in from 127.0.0.1: the per-address ceiling would add up the
        # failures of unrelated tests (tests/auth/test_login_limit*.py test it).
        "login_limit": {"max_failures": 3, "max_failures_per_address": 10_000, "window": "60s"},
    }
    section.update(extra)
    return section


def unique(prefix: str) -> str:
    """A fresh repository name under ``prefix``."""
    return f"{prefix}/{uuid.uuid4().hex[:10]}"


def token_section(workdir: Path, **extra: Any) -> dict[str, Any]:
    """The shared policy in token mode, the signing key kept in ``workdir`` (the default
    would put one in the working directory)."""
    return auth_section(workdir, "token", token={"key_file": str(workdir / "token.pem")}, **extra)


@pytest.fixture(scope="session")
def token_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessRegistry]:
    workdir = tmp_path_factory.mktemp("token-registry")
    with InProcessRegistry({"auth": token_section(workdir)}) as registry:
        yield registry


@pytest.fixture(scope="session")
def basic_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessRegistry]:
    workdir = tmp_path_factory.mktemp("basic-registry")
    with InProcessRegistry({"auth": auth_section(workdir, "basic")}) as registry:
        yield registry


@pytest.fixture(scope="session")
def token_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> RegistryServer:
    workdir = tmp_path_factory.mktemp("token-server")
    return start_server(request, workdir, config={"auth": token_section(workdir)})


@pytest.fixture(scope="session")
def basic_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> RegistryServer:
    workdir = tmp_path_factory.mktemp("basic-server")
    return start_server(request, workdir, config={"auth": auth_section(workdir, "basic")})


@pytest.fixture
def http(token_registry: InProcessRegistry) -> Iterator[httpx.Client]:
    with token_registry.client() as c:
        yield c


def get_token(
    client: httpx.Client,
    *scopes: str,
    user: str | None = None,
    password: str = PASSWORD,
    **params: str,
) -> str:
    """A token from the built-in service (GET, as skopeo and containerd ask)."""
    query: dict[str, Any] = {"service": "registry", "scope": list(scopes), **params}
    r = client.get("/auth/token", params=query, auth=(user, password) if user else None)
    assert r.status_code == 200, r.text
    token: str = r.json()["token"]
    return token


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def token_client(registry: RegistryTarget, token: str) -> httpx.Client:
    return registry.client(headers=bearer(token))
