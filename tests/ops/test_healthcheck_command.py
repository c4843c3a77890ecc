"""`registry healthcheck --url`: probe any server, TLS included; without --url it reads
the configuration as `registry serve` does (tests/ops/test_tls.py covers that with TLS)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import start_server
from tests.ops.test_tls import self_signed
from tests.server import free_port


def healthcheck(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
    return subprocess.run(
        [sys.executable, "-m", "registry", "healthcheck", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_url_finds_a_server_no_configuration_describes(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    cert, key = self_signed(tmp_path / "pki")
    config = {"http": {"tls_cert": str(cert), "tls_key": str(key)}}
    server = start_server(request, tmp_path / "server", config=config, scheme="https")
    # The folder's default configuration (port 5000, plain HTTP) describes another server.
    result = healthcheck("--url", server.url, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert '"status":"ok"' in result.stdout
    live = healthcheck("--url", server.url + "/", "--path", "health/live", cwd=tmp_path)
    assert live.returncode == 0 and '"status":"ok"' in live.stdout


def test_url_without_a_server_fails_in_one_line(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = healthcheck("--url", url, "--timeout", "2", cwd=tmp_path)
    assert result.returncode == 1
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"{url}/health/ready: ")
