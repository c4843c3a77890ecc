"""`registry check-config FILE`: line-level messages for the YAML, the variable's name for
an environment override, exit 0 when valid and 1 when not. The command runs in this
process (``registry.cli.main``); `registry serve`'s refusal in a real one."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from registry.cli import main
from registry.config_check import check_config
from tests.ops.test_tls import self_signed

BAD = """\
http:
  port: eighty
  workers: 2
storage:
  driver: ftp
  s3:
    part_size: big
    verify_tls: true
    unknown_key: 1
log:
  level: loud
"""


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``registry ARGS`` in a process of its own, with no REGISTRY_* variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
    return subprocess.run(
        [sys.executable, "-m", "registry", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
    )


@dataclass
class Checked:
    returncode: int
    stdout: str


CheckConfig = Callable[..., Checked]


@pytest.fixture
def check_config_cli(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> CheckConfig:
    """``check_config_cli(FILE, env={...})``: `registry check-config FILE` in this
    process, with exactly ``env``'s REGISTRY_* variables; its exit code and output."""

    def check(file: str, env: dict[str, str] | None = None) -> Checked:
        for name in [k for k in os.environ if k.startswith("REGISTRY_")]:
            monkeypatch.delenv(name)
        for name, value in (env or {}).items():
            monkeypatch.setenv(name, value)
        capsys.readouterr()
        try:
            main(["check-config", file])
            code = 0
        except SystemExit as exc:
            code = int(exc.code or 0)
        return Checked(code, capsys.readouterr().out)

    return check


def test_each_error_names_its_line_and_column(
    tmp_path: Path, check_config_cli: CheckConfig
) -> None:
    config = tmp_path / "config.yml"
    config.write_text(BAD)
    result = check_config_cli(str(config))
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    integer = "Input should be a valid integer, unable to parse string as an integer"
    assert f"{config}:2:9: error: http.port: {integer}" in lines
    assert any(
        line.startswith(
            f"{config}:5:11: error: storage.driver: Input should be 'filesystem' or 's3'"
        )
        for line in lines
    )
    assert any(line.startswith(f"{config}:7:16: error: storage.s3.part_size:") for line in lines)
    # An unknown key points at the key itself.
    assert any(
        line.startswith(f"{config}:9:5: error: storage.s3.unknown_key: Extra inputs")
        for line in lines
    )
    assert any(line.startswith(f"{config}:11:10: error: log.level:") for line in lines)
    assert lines[-1] == f"{config}: invalid, 5 errors"


def test_environment_overrides_are_checked_and_named(
    tmp_path: Path, check_config_cli: CheckConfig
) -> None:
    config = tmp_path / "config.yml"
    config.write_text("http:\n  port: 5000\n")
    result = check_config_cli(
        str(config),
        env={
            "REGISTRY_HTTP_PORT": "not-a-port",
            "REGISTRY_NO_SUCH_KEY": "1",
            "REGISTRY_CONFIG_FILE": str(config),
        },
    )
    assert result.returncode == 1
    assert "REGISTRY_HTTP_PORT: error: http.port: Input should be a valid integer" in result.stdout
    assert "REGISTRY_NO_SUCH_KEY: warning: matches no configuration key" in result.stdout
    assert "REGISTRY_CONFIG_FILE" not in result.stdout


def test_yaml_syntax_errors_and_duplicate_keys(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yml"
    broken.write_text("http:\n  port: 5000\n  host: [unclosed\n")
    result = check_config(broken, {})
    assert not result.ok
    assert len(result.problems) == 1
    assert str(result.problems[0]).startswith(f"{broken}:4:1: error: not valid YAML")

    twice = tmp_path / "twice.yml"
    twice.write_text("log:\n  level: debug\nlog:\n  level: info\n")
    result = check_config(twice, {})
    assert result.ok and result.config is not None
    assert result.config.log.level == "info"  # as load_config reads it: the last wins
    assert [str(p) for p in result.problems] == [
        f"{twice}:3:1: warning: log: key given twice; the last one wins"
    ]


def test_a_valid_file_passes(tmp_path: Path, check_config_cli: CheckConfig) -> None:
    config = tmp_path / "config.yml"
    config.write_text(
        "http:\n  port: 5001\n  graceful_timeout: 10s\nhealth:\n  storage_timeout: 2s\n"
    )
    result = check_config_cli(str(config))
    assert result.returncode == 0, result.stdout
    assert result.stdout.strip() == f"{config}: OK"
    missing = check_config_cli(str(tmp_path / "absent.yml"))
    assert missing.returncode == 1 and "cannot read" in missing.stdout


def test_serve_reports_the_same_lines_and_exits_2(tmp_path: Path) -> None:
    config = tmp_path / "config.yml"
    config.write_text(BAD)
    result = run("serve", "--config", str(config), cwd=tmp_path)
    assert result.returncode == 2
    assert f"registry: invalid configuration: {config}:2:9: error: http.port:" in result.stderr


# ------------------------------------------- what serve refuses, check-config refuses


@pytest.fixture(autouse=True)
def in_tmp_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Relative paths in a configuration are relative to where the command runs.
    monkeypatch.chdir(tmp_path)


def only_error(path: Path, text: str) -> str:
    """The one problem check-config finds in a file holding ``text``."""
    path.write_text(text)
    result = check_config(path, {}, files=True)
    assert not result.ok
    (problem,) = result.problems
    return str(problem)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "auth:\n  mode: basic\n  htpasswd: ./htpasswd\n  grants:\n"
            "    - repositories: [team/*]\n      role: boss\n      users: [a]\n",
            "6:13: error: auth.grants.0.role: unknown role 'boss'",
        ),
        (
            "auth:\n  anonymous:\n    - repositories: [public/**]\n      role: nope\n",
            "4:13: error: auth.anonymous.0.role: unknown role 'nope'",
        ),
        (
            "auth:\n  roles:\n    odd: [pull, fly]\n",
            "3:10: error: auth.roles.odd: unknown actions ['fly']",
        ),
        (
            "auth:\n  grants:\n    - repositories: ['**']\n      role: admin\n",
            "3:7: error: auth.grants.0.users: a grant names no users or groups",
        ),
        (
            "auth:\n  anonymous:\n    - repositories: ['']\n",
            "3:22: error: auth.anonymous.0.repositories.0: a pattern must not be empty",
        ),
        ("auth:\n  mode: basic\n", "2:9: error: auth.mode: basic, but nobody can log in"),
        (
            "auth:\n  mode: token\n  token:\n    builtin: false\n    jwks: ./jwks.json\n",
            "4:5: error: auth.token.realm: required with auth.token.builtin: false",
        ),
        (
            "storage:\n  driver: s3\n  s3:\n    region: eu-west-1\n",
            "4:5: error: storage.s3.bucket: required with storage.driver: s3",
        ),
        (
            "http:\n  tls_cert: ./registry.crt\n",
            "2:3: error: http.tls_key: missing: http.tls_cert is set",
        ),
        (
            "gc:\n  retention:\n    - repositories: [team/]\n      keep_last: 1\n",
            "3:22: error: gc.retention.0.repositories.0: a repository pattern has no empty",
        ),
    ],
)
def test_rules_across_settings_name_their_line(tmp_path: Path, text: str, expected: str) -> None:
    config = tmp_path / "config.yml"
    assert only_error(config, text).startswith(f"{config}:{expected}")


def test_missing_files_name_their_line(tmp_path: Path) -> None:
    config = tmp_path / "config.yml"
    cert, key = self_signed(tmp_path / "pki")
    tls = f"http:\n  tls_cert: {cert}\n  tls_key: {key}\n"
    assert only_error(config, tls.replace(str(cert), "./none.crt")) == (
        f"{config}:2:13: error: http.tls_cert: {tmp_path}/none.crt does not exist"
    )
    htpasswd = "auth:\n  mode: basic\n  htpasswd: ./users\n"
    assert only_error(config, htpasswd) == (
        f"{config}:3:13: error: auth.htpasswd: {tmp_path}/users does not exist; "
        "create it with `registry user add NAME --config FILE`"
    )
    jwks = (
        "auth:\n  mode: token\n  token:\n    builtin: false\n    realm: https://a/token\n"
        "    jwks: ./jwks.json\n    trusted_keys: [./issuer.pem]\n"
    )
    (tmp_path / "jwks.json").write_text("{not json")
    config.write_text(jwks)
    assert [str(p) for p in check_config(config, {}, files=True).problems] == [
        f"{config}:7:20: error: auth.token.trusted_keys.0: {tmp_path}/issuer.pem does not exist",
        f"{config}:6:11: error: auth.token.jwks: {tmp_path}/jwks.json: Expecting property name "
        "enclosed in double quotes: line 1 column 2 (char 1)",
    ]


def test_tls_files_swapped_or_not_matching(tmp_path: Path) -> None:
    config = tmp_path / "config.yml"
    cert, key = self_signed(tmp_path / "pki")
    other_cert, _ = self_signed(tmp_path / "other")
    swapped = f"http:\n  tls_cert: {key}\n  tls_key: {cert}\n"
    assert only_error(config, swapped) == (
        f"{config}:2:13: error: http.tls_cert: {key} holds a private key and {cert} the "
        "certificate: swap http.tls_cert and http.tls_key (--tls-cert, --tls-key)"
    )
    mismatch = f"http:\n  tls_cert: {other_cert}\n  tls_key: {key}\n"
    assert only_error(config, mismatch) == (
        f"{config}:3:12: error: http.tls_key: {key} is not the private key of the "
        f"certificate in {other_cert}"
    )
    (tmp_path / "junk.pem").write_text("hello\n")
    junk = f"http:\n  tls_cert: {tmp_path / 'junk.pem'}\n  tls_key: {key}\n"
    assert only_error(config, junk).endswith(f"{tmp_path / 'junk.pem'} is not a PEM certificate")
    config.write_text(f"http:\n  tls_cert: {cert}\n  tls_key: {key}\n")
    assert check_config(config, {}, files=True).ok


def test_a_token_signing_key_that_is_not_a_key(tmp_path: Path) -> None:
    config = tmp_path / "config.yml"
    (tmp_path / "key.pem").write_text("not a key\n")
    text = "auth:\n  mode: token\n  htpasswd: ./h\n  token:\n    key_file: ./key.pem\n"
    (tmp_path / "h").write_text("")
    assert only_error(config, text) == (
        f"{config}:5:15: error: auth.token.key_file: {tmp_path}/key.pem is not a PEM private "
        "key (delete it to generate a new one)"
    )
    (tmp_path / "key.pem").unlink()
    assert check_config(config, {}, files=True).ok  # generated on first start


def test_a_data_folder_that_cannot_be_created(tmp_path: Path) -> None:
    config = tmp_path / "config.yml"
    (tmp_path / "file").write_text("")
    text = "storage:\n  filesystem:\n    rootdirectory: ./file/data\n"
    assert only_error(config, text) == (
        f"{config}:3:20: error: storage.filesystem.rootdirectory: cannot create "
        f"{tmp_path}/file/data: {tmp_path}/file is not a folder (the data folder)"
    )


def test_files_are_checked_relative_to_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As `registry serve` reads them: relative to where it runs, not to the file.
    (tmp_path / "etc").mkdir()
    config = tmp_path / "etc" / "config.yml"
    config.write_text("auth:\n  mode: basic\n  htpasswd: ./htpasswd\n")
    (tmp_path / "etc" / "htpasswd").write_text("")
    monkeypatch.chdir(tmp_path)
    assert not check_config(config, {}, files=True).ok
    monkeypatch.chdir(tmp_path / "etc")
    assert check_config(config, {}, files=True).ok
