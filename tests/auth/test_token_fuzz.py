"""Malformed tokens: whatever a client sends as a bearer or refresh token, the verifier
raises TokenError (a 401 `invalid_token`) and nothing else (never a 500)."""

from __future__ import annotations

import base64
import contextlib
import json
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from registry.auth.tokens import KeyRing, TokenError, TokenVerifier

KEY = ec.generate_private_key(ec.SECP256R1())
HEADER_MEMBERS = ["alg", "kid", "typ", "crit", "jwk", "x5c", "cty", "b64", "zip", "x5t"]
CLAIMS = ["iss", "sub", "aud", "exp", "nbf", "iat", "jti", "access", "token_use", "cred"]

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=20)
    | st.sampled_from(["ES256", "RS256", "none", "HS256", "refresh", "registry", "issuer"]),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=10,
)
headers = st.dictionaries(st.sampled_from(HEADER_MEMBERS) | st.text(max_size=5), json_values)
payloads = st.dictionaries(st.sampled_from(CLAIMS) | st.text(max_size=5), json_values)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _verifier() -> TokenVerifier:
    ring = KeyRing()
    ring.add(KEY.public_key())
    return TokenVerifier(ring, "issuer", "registry")


VERIFIER = _verifier()


def check(token: str) -> None:
    for verify in (VERIFIER.verify_access, VERIFIER.verify_refresh):
        with contextlib.suppress(TokenError):
            verify(token)


def signed(header: Any, payload: Any) -> str:
    """A token whose signature is right for ``KEY``, whatever its header says."""
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}"
    signature = jwt.get_algorithm_by_name("ES256").sign(signing_input.encode(), KEY)
    return f"{signing_input}.{b64(signature)}"


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(header=headers | json_values, payload=payloads | json_values, good_signature=st.booleans())
def test_any_header_and_claims_fail_only_with_token_error(
    header: Any, payload: Any, good_signature: bool
) -> None:
    if good_signature:
        check(signed(header, payload))
    else:
        encoded = [b64(json.dumps(part).encode()) for part in (header, payload)]
        check(".".join([*encoded, b64(b"\x00" * 64)]))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(max_size=40) | st.binary(max_size=40).map(b64), max_size=5))
def test_any_segments_fail_only_with_token_error(segments: list[str]) -> None:
    check(".".join(segments))


@pytest.mark.parametrize(
    "header",
    [
        {"alg": "ES256", "kid": 5},
        {"alg": "ES256", "kid": ["a", "b"]},
        {"alg": "ES256", "crit": ["exp"]},
        {"alg": "ES256", "crit": "x"},
        {"alg": ["ES256"]},
        {"alg": {"ES256": 1}},
    ],
)
def test_malformed_headers_are_token_errors(header: dict[str, Any]) -> None:
    payload = {"iss": "issuer", "aud": "registry", "exp": 2**40, "sub": "alice"}
    with pytest.raises(TokenError):
        VERIFIER.verify_access(signed(header, payload))
    with pytest.raises(TokenError):
        VERIFIER.verify_refresh(signed(header, payload))


# ---------------------------------------------------------------- over HTTP, both grants

MALFORMED = [
    {"alg": "ES256", "kid": 5, "typ": "JWT"},
    {"alg": "ES256", "kid": [1, 2]},
    {"alg": "ES256", "crit": ["exp"]},
    {"alg": ["ES256"]},
]


@pytest.mark.parametrize("header", MALFORMED)
def test_malformed_bearer_token_is_401_invalid_token(
    http: httpx.Client, header: dict[str, Any]
) -> None:
    token = signed(header, {"iss": "registry", "aud": "registry", "exp": 2**40})
    r = http.get("/v2/public/app/tags/list", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 401, r.text
    assert 'error="invalid_token"' in r.headers["www-authenticate"]
    assert r.json()["errors"][0]["code"] == "UNAUTHORIZED"


@pytest.mark.parametrize("header", MALFORMED)
def test_malformed_refresh_token_is_401(http: httpx.Client, header: dict[str, Any]) -> None:
    token = signed(header, {"iss": "registry", "aud": "registry", "exp": 2**40})
    r = http.post(
        "/auth/token",
        data={"grant_type": "refresh_token", "refresh_token": token, "service": "registry"},
    )
    assert r.status_code == 401, r.text
    assert r.json()["errors"][0]["code"] == "UNAUTHORIZED"
