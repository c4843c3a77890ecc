"""Configuration: YAML, REGISTRY_* environment overrides, durations."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from registry.config import Config, load_config, parse_duration


def test_defaults() -> None:
    c = load_config(None, environ={})
    assert c.http.port == 5000
    assert c.storage.driver == "filesystem"
    assert c.storage.delete.enabled is True


def test_env_overrides_yaml(tmp_path: Path) -> None:
    f = tmp_path / "c.yml"
    f.write_text("storage:\n  delete:\n    enabled: true\nhttp:\n  port: 6000\n")
    c = load_config(
        f,
        environ={
            "REGISTRY_STORAGE_DELETE_ENABLED": "false",
            "REGISTRY_STORAGE_S3_ENDPOINT_URL": "http://127.0.0.1:9000",
            "REGISTRY_STORAGE_S3_BUCKET": "b",
            "REGISTRY_HTTP_WORKERS": "4",
        },
    )
    assert c.storage.delete.enabled is False
    assert c.storage.s3.endpoint_url == "http://127.0.0.1:9000"
    assert c.storage.s3.bucket == "b"
    assert c.http.port == 6000
    assert c.http.workers == 4


def test_unknown_yaml_key_is_an_error(tmp_path: Path) -> None:
    f = tmp_path / "c.yml"
    f.write_text("storage:\n  dirver: s3\n")
    with pytest.raises(ValueError, match="dirver"):
        load_config(f, environ={})


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("15m", 900), ("1h", 3600), ("2d", 172800), ("500ms", 0.5), (30, 30)],
)
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


def test_bad_duration() -> None:
    with pytest.raises(ValueError):
        parse_duration("soon")


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"storage": {"driver": "s3"}}, "required with storage.driver: s3"),
        ({"http": {"tls_cert": "registry.crt"}}, "so give its private key too"),
        ({"http": {"tls_key": "registry.key"}}, "so give its certificate too"),
        ({"http": {"workers": 0}}, "greater than or equal to 1"),
        ({"http": {"port": 70000}}, "less than or equal to 65535"),
        ({"gc": {"retention": [{"repositories": ["a//b"], "keep_last": 1}]}}, "empty segments"),
        ({"gc": {"retention": [{"protect": ["v1/x"], "keep_last": 1}]}}, "cannot hold `/`"),
        ({"gc": {"retention": [{"repositories": [], "keep_last": 1}]}}, "at least 1"),
    ],
)
def test_rules_across_settings_are_refused_when_loaded(
    section: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValidationError) as info:
        Config.model_validate(section)
    assert [message in e["msg"] for e in info.value.errors()] == [True]


def test_s3_with_a_bucket_from_the_environment_is_valid() -> None:
    env = {"REGISTRY_STORAGE_DRIVER": "s3", "REGISTRY_STORAGE_S3_BUCKET": "b"}
    assert load_config(None, environ=env).storage.s3.bucket == "b"
