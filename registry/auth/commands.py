"""``registry user add|passwd|remove``: manage the bcrypt htpasswd file, and the auth check
``registry serve`` runs before it starts workers."""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import getpass
import os
import secrets
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from registry.auth.authorizer import Authorizer
from registry.auth.identities import (
    DEFAULT_ROUNDS,
    format_htpasswd,
    hash_password,
    is_valid_username,
    parse_htpasswd,
)
from registry.config import Config
from registry.config_check import CONFIG_FILE_ENV, load_or_exit


def check_auth_or_exit(config: Config) -> None:
    """Build the authorizer once in the parent process: reads the trusted keys, generates
    the token signing key on first start, and reports a bad auth section before any
    worker starts (exit 2)."""
    try:
        Authorizer.from_config(config.auth)
    except (ValueError, OSError) as exc:
        print(f"registry: invalid configuration: auth: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def add_commands(commands: Any) -> None:
    user = commands.add_parser(
        "user",
        help="add, change or remove a user of the htpasswd file (auth.htpasswd)",
        description="Manage the bcrypt htpasswd file named by auth.htpasswd (or --file). "
        "A running registry picks changes up within a second; no restart is needed.",
    )
    actions = user.add_subparsers(dest="user_command", required=True)
    for name, text in (
        ("add", "add a user (error if it exists)"),
        ("passwd", "set a new password (revokes the user's refresh tokens)"),
        ("remove", "remove a user"),
    ):
        p = actions.add_parser(name, help=text)
        p.add_argument("username")
        p.add_argument("--file", help="htpasswd file (default: auth.htpasswd of the configuration)")
        p.add_argument("--config", help=f"YAML configuration file (default ${CONFIG_FILE_ENV})")
        if name != "remove":
            p.add_argument(
                "--password-stdin",
                action="store_true",
                help="read the password from the first line of standard input",
            )
            p.add_argument(
                "--rounds",
                type=int,
                default=DEFAULT_ROUNDS,
                help=f"bcrypt cost (default {DEFAULT_ROUNDS})",
            )
        p.set_defaults(func=user_command)


def _fail(message: str) -> None:
    print(f"registry user: {message}", file=sys.stderr)
    raise SystemExit(1)


def _htpasswd_path(args: argparse.Namespace) -> Path:
    if args.file:
        return Path(args.file)
    config_file = args.config or os.environ.get(CONFIG_FILE_ENV) or None
    path = load_or_exit(config_file).auth.htpasswd
    if not path:
        _fail("no htpasswd file: give --file, or set auth.htpasswd in the configuration")
    assert path is not None
    return Path(path)


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = getpass.getpass("Password: ")
        if getpass.getpass("Repeat password: ") != password:
            _fail("the passwords differ")
    if not password:
        _fail("the password is empty")
    return password


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Serialize concurrent edits of one users file (a lock beside it: the file itself is
    replaced on every write)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _write(path: Path, users: dict[str, str]) -> None:
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o600
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(format_htpasswd(users))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def user_command(args: argparse.Namespace) -> None:
    name: str = args.username
    if not is_valid_username(name):
        _fail(f"invalid user name {name[:100]!r} (letters, digits, . _ @ -; at most 128)")
    path = _htpasswd_path(args)
    password = None if args.user_command == "remove" else _read_password(args.password_stdin)
    with _locked(path):
        users = parse_htpasswd(path.read_text(), str(path)) if path.exists() else {}
        if args.user_command == "add" and name in users:
            _fail(f"user {name!r} exists in {path}; use `registry user passwd`")
        if args.user_command != "add" and name not in users:
            _fail(f"no user {name!r} in {path}")
        if password is None:
            del users[name]
        else:
            try:
                users[name] = hash_password(password, args.rounds)
            except ValueError as exc:
                _fail(str(exc))
        _write(path, users)
    done = {"add": "added", "passwd": "changed the password of", "remove": "removed"}
    print(f"{done[args.user_command]} user {name!r} in {path}")
