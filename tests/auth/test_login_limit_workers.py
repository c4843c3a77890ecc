"""The failed-login limit against a real `registry serve` with 2 worker processes: the
count lives in storage, attempts count while in flight, and the limit is per user name
and client address (addresses given as a trusted proxy would, X-Forwarded-For)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import bcrypt
import httpx
import pytest

from tests.auth.conftest import PASSWORD
from tests.conftest import BACKENDS, start_server
from tests.server import RegistryServer

MAX_FAILURES = 3
PER_ADDRESS = 8
ATTACKER = "203.0.113.66"


@pytest.fixture(scope="module", params=BACKENDS)
def two_worker_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> RegistryServer:
    workdir: Path = tmp_path_factory.mktemp("login-limit")
    # A real cost, so that parallel checks overlap as they do in production.
    costly = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(10)).decode()
    cheap = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode()
    users = {name: {"password_hash": cheap} for name in ("alice", "bob", "carol", "dave")}
    users["ci"] = {"password_hash": costly}
    auth = {
        "mode": "basic",
        "users": users,
        "grants": [{"repositories": ["*"], "role": "reader", "users": ["*"]}],
        "login_limit": {
            "max_failures": MAX_FAILURES,
            "max_failures_per_address": PER_ADDRESS,
            "window": "60s",
        },
    }
    return start_server(request, workdir, request.param, config={"auth": auth}, workers=2)


def get(server: RegistryServer, user: str, password: str, address: str) -> int:
    """One request on a new connection (so that either worker may take it)."""
    with server.client(auth=(user, password), headers={"X-Forwarded-For": address}) as c:
        return c.get("/v2/").status_code


async def burst(server: RegistryServer, user: str, address: str, n: int) -> list[int]:
    async def one(i: int) -> int:
        async with httpx.AsyncClient(
            base_url=server.url,
            auth=(user, f"guess-{i}"),
            headers={"X-Forwarded-For": address},
            timeout=60,
        ) as c:
            return (await c.get("/v2/")).status_code

    return await asyncio.gather(*(one(i) for i in range(n)))


def test_parallel_wrong_passwords_cannot_all_be_checked(two_worker_server: RegistryServer) -> None:
    statuses = asyncio.run(burst(two_worker_server, "ci", "198.51.100.1", 40))
    assert set(statuses) <= {401, 429}
    assert statuses.count(401) <= MAX_FAILURES, statuses
    # the right password from there now waits too; from elsewhere it works
    assert get(two_worker_server, "ci", PASSWORD, "198.51.100.1") in (200, 429)
    assert get(two_worker_server, "ci", PASSWORD, "198.51.100.2") == 200


def test_the_limit_holds_across_workers(two_worker_server: RegistryServer) -> None:
    address = "198.51.100.10"
    statuses = [
        get(two_worker_server, "bob", f"guess-{i}", address) for i in range(4 * MAX_FAILURES)
    ]
    assert statuses == [401] * MAX_FAILURES + [429] * (3 * MAX_FAILURES), statuses
    assert get(two_worker_server, "bob", PASSWORD, address) == 429


def test_someone_elses_failures_do_not_lock_the_owner_out(
    two_worker_server: RegistryServer,
) -> None:
    for i in range(MAX_FAILURES + 2):
        get(two_worker_server, "alice", f"guess-{i}", ATTACKER)
    assert get(two_worker_server, "alice", PASSWORD, ATTACKER) == 429
    for _ in range(3):
        assert get(two_worker_server, "alice", PASSWORD, "10.20.30.40") == 200  # the owner, at home
    assert "too many failed attempts for this user" in two_worker_server.log()


def test_one_address_has_a_ceiling_across_user_names(two_worker_server: RegistryServer) -> None:
    address = "198.51.100.77"
    statuses = [
        get(two_worker_server, f"sprayed{i}", "Winter2024!", address) for i in range(PER_ADDRESS)
    ]
    assert statuses == [401] * PER_ADDRESS
    assert get(two_worker_server, "carol", PASSWORD, address) == 429  # even a right password
    assert get(two_worker_server, "carol", PASSWORD, "198.51.100.78") == 200
    assert "too many failed attempts from this address" in two_worker_server.log()


def test_retry_after_says_when(two_worker_server: RegistryServer) -> None:
    address = "198.51.100.90"
    for i in range(MAX_FAILURES):
        get(two_worker_server, "dave", f"guess-{i}", address)
    with two_worker_server.client(
        auth=("dave", PASSWORD), headers={"X-Forwarded-For": address}
    ) as c:
        r = c.get("/v2/")
    assert r.status_code == 429
    assert r.json()["errors"][0]["code"] == "TOOMANYREQUESTS"
    assert 1 <= int(r.headers["retry-after"]) <= 60
