"""The ``gc`` configuration section: YAML, REGISTRY_GC_* variables, durations, checks."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from registry.config import load_config
from registry.gc import reference_budget


def test_defaults() -> None:
    gc = load_config(None, environ={}).gc
    assert gc.enabled is True
    assert gc.interval == 3600.0
    assert gc.grace_period == 3600.0
    assert gc.untagged.policy == "delete"
    assert gc.untagged.older_than == 0.0
    assert gc.retention == []
    assert reference_budget(gc.grace_period) == 1800.0


def test_yaml_with_durations(tmp_path: Path) -> None:
    path = tmp_path / "config.yml"
    path.write_text(
        """
gc:
  enabled: false
  interval: 15m
  grace_period: 2h
  lease_ttl: 90s
  untagged: {policy: delete, older_than: 1d}
  retention:
    - repositories: ["team/*", "ci/**"]
      keep_last: 10
      older_than: 30d
      protect: [latest, "v*"]
"""
    )
    gc = load_config(path, environ={}).gc
    assert (gc.enabled, gc.interval, gc.grace_period, gc.lease_ttl) == (False, 900, 7200, 90)
    assert gc.untagged.older_than == 86400
    (policy,) = gc.retention
    assert policy.repositories == ["team/*", "ci/**"]
    assert (policy.keep_last, policy.older_than) == (10, 30 * 86400)
    assert policy.protect == ["latest", "v*"]


def test_environment_overrides() -> None:
    gc = load_config(
        None,
        environ={
            "REGISTRY_GC_INTERVAL": "30s",
            "REGISTRY_GC_GRACE_PERIOD": "1h",
            "REGISTRY_GC_ENABLED": "false",
            "REGISTRY_GC_UNTAGGED_POLICY": "keep",
            "REGISTRY_GC_RETENTION": '[{"repositories": ["a/*"], "keep_last": 3}]',
        },
    ).gc
    assert (gc.interval, gc.grace_period, gc.enabled) == (30, 3600, False)
    assert gc.untagged.policy == "keep"
    assert gc.retention[0].keep_last == 3
    assert gc.retention[0].repositories == ["a/*"]


@pytest.mark.parametrize(
    "environ",
    [
        {"REGISTRY_GC_INTERVAL": "0s"},
        {"REGISTRY_GC_INTERVAL": "soon"},
        {"REGISTRY_GC_GRACE_PERIOD": "-1"},
        {"REGISTRY_GC_UNTAGGED_POLICY": "sometimes"},
        {"REGISTRY_GC_RETENTION": '[{"repositories": ["a"]}]'},  # selects nothing
        {"REGISTRY_GC_RETENTION": '[{"keep_last": -1}]'},
        {"REGISTRY_GC_RETENTION": '[{"keep_last": 1, "surprise": true}]'},
    ],
)
def test_invalid_settings_are_refused(environ: dict[str, str]) -> None:
    with pytest.raises(ValidationError):
        load_config(None, environ=environ)


def test_reference_budget_is_half_the_grace_period_with_a_floor() -> None:
    assert reference_budget(10.0) == 5.0
    assert reference_budget(0.0) > 0
