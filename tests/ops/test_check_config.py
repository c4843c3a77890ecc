"""`registry check-config FILE`: line-level messages for the YAML, the variable's name for
an environment override, exit 0 when valid and 1 when not."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from registry.config_check import check_config

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


def run(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
    return subprocess.run(
        [sys.executable, "-m", "registry", *args],
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
    )


def test_each_error_names_its_line_and_column(tmp_path: Path) -> None:
    config = tmp_path / "config.yml"
    config.write_text(BAD)
    result = run("check-config", str(config))
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


def test_environment_overrides_are_checked_and_named(tmp_path: Path) -> None:
    config = tmp_path / "config.yml"
    config.write_text("http:\n  port: 5000\n")
    result = run(
        "check-config",
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


def test_a_valid_file_passes(tmp_path: Path) -> None:
    config = tmp_path / "config.yml"
    config.write_text(
        "http:\n  port: 5001\n  graceful_timeout: 10s\nhealth:\n  storage_timeout: 2s\n"
    )
    result = run("check-config", str(config))
    assert result.returncode == 0, result.stdout
    assert result.stdout.strip() == f"{config}: OK"
    missing = run("check-config", str(tmp_path / "absent.yml"))
    assert missing.returncode == 1 and "cannot read" in missing.stdout


def test_serve_reports_the_same_lines_and_exits_2(tmp_path: Path) -> None:
    config = tmp_path / "config.yml"
    config.write_text(BAD)
    result = run("serve", "--config", str(config), cwd=tmp_path)
    assert result.returncode == 2
    assert f"registry: invalid configuration: {config}:2:9: error: http.port:" in result.stderr
