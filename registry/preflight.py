"""What commands check before they start, beyond the rules of the configuration itself
(registry/config.py): the files the configuration names, and the storage a command acts
on. One line per problem, naming the setting, the file and the fix.

``check_files`` is what ``registry serve`` would otherwise discover only while starting
(a traceback) or later (nobody can log in): ``registry serve`` and ``registry
check-config`` both run it. ``require_existing_storage`` stops a maintenance command run
from the wrong folder before it creates an empty store there.
"""

from __future__ import annotations

import asyncio
import os
import re
import ssl
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from registry.config import AuthConfig, Config, HttpConfig, StorageConfig
from registry.remote.settings import RemoteSettings
from storage_backends.factory import open_driver

Severity = Literal["error", "warning"]
Loc = tuple[str | int, ...]

_PEM_LABEL = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----")


@dataclass(frozen=True)
class Finding:
    loc: Loc  # the setting, e.g. ("http", "tls_cert")
    message: str
    severity: Severity = "error"


def check_files(config: Config) -> list[Finding]:
    """The files and folders the configuration names: there, readable, what they should
    hold, and the data folder writable (or creatable)."""
    return [
        *_tls_files(config.http),
        *_auth_files(config.auth),
        *_remote_files(config),
        *_data_folder(config.storage),
    ]


# ----------------------------------------------------------------------------- files


def _shown(path: str | os.PathLike[str]) -> str:
    return os.path.abspath(path)


def _read(loc: Loc, path: str, fix: str = "") -> bytes | Finding:
    """The bytes of a file, or the one line that says why not."""
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        return Finding(loc, f"{_shown(path)} does not exist{fix}")
    except IsADirectoryError:
        return Finding(loc, f"{_shown(path)} is a folder, not a file")
    except PermissionError:
        return Finding(loc, f"{_shown(path)} cannot be read by uid {os.geteuid()}")
    except OSError as exc:
        return Finding(loc, f"{_shown(path)} cannot be read: {exc.strerror or exc}")


def _pem_labels(data: bytes) -> set[str]:
    return {m.group(1).decode() for m in _PEM_LABEL.finditer(data)}


def _private(labels: set[str]) -> bool:
    return any(label.endswith("PRIVATE KEY") for label in labels)


def _tls_files(http: HttpConfig) -> list[Finding]:
    if not http.tls_cert or not http.tls_key:
        return []  # both or neither: a rule of the model
    cert_loc, key_loc = ("http", "tls_cert"), ("http", "tls_key")
    cert, key = _read(cert_loc, http.tls_cert), _read(key_loc, http.tls_key)
    if isinstance(cert, Finding) or isinstance(key, Finding):
        return [f for f in (cert, key) if isinstance(f, Finding)]
    cert_labels, key_labels = _pem_labels(cert), _pem_labels(key)
    if "CERTIFICATE" not in cert_labels and _private(cert_labels) and "CERTIFICATE" in key_labels:
        return [
            Finding(
                cert_loc,
                f"{_shown(http.tls_cert)} holds a private key and {_shown(http.tls_key)} the "
                "certificate: swap http.tls_cert and http.tls_key (--tls-cert, --tls-key)",
            )
        ]
    found: list[Finding] = []
    if "CERTIFICATE" not in cert_labels:
        found.append(Finding(cert_loc, f"{_shown(http.tls_cert)} is not a PEM certificate"))
    if "ENCRYPTED PRIVATE KEY" in key_labels:
        found.append(
            Finding(
                key_loc,
                f"{_shown(http.tls_key)} is encrypted; give the key without a passphrase "
                "(openssl pkey -in KEY -out KEY.plain)",
            )
        )
    elif not _private(key_labels):
        found.append(Finding(key_loc, f"{_shown(http.tls_key)} is not a PEM private key"))
    if found:
        return found
    try:
        # What the server itself does with the pair when it starts.
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(http.tls_cert, http.tls_key)
    except ssl.SSLError as exc:
        if "KEY_VALUES_MISMATCH" in str(exc):
            message = (
                f"{_shown(http.tls_key)} is not the private key of the certificate in "
                f"{_shown(http.tls_cert)}"
            )
        else:
            message = f"{_shown(http.tls_cert)} and {_shown(http.tls_key)} cannot be used: {exc}"
        return [Finding(key_loc, message)]
    return []


def _auth_files(auth: AuthConfig) -> list[Finding]:
    if auth.mode == "none":
        return []
    found: list[Finding] = []
    if auth.htpasswd:
        read = _read(
            ("auth", "htpasswd"),
            auth.htpasswd,
            "; create it with `registry user add NAME --config FILE`",
        )
        if isinstance(read, Finding):
            found.append(read)
    if auth.mode != "token":
        return found
    # Loaded in token mode only: JWT and X.509 support cost every process some 10 MiB.
    from registry.auth.tokens import read_jwks_file, read_pem_file

    token = auth.token
    if token.builtin:
        found += _signing_key(token.key_file, token.algorithm)
    trusted: list[tuple[Loc, str, Callable[[str], Any]]] = [
        (("auth", "token", "trusted_keys", i), path, read_pem_file)
        for i, path in enumerate(token.trusted_keys)
    ]
    if token.rootcertbundle:
        trusted.append((("auth", "token", "rootcertbundle"), token.rootcertbundle, read_pem_file))
    if token.jwks:
        trusted.append((("auth", "token", "jwks"), token.jwks, read_jwks_file))
    for loc, path, reader in trusted:
        read = _read(loc, path)
        if isinstance(read, Finding):
            found.append(read)
            continue
        try:
            reader(path)
        except ValueError as exc:  # the readers' own messages name the file
            text = str(exc)
            found.append(Finding(loc, text if text.startswith(path) else f"{_shown(path)}: {text}"))
    return found


def _remote_files(config: Config) -> list[Finding]:
    """The password files or variables and CA bundles (never their content) of every
    other registry the configuration names: the cache's upstreams, replication's remotes."""
    remotes: list[tuple[Loc, RemoteSettings]] = [
        (("proxy", "upstreams", i), upstream) for i, upstream in enumerate(config.proxy.upstreams)
    ]
    remotes += [
        (("replication", "rules", i, "remote"), rule.remote)
        for i, rule in enumerate(config.replication.rules)
    ]
    found: list[Finding] = []
    for at, remote in remotes:
        credentials = remote.credentials
        if credentials is not None and credentials.password_file is not None:
            read = _read((*at, "credentials", "password_file"), credentials.password_file)
            if isinstance(read, Finding):
                found.append(read)
        variable = credentials.password_env if credentials is not None else None
        if variable is not None and variable not in os.environ:
            message = f"the environment variable {variable} is not set"
            found.append(Finding((*at, "credentials", "password_env"), message))
        if remote.ca_bundle:
            read = _read((*at, "ca_bundle"), remote.ca_bundle)
            if isinstance(read, Finding):
                found.append(read)
            elif "CERTIFICATE" not in _pem_labels(read):
                message = f"{_shown(remote.ca_bundle)} holds no PEM certificate"
                found.append(Finding((*at, "ca_bundle"), message))
    return found


def _signing_key(path: str, algorithm: str) -> list[Finding]:
    from registry.auth.tokens import load_or_create_signing_key

    loc: Loc = ("auth", "token", "key_file")
    if not os.path.lexists(path):
        problem = _not_creatable(path)
        return [Finding(loc, problem)] if problem else []  # generated at start
    read = _read(loc, path)
    if isinstance(read, Finding):
        return [read]
    try:
        load_or_create_signing_key(path, algorithm)  # it exists: loads only
    except TypeError:
        return [Finding(loc, f"{_shown(path)} is encrypted; give a key without a passphrase")]
    except ValueError as exc:
        text = str(exc)
        if not text.startswith(path):
            text = f"{_shown(path)} is not a PEM private key (delete it to generate a new one)"
        return [Finding(loc, text)]
    return []


def _not_creatable(path: str) -> str | None:
    """Why ``path`` (a file or folder that does not exist) cannot be created, or None."""
    target = Path(os.path.abspath(path))
    ancestor = target.parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        return f"cannot create {target}: {ancestor} is not a folder"
    if not os.access(ancestor, os.W_OK | os.X_OK):
        return f"cannot create {target}: {ancestor} is not writable by uid {os.geteuid()}"
    return None


def _data_folder(storage: StorageConfig) -> list[Finding]:
    if storage.driver != "filesystem":
        return []
    loc: Loc = ("storage", "filesystem", "rootdirectory")
    root = _shown(storage.filesystem.rootdirectory)
    if os.path.isdir(root):
        if os.access(root, os.W_OK | os.X_OK):
            return []
        return [
            Finding(
                loc,
                f"the data folder {root} is not writable by uid {os.geteuid()}: "
                "give it to that user (chown) or choose another folder (--data-dir)",
            )
        ]
    if os.path.lexists(root):
        return [Finding(loc, f"the data folder {root} exists and is not a folder")]
    problem = _not_creatable(root)
    return [Finding(loc, f"{problem} (the data folder)")] if problem else []


# ---------------------------------------------------------------------------- storage


def storage_location(storage: StorageConfig) -> str:
    """Where the data is, as an operator names it: a folder, or a bucket and endpoint."""
    if storage.driver == "filesystem":
        return f"filesystem {_shown(storage.filesystem.rootdirectory)}"
    s3 = storage.s3
    where = f"s3 bucket {s3.bucket}"
    if s3.prefix:
        where += f" prefix {s3.prefix}"
    return where + (f" at {s3.endpoint_url}" if s3.endpoint_url else f" (AWS {s3.region})")


def require_existing_storage(config: Config, command: str, *, writes: bool = True) -> None:
    """Say on stderr which storage ``command`` acts on, and stop (exit 1) when its data
    folder does not exist, or cannot be written and ``writes``: run from the wrong folder,
    a maintenance command would otherwise create an empty store and act on that."""
    print(f"{command}: storage: {storage_location(config.storage)}", file=sys.stderr)
    if config.storage.driver != "filesystem":
        return
    root = _shown(config.storage.filesystem.rootdirectory)
    problem = None
    if not os.path.isdir(root):
        problem = (
            f"the data folder {root} does not exist; give the server's --config (or "
            "--data-dir), or run this where `registry serve` runs"
        )
    elif writes and not os.access(root, os.W_OK | os.X_OK):
        problem = f"the data folder {root} is not writable by uid {os.geteuid()}"
    if problem:
        print(f"{command}: {problem}", file=sys.stderr)
        raise SystemExit(1)


def storage_unreachable(config: Config) -> str | None:
    """Why the storage does not answer one small listing (within the readiness timeout),
    or None when it does."""
    timeout = config.health.storage_timeout
    try:
        asyncio.run(_list_one(config.storage, timeout))
    except TimeoutError:
        return f"no answer within {timeout:g}s (health.storage_timeout)"
    except Exception as exc:  # any failure is worth one line, never a traceback
        return str(exc) or type(exc).__name__
    return None


async def _list_one(storage: StorageConfig, seconds: float) -> None:
    driver = open_driver(storage)
    timed_out = False
    try:
        async with asyncio.timeout(seconds):
            await driver.list("", limit=1)
    except TimeoutError:
        timed_out = True
        raise
    finally:
        if not timed_out:  # closing would wait for the call in flight, which hangs
            await driver.close()
