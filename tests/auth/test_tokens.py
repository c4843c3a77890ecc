"""JWT issuing and verification in-process: key ids, key files, trusted external issuers
(public keys, certificate bundles with x5c chains, JWKS) and every way a token must fail."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import stat
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from registry.auth.access import ResourceScope
from registry.auth.tokens import (
    DISTRIBUTION_EC_KID,
    KeyRing,
    TokenError,
    TokenIssuer,
    TokenVerifier,
    generate_signing_key,
    jwk_thumbprint,
    jwks_document,
    libtrust_key_id,
    load_or_create_signing_key,
    read_jwks_file,
    read_pem_file,
)

PULL_A = ResourceScope("repository", "team-a/app", frozenset({"pull"}))


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def claims(**override: Any) -> dict[str, Any]:
    now = int(time.time())
    base = {
        "iss": "issuer",
        "sub": "alice",
        "aud": "registry",
        "exp": now + 300,
        "nbf": now,
        "iat": now,
        "jti": "j1",
        "access": [{"type": "repository", "name": "team-a/app", "actions": ["pull"]}],
    }
    base.update(override)
    return {k: v for k, v in base.items() if v is not None}


@pytest.fixture(scope="module")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def verifier_for(*keys: Any) -> TokenVerifier:
    ring = KeyRing()
    for k in keys:
        ring.add(k.public_key())
    return TokenVerifier(ring, "issuer", "registry")


def sign(key: Any, payload: dict[str, Any], **headers: Any) -> str:
    alg = "ES256" if isinstance(key, ec.EllipticCurvePrivateKey) else "RS256"
    return jwt.encode(payload, key, algorithm=alg, headers=headers or None)


# ------------------------------------------------------------------------------ key ids


def test_jwk_thumbprint_matches_rfc7638_example() -> None:
    n = (
        "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECP"
        "ebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY"
        "368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0f"
        "M4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"
    )
    key = jwt.PyJWK({"kty": "RSA", "n": n, "e": "AQAB"}).key
    assert jwk_thumbprint(key) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


def test_libtrust_key_id_matches_distribution_jwt_md_example() -> None:
    key = jwt.PyJWK(
        {
            "kty": "EC",
            "crv": "P-256",
            "x": "m7zUpx3b-zmVE5cymSs64POG9QcyEpJaYCD82-549_Q",
            "y": "dU3biz8sZ_8GPB-odm8Wxz3lNDr1xcAQQPQaOcr1fmc",
        }
    ).key
    assert libtrust_key_id(key) == "PYYO:TEWU:V7JH:26JV:AQTZ:LJC3:SXVJ:XGHA:34F2:2LAQ:ZRMK:Z7Q6"


@pytest.mark.parametrize("kid_of", [jwk_thumbprint, libtrust_key_id])
def test_verifier_finds_the_key_by_either_kid_form(ec_key: Any, kid_of: Any) -> None:
    token = sign(ec_key, claims(), kid=kid_of(ec_key.public_key()))
    assert verifier_for(ec_key).verify_access(token).subject == "alice"


def test_verifier_accepts_distributions_generator_based_ec_kid(ec_key: Any) -> None:
    other = ec.generate_private_key(ec.SECP256R1())
    token = sign(ec_key, claims(), kid=DISTRIBUTION_EC_KID)
    # Every P-256 key has this id there: the signature picks the right one.
    assert verifier_for(other, ec_key).verify_access(token).subject == "alice"
    with pytest.raises(TokenError, match="signature"):
        verifier_for(other).verify_access(token)


def test_verifier_tries_all_trusted_keys_without_kid(rsa_key: Any, ec_key: Any) -> None:
    token = sign(rsa_key, claims())
    assert verifier_for(ec_key, rsa_key).verify_access(token).access == (PULL_A,)


def test_unknown_kid_is_refused(ec_key: Any) -> None:
    token = sign(ec_key, claims(), kid="nope")
    with pytest.raises(TokenError, match="untrusted key"):
        verifier_for(ec_key).verify_access(token)


def test_embedded_jwk_counts_only_when_trusted(ec_key: Any) -> None:
    stranger = ec.generate_private_key(ec.SECP256R1())
    jwk_member = {**json.loads(jwt.algorithms.ECAlgorithm.to_jwk(stranger.public_key()))}
    token = sign(stranger, claims(), jwk=jwk_member)
    with pytest.raises(TokenError, match="untrusted embedded key"):
        verifier_for(ec_key).verify_access(token)
    assert verifier_for(stranger).verify_access(token).subject == "alice"


# ------------------------------------------------------------------------------ refusals


@pytest.fixture(scope="module")
def issuer(ec_key: Any) -> TokenIssuer:
    return TokenIssuer(ec_key, "issuer", "registry", 300, 3600)


@pytest.fixture(scope="module")
def verifier(issuer: TokenIssuer) -> TokenVerifier:
    ring = KeyRing()
    ring.add(issuer.public_key, [issuer.kid])
    return TokenVerifier(ring, "issuer", "registry", leeway=30)


def test_issued_token_has_the_spec_claims_and_kid(
    issuer: TokenIssuer, verifier: TokenVerifier
) -> None:
    issued = issuer.issue_access("alice", [PULL_A])
    header = jwt.get_unverified_header(issued.token)
    assert header == {"alg": "ES256", "kid": jwk_thumbprint(issuer.public_key), "typ": "JWT"}
    body = jwt.decode(issued.token, options={"verify_signature": False})
    assert set(body) == {"iss", "sub", "aud", "exp", "nbf", "iat", "jti", "access"}
    assert body["exp"] - body["iat"] == 300 == issued.expires_in
    assert body["access"] == [{"type": "repository", "name": "team-a/app", "actions": ["pull"]}]
    assert verifier.verify_access(issued.token).access == (PULL_A,)
    assert datetime.strptime(issued.issued_at, "%Y-%m-%dT%H:%M:%SZ")


def test_libtrust_kid_format_for_distribution_v2_verifiers(ec_key: Any) -> None:
    old = TokenIssuer(ec_key, "issuer", "registry", 300, 3600, kid_format="libtrust")
    assert old.kid == libtrust_key_id(ec_key.public_key())
    assert jwt.get_unverified_header(old.issue_access("a", []).token)["kid"] == old.kid


def test_token_ids_are_unique(issuer: TokenIssuer) -> None:
    ids = {
        jwt.decode(issuer.issue_access("a", []).token, options={"verify_signature": False})["jti"]
        for _ in range(50)
    }
    assert len(ids) == 50


def test_expired_token_is_refused(issuer: TokenIssuer, verifier: TokenVerifier) -> None:
    old = issuer.issue_access("alice", [PULL_A], now=time.time() - 400)  # expired 100 s ago
    with pytest.raises(TokenError, match="expired"):
        verifier.verify_access(old.token)


def test_expiry_has_a_small_leeway(issuer: TokenIssuer, verifier: TokenVerifier) -> None:
    just = issuer.issue_access("alice", [PULL_A], now=time.time() - 310)  # expired 10 s ago
    assert verifier.verify_access(just.token).subject == "alice"


def test_token_not_yet_valid_is_refused(ec_key: Any, verifier: TokenVerifier) -> None:
    later = int(time.time()) + 600
    token = sign(ec_key, claims(nbf=later, iat=later, exp=later + 300))
    with pytest.raises(TokenError, match="not valid yet"):
        verifier.verify_access(token)


def test_token_for_another_audience_is_refused(ec_key: Any, verifier: TokenVerifier) -> None:
    with pytest.raises(TokenError, match="audience"):
        verifier.verify_access(sign(ec_key, claims(aud="other-registry")))


def test_token_from_another_issuer_is_refused(ec_key: Any, verifier: TokenVerifier) -> None:
    with pytest.raises(TokenError, match="issuer"):
        verifier.verify_access(sign(ec_key, claims(iss="someone-else")))


@pytest.mark.parametrize("claim", ["exp", "iss", "aud"])
def test_token_without_a_required_claim_is_refused(
    ec_key: Any, verifier: TokenVerifier, claim: str
) -> None:
    with pytest.raises(TokenError, match=claim):
        verifier.verify_access(sign(ec_key, claims(**{claim: None})))


def test_tampered_claims_are_refused(issuer: TokenIssuer, verifier: TokenVerifier) -> None:
    header, payload, signature = issuer.issue_access("bob", [PULL_A]).token.split(".")
    body = json.loads(base64.urlsafe_b64decode(payload + "=="))
    body["access"][0]["actions"] = ["pull", "push", "delete"]
    forged = ".".join([header, b64(json.dumps(body).encode()), signature])
    with pytest.raises(TokenError, match="signature"):
        verifier.verify_access(forged)


def test_tampered_signature_is_refused(issuer: TokenIssuer, verifier: TokenVerifier) -> None:
    header, payload, signature = issuer.issue_access("bob", [PULL_A]).token.split(".")
    raw = bytearray(base64.urlsafe_b64decode(signature + "=="))
    raw[5] ^= 0x01
    with pytest.raises(TokenError, match="signature"):
        verifier.verify_access(".".join([header, payload, b64(bytes(raw))]))


def test_token_signed_by_an_unknown_key_is_refused(verifier: TokenVerifier) -> None:
    stranger = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(TokenError, match="signature"):
        verifier.verify_access(sign(stranger, claims()))


def test_alg_none_is_refused(issuer: TokenIssuer, verifier: TokenVerifier) -> None:
    header = b64(json.dumps({"alg": "none", "typ": "JWT", "kid": issuer.kid}).encode())
    unsigned = f"{header}.{b64(json.dumps(claims()).encode())}."
    with pytest.raises(TokenError, match="not accepted"):
        verifier.verify_access(unsigned)


def test_hs256_signed_with_the_public_key_is_refused(
    issuer: TokenIssuer, verifier: TokenVerifier
) -> None:
    # The classic key-confusion attack: HMAC keyed with the verifier's public key PEM.
    pem = issuer.public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": issuer.kid}).encode())
    body = b64(json.dumps(claims()).encode())
    mac = hmac.new(pem, f"{header}.{body}".encode(), hashlib.sha256).digest()
    with pytest.raises(TokenError, match="not accepted"):
        verifier.verify_access(f"{header}.{body}.{b64(mac)}")


def test_rs256_header_on_an_ec_key_is_refused(issuer: TokenIssuer, verifier: TokenVerifier) -> None:
    _, payload, signature = issuer.issue_access("alice", []).token.split(".")
    relabelled = b64(json.dumps({"alg": "RS256", "kid": issuer.kid}).encode())
    with pytest.raises(TokenError, match="no trusted RS256 key"):
        verifier.verify_access(f"{relabelled}.{payload}.{signature}")


def test_verifier_pins_configured_algorithms(rsa_key: Any) -> None:
    ring = KeyRing()
    ring.add(rsa_key.public_key())
    es_only = TokenVerifier(ring, "issuer", "registry", algorithms=["ES256"])
    with pytest.raises(TokenError, match="not accepted"):
        es_only.verify_access(sign(rsa_key, claims()))


@pytest.mark.parametrize("garbage", ["", "abc", "a.b.c", "e30.e30.", "x" * 20000])
def test_garbage_is_refused(verifier: TokenVerifier, garbage: str) -> None:
    with pytest.raises(TokenError):
        verifier.verify_access(garbage)


def test_malformed_access_claim_is_refused(ec_key: Any, verifier: TokenVerifier) -> None:
    with pytest.raises(TokenError, match="access"):
        verifier.verify_access(sign(ec_key, claims(access=[{"type": "repository", "name": 3}])))


def test_refresh_token_is_not_an_access_token(issuer: TokenIssuer, verifier: TokenVerifier) -> None:
    refresh = issuer.issue_refresh("alice", "fingerprint")
    with pytest.raises(TokenError, match="not an access token"):
        verifier.verify_access(refresh)
    assert verifier.verify_refresh(refresh) == ("alice", "fingerprint")


def test_access_token_is_not_a_refresh_token(issuer: TokenIssuer, verifier: TokenVerifier) -> None:
    with pytest.raises(TokenError, match="not a refresh token"):
        verifier.verify_refresh(issuer.issue_access("alice", []).token)


def test_refresh_token_expires(issuer: TokenIssuer, verifier: TokenVerifier) -> None:
    old = issuer.issue_refresh("alice", "f", now=time.time() - 3700)
    with pytest.raises(TokenError, match="expired"):
        verifier.verify_refresh(old)


# ------------------------------------------------------------------------------ key files


def test_signing_key_is_generated_private_and_then_reused(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "key.pem"
    first = load_or_create_signing_key(path, "ES256")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = load_or_create_signing_key(path, "ES256")
    assert jwk_thumbprint(first.public_key()) == jwk_thumbprint(again.public_key())
    assert [p.name for p in path.parent.iterdir()] == ["key.pem"]


def test_rs256_key_generation(tmp_path: Path) -> None:
    key = load_or_create_signing_key(tmp_path / "rsa.pem", "RS256")
    assert isinstance(key, rsa.RSAPrivateKey) and key.key_size >= 2048


def test_key_of_the_wrong_type_is_a_configuration_error(tmp_path: Path) -> None:
    load_or_create_signing_key(tmp_path / "k.pem", "ES256")
    with pytest.raises(ValueError, match="ES256 key"):
        load_or_create_signing_key(tmp_path / "k.pem", "RS256")


def test_concurrent_first_starts_agree_on_one_key(tmp_path: Path) -> None:
    path = tmp_path / "key.pem"
    found: list[str] = []

    def start() -> None:
        found.append(jwk_thumbprint(load_or_create_signing_key(path, "ES256").public_key()))

    threads = [threading.Thread(target=start) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(found)) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["key.pem"]


def test_small_rsa_keys_are_refused(tmp_path: Path) -> None:
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    path = tmp_path / "weak.pem"
    path.write_bytes(
        weak.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    with pytest.raises(ValueError, match="2048"):
        load_or_create_signing_key(path, "RS256")


# -------------------------------------------------------------------- external issuers


def _public_pem(key: Any) -> bytes:
    pem: bytes = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return pem


def _cert(
    subject_key: Any, subject: str, issuer_key: Any, issuer: str, ca: bool, days: int = 30
) -> x509.Certificate:
    now = datetime.now(UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
        .public_key(subject_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .sign(issuer_key, hashes.SHA256())
    )


def _der64(cert: x509.Certificate) -> str:
    return base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()


def test_trusted_public_key_file(tmp_path: Path, rsa_key: Any) -> None:
    path = tmp_path / "issuer.pem"
    path.write_bytes(_public_pem(rsa_key))
    keys, certs = read_pem_file(path)
    ring = KeyRing()
    for k in keys:
        ring.add(k)
    token = sign(rsa_key, claims(), kid=libtrust_key_id(rsa_key.public_key()))
    assert TokenVerifier(ring, "issuer", "registry").verify_access(token).subject == "alice"
    assert certs == []


def test_private_key_in_a_trust_file_is_refused(tmp_path: Path, ec_key: Any) -> None:
    path = tmp_path / "oops.pem"
    path.write_bytes(
        ec_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    with pytest.raises(ValueError, match="private key"):
        read_pem_file(path)


def test_jwks_file_trust_by_declared_kid(tmp_path: Path, ec_key: Any) -> None:
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(jwks_document([(ec_key.public_key(), "my-own-kid")])))
    ring = KeyRing()
    for key, kid in read_jwks_file(path):
        ring.add(key, [kid] if kid else [])
    token = sign(ec_key, claims(), kid="my-own-kid")
    assert TokenVerifier(ring, "issuer", "registry").verify_access(token).subject == "alice"


def test_jwks_with_a_symmetric_key_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [{"kty": "oct", "k": b64(os.urandom(32))}]}))
    with pytest.raises(ValueError, match="RSA and EC"):
        read_jwks_file(path)


def test_certificate_bundle_trusts_the_certified_key_by_kid(tmp_path: Path, ec_key: Any) -> None:
    cert = _cert(ec_key, "token-signer", ec_key, "token-signer", ca=True)
    path = tmp_path / "bundle.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    ring = KeyRing()
    for c in read_pem_file(path)[1]:
        ring.add_root(c)
    token = sign(ec_key, claims(), kid=jwk_thumbprint(ec_key.public_key()))
    assert TokenVerifier(ring, "issuer", "registry").verify_access(token).subject == "alice"


def test_x5c_chain_to_a_trusted_root(ec_key: Any) -> None:
    root_key = ec.generate_private_key(ec.SECP256R1())
    mid_key = ec.generate_private_key(ec.SECP256R1())
    root = _cert(root_key, "root", root_key, "root", ca=True)
    mid = _cert(mid_key, "mid", root_key, "root", ca=True)
    leaf = _cert(ec_key, "leaf", mid_key, "mid", ca=False)
    ring = KeyRing()
    ring.add_root(root)
    verifier = TokenVerifier(ring, "issuer", "registry")
    token = sign(ec_key, claims(), x5c=[_der64(leaf), _der64(mid)])
    assert verifier.verify_access(token).subject == "alice"


def test_x5c_chain_to_an_unknown_root_is_refused(ec_key: Any) -> None:
    trusted_key = ec.generate_private_key(ec.SECP256R1())
    rogue_key = ec.generate_private_key(ec.SECP256R1())
    ring = KeyRing()
    ring.add_root(_cert(trusted_key, "root", trusted_key, "root", ca=True))
    leaf = _cert(ec_key, "leaf", rogue_key, "root", ca=False)  # same issuer name, other key
    with pytest.raises(TokenError, match="trusted root"):
        TokenVerifier(ring, "issuer", "registry").verify_access(
            sign(ec_key, claims(), x5c=[_der64(leaf)])
        )


def test_x5c_issued_by_a_non_ca_leaf_is_refused(ec_key: Any) -> None:
    root_key = ec.generate_private_key(ec.SECP256R1())
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    root = _cert(root_key, "root", root_key, "root", ca=True)
    leaf = _cert(leaf_key, "leaf", root_key, "root", ca=False)
    grandchild = _cert(ec_key, "evil", leaf_key, "leaf", ca=False)
    ring = KeyRing()
    ring.add_root(root)
    token = sign(ec_key, claims(), x5c=[_der64(grandchild), _der64(leaf)])
    with pytest.raises(TokenError, match="not a CA"):
        TokenVerifier(ring, "issuer", "registry").verify_access(token)


def test_x5c_without_a_bundle_is_refused(ec_key: Any) -> None:
    cert = _cert(ec_key, "self", ec_key, "self", ca=True)
    with pytest.raises(TokenError, match="no root certificate"):
        verifier_for(ec_key).verify_access(sign(ec_key, claims(), x5c=[_der64(cert)]))


def test_generated_keys_fit_their_algorithms() -> None:
    assert isinstance(generate_signing_key("ES256"), ec.EllipticCurvePrivateKey)
    with pytest.raises(ValueError):
        generate_signing_key("HS256")
