"""The one pattern grammar (registry/patterns.py): examples from docs/patterns.md, and
properties checked against a segment-by-segment reference matcher written the way
bmatcuk/doublestar (Harbor's filters) matches."""

from __future__ import annotations

import fnmatch

import pytest
from hypothesis import given
from hypothesis import strategies as st

from registry.patterns import (
    check_repository_pattern,
    check_tag_pattern,
    literal_prefix,
    matches,
    matches_any,
)


@pytest.mark.parametrize(
    ("pattern", "name", "expected"),
    [
        ("team/app", "team/app", True),
        ("team/app", "team/app2", False),
        ("team/*", "team/app", True),
        ("team/*", "team/sub/app", False),  # one segment only
        ("team/*", "team", False),
        ("team/**", "team/app", True),
        ("team/**", "team/sub/app", True),
        ("team/**", "team", False),  # below team/, not team itself
        ("**", "a", True),
        ("**", "a/b/c", True),
        ("*", "a", True),
        ("*", "a/b", False),
        ("*/base", "team/base", True),
        ("*/base", "a/b/base", False),
        ("**/base", "base", True),
        ("**/base", "a/b/base", True),
        ("**/base", "a/b/base-image", False),
        ("team/**/app", "team/app", True),
        ("team/**/app", "team/x/y/app", True),
        ("team/**/app", "team/xapp", False),
        ("team-**", "team-a", True),  # "**" inside a segment is a plain "*"
        ("team-**", "team-a/b", False),
        ("v*", "v1.2.3", True),
        ("v*", "1.0", False),
        ("app-?", "app-1", True),
        ("app-?", "app-12", False),
        ("a?b", "a/b", False),  # "?" is never "/"
        ("team.a/*", "teamxa/app", False),  # "." is literal
        ("[ab]", "a", False),  # so are brackets
        ("[ab]", "[ab]", True),
    ],
)
def test_documented_examples(pattern: str, name: str, expected: bool) -> None:
    assert matches(pattern, name) is expected


def reference(pattern: str, name: str) -> bool:
    """Segment by segment: "**" alone takes zero or more whole segments (one or more at
    the end), any other segment is an fnmatch glob with brackets made literal."""
    return _match(pattern.split("/"), name.split("/"), first=True)


def _match(pat: list[str], name: list[str], first: bool) -> bool:
    if not pat:
        return not name
    head, rest = pat[0], pat[1:]
    if head == "**":
        if not rest:
            return bool(name) and (first or name != [""])
        return any(_match(rest, name[i:], False) for i in range(len(name) + 1))
    if not name:
        return False
    glob = head.replace("**", "*").replace("[", "[[]")
    return fnmatch.fnmatchcase(name[0], glob) and _match(rest, name[1:], False)


pattern_text = st.lists(
    st.sampled_from(["a", "b", ".", "-", "[", "/", "*", "**", "?", "**/", "/**"]), max_size=8
).map("".join)
name_text = st.lists(st.sampled_from(["a", "b", ".", "-", "[", "/"]), max_size=8).map("".join)


@given(pattern_text, name_text)
def test_agrees_with_the_segment_by_segment_reference(pattern: str, name: str) -> None:
    assert matches(pattern, name) is reference(pattern, name)


@given(pattern_text, name_text)
def test_every_match_starts_with_the_literal_prefix(pattern: str, name: str) -> None:
    prefix = literal_prefix(pattern)
    assert not any(c in prefix for c in "*?")
    assert pattern.startswith(prefix)
    if matches(pattern, name):
        assert name.startswith(prefix)


@given(name_text)
def test_a_pattern_without_wildcards_matches_only_itself(name: str) -> None:
    assert matches(name, name)
    assert not matches(name, name + "a")
    assert literal_prefix(name) == name


@given(st.lists(st.sampled_from(["a", "b", "c.d", "e-f"]), min_size=1, max_size=4).map("/".join))
def test_star_stays_in_one_segment_and_doublestar_crosses(name: str) -> None:
    assert matches("*", name) is ("/" not in name)
    assert matches("**", name)
    first = name.split("/")[0]
    assert matches(f"{first}/**", name) is ("/" in name)


def test_matches_any() -> None:
    assert matches_any(["x/*", "team/**"], "team/a/b")
    assert not matches_any([], "team")


@pytest.mark.parametrize("pattern", ["", "/team", "team/", "team//app"])
def test_repository_patterns_that_can_match_nothing_are_refused(pattern: str) -> None:
    with pytest.raises(ValueError):
        check_repository_pattern(pattern)


@pytest.mark.parametrize("pattern", ["", "v1/x"])
def test_tag_patterns_that_can_match_nothing_are_refused(pattern: str) -> None:
    with pytest.raises(ValueError):
        check_tag_pattern(pattern)


def test_valid_patterns_pass_the_checks() -> None:
    assert check_repository_pattern("team/**") == "team/**"
    assert check_tag_pattern("v*") == "v*"
