"""The built-in token service (token.md, oauth.md): who gets a token for what.

The token carries the intersection of what was asked and what the caller's roles allow;
asking for more is not an error. Anonymous callers get what the anonymous grants allow.
Refresh tokens are signed JWTs bound to the user and to the user's current password.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Iterable
from dataclasses import dataclass

from starlette.requests import Request

from registry import errors
from registry.auth.access import ResourceScope, ScopeError, grant_scopes, parse_scope
from registry.auth.authorizer import Authorizer, log_refusal
from registry.auth.identities import User, credential_fingerprint
from registry.auth.tokens import IssuedToken, TokenError, TokenIssuer, TokenVerifier
from registry.errors import RegistryError

log = logging.getLogger("registry.auth")


def bad_request(message: str) -> RegistryError:
    return RegistryError(errors.REQUEST_UNSUPPORTED, message)


def parse_scopes(values: Iterable[str]) -> list[ResourceScope]:
    """All scopes of repeated ``scope`` parameters, each possibly a space-separated list."""
    scopes: list[ResourceScope] = []
    try:
        for value in values:
            scopes.extend(parse_scope(value))
    except ScopeError as exc:
        raise bad_request(str(exc)) from None
    return scopes


@dataclass(frozen=True)
class Grant:
    token: IssuedToken
    scopes: list[ResourceScope]


class TokenService:
    def __init__(self, authorizer: Authorizer) -> None:
        settings = authorizer.token
        if settings is None or settings.issuer is None or settings.refresh_verifier is None:
            raise ValueError("the built-in token service is not configured")
        self.authorizer = authorizer
        self.issuer: TokenIssuer = settings.issuer
        self.refresh_verifier: TokenVerifier = settings.refresh_verifier

    def check_service(self, service: str | None) -> None:
        if service is not None and service != self.issuer.service:
            raise bad_request(
                f"this token service serves {self.issuer.service!r}, not {service[:100]!r}"
            )

    def grant(self, user: User | None, asked: list[ResourceScope], request: Request) -> Grant:
        identity = user.identity if user is not None else None
        granted = grant_scopes(self.authorizer.policy, identity, asked)
        token = self.issuer.issue_access(user.name if user else "", granted)
        log.info(
            "issued a token to %s from %s: asked %s, granted %s",
            repr(user.name) if user else "anonymous",
            request.client.host if request.client else "-",
            " ".join(str(s) for s in asked) or "-",
            " ".join(str(s) for s in granted) or "-",
        )
        return Grant(token, granted)

    def refresh_token(self, user: User) -> str:
        return self.issuer.issue_refresh(user.name, credential_fingerprint(user))

    def user_from_refresh(
        self, token: str, request: Request, asked: list[ResourceScope] | None = None
    ) -> User:
        """The user a refresh token was issued to, if it is still valid for them."""
        subject: str | None = None
        try:
            subject, credential = self.refresh_verifier.verify_refresh(token)
        except TokenError as exc:
            reason = f"invalid refresh token: {exc}"
        else:
            user = self.authorizer.directory.get(subject)
            if user is not None and hmac.compare_digest(credential, credential_fingerprint(user)):
                return user
            reason = "refresh token of a removed user or from before a password change"
        log_refusal(request, 401, subject, reason, asked or ())
        raise RegistryError(errors.UNAUTHORIZED, "invalid refresh token")
