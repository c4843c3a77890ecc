"""Token mode over HTTP, in this process: challenges, the built-in token service (GET
and the `docker login` POST flow), and every refusal as its own test."""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import json
import re
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from registry.auth.access import ROUTE_ACCESS, Kind
from registry.cli import main
from tests.asgi_registry import InProcessRegistry
from tests.auth.conftest import PASSWORD, bearer, get_token, token_client, unique
from tests.images import image, push_blob, push_image, sha256

CHALLENGE_RE = re.compile(r'(\w+)="([^"]*)"')


def challenge(response: httpx.Response) -> dict[str, str]:
    header = response.headers["www-authenticate"]
    scheme, _, params = header.partition(" ")
    assert scheme == "Bearer"
    return dict(CHALLENGE_RE.findall(params))


def server_key(registry: InProcessRegistry) -> Any:
    key_file = Path(registry.config.auth.token.key_file)
    return serialization.load_pem_private_key(key_file.read_bytes(), None)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forged(registry: InProcessRegistry, http: httpx.Client, **override: Any) -> str:
    """A token signed with the server's own key, with claims of our choosing."""
    now = int(time.time())
    kid = http.get("/.well-known/jwks.json").json()["keys"][0]["kid"]
    claims: dict[str, Any] = {
        "iss": "registry",
        "sub": "admin",
        "aud": "registry",
        "exp": now + 300,
        "nbf": now,
        "iat": now,
        "jti": uuid.uuid4().hex,
        "access": [{"type": "repository", "name": "team-a/app", "actions": ["pull"]}],
    }
    claims.update(override)
    return jwt.encode(claims, server_key(registry), algorithm="ES256", headers={"kid": kid})


def error_code(response: httpx.Response) -> str | None:
    if response.request.method == "HEAD":  # no body, as HTTP says
        assert response.content == b""
        return None
    code: str = response.json()["errors"][0]["code"]
    return code


def assert_401(response: httpx.Response, error: str | None = None) -> dict[str, str]:
    assert response.status_code == 401, response.text
    assert error_code(response) in ("UNAUTHORIZED", None)
    params = challenge(response)
    assert params.get("error") == error
    return params


def assert_403(response: httpx.Response) -> None:
    assert response.status_code == 403, response.text
    assert error_code(response) in ("DENIED", None)
    assert "www-authenticate" not in response.headers


def seeded(registry: InProcessRegistry, http: httpx.Client, name: str) -> str:
    """Push a small image to ``name`` as admin; returns its manifest digest."""
    token = get_token(http, f"repository:{name}:pull,push", user="admin")
    with token_client(registry, token) as admin:
        return push_image(admin, name, image(layers=1, layer_size=64), tag="v1")


# ---------------------------------------------------------------------------- challenges


def test_base_without_a_token_is_challenged(
    token_registry: InProcessRegistry, http: httpx.Client
) -> None:
    params = assert_401(http.get("/v2/"))
    assert params == {"realm": f"{token_registry.url}/auth/token", "service": "registry"}


def test_pull_challenge_names_the_pull_scope(http: httpx.Client) -> None:
    name = unique("team-a")
    r = http.get(f"/v2/{name}/manifests/latest")
    assert assert_401(r)["scope"] == f"repository:{name}:pull"
    assert r.json()["errors"][0]["detail"] == [
        {"Type": "repository", "Name": name, "Action": "pull"}
    ]


def test_head_challenge_has_the_header_and_no_body(http: httpx.Client) -> None:
    name = unique("team-a")
    r = http.head(f"/v2/{name}/blobs/{sha256(b'x')}")
    assert r.status_code == 401 and r.content == b""
    assert challenge(r)["scope"] == f"repository:{name}:pull"


def test_push_challenge_asks_for_pull_and_push(http: httpx.Client) -> None:
    name = unique("team-a")
    assert (
        assert_401(http.post(f"/v2/{name}/blobs/uploads/"))["scope"]
        == f"repository:{name}:pull,push"
    )
    r = http.put(f"/v2/{name}/manifests/v1", content=b"{}")
    assert assert_401(r)["scope"] == f"repository:{name}:pull,push"


def test_delete_challenge_asks_for_delete(http: httpx.Client) -> None:
    name = unique("team-a")
    r = http.delete(f"/v2/{name}/manifests/{sha256(b'x')}")
    assert assert_401(r)["scope"] == f"repository:{name}:delete"


def test_catalog_challenge_asks_for_registry_catalog(http: httpx.Client) -> None:
    assert assert_401(http.get("/v2/_catalog"))["scope"] == "registry:catalog:*"


def test_invalid_name_is_refused_before_auth(http: httpx.Client) -> None:
    r = http.get("/v2/Upper/Case/tags/list")
    assert r.status_code == 400 and r.json()["errors"][0]["code"] == "NAME_INVALID"


# --------------------------------------------------------------------------- token GET


def test_token_get_answers_token_access_token_expiry_and_time(http: httpx.Client) -> None:
    name = unique("team-a")
    r = http.get(
        "/auth/token",
        params={"service": "registry", "scope": f"repository:{name}:pull"},
        auth=("alice", PASSWORD),
    )
    assert r.status_code == 200
    assert r.headers["cache-control"] == "no-store"
    body = r.json()
    assert body["token"] == body["access_token"]
    assert body["expires_in"] == 300
    assert datetime.strptime(body["issued_at"], "%Y-%m-%dT%H:%M:%SZ")
    assert "refresh_token" not in body
    claims = jwt.decode(body["token"], options={"verify_signature": False})
    assert claims["sub"] == "alice" and claims["aud"] == "registry" and claims["iss"] == "registry"
    assert claims["access"] == [{"type": "repository", "name": name, "actions": ["pull"]}]


def test_several_scope_parameters_are_merged(http: httpx.Client) -> None:
    # A cross-repository mount asks for the target and the source at once.
    target, source = unique("team-a"), unique("team-a")
    token = get_token(
        http,
        f"repository:{target}:push",
        f"repository:{source}:pull",
        f"repository:{target}:pull",
        user="alice",
    )
    access = jwt.decode(token, options={"verify_signature": False})["access"]
    assert sorted((a["name"], tuple(a["actions"])) for a in access) == sorted(
        [(target, ("pull", "push")), (source, ("pull",))]
    )


def test_offline_token_returns_a_refresh_token(http: httpx.Client) -> None:
    r = http.get(
        "/auth/token",
        params={"service": "registry", "offline_token": "true"},
        auth=("alice", PASSWORD),
    )
    refresh = r.json()["refresh_token"]
    claims = jwt.decode(refresh, options={"verify_signature": False})
    assert claims["sub"] == "alice" and claims["token_use"] == "refresh"
    assert claims["exp"] > time.time() + 86400


def test_anonymous_token_carries_the_anonymous_policy(http: httpx.Client) -> None:
    public, private = unique("public"), unique("team-a")
    token = get_token(http, f"repository:{public}:pull,push", f"repository:{private}:pull")
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["sub"] == ""
    assert claims["access"] == [{"type": "repository", "name": public, "actions": ["pull"]}]
    assert "refresh_token" not in http.get("/auth/token", params={"offline_token": "true"}).json()


def test_anonymous_token_opens_the_base_endpoint(http: httpx.Client) -> None:
    assert http.get("/v2/", headers=bearer(get_token(http))).status_code == 200


def test_token_for_another_service_is_refused(http: httpx.Client) -> None:
    r = http.get("/auth/token", params={"service": "elsewhere"}, auth=("alice", PASSWORD))
    assert r.status_code == 400


def test_malformed_scope_is_refused(http: httpx.Client) -> None:
    r = http.get("/auth/token", params={"scope": "repository:no-actions"}, auth=("alice", PASSWORD))
    assert r.status_code == 400


def test_account_must_match_the_credentials(http: httpx.Client) -> None:
    r = http.get("/auth/token", params={"account": "bob"}, auth=("alice", PASSWORD))
    assert r.status_code == 400


def test_jwks_publishes_the_signing_key(http: httpx.Client) -> None:
    r = http.get("/.well-known/jwks.json")
    (key,) = r.json()["keys"]
    assert key["kty"] == "EC" and key["alg"] == "ES256" and "d" not in key
    token = get_token(http, "repository:team-a/x:pull", user="alice")
    assert jwt.get_unverified_header(token)["kid"] == key["kid"]
    claims = jwt.decode(token, jwt.PyJWK(key).key, algorithms=["ES256"], audience="registry")
    assert claims["sub"] == "alice"


# ----------------------------------------------------------------- docker login (POST)


def test_docker_login_flow(token_registry: InProcessRegistry, http: httpx.Client) -> None:
    # 1. docker pings /v2/ and learns the realm.
    realm = challenge(http.get("/v2/"))["realm"]
    # 2. `docker login`: OAuth2 password grant, asking for a refresh (identity) token.
    r = http.post(
        realm,
        data={
            "grant_type": "password",
            "username": "alice",
            "password": PASSWORD,
            "service": "registry",
            "client_id": "docker",
            "access_type": "offline",
        },
    )
    assert r.status_code == 200, r.text
    login = r.json()
    assert login["scope"] == "" and login["access_token"] == login["token"]
    assert login["expires_in"] >= 60
    # 3. The login is checked against /v2/ with the access token.
    assert http.get("/v2/", headers=bearer(login["access_token"])).status_code == 200
    # 4. A push later: the stored refresh token buys a scoped access token.
    name = unique("team-a")
    r = http.post(
        realm,
        data={
            "grant_type": "refresh_token",
            "refresh_token": login["refresh_token"],
            "service": "registry",
            "client_id": "docker",
            "scope": f"repository:{name}:pull,push",
        },
    )
    assert r.status_code == 200, r.text
    refreshed = r.json()
    assert refreshed["scope"] == f"repository:{name}:pull,push"
    assert refreshed["refresh_token"] == login["refresh_token"]
    with token_client(token_registry, refreshed["access_token"]) as docker:
        digest = push_image(docker, name, image(layers=1, layer_size=128), tag="v1")
        assert docker.get(f"/v2/{name}/manifests/v1").headers["docker-content-digest"] == digest


def test_post_scope_list_is_space_separated(http: httpx.Client) -> None:
    a, b = unique("team-a"), unique("team-a")
    r = http.post(
        "/auth/token",
        data={
            "grant_type": "password",
            "username": "alice",
            "password": PASSWORD,
            "service": "registry",
            "scope": f"repository:{a}:pull repository:{b}:pull,push",
        },
    )
    assert set(r.json()["scope"].split()) == {f"repository:{a}:pull", f"repository:{b}:pull,push"}


def test_post_wrong_password_is_401(http: httpx.Client) -> None:
    r = http.post(
        "/auth/token",
        data={
            "grant_type": "password",
            "username": "alice",
            "password": "nope",
            "service": "registry",
        },
    )
    assert r.status_code == 401
    assert r.headers["www-authenticate"].startswith("Basic realm=")


def test_post_unsupported_grant_type_is_400(http: httpx.Client) -> None:
    r = http.post("/auth/token", data={"grant_type": "client_credentials", "service": "registry"})
    assert r.status_code == 400


def test_post_needs_a_form(http: httpx.Client) -> None:
    r = http.post("/auth/token", json={"grant_type": "password"})
    assert r.status_code == 400


def test_tampered_refresh_token_is_401(http: httpx.Client) -> None:
    r = http.get("/auth/token", params={"offline_token": "true"}, auth=("alice", PASSWORD))
    header, payload, signature = r.json()["refresh_token"].split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["sub"] = "admin"
    tampered = ".".join([header, b64(json.dumps(claims).encode()), signature])
    r = http.post(
        "/auth/token",
        data={"grant_type": "refresh_token", "refresh_token": tampered, "service": "registry"},
    )
    assert r.status_code == 401


def test_access_token_is_not_a_refresh_token(http: httpx.Client) -> None:
    token = get_token(http, user="alice")
    r = http.post(
        "/auth/token",
        data={"grant_type": "refresh_token", "refresh_token": token, "service": "registry"},
    )
    assert r.status_code == 401


def test_refresh_token_is_not_an_access_token(http: httpx.Client) -> None:
    r = http.get("/auth/token", params={"offline_token": "true"}, auth=("alice", PASSWORD))
    assert_401(http.get("/v2/", headers=bearer(r.json()["refresh_token"])), "invalid_token")


def test_password_change_revokes_refresh_tokens(
    token_registry: InProcessRegistry, http: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    htpasswd = token_registry.config.auth.htpasswd
    assert htpasswd is not None
    # The registry re-reads the users file at most once a second, by a clock moved here.
    directory = token_registry.app.state.authorizer.directory
    moved = [0.0]
    monkeypatch.setattr(directory, "clock", lambda: time.monotonic() + moved[0])
    user = f"u{uuid.uuid4().hex[:8]}"
    monkeypatch.setattr("sys.stdin", io.StringIO("first-pw\n"))
    main(["user", "add", user, "--file", htpasswd, "--password-stdin", "--rounds", "4"])
    moved[0] += 1.1
    r = http.get("/auth/token", params={"offline_token": "true"}, auth=(user, "first-pw"))
    assert r.status_code == 200, r.text
    refresh = r.json()["refresh_token"]
    form = {"grant_type": "refresh_token", "refresh_token": refresh, "service": "registry"}
    assert http.post("/auth/token", data=form).status_code == 200

    monkeypatch.setattr("sys.stdin", io.StringIO("second-pw\n"))
    main(["user", "passwd", user, "--file", htpasswd, "--password-stdin", "--rounds", "4"])
    moved[0] += 1.1
    assert http.post("/auth/token", data=form).status_code == 401
    main(["user", "remove", user, "--file", htpasswd])


# ------------------------------------------------------------------------------ refusals


def test_no_token_is_refused(http: httpx.Client) -> None:
    assert_401(http.get(f"/v2/{unique('team-a')}/tags/list"))


def test_basic_credentials_are_not_a_token(http: httpx.Client) -> None:
    assert_401(http.get(f"/v2/{unique('team-a')}/tags/list", auth=("admin", PASSWORD)))


def test_expired_token_is_refused(token_registry: InProcessRegistry, http: httpx.Client) -> None:
    past = int(time.time()) - 3600
    token = forged(token_registry, http, iat=past, nbf=past, exp=past + 300)
    assert_401(http.get("/v2/team-a/app/tags/list", headers=bearer(token)), "invalid_token")
    # The same claims, unexpired, pass: the refusal is the expiry's.
    fresh = forged(token_registry, http)
    assert http.get("/v2/team-a/app/tags/list", headers=bearer(fresh)).status_code in (200, 404)


def test_token_for_another_audience_is_refused(
    token_registry: InProcessRegistry, http: httpx.Client
) -> None:
    token = forged(token_registry, http, aud="other-registry")
    assert_401(http.get("/v2/team-a/app/tags/list", headers=bearer(token)), "invalid_token")


def test_token_from_another_issuer_is_refused(
    token_registry: InProcessRegistry, http: httpx.Client
) -> None:
    token = forged(token_registry, http, iss="evil-issuer")
    assert_401(http.get("/v2/team-a/app/tags/list", headers=bearer(token)), "invalid_token")


def test_tampered_signature_is_refused(http: httpx.Client) -> None:
    header, payload, signature = get_token(http, "repository:team-a/app:pull", user="bob").split(
        "."
    )
    raw = bytearray(base64.urlsafe_b64decode(signature + "=="))
    raw[0] ^= 0xFF
    token = ".".join([header, payload, b64(bytes(raw))])
    assert_401(http.get("/v2/team-a/app/tags/list", headers=bearer(token)), "invalid_token")


def test_tampered_claims_are_refused(http: httpx.Client) -> None:
    header, payload, signature = get_token(http, "repository:team-a/app:pull", user="bob").split(
        "."
    )
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["access"][0]["actions"] = ["pull", "push"]
    token = ".".join([header, b64(json.dumps(claims).encode()), signature])
    assert_401(http.post("/v2/team-a/app/blobs/uploads/", headers=bearer(token)), "invalid_token")


def test_alg_none_is_refused(http: httpx.Client) -> None:
    real = get_token(http, "repository:team-a/app:pull", user="bob")
    _, payload, _ = real.split(".")
    header = b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    assert_401(
        http.get("/v2/team-a/app/tags/list", headers=bearer(f"{header}.{payload}.")),
        "invalid_token",
    )


def test_hs256_signed_with_the_public_key_is_refused(
    token_registry: InProcessRegistry, http: httpx.Client
) -> None:
    pem = (
        server_key(token_registry)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    real = get_token(http, "repository:team-a/app:pull", user="bob")
    kid = jwt.get_unverified_header(real)["kid"]
    header = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": kid}).encode())
    payload = real.split(".")[1]
    mac = hmac.new(pem, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    token = f"{header}.{payload}.{b64(mac)}"
    assert_401(http.get("/v2/team-a/app/tags/list", headers=bearer(token)), "invalid_token")


def test_token_for_repository_a_used_on_b_is_refused(http: httpx.Client) -> None:
    a, b = unique("team-a"), unique("team-a")
    token = get_token(http, f"repository:{a}:pull", user="alice")
    # alice may pull b, but this token does not say so: fetch another one (401).
    params = assert_401(http.get(f"/v2/{b}/tags/list", headers=bearer(token)), "insufficient_scope")
    assert params["scope"] == f"repository:{b}:pull"


def test_token_for_a_used_on_b_by_a_user_without_rights_on_b_is_denied(http: httpx.Client) -> None:
    token = get_token(http, "repository:team-a/app:pull", user="bob")
    assert_403(http.get(f"/v2/{unique('team-b')}/tags/list", headers=bearer(token)))


def test_pull_only_token_cannot_push(http: httpx.Client) -> None:
    name = unique("team-a")
    token = get_token(http, f"repository:{name}:pull", user="alice")
    r = http.post(f"/v2/{name}/blobs/uploads/", headers=bearer(token))
    assert assert_401(r, "insufficient_scope")["scope"] == f"repository:{name}:pull,push"
    r = http.put(f"/v2/{name}/manifests/v1", headers=bearer(token), content=b"{}")
    assert_401(r, "insufficient_scope")


def test_asking_for_more_than_the_role_allows_gets_a_smaller_token(http: httpx.Client) -> None:
    name = unique("team-a")
    token = get_token(http, f"repository:{name}:pull,push,delete", user="bob")
    access = jwt.decode(token, options={"verify_signature": False})["access"]
    assert access == [{"type": "repository", "name": name, "actions": ["pull"]}]
    assert_403(http.post(f"/v2/{name}/blobs/uploads/", headers=bearer(token)))
    assert_403(http.delete(f"/v2/{name}/manifests/{sha256(b'x')}", headers=bearer(token)))


def test_wrong_password_is_refused(http: httpx.Client) -> None:
    r = http.get("/auth/token", params={"service": "registry"}, auth=("alice", "wrong"))
    assert r.status_code == 401
    assert r.json()["errors"][0]["code"] == "UNAUTHORIZED"
    assert r.headers["www-authenticate"] == 'Basic realm="registry",charset="UTF-8"'


def test_unknown_user_is_refused_like_a_wrong_password(http: httpx.Client) -> None:
    unknown = http.get("/auth/token", auth=("mallory", PASSWORD))
    wrong = http.get("/auth/token", auth=("alice", "wrong"))
    assert unknown.status_code == wrong.status_code == 401
    assert unknown.json() == wrong.json()


def test_repeated_failed_logins_are_rate_limited(
    token_registry: InProcessRegistry, http: httpx.Client
) -> None:
    for _ in range(3):
        assert http.get("/auth/token", auth=("throttled", "guess")).status_code == 401
    r = http.get("/auth/token", auth=("throttled", PASSWORD))  # even the right password waits
    assert r.status_code == 429
    assert r.json()["errors"][0]["code"] == "TOOMANYREQUESTS"
    assert 1 <= int(r.headers["retry-after"]) <= 60
    assert http.get("/auth/token", auth=("alice", PASSWORD)).status_code == 200  # others are not
    log = token_registry.log()
    assert "too many failed attempts" in log and "'throttled'" in log
    assert "guess" not in log and PASSWORD not in log


def test_refusals_are_logged_without_secrets(
    token_registry: InProcessRegistry, http: httpx.Client
) -> None:
    token = get_token(http, "repository:team-a/app:pull", user="bob")
    http.post("/v2/team-a/app/blobs/uploads/", headers=bearer(token))
    http.get("/v2/team-a/app/tags/list", headers=bearer(token[:-4] + "AAAA"))
    log = token_registry.log()
    assert (
        "refused POST /v2/team-a/app/blobs/uploads/ from 127.0.0.1 (403): user 'bob': "
        "the policy does not allow it; needed repository:team-a/app:pull,push"
    ) in log
    assert "signature verification failed" in log
    assert token not in log and token.split(".")[2] not in log


# ------------------------------------------------------------------------ what roles do


def test_writer_pushes_and_pulls(token_registry: InProcessRegistry, http: httpx.Client) -> None:
    name = unique("team-a")
    token = get_token(http, f"repository:{name}:pull,push", user="dave")  # group from auth.groups
    with token_client(token_registry, token) as dave:
        digest = push_image(dave, name, image(layers=2, layer_size=256), tag="v1")
        assert dave.get(f"/v2/{name}/tags/list").json()["tags"] == ["v1"]
        assert dave.head(f"/v2/{name}/manifests/{digest}").status_code == 200


def test_delete_needs_the_delete_action(
    token_registry: InProcessRegistry, http: httpx.Client
) -> None:
    a, b = unique("team-a"), unique("team-b")
    digest_a, digest_b = seeded(token_registry, http, a), seeded(token_registry, http, b)
    writer = get_token(http, f"repository:{a}:delete", user="alice")
    assert_403(http.delete(f"/v2/{a}/manifests/{digest_a}", headers=bearer(writer)))
    maintainer = get_token(http, f"repository:{b}:delete", user="carol")
    assert (
        http.delete(f"/v2/{b}/manifests/{digest_b}", headers=bearer(maintainer)).status_code == 202
    )


def test_anonymous_may_pull_public_but_not_push(
    token_registry: InProcessRegistry, http: httpx.Client
) -> None:
    name = unique("public")
    seeded(token_registry, http, name)
    anonymous = get_token(http, f"repository:{name}:pull,push")
    assert http.get(f"/v2/{name}/manifests/v1", headers=bearer(anonymous)).status_code == 200
    # Anonymous: not a known user, so logging in could help (401, not 403).
    assert_401(
        http.post(f"/v2/{name}/blobs/uploads/", headers=bearer(anonymous)), "insufficient_scope"
    )


def test_every_authenticated_user_reads_shared(
    token_registry: InProcessRegistry, http: httpx.Client
) -> None:
    name = unique("shared")
    seeded(token_registry, http, name)
    for user in ("bob", "carol", "dave"):
        token = get_token(http, f"repository:{name}:pull", user=user)
        assert http.get(f"/v2/{name}/tags/list", headers=bearer(token)).status_code == 200
    assert_401(
        http.get(
            f"/v2/{name}/tags/list", headers=bearer(get_token(http, f"repository:{name}:pull"))
        ),
        "insufficient_scope",
    )


REPOSITORY_ROUTES = sorted(
    (template, method)
    for (template, method), need in ROUTE_ACCESS.items()
    if need.kind is Kind.REPOSITORY
)


def _url(template: str, name: str, digest: str) -> str:
    return (
        template.replace("{name:path}", name)
        .replace("{reference}", "v1")
        .replace("{digest:path}", digest)
        .replace("{digest}", digest)
        .replace("{upload_id}", str(uuid.uuid4()))
    )


@pytest.fixture(scope="module")
def private_repo(token_registry: InProcessRegistry) -> tuple[str, str]:
    with token_registry.client() as http:
        name = unique("team-b")
        return name, seeded(token_registry, http, name)


@pytest.mark.parametrize(("template", "method"), REPOSITORY_ROUTES)
def test_no_endpoint_serves_a_private_repository_to_anonymous_callers(
    http: httpx.Client, private_repo: tuple[str, str], template: str, method: str
) -> None:
    name, digest = private_repo
    url = _url(template, name, digest)
    anonymous = get_token(http, f"repository:{name}:pull,push,delete")
    for headers in ({}, bearer(anonymous)):
        r = http.request(
            method, url, headers=headers, content=b"x" if method in ("PUT", "PATCH") else None
        )
        assert r.status_code == 401, (method, url, r.status_code)


@pytest.mark.parametrize(("template", "method"), REPOSITORY_ROUTES)
def test_no_endpoint_serves_a_repository_to_a_user_without_a_role_on_it(
    http: httpx.Client, private_repo: tuple[str, str], template: str, method: str
) -> None:
    name, digest = private_repo
    token = get_token(http, f"repository:{name}:pull,push,delete", user="alice")
    r = http.request(
        method,
        _url(template, name, digest),
        headers=bearer(token),
        content=b"x" if method in ("PUT", "PATCH") else None,
    )
    assert_403(r)


WRITE_ROUTES = [r for r in REPOSITORY_ROUTES if ROUTE_ACCESS[r].actions - {"pull"}]


@pytest.fixture(scope="module")
def team_a_repo(token_registry: InProcessRegistry) -> tuple[str, str]:
    with token_registry.client() as http:
        name = unique("team-a")
        return name, seeded(token_registry, http, name)


@pytest.mark.parametrize(("template", "method"), WRITE_ROUTES)
def test_a_reader_cannot_write_or_delete_through_any_endpoint(
    http: httpx.Client, team_a_repo: tuple[str, str], template: str, method: str
) -> None:
    name, digest = team_a_repo
    token = get_token(http, f"repository:{name}:pull,push,delete", user="bob")
    r = http.request(
        method,
        _url(template, name, digest),
        headers=bearer(token),
        content=b"x" if method in ("PUT", "PATCH") else None,
    )
    assert_403(r)


# ------------------------------------------------------------------------------- mounts


def test_mount_without_pull_on_the_source_starts_a_normal_upload(
    token_registry: InProcessRegistry, http: httpx.Client
) -> None:
    source, target = unique("team-a"), unique("team-b")
    blob = uuid.uuid4().bytes * 8
    with token_client(
        token_registry, get_token(http, f"repository:{source}:pull,push", user="alice")
    ) as alice:
        digest = push_blob(alice, source, blob)
    # carol may push team-b but not read team-a: the mount must not reveal the blob.
    token = get_token(
        http, f"repository:{target}:pull,push", f"repository:{source}:pull", user="carol"
    )
    r = http.post(
        f"/v2/{target}/blobs/uploads/",
        params={"mount": digest, "from": source},
        headers=bearer(token),
    )
    assert r.status_code == 202, r.text
    assert "/blobs/uploads/" in r.headers["location"]
    assert http.head(f"/v2/{target}/blobs/{digest}", headers=bearer(token)).status_code == 404
    assert http.delete(r.headers["location"], headers=bearer(token)).status_code == 204


def test_mount_with_pull_on_the_source_links_the_blob(
    token_registry: InProcessRegistry, http: httpx.Client
) -> None:
    source, target = unique("team-a"), unique("team-a")
    token = get_token(
        http, f"repository:{target}:pull,push", f"repository:{source}:pull,push", user="alice"
    )
    with token_client(token_registry, token) as alice:
        digest = push_blob(alice, source, uuid.uuid4().bytes * 8)
        r = alice.post(f"/v2/{target}/blobs/uploads/", params={"mount": digest, "from": source})
        assert r.status_code == 201
        assert alice.head(f"/v2/{target}/blobs/{digest}").status_code == 200


# ------------------------------------------------------------------------------ catalog


def _catalog(http: httpx.Client, token: str, n: int | None = None) -> list[str]:
    names: list[str] = []
    url: str | None = "/v2/_catalog" + (f"?n={n}" if n else "")
    while url:
        r = http.get(url, headers=bearer(token))
        assert r.status_code == 200, r.text
        names += r.json()["repositories"]
        link = r.headers.get("link")
        url = link[1 : link.index(">")] if link else None
    return names


def test_catalog_lists_only_what_the_caller_may_pull(
    token_registry: InProcessRegistry, http: httpx.Client
) -> None:
    mine = {p: unique(p) for p in ("team-a", "team-b", "public", "shared")}
    for name in mine.values():
        seeded(token_registry, http, name)
    expected = {
        "admin": {"team-a", "team-b", "public", "shared"},
        "bob": {"team-a", "public", "shared"},
        "carol": {"team-b", "public", "shared"},
        None: {"public"},
    }
    for user, prefixes in expected.items():
        token = get_token(http, "registry:catalog:*", user=user)
        listed = set(_catalog(http, token))
        assert {p for p, name in mine.items() if name in listed} == prefixes, user
        if user == "bob":
            assert all(re.match(r"^(team-a|public|shared)/", n) for n in listed)
            assert _catalog(http, token, n=1) == sorted(listed)


def test_catalog_token_for_a_user_without_grants_of_their_own(http: httpx.Client) -> None:
    # An unbound user still pulls shared/* and public/*: the catalog is open, filtered.
    token = get_token(http, "registry:catalog:*", user="erin")
    assert jwt.decode(token, options={"verify_signature": False})["access"] == [
        {"type": "registry", "name": "catalog", "actions": ["*"]}
    ]


def test_mount_challenge_names_the_source(
    token_registry: InProcessRegistry, http: httpx.Client
) -> None:
    """As distribution does: a client that takes its scope from the challenge can get a
    token that mounts."""
    r = http.post(
        "/v2/team-a/target/blobs/uploads/",
        params={"mount": "sha256:" + "a" * 64, "from": "team-a/source"},
    )
    assert r.status_code == 401
    challenge = r.headers["www-authenticate"]
    assert "repository:team-a/target:pull,push" in challenge
    assert "repository:team-a/source:pull" in challenge
