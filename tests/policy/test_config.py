"""The policy section: sizes, names and the rules across its settings, refused with the
place of the mistake; the lists from the environment."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from registry.config import load_config, parse_byte_size
from registry.policy import usage_groups


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("50GiB", 50 * 2**30),
        ("500MB", 500 * 10**6),
        ("1.5KiB", 1536),
        ("42", 42),
        (7, 7),
        ("2 tib", 2 * 2**40),
    ],
)
def test_sizes_read_as_written(text: Any, size: int) -> None:
    assert parse_byte_size(text) == size


@pytest.mark.parametrize("text", ["", "ten", "5 GB B", "-1GiB", "1XB"])
def test_what_is_not_a_size_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="not a size"):
        parse_byte_size(text)


def policy(section: dict[str, Any]) -> Any:
    return load_config(environ={}, overrides={"policy": section}).policy


def test_a_quota_is_named_after_its_pattern_unless_named() -> None:
    section = {
        "quotas": [
            {"repositories": ["team-a/**"], "limit": "1GiB"},
            {"repositories": ["org/team-b/*"], "limit": 1},
        ]
    }
    assert [q.name for q in policy(section).quotas] == ["team-a", "org.team-b"]


@pytest.mark.parametrize(
    ("quotas", "message"),
    [
        ([{"repositories": ["**/app"], "limit": 1}], "give it a name"),
        ([{"name": "Team A", "repositories": ["a/**"], "limit": 1}], "a quota name is"),
        (
            [
                {"repositories": ["a/**"], "limit": 1},
                {"name": "a", "repositories": ["b"], "limit": 1},
            ],
            "two quotas are named 'a'",
        ),
        ([{"repositories": ["a/**"], "limit": "lots"}], "not a size"),
        ([{"repositories": ["a//b"], "limit": 1}], "empty segments"),
    ],
)
def test_quota_mistakes_are_refused(quotas: list[dict[str, Any]], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        policy({"quotas": quotas})


def test_immutable_rules_are_named_by_their_place_unless_named() -> None:
    named = {"name": "x", "repositories": ["a"]}
    rules = policy({"immutable_tags": [{"repositories": ["**"]}, named]})
    assert [r.name for r in rules.immutable_tags] == ["immutable_tags[0]", "x"]
    assert rules.immutable_tags[0].tags == ["*"]
    with pytest.raises(ValidationError, match="cannot hold `/`"):
        policy({"immutable_tags": [{"repositories": ["**"], "tags": ["a/b"]}]})


def test_the_lists_come_from_the_environment_as_yaml() -> None:
    environ = {
        "REGISTRY_POLICY_QUOTAS": "[{name: t, repositories: ['t/**'], limit: 2GiB}]",
        "REGISTRY_POLICY_IMMUTABLE_TAGS": "[{repositories: ['**'], tags: ['v*']}]",
        "REGISTRY_POLICY_QUOTA_PENDING_WINDOW": "30m",
    }
    config = load_config(environ=environ)
    assert config.policy.quotas[0].limit == 2 * 2**30
    assert config.policy.immutable_tags[0].tags == ["v*"]
    assert config.policy.quota.pending_window == 1800
    # What the collector is asked to count: the shared quotas' patterns.
    assert usage_groups(config.policy) == {"t": ["t/**"]}
