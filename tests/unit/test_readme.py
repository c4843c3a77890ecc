"""The configuration examples in the README are valid configurations."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from registry.config import Config

README = Path(__file__).resolve().parents[2] / "README.md"
EXAMPLES = re.findall(r"```yaml\n(.*?)```", README.read_text(), re.S)


def test_readme_has_examples() -> None:
    assert len(EXAMPLES) >= 2


@pytest.mark.parametrize("example", EXAMPLES)
def test_example_is_a_valid_configuration(example: str) -> None:
    Config.model_validate(yaml.safe_load(example))
