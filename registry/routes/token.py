"""``/auth/token`` (the built-in token service: GET as in token.md, POST as in oauth.md)
and ``/.well-known/jwks.json`` (its public keys, for others to trust its tokens)."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from registry.auth.access import JWKS_PATH, TOKEN_PATH
from registry.auth.authorizer import Authorizer, decode_basic
from registry.auth.identities import User
from registry.auth.token_service import Grant, TokenService, bad_request, parse_scopes

router = APIRouter()

FORM_MAX = 64 * 1024  # bytes of a POST form; real ones are a few hundred
_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def _service(request: Request) -> TokenService:
    service: TokenService = request.app.state.token_service
    return service


def _authorizer(request: Request) -> Authorizer:
    authorizer: Authorizer = request.app.state.authorizer
    return authorizer


def _json(body: dict[str, Any]) -> Response:
    return Response(json.dumps(body).encode(), headers=_NO_STORE, media_type="application/json")


def _body(grant: Grant, refresh_token: str | None, with_scope: bool) -> dict[str, Any]:
    body: dict[str, Any] = {
        "token": grant.token.token,
        "access_token": grant.token.token,
        "expires_in": grant.token.expires_in,
        "issued_at": grant.token.issued_at,
    }
    if with_scope:
        body["scope"] = " ".join(str(s) for s in grant.scopes)
    if refresh_token is not None:
        body["refresh_token"] = refresh_token
    return body


@router.get(TOKEN_PATH)
async def get_token(request: Request) -> Response:
    """HTTP Basic credentials (or none: anonymous), ``service``, ``scope`` (repeatable),
    ``account``, ``offline_token``."""
    service = _service(request)
    params = request.query_params
    service.check_service(params.get("service"))
    scopes = parse_scopes(params.getlist("scope"))
    user: User | None = None
    header = request.headers.get("authorization")
    if header:
        scheme, _, value = header.partition(" ")
        credentials = decode_basic(value) if scheme.lower() == "basic" else None
        if credentials is None:
            raise bad_request("the token endpoint takes HTTP Basic credentials")
        account = params.get("account")
        if account and account != credentials[0]:
            raise bad_request("account does not match the credentials")
        user = await _authorizer(request).login(*credentials, request, scopes)
    offline = params.get("offline_token", "").lower() == "true"
    grant = service.grant(user, scopes, request)
    refresh = service.refresh_token(user) if offline and user is not None else None
    return _json(_body(grant, refresh, with_scope=False))


async def _form(request: Request) -> dict[str, list[str]]:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        raise bad_request("the token endpoint takes application/x-www-form-urlencoded")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > FORM_MAX:
            raise bad_request("form too large")
    try:
        return parse_qs(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
    except UnicodeDecodeError:
        raise bad_request("the form is not UTF-8") from None


@router.post(TOKEN_PATH)
async def post_token(request: Request) -> Response:
    """OAuth2 ``password`` and ``refresh_token`` grants, as ``docker login`` uses them."""
    service = _service(request)
    form = await _form(request)

    def field(name: str) -> str | None:
        values = form.get(name)
        return values[0] if values else None

    service.check_service(field("service"))
    scopes = parse_scopes(form.get("scope", []))
    grant_type = field("grant_type")
    refresh: str | None = None
    if grant_type == "password":
        username, password = field("username"), field("password")
        if not username or password is None:
            raise bad_request("the password grant needs username and password")
        user = await _authorizer(request).login(username, password, request, scopes)
        if field("access_type") == "offline":
            refresh = service.refresh_token(user)
    elif grant_type == "refresh_token":
        refresh = field("refresh_token")
        if not refresh:
            raise bad_request("the refresh_token grant needs refresh_token")
        user = service.user_from_refresh(refresh, request, scopes)
    else:
        raise bad_request(f"unsupported grant_type {str(grant_type)[:50]!r}")
    grant = service.grant(user, scopes, request)
    return _json(_body(grant, refresh, with_scope=True))


@router.get(JWKS_PATH)
async def jwks(request: Request) -> Response:
    body = json.dumps(_service(request).issuer.jwks()).encode()
    return Response(body, headers={"Cache-Control": "max-age=300"}, media_type="application/json")
