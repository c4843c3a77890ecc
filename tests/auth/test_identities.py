"""Users, groups, password checks, the failed-login limit and `registry user`."""

from __future__ import annotations

import asyncio
import io
import logging
import os
import stat
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import bcrypt
import pytest

from registry.auth.access import Identity
from registry.auth.identities import (
    UserDirectory,
    credential_fingerprint,
    format_htpasswd,
    hash_password,
    parse_htpasswd,
)
from registry.cli import main
from tests.auth.conftest import PASSWORD, bcrypt_hash


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


# ------------------------------------------------------------------------------ htpasswd


def test_parse_htpasswd_keeps_bcrypt_entries_only(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(logging.getLogger("registry"), "propagate", True)
    good = bcrypt_hash()
    sha = "{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g="
    text = f"# users\nalice:{good}\n\nbob:{sha}\ncarol:$apr1$x$y\nbroken\n"
    assert parse_htpasswd(text) == {"alice": good}
    assert "bob" in caplog.text and "carol" in caplog.text
    assert good not in caplog.text


def test_apache_2y_hashes_are_understood() -> None:
    # `htpasswd -B` writes $2y$; it is the same algorithm as $2b$.
    hashed = "$2y$" + bcrypt_hash()[4:]
    directory = UserDirectory(None, {"u": (hashed, [])}, {})
    assert run(directory.authenticate("u", PASSWORD)) is not None


def test_format_and_parse_round_trip() -> None:
    users = {"b": bcrypt_hash(), "a": bcrypt_hash()}
    text = format_htpasswd(users)
    assert text.splitlines()[0].startswith("a:")
    assert parse_htpasswd(text) == users


# ------------------------------------------------------------------------------ directory


def test_authenticate_right_wrong_and_unknown(tmp_path: Path) -> None:
    (tmp_path / "htpasswd").write_text(f"dave:{bcrypt_hash()}\n")
    directory = UserDirectory(tmp_path / "htpasswd", {"alice": (bcrypt_hash(), ["x"])}, {})
    alice = run(directory.authenticate("alice", PASSWORD))
    assert alice is not None and alice.groups == {"x"}
    assert run(directory.authenticate("dave", PASSWORD)) is not None
    assert run(directory.authenticate("alice", "wrong")) is None
    assert run(directory.authenticate("nobody", PASSWORD)) is None
    assert run(directory.authenticate("alice", "")) is None


def test_passwords_longer_than_bcrypt_allows_are_refused() -> None:
    long = "x" * 80
    hashed = bcrypt.hashpw(long[:72].encode(), bcrypt.gensalt(4)).decode()
    directory = UserDirectory(None, {"u": (hashed, [])}, {})
    assert run(directory.authenticate("u", long)) is None
    with pytest.raises(ValueError, match="72"):
        hash_password(long, rounds=4)


def test_groups_come_from_the_user_and_from_the_group_table() -> None:
    directory = UserDirectory(
        None, {"alice": (bcrypt_hash(), ["a"])}, {"b": ["alice", "bob"], "c": ["bob"]}
    )
    user = directory.get("alice")
    assert user is not None and user.identity == Identity("alice", frozenset({"a", "b"}))


def test_config_users_win_over_the_htpasswd_file(tmp_path: Path) -> None:
    (tmp_path / "htpasswd").write_text(f"alice:{bcrypt_hash('file-pw')}\n")
    directory = UserDirectory(tmp_path / "htpasswd", {"alice": (bcrypt_hash(), [])}, {})
    assert run(directory.authenticate("alice", PASSWORD)) is not None
    assert run(directory.authenticate("alice", "file-pw")) is None


def test_htpasswd_changes_are_picked_up_without_restart(tmp_path: Path) -> None:
    path = tmp_path / "htpasswd"
    path.write_text(f"dave:{bcrypt_hash()}\n")
    clock = FakeClock()
    directory = UserDirectory(path, {}, {}, clock=clock)
    assert directory.get("erin") is None
    path.write_text(f"erin:{bcrypt_hash()}\n")
    os.utime(path, ns=(1, 1))  # a different stamp even within the same clock tick
    clock.now += 2
    assert directory.get("erin") is not None
    assert directory.get("dave") is None
    path.unlink()
    clock.now += 2
    assert directory.get("erin") is None


def test_password_change_is_seen_despite_the_verified_cache() -> None:
    directory = UserDirectory(None, {"u": (bcrypt_hash("old"), [])}, {})
    assert run(directory.authenticate("u", "old")) is not None
    directory.config_users["u"] = (bcrypt_hash("new"), frozenset())
    assert run(directory.authenticate("u", "old")) is None
    assert run(directory.authenticate("u", "new")) is not None


def test_credential_fingerprint_changes_with_the_password() -> None:
    directory = UserDirectory(None, {"u": (bcrypt_hash("a"), [])}, {})
    first = directory.get("u")
    directory.config_users["u"] = (bcrypt_hash("a"), frozenset())  # same password, new salt
    second = directory.get("u")
    assert first is not None and second is not None
    assert credential_fingerprint(first) != credential_fingerprint(second)
    assert first.password_hash not in credential_fingerprint(first)


def test_unknown_user_costs_what_the_costliest_known_user_costs() -> None:
    """The dummy hash checked for an unknown name has the highest cost of any user, not
    the first one's: else a quick answer tells that the name does not exist."""
    cheap, costly = bcrypt_hash(), bcrypt.hashpw(b"pw", bcrypt.gensalt(11)).decode()
    directory = UserDirectory(None, {"cheap": (cheap, []), "costly": (costly, [])}, {})

    def seconds(name: str) -> float:
        """CPU seconds of the check (all threads): what the caller waits for on an idle
        machine, and unlike the wall clock unmoved by other load on a busy one."""
        best = float("inf")
        for _ in range(3):
            started = time.process_time()
            assert run(directory.authenticate(name, "wrong")) is None
            best = min(best, time.process_time() - started)
        return best

    run(directory.authenticate("nobody", "warm-up"))  # the dummy hash is made once
    known, unknown = seconds("costly"), seconds("nobody")
    assert unknown > 0.7 * known, (known, unknown)
    assert seconds("cheap") < 0.2 * known


# ------------------------------------------------------------------------- registry user


def user_cli(monkeypatch: pytest.MonkeyPatch, *args: str, password: str = PASSWORD) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(password + "\n"))
    main(["user", *args])


def test_user_add_passwd_remove(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "htpasswd"
    common = ["--file", str(path)]
    user_cli(monkeypatch, "add", "erin", *common, "--password-stdin", "--rounds", "4")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    directory = UserDirectory(path, {}, {})
    assert run(directory.authenticate("erin", PASSWORD)) is not None

    user_cli(
        monkeypatch,
        "passwd",
        "erin",
        *common,
        "--password-stdin",
        "--rounds",
        "4",
        password="new-pw",
    )
    directory = UserDirectory(path, {}, {})
    assert run(directory.authenticate("erin", PASSWORD)) is None
    assert run(directory.authenticate("erin", "new-pw")) is not None

    user_cli(monkeypatch, "remove", "erin", *common)
    assert parse_htpasswd(path.read_text()) == {}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["htpasswd"]  # no lock file left


def test_user_add_takes_the_file_from_the_configuration(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "users"
    config = tmp_path / "config.yml"
    config.write_text(f"auth:\n  htpasswd: {path}\n")
    user_cli(
        monkeypatch, "add", "erin", "--config", str(config), "--password-stdin", "--rounds", "4"
    )
    assert "erin" in parse_htpasswd(path.read_text())


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["add", "alice"], "exists"),
        (["passwd", "nobody", "--password-stdin"], "no user"),
        (["remove", "nobody"], "no user"),
        (["add", "bad:name", "--password-stdin"], "invalid user name"),
    ],
)
def test_user_command_refusals(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    message: str,
) -> None:
    path = tmp_path / "htpasswd"
    path.write_text(f"alice:{bcrypt_hash()}\n")
    before = path.read_text()
    with pytest.raises(SystemExit) as exit_info:
        user_cli(
            monkeypatch,
            *args,
            "--file",
            str(path),
            *(["--password-stdin"] if args[0] == "add" else []),
        )
    assert exit_info.value.code == 1
    assert message in capsys.readouterr().err
    assert path.read_text() == before


def test_user_add_refuses_an_empty_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(SystemExit):
        user_cli(
            monkeypatch,
            "add",
            "erin",
            "--file",
            str(tmp_path / "h"),
            "--password-stdin",
            password="",
        )
    assert not (tmp_path / "h").exists()


def test_user_command_needs_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REGISTRY_CONFIG_FILE", raising=False)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        user_cli(monkeypatch, "remove", "erin")
    assert exit_info.value.code == 1
