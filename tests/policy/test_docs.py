"""The configuration examples of docs/governance.md are valid as written, and the
complete one passes `registry check-config`."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

from registry.config import Config

DOC = Path(__file__).resolve().parents[2] / "docs" / "governance.md"


def examples() -> dict[str, str]:
    """Every YAML block, by its first line (a comment naming it)."""
    blocks = re.findall(r"```yaml\n(.*?)```", DOC.read_text(), re.S)
    return {block.splitlines()[0].lstrip("# "): block for block in blocks}


def test_every_example_is_a_valid_configuration() -> None:
    found = examples()
    assert set(found) == {"immutable tags", "quotas", "complete example"}
    for name, block in found.items():
        config = Config.model_validate(yaml.safe_load(block))
        assert config.policy.immutable_tags or config.policy.quotas, name


def test_the_complete_example_passes_check_config(tmp_path: Path) -> None:
    path = tmp_path / "registry.yml"
    path.write_text(examples()["complete example"])
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
    done = subprocess.run(
        [sys.executable, "-m", "registry", "check-config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env=env,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "OK" in done.stdout


def test_the_documented_refusals_are_the_ones_given() -> None:
    """The stages the table lists are exactly those the code names."""
    text = DOC.read_text()
    table = set(re.findall(r"^\| `(\w+)` \|", text, re.M))
    source = (Path(__file__).resolve().parents[2] / "registry/policy/quotas.py").read_text()
    stages = set(re.findall(r'"(upload|chunk|mount|manifest|blob)"', source))
    assert table == stages == {"upload", "chunk", "mount", "manifest", "blob"}
