"""Who is calling and may they do what they asked: checked for every request after
routing, from the route's path template and parameters against the access table.

Refusals: 401 UNAUTHORIZED with a challenge when no or a bad credential came (or a valid
token lacks scope that a new token could carry), 403 DENIED when the caller is known and
the policy says no, 429 when a user has failed too many logins from the client's address
(or the address has, whatever the names). Every refusal is logged to "registry.auth" in
one form (``log_refusal``), never with the secret: WARNING for a credential that did not
work and for every 403 and 429, INFO for the challenges that are a normal step of every
pull (no credentials yet, a token without the scope).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from starlette.requests import Request

from registry import errors
from registry.auth.access import (
    PULL,
    REPOSITORY,
    TOKEN_PATH,
    Identity,
    Kind,
    Policy,
    ResourceScope,
    build_policy,
    required_scopes,
    route_need,
    scope_covers,
)
from registry.auth.identities import LoginThrottle, Throttled, User, UserDirectory
from registry.config import AuthConfig
from registry.errors import RegistryError
from registry.reference import check_name, is_valid_name
from registry.store import RegistryStore
from registry.store.login_attempts import LoginAttempts

if TYPE_CHECKING:
    # Token mode only: JWT and X.509 cost a worker some 10 MiB, loaded when configured.
    from registry.auth.tokens import TokenIssuer, TokenVerifier

log = logging.getLogger("registry.auth")


@dataclass(frozen=True)
class Caller:
    """The authenticated side of a request, kept in ``request.state.caller``."""

    identity: Identity | None  # None: anonymous
    # Token mode: what the bearer token grants (the token, not the policy, decides).
    token_access: tuple[ResourceScope, ...] | None = None


@dataclass(frozen=True)
class TokenSettings:
    service: str
    realm: str | None  # None: the built-in endpoint on this registry
    verifier: TokenVerifier
    issuer: TokenIssuer | None  # the built-in service, when on
    refresh_verifier: TokenVerifier | None


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


def _detail(needed: Iterable[ResourceScope]) -> list[dict[str, str]]:
    return [
        {"Type": s.type, "Name": s.name, "Action": a} for s in needed for a in sorted(s.actions)
    ]


def _client(request: Request) -> str:
    return request.client.host if request.client else "-"


def _shown(name: str) -> str:
    """A user name as logged: quoted and cut, since it comes from the client."""
    return repr(name[:100])


def log_refusal(
    request: Request,
    status: int,
    user: str | None,
    reason: str,
    needed: Iterable[ResourceScope] = (),
    level: int = logging.WARNING,
) -> None:
    """The one log line of a refusal: method, path, client, user name (``-`` when none
    is known), why, and the scope that was needed. docs/auth.md describes it."""
    log.log(
        level,
        "refused %s %s from %s (%d): user %s: %s; needed %s",
        request.method,
        request.scope["path"],  # as decoded for routing (and the access log)
        _client(request),
        status,
        _shown(user) if user else "-",
        reason,
        " ".join(str(s) for s in needed) or "a login",
    )


def _attempts(request: Request) -> LoginAttempts:
    store: RegistryStore = request.app.state.store
    return store.login_attempts


def decode_basic(value: str) -> tuple[str, str] | None:
    """(user, password) of an HTTP Basic credential, or None when malformed."""
    try:
        text = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    user, sep, password = text.partition(":")
    if not sep or not user:
        return None
    return user, password


class Authorizer:
    """The auth of one application: the mode, the users, the policy and, in token mode,
    the verifier (and the built-in issuer). Built once per process from the config."""

    def __init__(
        self,
        mode: str,
        policy: Policy,
        directory: UserDirectory,
        throttle: LoginThrottle,
        basic_realm: str,
        token: TokenSettings | None = None,
    ) -> None:
        if mode == "token" and token is None:
            raise ValueError("token mode needs token settings")
        self.mode = mode
        self.policy = policy
        self.directory = directory
        self.throttle = throttle
        self.basic_realm = basic_realm
        self.token = token
        # Fresh verifications in progress, so that parallel requests with the same
        # credential from one address (skopeo checks blobs in parallel) count once.
        self._verifying: dict[bytes, asyncio.Future[User | None]] = {}

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_config(cls, auth: AuthConfig) -> Authorizer | None:
        """The authorizer of a configuration (None when auth is off). Reads key files,
        generating the signing key on first start; OSError/ValueError when a file is bad.
        The configuration itself was checked when it was loaded (registry/config.py)."""
        if auth.mode == "none":
            return None
        policy = policy_from_config(auth)
        directory = UserDirectory(
            auth.htpasswd,
            {n: (u.password_hash, u.groups) for n, u in auth.users.items()},
            auth.groups,
        )
        limit = auth.login_limit
        throttle = LoginThrottle(limit.max_failures, limit.max_failures_per_address, limit.window)
        token = _token_settings(auth) if auth.mode == "token" else None
        return cls(auth.mode, policy, directory, throttle, auth.realm, token)

    # ---------------------------------------------------------------- authenticating

    async def login(
        self,
        username: str,
        password: str,
        request: Request,
        needed: Sequence[ResourceScope] = (),
    ) -> User:
        """The user with this password; 429 while the user at this address (or the
        address) is over the failed-login limit, 401 if wrong.

        A password verified lately costs neither bcrypt nor storage (Basic mode sends it
        with every request); only fresh verifications are counted in storage."""
        address = _client(request)
        credential = self.directory.credential_key(username, password)
        # The limit first, then the cache: else a cached right password would answer
        # while wrong guesses are refused, which tells a guesser which is which.
        throttled = self.throttle.check(username, address, credential)
        user: User | None = None
        if throttled is None:
            user = self.directory.cached(username, password)
            if user is not None:
                return user
            self.throttle.missed(username, address, credential)
            try:
                user = await self._verify_once(
                    username, password, address, credential, _attempts(request)
                )
            except Throttled as exc:
                throttled = exc
        if throttled is not None:
            log_refusal(request, 429, username, throttled.why, needed)
            raise RegistryError(
                errors.TOOMANYREQUESTS,
                "too many failed logins; try again later",
                headers={"Retry-After": str(max(1, math.ceil(throttled.wait)))},
            )
        if user is None:
            log_refusal(request, 401, username, "unknown user or wrong password", needed)
            raise RegistryError(
                errors.UNAUTHORIZED,
                "invalid username or password",
                headers={"WWW-Authenticate": self.basic_challenge()},
            )
        self.throttle.verified(username, address, credential)
        return user

    async def _verify_once(
        self,
        username: str,
        password: str,
        address: str,
        credential: bytes,
        attempts: LoginAttempts,
    ) -> User | None:
        """One counted verification per credential and address at a time in this
        process; concurrent requests with the same one share its outcome."""
        key = credential + address.encode()
        pending = self._verifying.get(key)
        if pending is None:
            pending = asyncio.ensure_future(self._verify(username, password, address, attempts))
            self._verifying[key] = pending

            def done(future: asyncio.Future[User | None]) -> None:
                self._verifying.pop(key, None)
                if not future.cancelled():
                    future.exception()  # retrieved: the waiters may all be gone

            pending.add_done_callback(done)
        # Shielded: one waiter going away does not cancel the others' verification.
        return await asyncio.shield(pending)

    async def _verify(
        self, username: str, password: str, address: str, attempts: LoginAttempts
    ) -> User | None:
        attempt = None
        if self.throttle.enabled:
            attempt = await self.throttle.attempt(attempts, username, address)
        user = await self.directory.verify(username, password)
        if user is not None and attempt is not None:
            await attempt.succeeded()
        return user

    def basic_challenge(self) -> str:
        return f'Basic realm="{_quote(self.basic_realm)}",charset="UTF-8"'

    def identity_of(self, subject: str) -> Identity | None:
        """The identity behind a token subject: the local user with its groups, or just
        the name for a user this registry does not know."""
        if not subject:
            return None
        user = self.directory.get(subject)
        return user.identity if user is not None else Identity(subject)

    # ------------------------------------------------------------------ authorizing

    async def authorize(self, request: Request) -> None:
        route = request.scope.get("route")
        template = getattr(route, "path", None)
        need = route_need(template, request.method) if isinstance(template, str) else None
        if need is None:
            log.error(
                "refused %s %s: no access rule for route %r (fail closed)",
                request.method,
                request.scope["path"],  # as decoded for routing (and the access log)
                template,
            )
            raise RegistryError(errors.DENIED, "no access rule for this endpoint")
        if need.kind is Kind.PUBLIC:
            return
        name = request.path_params.get("name")
        if need.kind is Kind.REPOSITORY:
            name = check_name(str(name))
        needed = required_scopes(need, name)
        if self.mode == "basic":
            caller = await self._basic_caller(request, needed, need.kind is Kind.LOGIN)
        else:
            caller = self._token_caller(request, needed)
        request.state.caller = caller

    async def _basic_caller(
        self, request: Request, needed: list[ResourceScope], login: bool
    ) -> Caller:
        header = request.headers.get("authorization")
        identity: Identity | None = None
        if header:
            scheme, _, value = header.partition(" ")
            credentials = decode_basic(value) if scheme.lower() == "basic" else None
            if credentials is None:
                self._refuse_401(
                    request,
                    needed,
                    None,
                    "malformed or non-Basic credentials",
                    self.basic_challenge(),
                )
            identity = (await self.login(*credentials, request, needed)).identity
        if identity is None and (login or not all(self.policy.allows(None, s) for s in needed)):
            self._refuse_401(
                request, needed, None, "no credentials", self.basic_challenge(), quiet=True
            )
        for s in needed:
            if identity is not None and not self.policy.allows(identity, s):
                self._refuse_403(request, needed, identity.name)
        return Caller(identity)

    def _token_caller(self, request: Request, needed: list[ResourceScope]) -> Caller:
        assert self.token is not None
        header = request.headers.get("authorization", "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            reason = "no bearer token" if not header else "not a bearer token"
            self._refuse_401(
                request,
                needed,
                None,
                reason,
                self.bearer_challenge(request, needed),
                quiet=not header,
            )
        from registry.auth.tokens import TokenError

        try:
            claims = self.token.verifier.verify_access(value.strip())
        except TokenError as exc:
            self._refuse_401(
                request,
                needed,
                None,
                f"invalid token: {exc}",
                self.bearer_challenge(request, needed, "invalid_token"),
            )
        identity = self.identity_of(claims.subject)
        caller = Caller(identity, claims.access)
        for s in needed:
            if scope_covers(claims.access, s):
                continue
            # Our own service signs what the policy allows: a known user whom the policy
            # refuses would only get the same token again, so say so (403). Otherwise a
            # new token may carry the scope: challenge with it (401).
            if (
                self.token.issuer is not None
                and identity is not None
                and not self.policy.allows(identity, s)
            ):
                self._refuse_403(request, needed, identity.name)
            self._refuse_401(
                request,
                needed,
                claims.subject,
                f"token lacks {s}",
                self.bearer_challenge(request, needed, "insufficient_scope"),
                quiet=True,  # the usual way a client learns it needs another token
            )
        return caller

    def bearer_challenge(
        self, request: Request, needed: list[ResourceScope], error: str | None = None
    ) -> str:
        assert self.token is not None
        realm = self.token.realm or str(request.base_url).rstrip("/") + TOKEN_PATH
        parts = [f'realm="{_quote(realm)}"', f'service="{_quote(self.token.service)}"']
        wanted = [*needed, *_mount_source(request)]
        if wanted:
            parts.append(f'scope="{_quote(" ".join(str(s) for s in wanted))}"')
        if error:
            parts.append(f'error="{error}"')
        return "Bearer " + ",".join(parts)

    def _refuse_401(
        self,
        request: Request,
        needed: list[ResourceScope],
        user: str | None,
        reason: str,
        challenge: str,
        quiet: bool = False,
    ) -> NoReturn:
        level = logging.INFO if quiet else logging.WARNING
        log_refusal(request, 401, user, reason, needed, level)
        raise RegistryError(
            errors.UNAUTHORIZED,
            detail=_detail(needed) or None,
            headers={"WWW-Authenticate": challenge},
        )

    def _refuse_403(self, request: Request, needed: list[ResourceScope], user: str) -> NoReturn:
        log_refusal(request, 403, user, "the policy does not allow it", needed)
        raise RegistryError(errors.DENIED, detail=_detail(needed) or None)

    # ------------------------------------------------------------ questions from routes

    def caller_may(self, caller: Caller, scope: ResourceScope) -> bool:
        if caller.token_access is not None:
            return scope_covers(caller.token_access, scope)
        return self.policy.allows(caller.identity, scope)

    def pullable(self, caller: Caller) -> Callable[[str], bool]:
        """Whether the caller may pull a repository: the policy, and in token mode also
        what the token itself grants (an external issuer may know more than our policy)."""
        token_names = _token_pulls(caller)

        def visible(name: str) -> bool:
            return name in token_names or PULL in self.policy.repository_actions(
                caller.identity, name
            )

        return visible


def _pull(name: str) -> ResourceScope:
    return ResourceScope(REPOSITORY, name, frozenset({PULL}))


def _token_pulls(caller: Caller) -> set[str]:
    """The repositories the caller's token itself grants pull on."""
    return {
        s.name
        for s in caller.token_access or ()
        if s.type == REPOSITORY and scope_covers([s], _pull(s.name))
    }


def _mount_source(request: Request) -> list[ResourceScope]:
    """A cross-repository mount also wants pull on its source. Not required -- without
    it the registry starts a plain upload -- but named in the challenge, as distribution
    does, so that a client taking its scope from the challenge can get a token that
    mounts."""
    source = request.query_params.get("from")
    if request.method != "POST" or not request.query_params.get("mount") or not source:
        return []
    return [_pull(source)] if is_valid_name(source) else []


def _caller(request: Request) -> tuple[Authorizer | None, Caller | None]:
    authorizer: Authorizer | None = getattr(request.app.state, "authorizer", None)
    return authorizer, getattr(request.state, "caller", None)


async def authorize_request(request: Request) -> None:
    """The app-level dependency: runs after routing, before every endpoint."""
    authorizer, _ = _caller(request)
    if authorizer is not None:
        await authorizer.authorize(request)


def may_pull(request: Request, name: str) -> bool:
    """Whether this request's caller may pull ``name`` (always, with auth off)."""
    authorizer, caller = _caller(request)
    if authorizer is None:
        return True
    return caller is not None and authorizer.caller_may(caller, _pull(name))


def repository_filter(request: Request) -> Callable[[str], bool]:
    """A test for the repositories this request's caller may see in the catalog."""
    authorizer, caller = _caller(request)
    if authorizer is None:
        return lambda _name: True
    if caller is None:
        return lambda _name: False
    return authorizer.pullable(caller)


def is_admin(request: Request) -> bool:
    """Whether this request's caller sees everything (always, with auth off)."""
    authorizer, caller = _caller(request)
    if authorizer is None:
        return True
    return caller is not None and authorizer.policy.is_admin(caller.identity)


def repository_prefixes(request: Request) -> tuple[str, ...]:
    """Literal prefixes of every repository that ``repository_filter`` can let through
    (("",): any), so that the catalog reads no others."""
    authorizer, caller = _caller(request)
    if authorizer is None:
        return ("",)
    if caller is None:
        return ()
    return (*authorizer.policy.pull_prefixes(caller.identity), *_token_pulls(caller))


# ---------------------------------------------------------------------- configuration


def policy_from_config(auth: AuthConfig) -> Policy:
    return build_policy(
        auth.roles,
        [(g.repositories, g.role, g.users, g.groups) for g in auth.grants],
        [(a.repositories, a.role) for a in auth.anonymous],
    )


def _token_settings(auth: AuthConfig) -> TokenSettings:
    from registry.auth.tokens import (
        KeyRing,
        TokenIssuer,
        TokenVerifier,
        load_or_create_signing_key,
        read_jwks_file,
        read_pem_file,
    )

    t = auth.token
    ring = KeyRing()
    for path in t.trusted_keys:
        keys, _ = read_pem_file(path)
        for key in keys:
            ring.add(key)
    if t.rootcertbundle:
        _, certs = read_pem_file(t.rootcertbundle)
        for cert in certs:
            ring.add_root(cert)
    if t.jwks:
        for key, kid in read_jwks_file(t.jwks):
            ring.add(key, [kid] if kid else [])
    issuer: TokenIssuer | None = None
    refresh_verifier: TokenVerifier | None = None
    if t.builtin:
        signing_key = load_or_create_signing_key(Path(t.key_file), t.algorithm)
        issuer = TokenIssuer(
            signing_key, t.issuer, t.service, int(t.lifetime), int(t.refresh_lifetime), t.kid_format
        )
        ring.add(issuer.public_key, [issuer.kid])
        own = KeyRing()
        own.add(issuer.public_key, [issuer.kid])
        # Refresh tokens are only ever our own: external keys cannot mint them.
        refresh_verifier = TokenVerifier(own, t.issuer, t.service, [issuer.algorithm], t.leeway)
    verifier = TokenVerifier(ring, t.issuer, t.service, t.algorithms, t.leeway)
    return TokenSettings(t.service, t.realm, verifier, issuer, refresh_verifier)
