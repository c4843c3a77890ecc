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
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import bcrypt

from registry.auth.access import Identity
from registry.store.login_attempts import AttemptRecord, LoginAttempts

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

    def _costliest_rounds(self) -> int:
        """The highest bcrypt cost of any known user: an unknown name must take as long
        as the slowest known one, or its quick answer tells that it does not exist."""
        hashes = [*self._file_users.values(), *(h for h, _ in self.config_users.values())]
        return max((int(h[4:6]) for h in hashes), default=DEFAULT_ROUNDS)

    def credential_key(self, name: str, password: str) -> bytes:
        """A fixed-size key for a (name, password) pair, useless outside this process."""
        data = name.encode() + b"\0" + password.encode()
        return hmac.new(self._secret, data, hashlib.sha256).digest()

    def cached(self, name: str, password: str) -> User | None:
        """The user when this password was verified for them lately; no bcrypt."""
        user = self.get(name)
        if user is None:
            return None
        hit = self._verified.get(self.credential_key(name, password))
        if hit is None or hit[1] <= self.clock():
            return None
        if not hmac.compare_digest(hit[0], user.password_hash):
            return None  # the password changed since
        return user

    async def verify(self, name: str, password: str) -> User | None:
        """Check the password with bcrypt (a dummy hash for unknown users): the user when
        it is right, else None. Remembered for VERIFIED_CACHE_SECONDS when right."""
        user = self.get(name)
        secret = password.encode()
        if user is not None:
            hashed = user.password_hash.encode()
        else:
            hashed = await asyncio.to_thread(self._dummy_hash, self._costliest_rounds())
        ok = await asyncio.to_thread(_check_password, secret, hashed)
        if not ok or user is None:
            return None
        key = self.credential_key(name, password)
        self._verified[key] = (user.password_hash, self.clock() + VERIFIED_CACHE_SECONDS)
        self._verified.move_to_end(key)
        while len(self._verified) > VERIFIED_CACHE_SIZE:
            self._verified.popitem(last=False)
        return user

    async def authenticate(self, name: str, password: str) -> User | None:
        """The user when the password is right, else None (unknown user included)."""
        return self.cached(name, password) or await self.verify(name, password)


# ------------------------------------------------------------------ failed-login limit


class Throttled(Exception):
    """Too many failed logins: refused without checking the password."""

    def __init__(self, wait: float, why: str) -> None:
        super().__init__(why)
        self.wait = wait
        self.why = why


@dataclass(frozen=True)
class LoginAttempt:
    """A login being checked: counted in storage, where it stays if it fails."""

    attempts: LoginAttempts
    records: tuple[AttemptRecord, ...]
    user_subject: str
    window: float
    user_failed_before: bool  # other attempts of this user at this address are counted

    async def succeeded(self) -> None:
        """Not a failure: remove it, and the user's earlier failures at this address."""
        await self.attempts.discard(*self.records)
        if self.user_failed_before:
            await self.attempts.forget(self.user_subject, self.window)


class LoginThrottle:
    """At most ``max_failures`` failed logins for one user name from one client address
    in any ``window`` seconds, and at most ``max_failures_per_address`` from one address
    whatever the names; past that, attempts are refused unchecked until the oldest
    failure ages out. Someone else's failures, from another address, never lock a user
    out.

    Two counts. In storage (store/login_attempts.py) every fresh verification is counted
    *before* the password is checked, so parallel guesses count while in flight, in
    every process and replica. In this process, the distinct credentials that were not
    already verified (cache misses) are counted per subject, and checked first, before
    the cache of verified passwords: the cache answers a right password at once, so
    without that check each refused wrong guess would still have told a guesser that
    it was wrong. After storage refused a subject, this process refuses it for a few
    seconds without asking again. Both are bounded maps of hashes; forgetting a subject
    costs a storage request, and never resets the storage count.
    """

    REMEMBERED = 10_000  # subjects whose recent misses this process keeps
    # After storage refused a subject, refuse it here for this long without asking again
    # (a client retrying in a loop must not cost a storage round trip each time). Short:
    # storage may have refused for attempts that were only in flight.
    REFUSED_FOR = 5.0

    def __init__(
        self,
        max_failures: int,
        max_failures_per_address: int,
        window: float,
        clock: Callable[[], float] = time.time,
        remembered: int = REMEMBERED,
    ) -> None:
        self.max_failures = max_failures
        self.max_failures_per_address = max_failures_per_address
        self.window = window
        self.clock = clock
        self.remembered = remembered
        # subject hash -> {credential key: when it missed}, least recently used first
        self._misses: OrderedDict[str, dict[bytes, float]] = OrderedDict()
        self._refused: OrderedDict[str, float] = OrderedDict()  # subject hash -> until

    @property
    def enabled(self) -> bool:
        return self.max_failures > 0

    @property
    def limits(self) -> tuple[int, int]:
        return self.max_failures, self.max_failures_per_address

    @staticmethod
    def subjects(user: str, address: str) -> tuple[str, str]:
        return f"user\0{user}\0{address}", f"address\0{address}"

    @staticmethod
    def _key(subject: str) -> str:
        return hashlib.sha256(subject.encode()).hexdigest()[:32]

    def _live(self, subject: str) -> dict[bytes, float]:
        misses = self._misses.get(self._key(subject), {})
        since = self.clock() - self.window
        for credential in [c for c, at in misses.items() if at <= since]:
            del misses[credential]
        return misses

    def check(self, user: str, address: str, credential: bytes) -> Throttled | None:
        """Refusal by what this process knows (no storage request), or None. A
        credential already counted here is not a new guess and is let through."""
        if not self.enabled:
            return None
        now = self.clock()
        for subject, limit, why in zip(
            self.subjects(user, address), self.limits, _WHY, strict=True
        ):
            key = self._key(subject)
            refused_until = self._refused.get(key)
            if refused_until is not None:
                if refused_until > now:
                    return Throttled(refused_until - now, why)
                del self._refused[key]
            misses = self._live(subject)
            if credential not in misses and len(misses) >= limit:
                return Throttled(min(misses.values()) + self.window - now, why)
        return None

    def missed(self, user: str, address: str, credential: bytes) -> None:
        """``credential`` was not in the cache: it counts here until it is verified."""
        if not self.enabled:
            return
        for subject, limit in zip(self.subjects(user, address), self.limits, strict=True):
            key = self._key(subject)
            misses = self._misses.setdefault(key, {})
            misses[credential] = self.clock()
            while len(misses) > limit + 1:
                del misses[min(misses, key=misses.__getitem__)]
            self._misses.move_to_end(key)
        while len(self._misses) > self.remembered:
            self._misses.popitem(last=False)

    def _remember_refusal(self, subject: str, until: float) -> None:
        key = self._key(subject)
        self._refused[key] = until
        self._refused.move_to_end(key)
        while len(self._refused) > self.remembered:
            self._refused.popitem(last=False)

    def verified(self, user: str, address: str, credential: bytes) -> None:
        """The password was right: not a failure, and the user's failures here end."""
        user_subject, address_subject = self.subjects(user, address)
        self._misses.pop(self._key(user_subject), None)
        self._misses.get(self._key(address_subject), {}).pop(credential, None)

    async def attempt(self, attempts: LoginAttempts, user: str, address: str) -> LoginAttempt:
        """Count an attempt in storage, then check the limits there; Throttled (and the
        attempt removed) when it is over one. Call ``succeeded()`` on the result when
        the password is right; a failed attempt just stays counted."""
        subjects = self.subjects(user, address)
        records = await asyncio.gather(*(attempts.add(s, self.window) for s in subjects))
        counted = await asyncio.gather(
            *(
                attempts.recent(s, self.window, limit + 1)
                for s, limit in zip(subjects, self.limits, strict=True)
            )
        )
        for subject, found, mine, limit, why in zip(
            subjects, counted, records, self.limits, _WHY, strict=True
        ):
            if len(found) > limit:
                await attempts.discard(*records)
                others = [r for r in found if r.path != mine.path]
                until = others[max(0, len(others) - limit)].at + self.window
                now = self.clock()
                self._remember_refusal(subject, min(until, now + self.REFUSED_FOR))
                raise Throttled(until - now, why)
        user_failed_before = any(r.path != records[0].path for r in counted[0])
        return LoginAttempt(attempts, tuple(records), subjects[0], self.window, user_failed_before)


_WHY = ("too many failed attempts for this user", "too many failed attempts from this address")
