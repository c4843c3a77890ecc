"""The failed-login limit in-process, over a real filesystem store: per user name and
client address, a ceiling per address, attempts counted before they are checked,
bounded keys, and a verified password that costs neither storage nor bcrypt."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine
from pathlib import Path
from types import SimpleNamespace
from typing import Any, TypeVar

import bcrypt
import pytest
from starlette.requests import Request

from registry.auth.access import Policy
from registry.auth.authorizer import Authorizer
from registry.auth.identities import LoginThrottle, Throttled, UserDirectory
from registry.errors import RegistryError
from registry.store import RegistryStore
from registry.store.login_attempts import LoginAttempts
from storage_backends.filesystem import FilesystemDriver
from tests.auth.conftest import PASSWORD, bcrypt_hash

T = TypeVar("T")


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def attempts(tmp_path: Path, clock: FakeClock) -> LoginAttempts:
    return LoginAttempts(FilesystemDriver(tmp_path / "data"), clock=clock)


def fail(throttle: LoginThrottle, attempts: LoginAttempts, user: str, address: str) -> None:
    """One attempt that passes the limit and then fails (it stays counted)."""
    run(throttle.attempt(attempts, user, address))


def wait_of(throttle: LoginThrottle, attempts: LoginAttempts, user: str, address: str) -> float:
    """Seconds to wait, from storage: the attempt must be refused."""
    with pytest.raises(Throttled) as exc:
        run(throttle.attempt(attempts, user, address))
    return exc.value.wait


def passes(throttle: LoginThrottle, attempts: LoginAttempts, user: str, address: str) -> bool:
    """Whether an attempt may be checked now; a passing one is then a success."""
    try:
        attempt = run(throttle.attempt(attempts, user, address))
    except Throttled:
        return False
    run(attempt.succeeded())
    return True


# ------------------------------------------------------------------ the limit itself


def test_refused_after_max_failures_within_the_window(
    attempts: LoginAttempts, clock: FakeClock
) -> None:
    throttle = LoginThrottle(3, 50, 60, clock=clock)
    for _ in range(3):
        fail(throttle, attempts, "u", "10.0.0.1")
        clock.now += 1
    assert 56 <= wait_of(throttle, attempts, "u", "10.0.0.1") <= 58
    clock.now += 56.5
    wait_of(throttle, attempts, "u", "10.0.0.1")
    clock.now += 1
    fail(throttle, attempts, "u", "10.0.0.1")


def test_another_address_is_not_locked_out_by_someone_elses_failures(
    attempts: LoginAttempts, clock: FakeClock
) -> None:
    throttle = LoginThrottle(3, 50, 60, clock=clock)
    for _ in range(3):
        fail(throttle, attempts, "ci", "203.0.113.66")
    wait_of(throttle, attempts, "ci", "203.0.113.66")
    assert passes(throttle, attempts, "ci", "10.0.0.5")


def test_one_address_has_a_ceiling_whatever_the_names(
    attempts: LoginAttempts, clock: FakeClock
) -> None:
    throttle = LoginThrottle(3, 10, 60, clock=clock)
    for i in range(10):
        fail(throttle, attempts, f"user{i}", "203.0.113.7")
    assert wait_of(throttle, attempts, "fresh-name", "203.0.113.7") > 0
    assert passes(throttle, attempts, "fresh-name", "203.0.113.8")


def test_one_attempt_gets_through_as_failures_age_out(
    attempts: LoginAttempts, clock: FakeClock
) -> None:
    throttle = LoginThrottle(2, 50, 60, clock=clock)
    fail(throttle, attempts, "u", "a")
    clock.now += 30
    fail(throttle, attempts, "u", "a")
    wait_of(throttle, attempts, "u", "a")
    clock.now += 31  # the first failure is older than the window
    fail(throttle, attempts, "u", "a")
    wait_of(throttle, attempts, "u", "a")  # slowed to a trickle, not reset


def test_a_refusal_from_storage_is_remembered_for_a_few_seconds(
    attempts: LoginAttempts, clock: FakeClock
) -> None:
    """A client retrying in a loop must not cost a storage round trip per request."""
    throttle = LoginThrottle(2, 50, 60, clock=clock)
    fail(throttle, attempts, "u", "a")
    fail(throttle, attempts, "u", "a")
    wait_of(throttle, attempts, "u", "a")
    refused = throttle.check("u", "a", b"any")
    assert refused is not None and refused.wait <= LoginThrottle.REFUSED_FOR
    clock.now += LoginThrottle.REFUSED_FOR + 0.1
    assert throttle.check("u", "a", b"any") is None  # asks storage again, which refuses
    wait_of(throttle, attempts, "u", "a")


def test_refused_attempts_do_not_extend_the_wait(attempts: LoginAttempts, clock: FakeClock) -> None:
    throttle = LoginThrottle(2, 50, 60, clock=clock)
    fail(throttle, attempts, "u", "a")
    fail(throttle, attempts, "u", "a")
    for _ in range(20):
        clock.now += 2
        fresh = LoginThrottle(2, 50, 60, clock=clock)  # another process: asks storage
        wait_of(fresh, attempts, "u", "a")
    clock.now = 1_700_000_000.0 + 61
    assert passes(LoginThrottle(2, 50, 60, clock=clock), attempts, "u", "a")


def test_success_clears_the_users_failures_at_that_address(
    attempts: LoginAttempts, clock: FakeClock
) -> None:
    throttle = LoginThrottle(2, 50, 60, clock=clock)
    fail(throttle, attempts, "u", "a")
    assert passes(throttle, attempts, "u", "a")
    fail(throttle, attempts, "u", "a")
    assert passes(throttle, attempts, "u", "a")


def test_in_flight_attempts_count(attempts: LoginAttempts, clock: FakeClock) -> None:
    """40 attempts started together: no more than max_failures get to be checked (each
    counts the others it can see, whether they have failed yet or not); the refused ones
    leave nothing behind."""
    throttle = LoginThrottle(5, 50, 60, clock=clock)

    async def burst() -> list[bool]:
        async def one() -> bool:
            try:
                await throttle.attempt(attempts, "u", "a")
            except Throttled:
                return False
            return True

        return await asyncio.gather(*(one() for _ in range(40)))

    assert sum(run(burst())) <= 5
    assert passes(throttle, attempts, "u", "a")


def test_the_count_is_shared_by_processes(tmp_path: Path, clock: FakeClock) -> None:
    """Two processes (two stores and throttles over one storage) share the count."""
    a = LoginAttempts(FilesystemDriver(tmp_path / "data"), clock=clock)
    b = LoginAttempts(FilesystemDriver(tmp_path / "data"), clock=clock)
    throttle_a, throttle_b = (LoginThrottle(4, 50, 60, clock=clock) for _ in range(2))
    for _ in range(2):
        fail(throttle_a, a, "u", "x")
        fail(throttle_b, b, "u", "x")
    wait_of(throttle_a, a, "u", "x")
    wait_of(throttle_b, b, "u", "x")


def test_old_epochs_are_deleted(tmp_path: Path, clock: FakeClock) -> None:
    driver = FilesystemDriver(tmp_path / "data")
    attempts = LoginAttempts(driver, clock=clock)
    throttle = LoginThrottle(3, 50, 60, clock=clock)
    fail(throttle, attempts, "u", "a")
    clock.now += 600

    async def later() -> list[str]:
        await throttle.attempt(attempts, "v", "b")
        # The sweep runs beside the attempt, in a task of its own: wait for it.
        await asyncio.gather(*(asyncio.all_tasks() - {asyncio.current_task()}))
        return await driver.list("login-attempts")

    assert len(run(later())) == 1


def test_zero_max_failures_turns_the_limit_off(clock: FakeClock) -> None:
    throttle = LoginThrottle(0, 50, 60, clock=clock)
    assert not throttle.enabled
    for i in range(10):
        throttle.missed("u", "a", b"guess%d" % i)
    assert throttle.check("u", "a", b"another") is None


# -------------------------------------------------------------------- bounded memory


def test_keys_are_bounded_whatever_the_name(
    tmp_path: Path, attempts: LoginAttempts, clock: FakeClock
) -> None:
    throttle = LoginThrottle(1, 50, 60, clock=clock)
    huge = "u" * (1 << 20)
    throttle.missed(huge, "a", b"k" * 32)
    fail(throttle, attempts, huge, "a")
    wait_of(throttle, attempts, huge, "a")
    stored = list((tmp_path / "data" / "login-attempts").rglob("*"))
    assert stored and max(len(p.name) for p in stored) <= 40
    assert all(len(key) == 32 for key in throttle._misses)


def test_forgetting_in_memory_never_resets_a_throttled_user(
    attempts: LoginAttempts, clock: FakeClock
) -> None:
    """Failures under 10,000 other names push the user out of this process's memory,
    but storage still counts the user's failures."""
    throttle = LoginThrottle(3, 50, 60, clock=clock)
    for i in range(3):
        throttle.missed("victim", "a", b"guess%d" % i)
        fail(throttle, attempts, "victim", "a")
    assert throttle.check("victim", "a", b"guess-x") is not None
    for i in range(10_000):
        throttle.missed(f"other{i}", f"10.0.{i // 250}.{i % 250}", b"guess")
    assert len(throttle._misses) == LoginThrottle.REMEMBERED
    assert throttle.check("victim", "a", b"guess-x") is None  # forgotten here ...
    wait_of(throttle, attempts, "victim", "a")  # ... but not in storage


# ------------------------------------------------------------- logins, end to end


def authorizer(clock: FakeClock, rounds: int = 4, max_failures: int = 3) -> Authorizer:
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds)).decode()
    directory = UserDirectory(None, {"alice": (hashed, []), "bob": (bcrypt_hash(), [])}, {})
    throttle = LoginThrottle(max_failures, 50, 60, clock=clock)
    return Authorizer("basic", Policy(), directory, throttle, "registry")


def request(store: RegistryStore, address: str) -> Request:
    app = SimpleNamespace(state=SimpleNamespace(store=store))
    scope = {
        "type": "http",
        "method": "GET",
        "path": "/v2/",
        "headers": [],
        "client": (address, 40000),
        "app": app,
    }
    return Request(scope)


def status(coro: Coroutine[Any, Any, Any]) -> int:
    try:
        run(coro)
    except RegistryError as exc:
        return exc.status
    return 200


@pytest.fixture
def store(tmp_path: Path, clock: FakeClock) -> RegistryStore:
    store = RegistryStore(FilesystemDriver(tmp_path / "data"))
    store.login_attempts.clock = clock
    return store


def test_parallel_wrong_passwords_are_checked_at_most_max_failures_times(
    store: RegistryStore, clock: FakeClock
) -> None:
    auth = authorizer(clock, rounds=8)

    async def burst() -> list[int]:
        async def one(i: int) -> int:
            try:
                await auth.login("alice", f"guess-{i}", request(store, "203.0.113.9"))
            except RegistryError as exc:
                return exc.status
            return 200

        return await asyncio.gather(*(one(i) for i in range(40)))

    statuses = run(burst())
    assert statuses.count(401) == 3 and statuses.count(429) == 37


def test_a_right_guess_after_the_limit_is_refused(store: RegistryStore, clock: FakeClock) -> None:
    auth = authorizer(clock)
    for i in range(3):
        assert status(auth.login("alice", f"guess-{i}", request(store, "203.0.113.9"))) == 401
    assert status(auth.login("alice", PASSWORD, request(store, "203.0.113.9"))) == 429
    assert status(auth.login("alice", PASSWORD, request(store, "10.1.1.1"))) == 200


def test_a_cached_password_is_no_oracle_for_a_throttled_address(
    store: RegistryStore, clock: FakeClock
) -> None:
    """The owner's password is verified (cached); a guesser at another address is over
    the limit: guessing the right password must still be refused, unchecked."""
    auth = authorizer(clock)
    assert status(auth.login("alice", PASSWORD, request(store, "10.1.1.1"))) == 200
    for i in range(3):
        assert status(auth.login("alice", f"guess-{i}", request(store, "203.0.113.9"))) == 401
    assert status(auth.login("alice", "guess-x", request(store, "203.0.113.9"))) == 429
    assert status(auth.login("alice", PASSWORD, request(store, "203.0.113.9"))) == 429
    assert status(auth.login("alice", PASSWORD, request(store, "10.1.1.1"))) == 200


def test_a_verified_password_costs_no_storage_and_no_bcrypt(
    store: RegistryStore, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    auth = authorizer(clock, rounds=10)
    started = time.perf_counter()
    assert status(auth.login("alice", PASSWORD, request(store, "10.1.1.1"))) == 200
    first = time.perf_counter() - started

    def forbidden(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("storage or bcrypt touched")

    for name in ("add", "recent", "discard", "forget"):
        monkeypatch.setattr(store.login_attempts, name, forbidden)
    monkeypatch.setattr(bcrypt, "checkpw", forbidden)
    started = time.perf_counter()
    for _ in range(100):
        assert status(auth.login("alice", PASSWORD, request(store, "10.1.1.1"))) == 200
    assert (time.perf_counter() - started) / 100 < first / 20


def test_parallel_logins_with_one_credential_share_one_check(
    store: RegistryStore, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """skopeo checks blobs in parallel with the right password before any is cached:
    they must not use up the limit (3 here) and get 429."""
    auth = authorizer(clock, rounds=8)
    checks = 0
    real = bcrypt.checkpw

    def counting(password: bytes, hashed: bytes) -> bool:
        nonlocal checks
        checks += 1
        return real(password, hashed)

    monkeypatch.setattr(bcrypt, "checkpw", counting)

    async def burst() -> list[int]:
        async def one() -> int:
            try:
                await auth.login("alice", PASSWORD, request(store, "10.1.1.1"))
            except RegistryError as exc:
                return exc.status
            return 200

        return await asyncio.gather(*(one() for _ in range(12)))

    assert run(burst()) == [200] * 12
    assert checks == 1
