"""Users and groups: bcrypt password hashes from an htpasswd file and the configuration,
password checks that take the same time for unknown users, and a failed-login limit."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import os
import re
import secrets
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import bcrypt

from registry.auth.access import Identity

log = logging.getLogger("registry.auth")

BCRYPT_MAX_PASSWORD = 72  # bytes; bcrypt ignores (bcrypt>=5: refuses) anything longer
DEFAULT_ROUNDS = 12
_BCRYPT_RE = re.compile(r"^\$2[aby]\$(\d\d)\$[./A-Za-z0-9]{53}$")
_USERNAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$")

# A successful password check is remembered this long, so that HTTP Basic mode (which
# sends the password with every request) does not pay bcrypt on each one.
VERIFIED_CACHE_SECONDS = 60.0
VERIFIED_CACHE_SIZE = 1024


def is_bcrypt_hash(value: str) -> bool:
    return _BCRYPT_RE.match(value) is not None


def is_valid_username(name: str) -> bool:
    return _USERNAME_RE.match(name) is not None


def hash_password(password: str, rounds: int = DEFAULT_ROUNDS) -> str:
    data = password.encode()
    if not data:
        raise ValueError("the password is empty")
    if len(data) > BCRYPT_MAX_PASSWORD:
        raise ValueError(f"bcrypt passwords are at most {BCRYPT_MAX_PASSWORD} bytes")
    return bcrypt.hashpw(data, bcrypt.gensalt(rounds)).decode()


def _check_password(password: bytes, hashed: bytes) -> bool:
    if len(password) > BCRYPT_MAX_PASSWORD:
        return False
    try:
        return bcrypt.checkpw(password, hashed)
    except ValueError:
        return False


# --------------------------------------------------------------------- htpasswd files


def parse_htpasswd(text: str, source: str = "htpasswd") -> dict[str, str]:
    """``user:hash`` lines; blank lines and ``#`` comments are skipped. Only bcrypt
    hashes are accepted (MD5, SHA-1 and crypt entries are skipped with a warning)."""
    users: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, hashed = line.partition(":")
        if not sep or not name:
            log.warning("%s:%d: not a user:hash line, skipped", source, number)
        elif not is_bcrypt_hash(hashed):
            log.warning("%s:%d: user %r has no bcrypt hash, skipped", source, number, name)
        else:
            users[name] = hashed
    return users


def format_htpasswd(users: Mapping[str, str]) -> str:
    return "".join(f"{name}:{hashed}\n" for name, hashed in sorted(users.items()))


# ------------------------------------------------------------------------------ users


@dataclass(frozen=True)
class User:
    name: str
    password_hash: str
    groups: frozenset[str]

    @property
    def identity(self) -> Identity:
        return Identity(self.name, self.groups)


def credential_fingerprint(user: User) -> str:
    """Changes whenever the user's password does; bound into refresh tokens. A hash of a
    salted bcrypt hash, so it tells nothing about the password."""
    return hashlib.sha256(user.password_hash.encode()).hexdigest()[:32]


class UserDirectory:
    """Users from the configuration and an htpasswd file (re-read when it changes, so
    ``registry user add`` needs no restart), with their groups."""

    def __init__(
        self,
        htpasswd: str | os.PathLike[str] | None,
        config_users: Mapping[str, tuple[str, Iterable[str]]],
        groups: Mapping[str, Iterable[str]],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.htpasswd = Path(htpasswd) if htpasswd else None
        self.config_users = {n: (h, frozenset(g)) for n, (h, g) in config_users.items()}
        self.member_of: dict[str, set[str]] = {}
        for group, members in groups.items():
            for member in members:
                self.member_of.setdefault(member, set()).add(group)
        self.clock = clock
        self._file_users: dict[str, str] = {}
        self._file_stamp: tuple[int, int, int] | None = None
        self._checked_at = float("-inf")
        self._secret = secrets.token_bytes(32)
        self._verified: OrderedDict[bytes, tuple[str, float]] = OrderedDict()
        self._dummy_hashes: dict[int, bytes] = {}
        self._reload()

    def _reload(self) -> None:
        self._checked_at = self.clock()
        if self.htpasswd is None:
            return
        try:
            st = self.htpasswd.stat()
        except FileNotFoundError:
            if self._file_stamp is not None:
                log.warning(
                    "htpasswd file %s is gone; its users can no longer log in", self.htpasswd
                )
            self._file_users, self._file_stamp = {}, None
            return
        stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        if stamp == self._file_stamp:
            return
        self._file_users = parse_htpasswd(self.htpasswd.read_text(), str(self.htpasswd))
        self._file_stamp = stamp
        shadowed = sorted(set(self._file_users) & set(self.config_users))
        if shadowed:
            log.warning(
                "users %s are defined in the configuration and in %s; the configuration wins",
                ", ".join(shadowed),
                self.htpasswd,
            )

    def get(self, name: str) -> User | None:
        if self.clock() - self._checked_at >= 1.0:
            self._reload()
        groups = frozenset(self.member_of.get(name, ()))
        if name in self.config_users:
            hashed, own = self.config_users[name]
            return User(name, hashed, own | groups)
        hashed_file = self._file_users.get(name)
        if hashed_file is None:
            return None
        return User(name, hashed_file, groups)

    def _dummy_hash(self, rounds: int) -> bytes:
        # Checked for unknown users so that their answer takes as long as a known one's.
        if rounds not in self._dummy_hashes:
            self._dummy_hashes[rounds] = bcrypt.hashpw(
                secrets.token_bytes(16), bcrypt.gensalt(rounds)
            )
        return self._dummy_hashes[rounds]

    def _typical_rounds(self) -> int:
        for hashed in [*self._file_users.values(), *(h for h, _ in self.config_users.values())]:
            return int(hashed[4:6])
        return DEFAULT_ROUNDS

    async def authenticate(self, name: str, password: str) -> User | None:
        """The user when the password is right, else None (unknown user included)."""
        user = self.get(name)
        secret = password.encode()
        cache_key = hmac.new(self._secret, name.encode() + b"\0" + secret, hashlib.sha256).digest()
        now = self.clock()
        if user is not None:
            hit = self._verified.get(cache_key)
            if hit is not None and hmac.compare_digest(hit[0], user.password_hash) and hit[1] > now:
                return user
        if user is not None:
            hashed = user.password_hash.encode()
        else:
            hashed = await asyncio.to_thread(self._dummy_hash, self._typical_rounds())
        ok = await asyncio.to_thread(_check_password, secret, hashed)
        if not ok or user is None:
            return None
        self._verified[cache_key] = (user.password_hash, now + VERIFIED_CACHE_SECONDS)
        self._verified.move_to_end(cache_key)
        while len(self._verified) > VERIFIED_CACHE_SIZE:
            self._verified.popitem(last=False)
        return user


# ------------------------------------------------------------------ failed-login limit


class LoginThrottle:
    """At most ``max_failures`` failed logins per user name in any ``window`` seconds;
    past that, attempts are refused unchecked until the oldest failure ages out. This
    slows guessing to a trickle without locking the user out for long."""

    MAX_TRACKED = 10_000  # user names (known or not) remembered at once

    def __init__(
        self, max_failures: int, window: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.max_failures = max_failures
        self.window = window
        self.clock = clock
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def retry_after(self, name: str) -> float | None:
        """Seconds until ``name`` may try again, or None when it may try now."""
        if self.max_failures <= 0:
            return None
        failures = self._failures.get(name)
        if failures is None:
            return None
        now = self.clock()
        while failures and failures[0] <= now - self.window:
            failures.popleft()
        if not failures:
            del self._failures[name]
            return None
        if len(failures) < self.max_failures:
            return None
        return failures[0] + self.window - now

    def failed(self, name: str) -> None:
        if self.max_failures <= 0:
            return
        failures = self._failures.setdefault(name, deque(maxlen=self.max_failures))
        failures.append(self.clock())
        self._failures.move_to_end(name)
        while len(self._failures) > self.MAX_TRACKED:
            self._failures.popitem(last=False)

    def succeeded(self, name: str) -> None:
        self._failures.pop(name, None)
