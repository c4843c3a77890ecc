"""JWT bearer tokens as distribution's ``docs/spec/auth/jwt.md`` describes them: signing
(the built-in token service), verification (ours or an external issuer's) and key ids.

Only RS256 and ES256 exist here. The verifier picks candidate keys from what it was told
to trust (never from the token), and each trusted key is checked with the one algorithm
its type allows, so ``alg: none`` and HS256-signed-with-the-public-key cannot pass.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import logging
import os
import re
import secrets
import time
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jwt
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from registry.auth.access import ResourceScope

log = logging.getLogger("registry.auth")

RS256 = "RS256"
ES256 = "ES256"
ALGORITHMS = (RS256, ES256)

PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey
SigningKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey

MAX_TOKEN_LENGTH = 16 * 1024  # bytes; a token is a header value, real ones are ~1 KiB
REFRESH_USE = "refresh"  # the token_use claim of refresh tokens; access tokens carry none


class TokenError(Exception):
    """A token that must not be honoured; the message says why (never the token)."""


# ------------------------------------------------------------------------------ keys


def algorithm_for(key: PublicKey) -> str:
    """The one algorithm a key may sign with here."""
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < 2048:
            raise ValueError(f"RSA keys must have at least 2048 bits, not {key.key_size}")
        return RS256
    if isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1):
        return ES256
    raise ValueError("only RSA (RS256) and P-256 (ES256) keys are supported")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _int_bytes(n: int, length: int | None = None) -> bytes:
    return n.to_bytes(length or max(1, (n.bit_length() + 7) // 8), "big")


def public_jwk(key: PublicKey) -> dict[str, str]:
    """The required members of a key's JWK (RFC 7517/7518), without kid."""
    if isinstance(key, rsa.RSAPublicKey):
        numbers = key.public_numbers()
        return {"kty": "RSA", "e": _b64(_int_bytes(numbers.e)), "n": _b64(_int_bytes(numbers.n))}
    numbers_ec = key.public_numbers()
    return {
        "kty": "EC",
        "crv": "P-256",
        "x": _b64(_int_bytes(numbers_ec.x, 32)),
        "y": _b64(_int_bytes(numbers_ec.y, 32)),
    }


def jwk_thumbprint(key: PublicKey) -> str:
    """The RFC 7638 JWK thumbprint (SHA-256), the key id distribution v3 expects."""
    canonical = json.dumps(public_jwk(key), sort_keys=True, separators=(",", ":"))
    return _b64(hashlib.sha256(canonical.encode()).digest())


def libtrust_key_id(key: PublicKey) -> str:
    """The key id of docker/libtrust (distribution v2 and the token servers built for it):
    SHA-256 of the DER public key, first 240 bits, base32, in groups of four."""
    der = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    b32 = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode().rstrip("=")
    return ":".join(b32[i : i + 4] for i in range(0, len(b32), 4))


# distribution's GetRFC7638Thumbprint hashes the P-256 *generator* point instead of the
# key's own (registry/auth/token/util.go), so every P-256 key gets this same id there, and
# token services copying it (cesanta/docker_auth) write it as kid. It is accepted as a
# hint only: the signature still has to verify with one of the trusted keys.
_P256_GX = 0x6B17D1F2E12C4247F8BCE6E563A440F277037D812DEB33A0F4A13945D898C296
_P256_GY = 0x4FE342E2FE1A7F9B8EE7EB4A7C0F9E162BCE33576B315ECECBB6406837BF51F5
DISTRIBUTION_EC_KID = _b64(
    hashlib.sha256(
        json.dumps(
            {
                "crv": "P-256",
                "kty": "EC",
                "x": _b64(_int_bytes(_P256_GX)),
                "y": _b64(_int_bytes(_P256_GY)),
            },
            sort_keys=True,
            separators=(",", ":"),
        ).encode()
    ).digest()
)


def key_ids(key: PublicKey) -> set[str]:
    """Every kid under which a verifier may look this key up."""
    ids = {jwk_thumbprint(key), libtrust_key_id(key)}
    if isinstance(key, ec.EllipticCurvePublicKey):
        ids.add(DISTRIBUTION_EC_KID)
    return ids


def generate_signing_key(algorithm: str) -> SigningKey:
    if algorithm == RS256:
        return rsa.generate_private_key(public_exponent=65537, key_size=3072)
    if algorithm == ES256:
        return ec.generate_private_key(ec.SECP256R1())
    raise ValueError(f"unsupported algorithm {algorithm!r}")


def load_or_create_signing_key(path: str | os.PathLike[str], algorithm: str) -> SigningKey:
    """The PEM private key at ``path``; generated (mode 0600) when the file is absent.

    Several worker processes may start at once: the new key is written to a temporary
    file and hard-linked into place, so exactly one of them wins and all use its key."""
    target = Path(path)
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        key = generate_signing_key(algorithm)
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        tmp = target.with_name(f".{target.name}.{secrets.token_hex(8)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(pem)
                f.flush()
                os.fsync(f.fileno())
            try:
                os.link(tmp, target)
                log.info("generated a new %s token signing key in %s", algorithm, target)
            except FileExistsError:
                pass  # another process was first; use its key
        finally:
            tmp.unlink(missing_ok=True)
    loaded = serialization.load_pem_private_key(target.read_bytes(), password=None)
    if not isinstance(loaded, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise ValueError(f"{target}: not an RSA or EC private key")
    found = algorithm_for(loaded.public_key())
    if found != algorithm:
        raise ValueError(f"{target}: holds a {found} key, but the configuration says {algorithm}")
    return loaded


_PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----\r?\n.+?\r?\n-----END \1-----", re.DOTALL)


def read_pem_file(path: str | os.PathLike[str]) -> tuple[list[PublicKey], list[x509.Certificate]]:
    """Public keys and certificates from a PEM file (any mix, any number)."""
    data = Path(path).read_bytes()
    keys: list[PublicKey] = []
    certs: list[x509.Certificate] = []
    for m in _PEM_BLOCK.finditer(data):
        kind = m.group(1)
        if kind == b"CERTIFICATE":
            cert = x509.load_pem_x509_certificate(m.group(0))
            certs.append(cert)
            keys.append(_supported(cert.public_key(), path))
        elif kind == b"PUBLIC KEY":
            keys.append(_supported(serialization.load_pem_public_key(m.group(0)), path))
        elif b"PRIVATE KEY" in kind:
            raise ValueError(f"{path}: holds a private key; give the public key or certificate")
    if not keys:
        raise ValueError(f"{path}: no PEM public key or certificate found")
    return keys, certs


def _supported(key: Any, source: object) -> PublicKey:
    if not isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
        raise ValueError(f"{source}: only RSA and P-256 keys are supported")
    algorithm_for(key)
    return key


def read_jwks_file(path: str | os.PathLike[str]) -> list[tuple[PublicKey, str | None]]:
    """The (key, kid) pairs of a JWKS file; symmetric and unsupported keys are refused."""
    doc = json.loads(Path(path).read_text())
    if not isinstance(doc, dict) or not isinstance(doc.get("keys"), list):
        raise ValueError(f"{path}: not a JWKS document (no keys list)")
    out: list[tuple[PublicKey, str | None]] = []
    for entry in doc["keys"]:
        if not isinstance(entry, dict) or entry.get("kty") not in ("RSA", "EC"):
            raise ValueError(f"{path}: only RSA and EC keys are supported in a JWKS")
        if "d" in entry:
            raise ValueError(f"{path}: a JWKS to trust must not hold private keys")
        key = _supported(jwt.PyJWK(entry).key, path)
        kid = entry.get("kid")
        out.append((key, kid if isinstance(kid, str) and kid else None))
    if not out:
        raise ValueError(f"{path}: the JWKS holds no keys")
    return out


# ------------------------------------------------------------------------- key rings


@dataclass(frozen=True)
class TrustedKey:
    key: PublicKey
    algorithm: str
    der: bytes


@dataclass
class KeyRing:
    """The keys a verifier trusts, found by any of their key ids, plus the root
    certificates a token's ``x5c`` chain may lead to."""

    keys: list[TrustedKey] = field(default_factory=list)
    by_kid: dict[str, list[TrustedKey]] = field(default_factory=dict)
    roots: list[x509.Certificate] = field(default_factory=list)

    def add(self, key: PublicKey, extra_kids: Iterable[str] = ()) -> None:
        der = key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        trusted = next((k for k in self.keys if k.der == der), None)
        if trusted is None:
            trusted = TrustedKey(key, algorithm_for(key), der)
            self.keys.append(trusted)
        for kid in {*key_ids(key), *extra_kids}:
            entries = self.by_kid.setdefault(kid, [])
            if trusted not in entries:
                entries.append(trusted)

    def add_root(self, cert: x509.Certificate) -> None:
        self.roots.append(cert)
        self.add(_supported(cert.public_key(), "certificate"))

    def __len__(self) -> int:
        return len(self.keys)

    def candidates(self, header: Mapping[str, Any]) -> list[TrustedKey]:
        """The trusted keys that may have signed a token with this header."""
        x5c = header.get("x5c")
        if x5c is not None:
            return self._from_chain(x5c)
        jwk_member = header.get("jwk")
        if jwk_member is not None:
            return self._from_jwk(jwk_member)
        kid = header.get("kid")
        if kid is not None:
            if not isinstance(kid, str):
                raise TokenError("malformed kid")
            found = self.by_kid.get(kid)
            if not found:
                raise TokenError(f"signed by an untrusted key (kid {kid[:80]!r})")
            return list(found)
        return list(self.keys)

    def _from_jwk(self, member: Any) -> list[TrustedKey]:
        # An embedded key proves nothing: it counts only if it is one we trust.
        try:
            key = _supported(jwt.PyJWK(member).key, "jwk header")
        except (jwt.PyJWKError, ValueError, TypeError) as exc:
            raise TokenError("malformed jwk header") from exc
        der = key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        found = [k for k in self.keys if k.der == der]
        if not found:
            raise TokenError("signed by an untrusted embedded key")
        return found

    def _from_chain(self, x5c: Any) -> list[TrustedKey]:
        if not isinstance(x5c, list) or not x5c or not all(isinstance(c, str) for c in x5c):
            raise TokenError("malformed x5c header")
        if len(x5c) > 5:
            raise TokenError("x5c chain too long")
        try:
            chain = [
                x509.load_der_x509_certificate(base64.b64decode(c, validate=True)) for c in x5c
            ]
        except ValueError as exc:
            raise TokenError("malformed x5c certificate") from exc
        verify_chain(chain, self.roots)
        leaf_key = _supported(chain[0].public_key(), "x5c leaf")
        der = leaf_key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return [TrustedKey(leaf_key, algorithm_for(leaf_key), der)]


def verify_chain(
    chain: list[x509.Certificate], roots: list[x509.Certificate], now: datetime | None = None
) -> None:
    """Raise TokenError unless each certificate is issued by the next, the last is a root
    or issued by one, every issuer is a CA, and all of them are valid now."""
    if not roots:
        raise TokenError("x5c chain given, but no root certificate bundle is configured")
    moment = now or datetime.now(UTC)
    for cert in chain:
        if not cert.not_valid_before_utc <= moment <= cert.not_valid_after_utc:
            raise TokenError("x5c certificate outside its validity period")
    for child, parent in itertools.pairwise(chain):
        _check_issued(child, parent)
    last = chain[-1]
    root_ders = {r.public_bytes(serialization.Encoding.DER) for r in roots}
    if last.public_bytes(serialization.Encoding.DER) in root_ders:
        return
    for root in roots:
        if root.subject == last.issuer:
            try:
                _check_issued(last, root)
            except TokenError:
                continue
            if root.not_valid_before_utc <= moment <= root.not_valid_after_utc:
                return
    raise TokenError("x5c chain does not lead to a trusted root certificate")


def _check_issued(child: x509.Certificate, parent: x509.Certificate) -> None:
    try:
        constraints = parent.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        constraints = None
    if constraints is None or not constraints.ca:
        raise TokenError("x5c issuer certificate is not a CA")
    try:
        child.verify_directly_issued_by(parent)
    except (InvalidSignature, ValueError, TypeError) as exc:
        raise TokenError("x5c certificate not issued by the next one in the chain") from exc


def jwks_document(keys: Iterable[tuple[PublicKey, str]]) -> dict[str, Any]:
    """A JWKS of public keys with their kid, for others to trust this issuer."""
    return {
        "keys": [
            {**public_jwk(k), "kid": kid, "use": "sig", "alg": algorithm_for(k)} for k, kid in keys
        ]
    }


# --------------------------------------------------------------------------- issuing


@dataclass(frozen=True)
class IssuedToken:
    token: str
    expires_in: int
    issued_at: str  # RFC 3339, UTC


def _access_claim(access: Iterable[ResourceScope]) -> list[dict[str, Any]]:
    return [{"type": s.type, "name": s.name, "actions": sorted(s.actions)} for s in access]


class TokenIssuer:
    """Signs access and refresh tokens with the built-in service's key."""

    def __init__(
        self,
        key: SigningKey,
        issuer: str,
        service: str,
        lifetime: int,
        refresh_lifetime: int,
        kid_format: str = "rfc7638",
    ) -> None:
        self.key = key
        self.public_key: PublicKey = key.public_key()
        self.algorithm = algorithm_for(self.public_key)
        self.kid = (
            libtrust_key_id(self.public_key)
            if kid_format == "libtrust"
            else jwk_thumbprint(self.public_key)
        )
        self.issuer = issuer
        self.service = service
        self.lifetime = lifetime
        self.refresh_lifetime = refresh_lifetime

    def _sign(self, claims: dict[str, Any]) -> str:
        return jwt.encode(
            claims, self.key, algorithm=self.algorithm, headers={"kid": self.kid, "typ": "JWT"}
        )

    def issue_access(
        self, subject: str, access: Iterable[ResourceScope], now: float | None = None
    ) -> IssuedToken:
        moment = int(now if now is not None else time.time())
        claims = {
            "iss": self.issuer,
            "sub": subject,
            "aud": self.service,
            "exp": moment + self.lifetime,
            "nbf": moment,
            "iat": moment,
            "jti": secrets.token_urlsafe(18),
            "access": _access_claim(access),
        }
        issued_at = datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return IssuedToken(self._sign(claims), self.lifetime, issued_at)

    def issue_refresh(self, subject: str, credential: str, now: float | None = None) -> str:
        """A refresh token: signed, expiring, bound to the subject and to a fingerprint
        of its current credential (a password change revokes it), usable only at the
        token endpoint (it carries no access and says token_use=refresh)."""
        moment = int(now if now is not None else time.time())
        return self._sign(
            {
                "iss": self.issuer,
                "sub": subject,
                "aud": self.service,
                "exp": moment + self.refresh_lifetime,
                "nbf": moment,
                "iat": moment,
                "jti": secrets.token_urlsafe(18),
                "token_use": REFRESH_USE,
                "cred": credential,
            }
        )

    def jwks(self) -> dict[str, Any]:
        return jwks_document([(self.public_key, self.kid)])


# ------------------------------------------------------------------------- verifying


@dataclass(frozen=True)
class AccessClaims:
    subject: str
    issuer: str
    access: tuple[ResourceScope, ...]
    jwt_id: str | None


class TokenVerifier:
    """Checks signature, algorithm, issuer, audience, expiry and not-before (with a small
    leeway) against a key ring, and reads the access claim."""

    def __init__(
        self,
        keys: KeyRing,
        issuer: str,
        audience: str,
        algorithms: Collection[str] = ALGORITHMS,
        leeway: float = 30.0,
    ) -> None:
        unknown = set(algorithms) - set(ALGORITHMS)
        if unknown:
            raise ValueError(f"unsupported algorithms: {sorted(unknown)}")
        self.keys = keys
        self.issuer = issuer
        self.audience = audience
        self.algorithms = frozenset(algorithms)
        self.leeway = leeway

    def claims(self, token: str) -> dict[str, Any]:
        """The verified claims of any token (access or refresh)."""
        if len(token) > MAX_TOKEN_LENGTH:
            raise TokenError("token too long")
        try:
            # PyJWT refuses a non-string kid and any crit header with InvalidTokenError.
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise TokenError("malformed token") from exc
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self.algorithms:
            raise TokenError(f"algorithm {str(alg)[:20]!r} is not accepted")
        candidates = [k for k in self.keys.candidates(header) if k.algorithm == alg]
        if not candidates:
            raise TokenError(f"no trusted {alg} key for this token")
        for trusted in candidates:
            try:
                # The algorithm comes from the trusted key, not from the token.
                return jwt.decode(
                    token,
                    trusted.key,
                    algorithms=[trusted.algorithm],
                    audience=self.audience,
                    issuer=self.issuer,
                    leeway=self.leeway,
                    options={"require": ["exp", "iss", "aud"]},
                )
            except jwt.InvalidSignatureError:
                continue
            except jwt.ExpiredSignatureError as exc:
                raise TokenError("token expired") from exc
            except jwt.ImmatureSignatureError as exc:
                raise TokenError("token not valid yet") from exc
            except jwt.InvalidAudienceError as exc:
                raise TokenError("token is for another audience") from exc
            except jwt.InvalidIssuerError as exc:
                raise TokenError("token from an untrusted issuer") from exc
            except jwt.MissingRequiredClaimError as exc:
                raise TokenError(f"token lacks the {exc.claim} claim") from exc
            except jwt.InvalidTokenError as exc:
                raise TokenError("invalid token") from exc
        raise TokenError("signature verification failed")

    def verify_access(self, token: str) -> AccessClaims:
        claims = self.claims(token)
        if claims.get("token_use") not in (None, "access"):
            raise TokenError("not an access token")
        subject = claims.get("sub", "")
        if not isinstance(subject, str):
            raise TokenError("malformed sub claim")
        jti = claims.get("jti")
        return AccessClaims(
            subject,
            claims["iss"],
            parse_access_claim(claims.get("access")),
            jti if isinstance(jti, str) else None,
        )

    def verify_refresh(self, token: str) -> tuple[str, str]:
        """The (subject, credential fingerprint) of a refresh token."""
        claims = self.claims(token)
        subject, credential = claims.get("sub"), claims.get("cred")
        if claims.get("token_use") != REFRESH_USE or not isinstance(credential, str):
            raise TokenError("not a refresh token")
        if not isinstance(subject, str) or not subject:
            raise TokenError("refresh token without a subject")
        return subject, credential


def parse_access_claim(value: Any) -> tuple[ResourceScope, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise TokenError("malformed access claim")
    out: list[ResourceScope] = []
    for entry in value:
        if not isinstance(entry, dict):
            raise TokenError("malformed access claim")
        rtype, name, actions = entry.get("type"), entry.get("name"), entry.get("actions")
        if not isinstance(rtype, str) or not isinstance(name, str) or not isinstance(actions, list):
            raise TokenError("malformed access claim")
        if not all(isinstance(a, str) for a in actions):
            raise TokenError("malformed access claim")
        # "repository(plugin)" and "repository" are the same resource (scope.md).
        out.append(ResourceScope(rtype.split("(", 1)[0], name, frozenset(actions)))
    return tuple(out)
