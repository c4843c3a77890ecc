"""``registry user list|add|passwd|remove``: manage the bcrypt htpasswd file, and the auth check
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
from typing import Any, NoReturn

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
        help="list, add, change or remove users of the htpasswd file (auth.htpasswd)",
        description="Manage the bcrypt htpasswd file named by auth.htpasswd (or --file). "
        "A running registry picks changes up within a second; no restart is needed.",
    )
    actions = user.add_subparsers(dest="user_command", required=True)
    for name, text in (
        ("list", "list the users of the file"),
        ("add", "add a user (error if it exists)"),
        ("passwd", "set a new password (revokes the user's refresh tokens)"),
        ("remove", "remove a user"),
    ):
        p = actions.add_parser(name, help=text)
        if name != "list":
            p.add_argument("username")
        p.add_argument("--file", help="htpasswd file (default: auth.htpasswd of the configuration)")
        p.add_argument("--config", help=f"YAML configuration file (default ${CONFIG_FILE_ENV})")
        if name in ("add", "passwd"):
            p.add_argument(
                "--password-stdin",
                action="store_true",
                help="read the password from the first line of standard input (the default "
                "when standard input is not a terminal)",
            )
            p.add_argument(
                "--rounds",
                type=int,
                default=DEFAULT_ROUNDS,
                help=f"bcrypt cost (default {DEFAULT_ROUNDS})",
            )
        p.set_defaults(func=user_list if name == "list" else user_command)


class _Fail:
    """Errors of one ``registry user`` action, all in one style: the action, then what is
    wrong and, where there is one, the file and the fix."""

    def __init__(self, action: str) -> None:
        self.prefix = f"registry user {action}"

    def __call__(self, message: str) -> NoReturn:
        print(f"{self.prefix}: {message}", file=sys.stderr)
        raise SystemExit(1)


def _htpasswd_path(args: argparse.Namespace, fail: _Fail) -> tuple[Path, Config | None]:
    """The users file (absolute), and the configuration when one was read."""
    if args.file:
        return Path(args.file).absolute(), None
    config = load_or_exit(args.config or os.environ.get(CONFIG_FILE_ENV) or None)
    if not config.auth.htpasswd:
        fail("no htpasswd file: give --file, or set auth.htpasswd in the configuration")
    return Path(config.auth.htpasswd).absolute(), config


def _read_password(from_stdin: bool, fail: _Fail) -> str:
    # A password piped in is read as --password-stdin would: getpass would warn that it
    # cannot hide the echo, and then ask a pipe to repeat it.
    if from_stdin or not sys.stdin.isatty():
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = getpass.getpass("Password: ")
        if getpass.getpass("Repeat password: ") != password:
            fail("the passwords differ")
    if not password:
        fail("the password is empty")
    return password


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Serialize concurrent edits of one users file. The lock is taken on the folder that
    holds it (the file itself is replaced on every write), so no lock file is left."""
    fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


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


def _read(path: Path, fail: _Fail) -> dict[str, str]:
    try:
        return parse_htpasswd(path.read_text(), str(path)) if path.exists() else {}
    except OSError as exc:
        fail(f"cannot read {path}: {exc.strerror or exc}")


def user_list(args: argparse.Namespace) -> None:
    fail = _Fail("list")
    path, config = _htpasswd_path(args, fail)
    if not path.exists():
        fail(f"{path} does not exist; `registry user add NAME` creates it")
    users = sorted(_read(path, fail))
    count = f"{len(users)} user{'' if len(users) == 1 else 's'}"
    print(f"registry user list: {count} in {path}", file=sys.stderr)
    for name in users:
        print(name)
    if config is not None and config.auth.users:
        others = ", ".join(sorted(config.auth.users))
        print(f"registry user list: auth.users of the configuration adds {others}", file=sys.stderr)


def user_command(args: argparse.Namespace) -> None:
    action: str = args.user_command
    fail = _Fail(action)
    name: str = args.username
    if not is_valid_username(name):
        fail(f"invalid user name {name[:100]!r} (letters, digits, . _ @ -; at most 128)")
    path, _ = _htpasswd_path(args, fail)
    if not path.parent.is_dir():
        fail(f"the folder of {path} does not exist; create it first, or give another --file")
    password = None if action == "remove" else _read_password(args.password_stdin, fail)
    try:
        with _locked(path):
            users = _read(path, fail)
            if action == "add" and name in users:
                fail(f"{name} exists in {path}; change the password with `registry user passwd`")
            if action != "add" and name not in users:
                fail(f"no user {name} in {path}")
            if password is None:
                del users[name]
            else:
                try:
                    users[name] = hash_password(password, args.rounds)
                except ValueError as exc:
                    fail(str(exc))
            _write(path, users)
    except OSError as exc:
        fail(f"cannot write {path}: {exc.strerror or exc}")
    done = {
        "add": f"added {name} to {path}",
        "passwd": f"changed the password of {name} in {path}",
        "remove": f"removed {name} from {path}",
    }
    print(f"registry user {action}: {done[action]}")
