"""Every configuration example in the README and docs/ is valid as written: each YAML
block whose top-level keys are this registry's is validated by the model that `registry
serve` uses. Other YAML (Kubernetes, Prometheus, another registry's configuration) must
say what it is in its first line, so that a broken example cannot pass as foreign."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from registry.config import Config

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FOREIGN = ("# Kubernetes", "# prometheus.yml", "# CNCF distribution")


def yaml_blocks(page: Path) -> list[str]:
    return re.findall(r"```yaml\n(.*?)```", page.read_text(), re.S)


def registry_blocks(page: Path) -> list[dict[str, Any]]:
    out = []
    for block in yaml_blocks(page):
        if block.startswith(FOREIGN):
            continue
        loaded = yaml.safe_load(block)
        assert isinstance(loaded, dict), f"{page.name}: a YAML example that is not a mapping"
        assert set(loaded) <= set(Config.model_fields), (
            f"{page.name}: unknown top-level keys {sorted(set(loaded) - set(Config.model_fields))}"
            " (mark other programs' YAML with its name in the first line)"
        )
        out.append(loaded)
    return out


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_registry_example_is_valid(page: Path) -> None:
    for example in registry_blocks(page):
        Config.model_validate(example)


def test_the_pages_have_examples() -> None:
    assert sum(len(registry_blocks(p)) for p in PAGES) >= 6
