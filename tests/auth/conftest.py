"""Auth fixtures: users with fast bcrypt hashes, a policy that exercises users, groups,
patterns and the anonymous grants, and one token-mode and one basic-mode server shared
by the modules of this folder (each test uses its own repository names)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bcrypt
import httpx
import pytest

from tests.conftest import start_server
from tests.server import RegistryServer

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


@pytest.fixture(scope="session")
def token_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> RegistryServer:
    workdir = tmp_path_factory.mktemp("token-registry")
    auth = auth_section(workdir, "token", token={"key_file": str(workdir / "token.pem")})
    return start_server(request, workdir, config={"auth": auth})


@pytest.fixture(scope="session")
def basic_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> RegistryServer:
    workdir = tmp_path_factory.mktemp("basic-registry")
    return start_server(request, workdir, config={"auth": auth_section(workdir, "basic")})


@pytest.fixture
def http(token_server: RegistryServer) -> Iterator[httpx.Client]:
    with token_server.client() as c:
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


def token_client(server: RegistryServer, token: str) -> httpx.Client:
    return server.client(headers=bearer(token))
