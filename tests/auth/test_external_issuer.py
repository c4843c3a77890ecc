"""Behind an existing token service: the registry verifies tokens it did not sign, found
by the kid forms of distribution v3 (RFC 7638) and v2 (libtrust), and serves no tokens.
In this process, but for `registry serve`'s refusal of an issuer without keys."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from registry.auth.tokens import jwk_thumbprint, jwks_document, libtrust_key_id
from tests.asgi_registry import InProcessRegistry
from tests.auth.conftest import bearer, unique
from tests.images import image, push_image
from tests.server import RegistryServer

REALM = "https://auth.example.com/token"


@pytest.fixture(scope="module")
def keys() -> dict[str, Any]:
    return {
        "jwks": ec.generate_private_key(ec.SECP256R1()),
        "pem": rsa.generate_private_key(public_exponent=65537, key_size=2048),
    }


@pytest.fixture(scope="module")
def external_registry(
    tmp_path_factory: pytest.TempPathFactory, keys: dict[str, Any]
) -> Iterator[InProcessRegistry]:
    """A registry that trusts the issuer's keys (a JWKS document and a PEM file)."""
    workdir: Path = tmp_path_factory.mktemp("external")
    jwks = workdir / "issuer-jwks.json"
    jwks.write_text(json.dumps(jwks_document([(keys["jwks"].public_key(), "issuer-key-1")])))
    pem = workdir / "issuer.pem"
    pem.write_bytes(
        keys["pem"]
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    auth = {
        "mode": "token",
        "token": {
            "builtin": False,
            "realm": REALM,
            "service": "registry.example.com",
            "issuer": "auth.example.com",
            "jwks": str(jwks),
            "trusted_keys": [str(pem)],
        },
    }
    with InProcessRegistry({"auth": auth}) as registry:
        yield registry


def token(key: Any, kid: str, name: str, actions: list[str], **override: Any) -> str:
    now = int(time.time())
    claims = {
        "iss": "auth.example.com",
        "sub": "someone",
        "aud": "registry.example.com",
        "exp": now + 300,
        "nbf": now,
        "iat": now,
        "jti": uuid.uuid4().hex,
        "access": [{"type": "repository", "name": name, "actions": actions}],
        **override,
    }
    alg = "ES256" if isinstance(key, ec.EllipticCurvePrivateKey) else "RS256"
    return jwt.encode(claims, key, algorithm=alg, headers={"kid": kid})


def test_challenge_points_at_the_external_realm(external_registry: InProcessRegistry) -> None:
    with external_registry.client() as c:
        r = c.get("/v2/x/y/tags/list")
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == (
        f'Bearer realm="{REALM}",service="registry.example.com",scope="repository:x/y:pull"'
    )


def test_no_builtin_token_service(external_registry: InProcessRegistry) -> None:
    with external_registry.client() as c:
        assert c.get("/auth/token").status_code == 404
        assert c.get("/.well-known/jwks.json").status_code == 404


@pytest.mark.parametrize(
    ("which", "kid_of"),
    [
        ("jwks", lambda k: "issuer-key-1"),
        ("jwks", lambda k: jwk_thumbprint(k.public_key())),
        ("pem", lambda k: jwk_thumbprint(k.public_key())),
        ("pem", lambda k: libtrust_key_id(k.public_key())),
    ],
    ids=["jwks-declared-kid", "jwks-rfc7638", "pem-rfc7638", "pem-libtrust"],
)
def test_external_tokens_push_and_pull(
    external_registry: InProcessRegistry, keys: dict[str, Any], which: str, kid_of: Any
) -> None:
    name = unique("ext")
    key = keys[which]
    with external_registry.client(
        headers=bearer(token(key, kid_of(key), name, ["pull", "push"]))
    ) as c:
        digest = push_image(c, name, image(layers=1, layer_size=64), tag="v1")
        assert c.get(f"/v2/{name}/manifests/v1").headers["docker-content-digest"] == digest


def test_external_token_scope_is_enforced(
    external_registry: InProcessRegistry, keys: dict[str, Any]
) -> None:
    name = unique("ext")
    pull_only = token(keys["jwks"], "issuer-key-1", name, ["pull"])
    with external_registry.client(headers=bearer(pull_only)) as c:
        r = c.post(f"/v2/{name}/blobs/uploads/")
    # We cannot judge an outside user: a new token might carry the scope (401).
    assert r.status_code == 401
    assert 'error="insufficient_scope"' in r.headers["www-authenticate"]


@pytest.mark.parametrize(
    "override",
    [{"iss": "registry"}, {"aud": "registry"}, {"exp": int(time.time()) - 600}],
    ids=["our-default-issuer", "another-audience", "expired"],
)
def test_external_token_claims_are_checked(
    external_registry: InProcessRegistry, keys: dict[str, Any], override: dict[str, Any]
) -> None:
    t = token(keys["jwks"], "issuer-key-1", "x/y", ["pull"], **override)
    with external_registry.client() as c:
        r = c.get("/v2/x/y/tags/list", headers=bearer(t))
    assert r.status_code == 401 and 'error="invalid_token"' in r.headers["www-authenticate"]


def test_token_from_an_untrusted_key_is_refused(external_registry: InProcessRegistry) -> None:
    stranger = ec.generate_private_key(ec.SECP256R1())
    t = token(stranger, "issuer-key-1", "x/y", ["pull"])
    with external_registry.client() as c:
        assert c.get("/v2/x/y/tags/list", headers=bearer(t)).status_code == 401


def test_catalog_with_an_external_token_lists_what_the_token_may_pull(
    external_registry: InProcessRegistry, keys: dict[str, Any]
) -> None:
    seen, hidden = unique("ext"), unique("ext")
    for name in (seen, hidden):
        t = token(keys["jwks"], "issuer-key-1", name, ["pull", "push"])
        with external_registry.client(headers=bearer(t)) as c:
            push_image(c, name, image(layers=1, layer_size=32), tag="v1")
    now = int(time.time())
    claims = {
        "iss": "auth.example.com",
        "sub": "someone",
        "aud": "registry.example.com",
        "exp": now + 300,
        "iat": now,
        "access": [
            {"type": "registry", "name": "catalog", "actions": ["*"]},
            {"type": "repository", "name": seen, "actions": ["pull"]},
        ],
    }
    t = jwt.encode(claims, keys["jwks"], algorithm="ES256", headers={"kid": "issuer-key-1"})
    with external_registry.client() as c:
        listed = c.get("/v2/_catalog", headers=bearer(t)).json()["repositories"]
    assert seen in listed and hidden not in listed


def test_serve_refuses_an_external_issuer_without_keys(tmp_path: Path) -> None:
    server = RegistryServer(
        tmp_path, {"auth": {"mode": "token", "token": {"builtin": False, "realm": REALM}}}
    )
    with pytest.raises(RuntimeError, match="trusted_keys, rootcertbundle or jwks"):
        server.start(timeout=20)
    assert server.proc is not None and server.proc.poll() == 2
    server.stop()
