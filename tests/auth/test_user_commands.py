"""`registry user list|add|passwd|remove` as an operator runs them: one message style
that names the file, passwords piped without a warning, no lock file left behind, and
`registry --version`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from registry.auth.identities import parse_htpasswd
from registry.banner import registry_version


def registry(*args: str, cwd: Path, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
    return subprocess.run(
        [sys.executable, "-W", "error", "-m", "registry", *args],
        cwd=cwd,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_piped_password_needs_no_flag_and_warns_nothing(tmp_path: Path) -> None:
    # -W error: a GetPassWarning would fail the command.
    added = registry(
        "user", "add", "alice", "--file", "h", "--rounds", "4", cwd=tmp_path, stdin="pw\n"
    )
    assert added.returncode == 0, added.stderr
    assert added.stderr == ""
    assert added.stdout == f"registry user add: added alice to {tmp_path}/h\n"
    assert list(parse_htpasswd((tmp_path / "h").read_text())) == ["alice"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["h"]  # no h.lock


def test_every_user_command_names_the_file(tmp_path: Path) -> None:
    users = tmp_path / "users"
    config = tmp_path / "config.yml"
    config.write_text(
        "auth:\n  htpasswd: ./users\n  users:\n"
        "    ci: {password_hash: $2b$04$abcdefghijklmnopqrstuu5eKXl4qjGuFjrV0.l4Jr8y0R1mHz3gO}\n"
    )
    common = ("--config", str(config), "--rounds", "4")
    for name in ("bob", "alice"):
        assert registry("user", "add", name, *common, cwd=tmp_path, stdin="pw\n").returncode == 0

    listed = registry("user", "list", "--config", str(config), cwd=tmp_path)
    assert listed.returncode == 0
    assert listed.stdout == "alice\nbob\n"
    assert listed.stderr.splitlines() == [
        f"registry user list: 2 users in {users}",
        "registry user list: auth.users of the configuration adds ci",
    ]

    changed = registry("user", "passwd", "bob", *common, cwd=tmp_path, stdin="new\n")
    assert changed.stdout == f"registry user passwd: changed the password of bob in {users}\n"
    exists = registry("user", "add", "bob", *common, cwd=tmp_path, stdin="pw\n")
    assert (exists.returncode, exists.stderr) == (
        1,
        f"registry user add: bob exists in {users}; change the password with "
        "`registry user passwd`\n",
    )
    removed = registry("user", "remove", "bob", "--config", str(config), cwd=tmp_path)
    assert removed.stdout == f"registry user remove: removed bob from {users}\n"
    missing = registry("user", "remove", "bob", "--config", str(config), cwd=tmp_path)
    assert (missing.returncode, missing.stderr) == (
        1,
        f"registry user remove: no user bob in {users}\n",
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.yml", "users"]


def test_a_users_file_in_a_folder_that_does_not_exist_is_refused(tmp_path: Path) -> None:
    result = registry("user", "add", "a", "--file", "etc/users", cwd=tmp_path, stdin="pw\n")
    assert (result.returncode, result.stderr) == (
        1,
        f"registry user add: the folder of {tmp_path}/etc/users does not exist; create it "
        "first, or give another --file\n",
    )
    assert list(tmp_path.iterdir()) == []
    listed = registry("user", "list", "--file", "users", cwd=tmp_path)
    assert (listed.returncode, listed.stderr) == (
        1,
        f"registry user list: {tmp_path}/users does not exist; `registry user add NAME` "
        "creates it\n",
    )


def test_version(tmp_path: Path) -> None:
    result = registry("--version", cwd=tmp_path)
    assert result.returncode == 0
    assert result.stdout == f"registry {registry_version()}\n"
    assert registry_version() != "unknown"
