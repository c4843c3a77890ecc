"""One configuration model for everything: YAML file, then REGISTRY_* environment.

Every key can be overridden from the environment the way CNCF distribution does it:
``REGISTRY_STORAGE_DELETE_ENABLED=false`` sets ``storage.delete.enabled``. Underscores
are matched against field names greedily, so ``REGISTRY_STORAGE_S3_ENDPOINT_URL`` sets
``storage.s3.endpoint_url``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from registry.patterns import check_repository_pattern, check_tag_pattern

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


class DeleteConfig(Section):
    enabled: bool = True


class ReadCacheConfig(Section):
    # Seconds a process trusts a blob link or manifest revision it read (registry/store/
    # read_cache.py): the most it lags behind a delete made through another process.
    # null: 5s with driver s3, 0 (no cache) with filesystem. Tags are never cached.
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
    untagged: UntaggedConfig = UntaggedConfig()
    retention: list[RetentionPolicyConfig] = []

    @field_validator("retention", mode="before")
    @classmethod
    def _yaml_list(cls, v: Any) -> Any:
        # REGISTRY_GC_RETENTION carries the list as YAML (or JSON) text.
        return yaml.safe_load(v) if isinstance(v, str) else v


class Config(Section):
    http: HttpConfig = HttpConfig()
    storage: StorageConfig = StorageConfig()
    uploads: UploadsConfig = UploadsConfig()
    log: LogConfig = LogConfig()
    metrics: MetricsConfig = MetricsConfig()
    health: HealthConfig = HealthConfig()
    auth: AuthConfig = AuthConfig()
    gc: GcConfig = GcConfig()
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
