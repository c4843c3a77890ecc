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
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator

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


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class HttpConfig(Section):
    host: str = "0.0.0.0"
    port: int = 5000
    workers: int = 1
    tls_cert: str | None = None
    tls_key: str | None = None
    # Trust X-Forwarded-Proto/Host from these addresses (uvicorn's forwarded_allow_ips).
    forwarded_allow_ips: str = "127.0.0.1"
    graceful_timeout: float = 30.0

    @field_validator("graceful_timeout", mode="before")
    @classmethod
    def _duration(cls, v: Any) -> float:
        return parse_duration(v)


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
    redirect_expiry: float = 1200.0
    verify_tls: bool = True

    @field_validator("redirect_expiry", mode="before")
    @classmethod
    def _duration(cls, v: Any) -> float:
        return parse_duration(v)


class DeleteConfig(Section):
    enabled: bool = True


class StorageConfig(Section):
    driver: Literal["filesystem", "s3"] = "filesystem"
    filesystem: FilesystemConfig = FilesystemConfig()
    s3: S3Config = S3Config()
    delete: DeleteConfig = DeleteConfig()
    readonly: bool = False


class UploadsConfig(Section):
    # Smallest PATCH chunk advertised as OCI-Chunk-Min-Length (0: not advertised).
    chunk_min_length: int = 0
    # Sessions idle for longer than this are purged.
    expiry: float = 24 * 3600.0

    @field_validator("expiry", mode="before")
    @classmethod
    def _duration(cls, v: Any) -> float:
        return parse_duration(v)


class LogConfig(Section):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["json", "text"] = "text"
    access_log: bool = True


class Config(Section):
    http: HttpConfig = HttpConfig()
    storage: StorageConfig = StorageConfig()
    uploads: UploadsConfig = UploadsConfig()
    log: LogConfig = LogConfig()
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
