"""The block ``registry serve`` prints once when it starts (in the parent process, not
per worker): what runs, where the data is, who may do what, and the warnings an operator
must see before the first push.
"""

from __future__ import annotations

import ipaddress
import json
import sys
import time
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from registry.config import Config

_LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost"}


def registry_version() -> str:
    try:
        return version("registry")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown"


@dataclass(frozen=True)
class StartFacts:
    """What ``registry serve`` learnt while starting, beside the configuration."""

    signing_key_generated: bool = False
    storage_error: str | None = None  # the storage did not answer the start-up check


def is_loopback(host: str) -> bool:
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def banner_lines(config: Config, facts: StartFacts) -> tuple[list[tuple[str, str]], list[str]]:
    """(label, value) rows and warnings."""
    from registry.preflight import storage_location

    http, auth, gc = config.http, config.auth, config.gc
    scheme = "https" if http.tls_cert else "http"
    host = f"[{http.host}]" if ":" in http.host else http.host
    workers = f"{http.workers} worker{'s' if http.workers != 1 else ''}"
    rows = [
        ("version", registry_version()),
        ("listening", f"{scheme}://{host}:{http.port} ({workers})"),
        ("storage", storage_location(config.storage) + _storage_mode(config)),
        ("auth", _auth(config, facts)),
    ]
    if gc.enabled and not config.storage.readonly:
        rows.append(
            ("gc", f"every {_duration(gc.interval)}, grace period {_duration(gc.grace_period)}")
        )
    else:
        rows.append(("gc", "off in the server (`registry gc` collects on demand)"))
    warnings: list[str] = []
    if facts.storage_error is not None:
        warnings.append(
            f"the storage does not answer ({facts.storage_error}); starting anyway: "
            "pushes and pulls fail and /health/ready answers 503 until it does"
        )
    writable = not config.storage.readonly
    if auth.mode == "none" and not is_loopback(http.host) and writable:
        deletes = " and delete" if config.storage.delete.enabled else ""
        warnings.append(
            f"this registry is open: anyone who reaches port {http.port} may push{deletes} "
            "(auth.mode: none); set up auth (docs/auth.md) or listen on 127.0.0.1 (--host)"
        )
    return rows, warnings


def _storage_mode(config: Config) -> str:
    if config.storage.readonly:
        return ", read-only (storage.readonly)"
    if not config.storage.delete.enabled:
        return ", deletes off"
    return ""


def _auth(config: Config, facts: StartFacts) -> str:
    auth = config.auth
    if auth.mode == "none":
        return "none: every request is allowed"
    users = [f"users file {Path(auth.htpasswd).resolve()}"] if auth.htpasswd else []
    if auth.users:
        n = len(auth.users)
        users.append(f"{n} user{'' if n == 1 else 's'} in the configuration")
    token = auth.token
    if auth.mode == "basic":
        mode = "basic"
    elif not token.builtin:
        mode = f"token, from the external issuer at {token.realm}"
    else:
        key = Path(token.key_file).resolve()
        made = f"signing key generated in {key}" if facts.signing_key_generated else f"key {key}"
        mode = f"token, built-in token service ({made})"
    return "; ".join([mode, ", ".join(users)]) if users else mode


def _duration(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def print_banner(config: Config, facts: StartFacts) -> None:
    """On stderr, beside the log: a block of text, or one JSON object per line when the
    log is JSON (a log shipper then reads it like any other line)."""
    rows, warnings = banner_lines(config, facts)
    if config.log.format == "json":
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
        entry = {"time": stamp, "level": "info", "logger": "registry", "message": "starting"}
        print(json.dumps({**entry, **dict(rows)}), file=sys.stderr)
        for warning in warnings:
            entry = {**entry, "level": "warning", "message": warning}
            print(json.dumps(entry), file=sys.stderr)
    else:
        width = max(len(label) for label, _ in rows)
        lines = ["registry starting"]
        lines += [f"  {label.ljust(width)}  {value}" for label, value in rows]
        lines += [f"  warning: {w}" for w in warnings]
        print("\n".join(lines), file=sys.stderr)
    sys.stderr.flush()
