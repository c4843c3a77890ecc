"""How to reach another registry: URL, credentials, TLS, timeouts, user agent.

The configuration sections of the pull-through cache and of replication embed
``RemoteSettings``. Passwords are ``SecretStr`` (masked in every repr) or references to a
file or an environment variable, read when a client is made.
"""

from __future__ import annotations

import os
import ssl
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, SecretStr, model_validator

DEFAULT_USER_AGENT = "registry-remote/0.1"


def _seconds(value: Any) -> float:
    # Imported here, not at the top: registry.config embeds these settings.
    from registry.config import parse_duration

    return parse_duration(value)


# A duration in seconds, written in configuration as 90s, 15m, 1h or a number.
Seconds = Annotated[float, BeforeValidator(_seconds), Field(gt=0)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RemoteTimeouts(_Model):
    connect: Seconds = 10.0
    # From sending a request (without a body) to its response headers. Below containerd's
    # 30 s so that a client of the cache hears the cache's error rather than giving up.
    response_headers: Seconds = 20.0
    # Longest silence while reading a body (or sending one).
    idle_read: Seconds = 60.0


class CredentialsError(ValueError):
    """A password reference that cannot be read; says where, never what."""


class RemoteCredentials(_Model):
    """A user name and exactly one of ``password``, ``password_file``, ``password_env``."""

    username: str
    password: SecretStr | None = None
    password_file: str | None = None  # the file's content, less one trailing newline
    password_env: str | None = None  # the name of an environment variable

    @model_validator(mode="after")
    def _one_password(self) -> RemoteCredentials:
        given = [v for v in (self.password, self.password_file, self.password_env) if v is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of password, password_file, password_env")
        if ":" in self.username:
            raise ValueError("a user name cannot contain ':' (HTTP Basic)")
        return self

    def resolve(self) -> tuple[str, str]:
        """``(username, password)``; raises CredentialsError naming the missing source."""
        if self.password is not None:
            return self.username, self.password.get_secret_value()
        if self.password_file is not None:
            try:
                text = Path(self.password_file).read_text()
            except OSError as exc:
                raise CredentialsError(
                    f"cannot read password_file {self.password_file!r}: {exc.strerror}"
                ) from None
            return self.username, text.removesuffix("\n").removesuffix("\r")
        assert self.password_env is not None
        value = os.environ.get(self.password_env)
        if value is None:
            raise CredentialsError(f"environment variable {self.password_env!r} is not set")
        return self.username, value


class RemoteSettings(_Model):
    """One remote registry. ``url`` is its root (``https://registry-1.docker.io``)."""

    url: str
    credentials: RemoteCredentials | None = None
    ca_bundle: str | None = None  # PEM file of the CAs to trust instead of the system's
    insecure: bool = False  # do not verify the TLS certificate (test setups only)
    timeouts: RemoteTimeouts = RemoteTimeouts()
    user_agent: str = DEFAULT_USER_AGENT

    @model_validator(mode="after")
    def _root_url(self) -> RemoteSettings:
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"url must be http(s)://host[:port], not {self.url!r}")
        if parts.username is not None or parts.password is not None:
            raise ValueError("url must not hold credentials: use `credentials`")
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise ValueError("url is the registry's root: no path, query or fragment")
        try:
            parts.port  # noqa: B018 -- raises on a bad port
        except ValueError:
            raise ValueError(f"url has an invalid port: {self.url!r}") from None
        if self.insecure and self.ca_bundle:
            raise ValueError("insecure and ca_bundle exclude each other")
        return self

    @property
    def origin(self) -> str:
        """``scheme://host[:port]``, without a trailing slash."""
        parts = urlsplit(self.url)
        return f"{parts.scheme}://{parts.netloc}"

    @property
    def host(self) -> str:
        """``host[:port]`` as written in the URL (containerd's ``ns`` value)."""
        return urlsplit(self.url).netloc

    def tls_verify(self) -> ssl.SSLContext | bool:
        """What httpx's ``verify`` gets: False when insecure, a context for a CA bundle."""
        if self.insecure:
            return False
        if self.ca_bundle:
            return ssl.create_default_context(cafile=self.ca_bundle)
        return True
