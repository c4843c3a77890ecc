"""One configuration model for everything: YAML file, then REGISTRY_* environment.

Every key can be overridden from the environment the way CNCF distribution does it:
``REGISTRY_STORAGE_DELETE_ENABLED=false`` sets ``storage.delete.enabled``. Underscores
are matched against field names greedily, so ``REGISTRY_STORAGE_S3_ENDPOINT_URL`` sets
``storage.s3.endpoint_url``.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from registry.patterns import check_repository_pattern, check_tag_pattern, literal_prefix
from registry.remote.settings import RemoteSettings

if TYPE_CHECKING:
    from storage_backends.s3 import S3Settings
from registry.replication.semver import check_range
from registry.store import SETTLE

ENV_PREFIX = "REGISTRY_"

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def parse_duration(value: Any) -> float:
    """Seconds from ``90s``, ``15m``, ``1h``, ``2d``, ``500ms`` or a plain number."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    m = _DURATION.match(str(value))
    if not m:
        raise ValueError(f"not a duration: {value!r} (write it like 90s, 15m, 1h)")
    return float(m.group(1)) * _UNITS[m.group(2)]


# A duration in seconds, written in configuration as 90s, 15m, 1h, 2d or a number.
Duration = Annotated[float, BeforeValidator(parse_duration)]
# Patterns in the one grammar of registry/patterns.py (docs/patterns.md).
RepositoryPattern = Annotated[str, AfterValidator(check_repository_pattern)]
TagPattern = Annotated[str, AfterValidator(check_tag_pattern)]


def rule_error(message: str, *at: str | int) -> PydanticCustomError:
    """A rule that spans several settings, broken. ``at`` is the key below the model
    that checks the rule where the mistake most likely is (``("grants", 0, "role")``);
    `registry check-config` follows it to the line."""
    return PydanticCustomError("config_rule", message, {"at": at})


def lease_ttl_error(ttl: float) -> PydanticCustomError | None:
    """A lease's holder counts it lost half its ttl after its last write, and taking it
    takes the settle time (store/lease.py): a ttl of no more than twice that would be
    lost between taking it and its first renewal."""
    if ttl > 2 * SETTLE:
        return None
    return rule_error(
        f"must be more than twice the lease's settle time ({2 * SETTLE:g}s): its holder "
        "would lose it between renewals",
        "lease_ttl",
    )


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class HttpConfig(Section):
    host: str = "0.0.0.0"
    port: int = Field(default=5000, ge=0, le=65535)
    workers: int = Field(default=1, ge=1)
    tls_cert: str | None = None
    tls_key: str | None = None
    # Trust X-Forwarded-Proto/Host from these addresses (uvicorn's forwarded_allow_ips).
    forwarded_allow_ips: str = "127.0.0.1"
    graceful_timeout: Duration = 30.0
    # Limits of the HTTP layer (registry/server.py; docs/operations.md).
    max_request_line: int = Field(default=8 * 1024, ge=1024)  # bytes of the target (414)
    max_header_size: int = Field(default=64 * 1024, ge=8 * 1024)  # all header fields (431)
    header_timeout: Duration = Field(default=20.0, gt=0)  # for a request's head to arrive
    body_timeout: Duration = Field(default=60.0, gt=0)  # longest silence within a body
    # An idle keep-alive connection is closed after this; longer than clients and load
    # balancers keep theirs idle, so that they close first (nginx's 75s).
    idle_timeout: Duration = Field(default=75.0, gt=0)
    # With workers > 1: a worker whose event loop has not turned for this long is killed
    # and replaced (registry/supervisor.py).
    worker_timeout: Duration = Field(default=60.0, ge=2)
    max_connections: int = Field(default=1000, ge=1)  # per worker; beyond: 503

    @model_validator(mode="after")
    def _tls_pair(self) -> HttpConfig:
        if self.tls_cert and not self.tls_key:
            raise rule_error(
                "missing: http.tls_cert is set, so give its private key too "
                "(--tls-key, REGISTRY_HTTP_TLS_KEY)",
                "tls_key",
            )
        if self.tls_key and not self.tls_cert:
            raise rule_error(
                "missing: http.tls_key is set, so give its certificate too "
                "(--tls-cert, REGISTRY_HTTP_TLS_CERT)",
                "tls_cert",
            )
        return self


class FilesystemConfig(Section):
    rootdirectory: str = "./data"


class S3Config(Section):
    bucket: str = ""
    region: str = "us-east-1"
    endpoint_url: str | None = None
    path_style: bool = False
    prefix: str = ""
    access_key_id: str | None = None
    secret_access_key: str | None = Field(default=None, repr=False)
    encrypt: bool = False
    kms_key_id: str | None = None
    storage_class: str | None = None
    max_pool_connections: int = 32
    part_size: int = 16 * 1024 * 1024
    redirect: bool = False
    redirect_expiry: Duration = 1200.0
    verify_tls: bool = True

    def driver_settings(self) -> S3Settings:
        """What the S3 driver reads of this section, in its own type."""
        from storage_backends.s3 import S3Settings  # boto3: loaded for S3 registries only

        return S3Settings(**{f.name: getattr(self, f.name) for f in dataclasses.fields(S3Settings)})


class DeleteConfig(Section):
    enabled: bool = True


class ReadCacheConfig(Section):
    # Seconds a process trusts a blob link or manifest revision it read (registry/store/
    # read_cache.py): the most it lags behind a delete made through another process.
    # null: 5s with driver s3, 0 (no cache) with filesystem. What a tag points at is never
    # cached; pages of tags are, checked against the tags version on each request.
    ttl: Duration | None = Field(default=None, ge=0)
    entries: int = Field(default=10_000, ge=0)  # per kind of fact
    manifest_bytes: int = Field(default=8 * 1024 * 1024, ge=0)  # manifest bodies kept

    def ttl_for(self, driver: str) -> float:
        if self.ttl is not None:
            return self.ttl
        return 5.0 if driver == "s3" else 0.0


class StorageConfig(Section):
    driver: Literal["filesystem", "s3"] = "filesystem"
    filesystem: FilesystemConfig = FilesystemConfig()
    s3: S3Config = S3Config()
    delete: DeleteConfig = DeleteConfig()
    cache: ReadCacheConfig = ReadCacheConfig()
    # Refuse every push and delete (405), e.g. for a mirror. For maintenance windows use
    # `registry readonly on|off` instead: a flag object in storage, seen by all workers.
    readonly: bool = False
    # How long a process trusts its last read of that flag object.
    readonly_flag_ttl: Duration = 2.0

    @model_validator(mode="after")
    def _s3_has_a_bucket(self) -> StorageConfig:
        if self.driver == "s3" and not self.s3.bucket:
            raise rule_error(
                "required with storage.driver: s3 (REGISTRY_STORAGE_S3_BUCKET)",
                "s3",
                "bucket",
            )
        return self


class UploadsConfig(Section):
    # Smallest PATCH chunk advertised as OCI-Chunk-Min-Length (0: not advertised).
    chunk_min_length: int = 0
    # Sessions idle for longer than this are purged.
    expiry: Duration = 24 * 3600.0


class LogConfig(Section):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["json", "text"] = "text"
    access_log: bool = True


class MetricsConfig(Section):
    # Serve Prometheus metrics at /metrics and time the storage driver's operations.
    enabled: bool = True


class HealthConfig(Section):
    # Longest /health/ready waits for the storage backend before it answers 503.
    storage_timeout: Duration = 5.0


# --- auth: docs/auth.md is the reference; registry/auth/ builds the policy from this.


class AuthUserConfig(Section):
    password_hash: str = Field(repr=False)  # bcrypt ($2b$/$2y$/$2a$)
    groups: list[str] = []

    @field_validator("password_hash")
    @classmethod
    def _bcrypt(cls, v: str) -> str:
        from registry.auth.identities import is_bcrypt_hash  # registry.auth imports this

        if not is_bcrypt_hash(v):
            raise ValueError(
                "not a bcrypt hash ($2b$, $2y$ or $2a$): make one with `registry user add` "
                "or `htpasswd -nB NAME`"
            )
        return v


class AuthGrantConfig(Section):
    # Name patterns (docs/patterns.md): "team-a/*" one level, "team-a/**" all below.
    repositories: list[RepositoryPattern] = Field(min_length=1)
    role: str
    users: list[str] = []  # "*": every authenticated user
    groups: list[str] = []

    @model_validator(mode="after")
    def _binds_someone(self) -> AuthGrantConfig:
        if not self.users and not self.groups:
            raise rule_error(
                "a grant names no users or groups (use auth.anonymous for everyone)", "users"
            )
        return self


class AnonymousGrantConfig(Section):
    repositories: list[RepositoryPattern] = Field(min_length=1)  # docs/patterns.md
    role: str = "reader"


class LoginLimitConfig(Section):
    # More failed logins than this for one user name from one client address within
    # `window` are refused unchecked (0: no limit).
    max_failures: int = 5
    # ... and more than this from one client address, whatever the user names.
    max_failures_per_address: int = Field(default=50, ge=1)
    window: Duration = 60.0


class TokenAuthConfig(Section):
    # Where clients get tokens; unset: the built-in endpoint, <this registry>/auth/token.
    realm: str | None = None
    service: str = "registry"  # the audience (aud) of tokens
    issuer: str = "registry"  # the issuer (iss) written and accepted
    # The built-in token service signs tokens and serves /auth/token and
    # /.well-known/jwks.json. Off: only tokens from the external `realm` are accepted.
    builtin: bool = True
    key_file: str = "token-signing-key.pem"  # generated on first start when absent
    algorithm: Literal["RS256", "ES256"] = "ES256"
    kid_format: Literal["rfc7638", "libtrust"] = "rfc7638"
    lifetime: Duration = 300.0
    refresh_lifetime: Duration = 30 * 86400.0
    leeway: Duration = 30.0
    # Verification: accepted algorithms and the keys of an external issuer.
    algorithms: list[Literal["RS256", "ES256"]] = ["RS256", "ES256"]
    trusted_keys: list[str] = []  # PEM files of public keys or certificates
    rootcertbundle: str | None = None  # PEM certificates (also roots for x5c chains)
    jwks: str | None = None  # a JWKS file

    @field_validator("lifetime")
    @classmethod
    def _at_least_a_minute(cls, v: float) -> float:
        if v < 60:
            raise ValueError("tokens must live at least 60s (token.md)")
        return v


class AuthConfig(Section):
    mode: Literal["none", "basic", "token"] = "none"
    realm: str = "registry"  # the realm of Basic challenges
    htpasswd: str | None = None  # bcrypt users file, managed by `registry user`
    users: dict[str, AuthUserConfig] = {}
    groups: dict[str, list[str]] = {}  # group -> member user names
    roles: dict[str, list[str]] = {}  # more roles beside reader/writer/maintainer/admin
    grants: list[AuthGrantConfig] = []
    anonymous: list[AnonymousGrantConfig] = []
    login_limit: LoginLimitConfig = LoginLimitConfig()
    token: TokenAuthConfig = TokenAuthConfig()

    @model_validator(mode="after")
    def _consistent(self) -> AuthConfig:
        # Imported here: registry.auth imports this module.
        from registry.auth.access import ANY_ACTION, BUILTIN_ROLES, REPOSITORY_ACTIONS

        actions = {*REPOSITORY_ACTIONS, ANY_ACTION}
        for role, granted in self.roles.items():
            unknown = sorted(set(granted) - actions)
            if unknown:
                raise rule_error(
                    f"unknown actions {unknown} (actions are {', '.join(sorted(actions))})",
                    "roles",
                    role,
                )
        roles = {*BUILTIN_ROLES, *self.roles}
        bindings = [("grants", i, g.role) for i, g in enumerate(self.grants)]
        bindings += [("anonymous", i, a.role) for i, a in enumerate(self.anonymous)]
        for where, i, role in bindings:
            if role not in roles:
                raise rule_error(
                    f"unknown role {role!r} (roles: {', '.join(sorted(roles))}; "
                    "define more under auth.roles)",
                    where,
                    i,
                    "role",
                )
        if self.mode == "basic" and not self.htpasswd and not self.users:
            raise rule_error(
                "basic, but nobody can log in: set auth.htpasswd (the file that "
                "`registry user add` writes) or auth.users",
                "mode",
            )
        token = self.token
        if self.mode == "token" and not token.builtin:
            if not token.realm:
                raise rule_error(
                    "required with auth.token.builtin: false (the URL of the external "
                    "token service)",
                    "token",
                    "realm",
                )
            if not (token.trusted_keys or token.rootcertbundle or token.jwks):
                raise rule_error(
                    "false, but no key of the external issuer is trusted: set "
                    "auth.token.trusted_keys, rootcertbundle or jwks",
                    "token",
                    "builtin",
                )
        return self


# --- gc: docs/gc.md is the reference; registry/gc/ evaluates these.


class RetentionPolicyConfig(Section):
    # Repository name patterns (docs/patterns.md): "*" one segment, "**" several.
    repositories: list[RepositoryPattern] = Field(default=["**"], min_length=1)
    # Keep this many of the most recently pushed (unprotected) tags.
    keep_last: int | None = Field(default=None, ge=0)
    # Delete (unprotected) tags not pushed for this long.
    older_than: Duration | None = None
    # Tag patterns never deleted, e.g. ["latest", "v*"] (docs/patterns.md).
    protect: list[TagPattern] = []

    @model_validator(mode="after")
    def _selects_something(self) -> RetentionPolicyConfig:
        if self.keep_last is None and self.older_than is None:
            raise ValueError("a retention policy needs keep_last, older_than or both")
        return self


class UntaggedConfig(Section):
    # delete: manifests no tag reaches (not even as an index child or as a referrer of
    # a kept manifest) go once older than `older_than` and the grace period.
    policy: Literal["keep", "delete"] = "delete"
    older_than: Duration = Field(default=0.0, ge=0)


class GcConfig(Section):
    # Collect in the background of `registry serve`; `registry gc` works either way.
    enabled: bool = True
    interval: Duration = Field(default=3600.0, gt=0)
    # Nothing pushed, uploaded or linked more recently than this is deleted.
    grace_period: Duration = Field(default=3600.0, ge=0)
    # The storage lease that lets one collection run at a time across all processes.
    lease_ttl: Duration = Field(default=60.0, ge=5)
    # Between runs a collection re-marks only what changed; every this often it marks
    # everything (0: every run), which also finds what no change record names.
    full_mark_interval: Duration = Field(default=86400.0, ge=0)
    untagged: UntaggedConfig = UntaggedConfig()
    retention: list[RetentionPolicyConfig] = []

    @field_validator("retention", mode="before")
    @classmethod
    def _yaml_list(cls, v: Any) -> Any:
        # REGISTRY_GC_RETENTION carries the list as YAML (or JSON) text.
        return yaml.safe_load(v) if isinstance(v, str) else v


# --- policy: docs/governance.md is the reference; registry/policy/ enforces these.

_BYTE_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgtp]i?b|b)?\s*$", re.I)
_BYTE_UNITS = {"b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12, "pb": 10**15}
_BYTE_UNITS |= {"kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40, "pib": 2**50}


def parse_byte_size(value: Any) -> int:
    """Bytes from ``50GiB``, ``500MB``, ``1.5TiB`` or a plain number (bytes)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    m = _BYTE_SIZE.match(str(value))
    if not m:
        raise ValueError(f"not a size: {value!r} (write it like 500MB, 50GiB, 2TiB)")
    return int(float(m.group(1)) * _BYTE_UNITS[(m.group(2) or "b").lower()])


# A number of bytes, written in configuration as 500MB, 50GiB or a plain number.
ByteSize = Annotated[int, BeforeValidator(parse_byte_size)]
# Names of quotas: they name a folder in storage and a metrics label.
_QUOTA_NAME = re.compile(r"^[a-z0-9](?:[a-z0-9._-]{0,62}[a-z0-9])?$")


class ImmutableTagRuleConfig(Section):
    # Named in refusals; default "immutable_tags[<index>]".
    name: str | None = None
    repositories: list[RepositoryPattern] = Field(min_length=1)
    # Tags that may not move or go once they exist ("*": every tag).
    tags: list[TagPattern] = Field(default=["*"], min_length=1)
    # Tags the rule leaves mutable although `tags` matches them (e.g. "*-rc*", "latest").
    exceptions: list[TagPattern] = []
    # The tags clients use as referrer fallbacks and for cosign signatures
    # (sha256-<hex>, sha256-<hex>.sig/.att/.sbom): exempt unless this is false.
    exempt_referrer_tags: bool = True


class QuotaConfig(Section):
    # The namespace's name (API, CLI, metrics, storage); default: the first pattern's
    # part before its first wildcard, e.g. "team-a" for "team-a/**".
    name: str | None = None
    repositories: list[RepositoryPattern] = Field(min_length=1)
    limit: ByteSize = Field(ge=0)
    # true: every matching repository has `limit` of its own; false: they share it.
    per_repository: bool = False

    @model_validator(mode="after")
    def _named(self) -> QuotaConfig:
        if self.name is None:
            derived = literal_prefix(self.repositories[0]).strip("/").replace("/", ".")
            if not _QUOTA_NAME.match(derived):
                raise rule_error(
                    f"cannot name this quota after {self.repositories[0]!r}: give it a name",
                    "name",
                )
            self.name = derived
        elif not _QUOTA_NAME.match(self.name):
            raise rule_error(
                "a quota name is 1-64 of a-z 0-9 . _ - (starting and ending with a letter "
                "or digit)",
                "name",
            )
        return self


class QuotaSettingsConfig(Section):
    # Bytes a chunk of unknown length may take before the namespace is checked again.
    upload_grant: ByteSize = Field(default=64 * 2**20, ge=2**20)
    # How long a blob pushed but not yet used by a manifest counts as a push in progress
    # (never as usage); a push that has not finished by then has failed.
    pending_window: Duration = Field(default=3600.0, gt=0)
    # An upload session idle for this long stops counting as in flight.
    session_idle: Duration = Field(default=900.0, gt=0)
    # How often the usage records are compacted and checked against storage.
    compact_interval: Duration = Field(default=60.0, gt=0)


class PolicyConfig(Section):
    immutable_tags: list[ImmutableTagRuleConfig] = []
    quotas: list[QuotaConfig] = []
    quota: QuotaSettingsConfig = QuotaSettingsConfig()

    @field_validator("immutable_tags", "quotas", mode="before")
    @classmethod
    def _yaml_list(cls, v: Any) -> Any:
        # REGISTRY_POLICY_QUOTAS carries the list as YAML (or JSON) text.
        return yaml.safe_load(v) if isinstance(v, str) else v

    @model_validator(mode="after")
    def _unique_names(self) -> PolicyConfig:
        seen: set[str] = set()
        for i, quota in enumerate(self.quotas):
            if quota.name in seen:
                raise rule_error(f"two quotas are named {quota.name!r}", "quotas", i, "name")
            seen.add(str(quota.name))
        for i, rule in enumerate(self.immutable_tags):
            if rule.name is None:
                rule.name = f"immutable_tags[{i}]"
        return self


# --- notifications: docs/events.md is the reference; registry/events/ records and delivers.

# An endpoint's name is part of storage paths (its queue) and of metric labels.
_ENDPOINT_NAME = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
SIGNING_SECRET_PREFIX = "whsec_"  # noqa: S105 (a prefix, not a secret)


def check_signing_secret(secret: SecretStr) -> SecretStr:
    """A Standard Webhooks secret: ``whsec_`` and 24 to 64 random bytes in base64."""
    value = secret.get_secret_value()
    if not value.startswith(SIGNING_SECRET_PREFIX):
        raise ValueError(
            "a signing secret starts with whsec_ followed by base64 (make one with: "
            "python3 -c \"import base64,os; print('whsec_' + "
            'base64.b64encode(os.urandom(32)).decode())")'
        )
    try:
        key = base64.b64decode(value[len(SIGNING_SECRET_PREFIX) :], validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("a signing secret's part after whsec_ must be base64") from None
    if not 24 <= len(key) <= 64:
        raise ValueError("a signing secret holds 24 to 64 bytes (32 is usual)")
    return secret


SigningSecret = Annotated[SecretStr, AfterValidator(check_signing_secret)]


def _header_values(value: Any) -> Any:
    # distribution writes every header value as a list; a single string is accepted too.
    if isinstance(value, dict):
        return {k: [v] if isinstance(v, str) else v for k, v in value.items()}
    return value


class NotificationIgnoreConfig(Section):
    mediatypes: list[str] = []
    actions: list[Literal["push", "pull", "mount", "delete", "create"]] = []
    # Changes made for these origins are not sent (replication: no loops between sites).
    origins: list[Literal["client", "proxy", "replication", "gc", "internal"]] = []


class NotificationEndpointConfig(Section):
    name: str = Field(pattern=_ENDPOINT_NAME)
    disabled: bool = False
    url: str = Field(pattern=r"^https?://[^\s]+$")
    # Static headers of every request (e.g. Authorization); values are lists, as in
    # distribution. Never logged.
    headers: Annotated[dict[str, list[str]], BeforeValidator(_header_values)] = Field(
        default={}, repr=False
    )
    timeout: Duration = Field(default=1.0, gt=0)
    # After `threshold` consecutive failures the wait doubles from `backoff` on, up to
    # `maxbackoff`; before that it is `backoff` (jittered either way).
    threshold: int = Field(default=10, ge=1)
    backoff: Duration = Field(default=1.0, gt=0)
    maxbackoff: Duration = Field(default=300.0, gt=0)
    # Attempts after the first; then the events go to the dead letters.
    maxretries: int = Field(default=20, ge=0)
    # Events waiting for this endpoint in storage; more are dropped (counted, logged).
    queue_limit: int = Field(default=10000, ge=1)
    # Most events per request, when that many wait (distribution's envelope holds a list;
    # 1: one event per request, for receivers that read only the first).
    batch: int = Field(default=10, ge=1, le=100)
    format: Literal["distribution", "cloudevents"] = "distribution"
    ignoredmediatypes: list[str] = []
    ignore: NotificationIgnoreConfig = NotificationIgnoreConfig()
    # Only events of these repositories (docs/patterns.md).
    repositories: list[RepositoryPattern] = Field(default=["**"], min_length=1)
    # Standard Webhooks signing (whsec_...); two while rotating: each request is signed
    # with both. Never logged.
    secrets: list[SigningSecret] = Field(default=[], max_length=2)

    @model_validator(mode="after")
    def _backoff_order(self) -> NotificationEndpointConfig:
        if self.maxbackoff < self.backoff:
            raise rule_error("must not be shorter than backoff", "maxbackoff")
        return self


class NotificationEventsConfig(Section):
    # Manifest events list the descriptors the manifest references (distribution's name).
    includereferences: bool = False
    # Record pulls: manifest GET and HEAD, blob GET (a write per pull).
    pulls: bool = False
    # With pulls: a manifest HEAD counts as a pull (clients send one before each GET).
    headpulls: bool = True
    # The registry's external URL, for target.url; unset: the URL each request came to.
    baseurl: str | None = Field(default=None, pattern=r"^https?://[^\s/]+(/[^\s]*)?$")


class NotificationsConfig(Section):
    events: NotificationEventsConfig = NotificationEventsConfig()
    endpoints: list[NotificationEndpointConfig] = []
    # The storage lease that lets one process of all deliver (docs/events.md): more
    # than twice the lease's settle time (lease_ttl_error).
    lease_ttl: Duration = 30.0
    # How often the delivering process looks for events recorded by other processes.
    poll_interval: Duration = Field(default=1.0, gt=0)
    # A recorded change not visible after this long (a crash stopped it) is dropped.
    inflight_timeout: Duration = Field(default=300.0, gt=0)

    @field_validator("endpoints", mode="before")
    @classmethod
    def _yaml_list(cls, v: Any) -> Any:
        # REGISTRY_NOTIFICATIONS_ENDPOINTS carries the list as YAML (or JSON) text.
        return yaml.safe_load(v) if isinstance(v, str) else v

    @model_validator(mode="after")
    def _lease(self) -> NotificationsConfig:
        error = lease_ttl_error(self.lease_ttl)
        if error is not None:
            raise error
        return self

    @model_validator(mode="after")
    def _unique_names(self) -> NotificationsConfig:
        seen: set[str] = set()
        for i, endpoint in enumerate(self.endpoints):
            if endpoint.name in seen:
                raise rule_error(
                    f"two endpoints are named {endpoint.name!r}", "endpoints", i, "name"
                )
            seen.add(endpoint.name)
        return self

    @property
    def active_endpoints(self) -> list[NotificationEndpointConfig]:
        return [e for e in self.endpoints if not e.disabled]


# --- proxy: docs/proxy.md is the reference; registry/proxy/ serves from these.

_UPSTREAM_NAME = re.compile(r"^[a-z][a-z0-9-]{0,62}$")
DOCKER_HUB_HOSTS = ("registry-1.docker.io", "docker.io", "index.docker.io")


class ProxyUpstreamConfig(RemoteSettings):
    """One upstream of the pull-through cache: how to reach it (``url``, ``credentials``,
    ``ca_bundle``/``insecure``, ``timeouts`` as in registry/remote/settings.py) and how
    it is served here."""

    name: str  # in metrics, logs and lease names: [a-z][a-z0-9-]*
    # The local namespace that serves it: <registry>/<namespace>/<upstream repository>.
    # Default: the name.
    namespace: str | None = None
    # The ``ns`` values (containerd's upstream host[:port]) routed here. Default: the
    # url's host[:port], and docker.io, index.docker.io for Docker Hub.
    hosts: list[str] = []
    # A tag is revalidated upstream (HEAD) when its last check is older than this.
    tag_ttl: Duration = Field(default=300.0, ge=0)
    # How old a cached tag may be and still be served when the upstream fails (None:
    # any age).
    max_stale: Duration | None = None
    # Docker's registry-mirrors: requests without ``ns`` for a name outside every
    # namespace and not stored here go to this upstream (at most one).
    default: bool = False
    # Accept pushes into the namespace (tags pushed here are served as they are).
    writable: bool = False
    # One-component names get ``library/`` upstream (Docker Hub's official images).
    # None: on for Docker Hub.
    library: bool | None = None

    @model_validator(mode="after")
    def _names(self) -> ProxyUpstreamConfig:
        from registry.reference import is_valid_name  # imports registry.errors only

        if not _UPSTREAM_NAME.match(self.name):
            raise rule_error(
                f"{self.name!r}: an upstream name is lowercase letters, digits and '-', "
                "starting with a letter",
                "name",
            )
        if self.namespace is not None and not is_valid_name(self.namespace):
            raise rule_error(
                f"{self.namespace!r} is not a repository name (docs/proxy.md)", "namespace"
            )
        for i, host in enumerate(self.hosts):
            if not host or host != host.strip() or "/" in host or host.lower() != host:
                raise rule_error(f"{host!r}: write a lowercase host[:port]", "hosts", i)
        return self

    @property
    def local_namespace(self) -> str:
        return self.namespace or self.name

    @property
    def is_docker_hub(self) -> bool:
        return (urlsplit(self.url).hostname or "") in DOCKER_HUB_HOSTS

    @property
    def ns_hosts(self) -> tuple[str, ...]:
        """The ``ns`` values routed to this upstream."""
        if self.hosts:
            return tuple(self.hosts)
        own = urlsplit(self.url).netloc.lower()
        hub = DOCKER_HUB_HOSTS if self.is_docker_hub else ()
        return tuple(dict.fromkeys([own, *hub]))

    @property
    def library_prefix(self) -> bool:
        return self.is_docker_hub if self.library is None else self.library


class ProxyConfig(Section):
    upstreams: list[ProxyUpstreamConfig] = []
    # Cached manifests not pulled for this long are evicted (None: never).
    evict_after: Duration | None = Field(default=7 * 86400.0, gt=0)
    # Evict the least recently pulled cached images while the cache holds more (None:
    # no limit). Counted from what cached manifests reference, each blob once.
    max_size: Annotated[ByteSize, Field(gt=0)] | None = None
    eviction_interval: Duration = Field(default=3600.0, gt=0)
    # The storage lease that lets one process evict at a time.
    lease_ttl: Duration = Field(default=60.0, ge=5)
    # How stale the stored last-pulled time of a manifest may get: each process writes
    # it at most once per this period (reads never write storage each time).
    pulled_resolution: Duration = Field(default=3600.0, gt=0)
    # Where blobs being fetched are spooled so that every client follows one upstream
    # GET (default: the system's temporary folder). Workers of one host share it.
    spool_dir: str | None = None

    @field_validator("upstreams", mode="before")
    @classmethod
    def _yaml_list(cls, v: Any) -> Any:
        # REGISTRY_PROXY_UPSTREAMS carries the list as YAML (or JSON) text.
        return yaml.safe_load(v) if isinstance(v, str) else v

    @model_validator(mode="after")
    def _distinct(self) -> ProxyConfig:
        names: dict[str, int] = {}
        namespaces: dict[str, int] = {}
        hosts: dict[str, int] = {}
        default: int | None = None
        for i, upstream in enumerate(self.upstreams):
            if upstream.name in names:
                raise rule_error(f"{upstream.name!r} is used twice", "upstreams", i, "name")
            names[upstream.name] = i
            ns = upstream.local_namespace
            for other, j in namespaces.items():
                if ns == other or ns.startswith(other + "/") or other.startswith(ns + "/"):
                    raise rule_error(
                        f"namespace {ns!r} overlaps {other!r} of upstreams[{j}]: a name must "
                        "lead to one upstream",
                        "upstreams",
                        i,
                        "namespace",
                    )
            namespaces[ns] = i
            for host in upstream.ns_hosts:
                if host in hosts:
                    raise rule_error(
                        f"ns {host!r} is routed to upstreams[{hosts[host]}] already",
                        "upstreams",
                        i,
                        "hosts",
                    )
                hosts[host] = i
            if upstream.default:
                if default is not None:
                    raise rule_error(
                        f"upstreams[{default}] is the default already: at most one",
                        "upstreams",
                        i,
                        "default",
                    )
                default = i
        return self


# --- ui: docs/ui.md is the reference; registry/ui/ serves it.


class UiConfig(Section):
    # The web UI at /ui/ (and / redirecting there), served by the registry itself.
    enabled: bool = True
    # How long a login lasts; the session cookie expires with it (a password change
    # ends it earlier).
    session_lifetime: Duration = Field(default=8 * 3600.0, ge=60)


# --- replication: docs/replication.md is the reference; registry/replication/ runs these.

# A rule's name is part of storage paths, a lease name and metric labels.
_RULE_NAME = r"^[a-z][a-z0-9-]{0,49}$"
# What a mapping's prefixes may hold: the characters of repository names.
_NAME_PART = r"^[a-z0-9._/-]*$"


def check_regex(value: str) -> str:
    try:
        re.compile(value)
    except re.error as exc:
        raise ValueError(f"not a regular expression: {exc}") from None
    return value


Regex = Annotated[str, AfterValidator(check_regex)]
SemverRange = Annotated[str, AfterValidator(check_range)]


class ReplicationRepositoryFilterConfig(Section):
    include: list[RepositoryPattern] = Field(default=["**"], min_length=1)
    exclude: list[RepositoryPattern] = []
    regex: Regex | None = None  # the whole name must match (Python syntax)


class ReplicationTagFilterConfig(Section):
    include: list[TagPattern] = Field(default=["*"], min_length=1)
    exclude: list[TagPattern] = []
    regex: Regex | None = None
    semver: SemverRange | None = None  # e.g. ">=1.2 <2" or "^1.4 || ^2" (node-semver)


class ReplicationMappingConfig(Section):
    # Removed from the front of each source name; names without it are not replicated.
    strip: str = Field(default="", pattern=_NAME_PART)
    # Leading components dropped after `strip` ("all": only the last one is kept).
    flatten: Annotated[int, Field(ge=0)] | Literal["all"] = 0
    # Put in front of what remains.
    prefix: str = Field(default="", pattern=_NAME_PART)


class ReplicationTriggerConfig(Section):
    # Push rules: replicate each change as it happens (from the event outbox).
    # Default: true for push rules; pull rules cannot (the remote's changes are not ours).
    events: bool | None = None
    # A full pass this often: everything new, moved (and deleted, with `deletes`).
    interval: Duration | None = Field(default=None, gt=0)


class ReplicationRetryConfig(Section):
    # After `threshold` consecutive failures the wait doubles from `backoff`, up to
    # `maxbackoff`. A rule whose target is down waits; it never drops what it owes.
    threshold: int = Field(default=3, ge=1)
    backoff: Duration = Field(default=1.0, gt=0)
    maxbackoff: Duration = Field(default=60.0, gt=0)


class ReplicationRuleConfig(Section):
    name: str = Field(pattern=_RULE_NAME)
    direction: Literal["push", "pull"]
    remote: RemoteSettings
    repositories: ReplicationRepositoryFilterConfig = ReplicationRepositoryFilterConfig()
    tags: ReplicationTagFilterConfig = ReplicationTagFilterConfig()
    mapping: ReplicationMappingConfig = ReplicationMappingConfig()
    referrers: bool = True  # signatures, SBOMs and other referrers go with their subject
    deletes: bool = False  # tag and manifest deletes (retention's and the collector's too)
    trigger: ReplicationTriggerConfig = ReplicationTriggerConfig()
    parallel: int = Field(default=4, ge=1, le=64)  # blobs (and artifacts) copied at once
    chunk_size: ByteSize = Field(default=64 * 2**20, ge=64 * 2**10)  # larger blobs: chunks
    max_bytes_per_second: ByteSize | None = Field(default=None, gt=0)
    retry: ReplicationRetryConfig = ReplicationRetryConfig()
    # Events waiting for this rule in storage (a target down for long); more are dropped,
    # and the next full pass (`trigger.interval`) catches up on them.
    queue_limit: int = Field(default=100_000, ge=1)

    @property
    def on_events(self) -> bool:
        return self.direction == "push" and self.trigger.events is not False

    @model_validator(mode="after")
    def _trigger(self) -> ReplicationRuleConfig:
        if self.trigger.events and self.direction == "pull":
            raise rule_error(
                "a pull rule cannot follow events (the remote's changes are not recorded "
                "here): give it trigger.interval, or run it with `registry replicate run`",
                "trigger",
                "events",
            )
        if self.retry.maxbackoff < self.retry.backoff:
            raise rule_error("must not be shorter than backoff", "retry", "maxbackoff")
        return self


class ReplicationConfig(Section):
    rules: list[ReplicationRuleConfig] = []
    # The storage lease of each rule's full passes: one process of all runs a rule.
    lease_ttl: Duration = Field(default=30.0, ge=5)
    # How often `registry serve` looks at its configuration file for changed rules.
    reload_interval: Duration = Field(default=5.0, gt=0)

    @field_validator("rules", mode="before")
    @classmethod
    def _yaml_list(cls, v: Any) -> Any:
        # REGISTRY_REPLICATION_RULES carries the list as YAML (or JSON) text.
        return yaml.safe_load(v) if isinstance(v, str) else v

    @model_validator(mode="after")
    def _lease(self) -> ReplicationConfig:
        error = lease_ttl_error(self.lease_ttl)
        if error is not None:
            raise error
        return self

    @model_validator(mode="after")
    def _unique_names(self) -> ReplicationConfig:
        seen: set[str] = set()
        for i, rule in enumerate(self.rules):
            if rule.name in seen:
                raise rule_error(f"two rules are named {rule.name!r}", "rules", i, "name")
            seen.add(rule.name)
        return self


class Config(Section):
    http: HttpConfig = HttpConfig()
    storage: StorageConfig = StorageConfig()
    uploads: UploadsConfig = UploadsConfig()
    log: LogConfig = LogConfig()
    metrics: MetricsConfig = MetricsConfig()
    health: HealthConfig = HealthConfig()
    auth: AuthConfig = AuthConfig()
    gc: GcConfig = GcConfig()
    policy: PolicyConfig = PolicyConfig()
    notifications: NotificationsConfig = NotificationsConfig()
    proxy: ProxyConfig = ProxyConfig()
    ui: UiConfig = UiConfig()
    replication: ReplicationConfig = ReplicationConfig()
    # Largest manifest accepted, in bytes (413 above it).
    manifest_max_size: int = 4 * 1024 * 1024


def _set_from_env(
    model: type[BaseModel], data: dict[str, Any], tokens: list[str], value: str
) -> bool:
    fields = model.model_fields
    for i in range(len(tokens), 0, -1):
        key = "_".join(tokens[:i])
        if key not in fields:
            continue
        rest = tokens[i:]
        annotation = fields[key].annotation
        if not rest:
            data[key] = yaml.safe_load(value) if value.strip() else value
            if isinstance(data[key], dict | list) and not (
                isinstance(annotation, type) and issubclass(annotation, BaseModel)
            ):
                data[key] = value
            return True
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            sub = data.setdefault(key, {})
            if not isinstance(sub, dict):
                sub = data[key] = {}
            if _set_from_env(annotation, sub, rest, value):
                return True
    return False


def apply_env(data: dict[str, Any], environ: Mapping[str, str]) -> list[str]:
    """Apply REGISTRY_* overrides to ``data``; returns the variables that matched nothing."""
    unknown: list[str] = []
    for name in sorted(environ):
        if not name.startswith(ENV_PREFIX):
            continue
        tokens = name[len(ENV_PREFIX) :].lower().split("_")
        if not _set_from_env(Config, data, tokens, environ[name]):
            unknown.append(name)
    return unknown


def load_config(
    path: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Config:
    """Load YAML (if given), then the environment, then explicit CLI overrides."""
    data: dict[str, Any] = {}
    if path is not None:
        loaded = yaml.safe_load(Path(path).read_text()) or {}
        if not isinstance(loaded, dict):
            raise ValueError(f"{path}: the top level must be a mapping")
        data = loaded
    apply_env(data, os.environ if environ is None else environ)
    for dotted, value in (overrides or {}).items():
        node = data
        *parents, leaf = dotted.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return Config.model_validate(data)
