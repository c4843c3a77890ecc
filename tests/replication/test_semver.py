"""Semver ranges as replication's tag filters read them (node-semver's grammar): a table
of ranges and tags, and properties (hypothesis) that tie the shorthands to the
comparators they stand for."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from registry.replication.semver import RangeError, Version, parse_range, parse_version

CASES = [
    # (range, tags that match, tags that do not)
    (">=1.2", ["1.2.0", "1.3", "2.0.0", "v10.0.0"], ["1.1.9", "1.3.0-rc.1", "latest"]),
    ("^1.2.3", ["1.2.3", "1.9.9"], ["2.0.0", "2.0.0-alpha", "1.2.2", "1.3.0-rc.1"]),
    ("^0.2.3", ["0.2.3", "0.2.9"], ["0.3.0", "0.2.2"]),
    ("^0.0.3", ["0.0.3"], ["0.0.4"]),
    ("~1.2.3", ["1.2.3", "1.2.9"], ["1.3.0"]),
    ("~1", ["1.0.0", "1.9.0"], ["2.0.0"]),
    ("1.2.x", ["1.2.0", "1.2.99"], ["1.3.0", "1.1.0"]),
    ("1.2", ["1.2.7"], ["1.3.0"]),
    ("*", ["0.0.1", "9"], ["1.0.0-rc1", "stable"]),
    ("1.2 - 2.3", ["1.2.0", "2.3.9"], ["2.4.0", "1.1.9"]),
    (">1.2", ["1.3.0"], ["1.2.9", "1.3.0-rc.1"]),
    ("<=1.2", ["1.2.9", "0.1"], ["1.3.0", "1.3.0-0"]),
    ("<1.2.3", ["1.2.2"], ["1.2.3", "1.2.3-rc.1"]),
    (">=1.3.0-rc.0", ["1.3.0-rc.1", "1.3.0", "2.0"], ["1.4.0-rc.1", "1.3.0-beta"]),
    ("1.x || >=3", ["1.5", "3.1"], ["2.0", "0.9"]),
    (">= 1.2, <2", [], []),  # a comma is not part of the grammar: refused below
    ("=1.2.3", ["v1.2.3"], ["1.2.4"]),
    ("3.20.0-alpine", ["3.20.0-alpine"], ["3.20.0", "3.20.0-alpine.1"]),
]


@pytest.mark.parametrize(("text", "yes", "no"), [c for c in CASES if "," not in c[0]])
def test_ranges(text: str, yes: list[str], no: list[str]) -> None:
    r = parse_range(text)
    assert [t for t in yes if not r.matches_tag(t)] == []
    assert [t for t in no if r.matches_tag(t)] == []


@pytest.mark.parametrize(
    "text", [">= 1.2, <2", "", "   ", ">=banana", "1.x.3", "^*.2", ">=1.2-rc", "1.2.3.4", "> >1"]
)
def test_refused(text: str) -> None:
    with pytest.raises(RangeError):
        parse_range(text)


def test_versions_of_tags() -> None:
    assert parse_version("v1.2.3") == Version(1, 2, 3)
    assert parse_version("3.20") == Version(3, 20, 0)
    assert parse_version("1.2.3-rc.1") == Version(1, 2, 3, ("rc", "1"))
    assert parse_version("3.20-alpine") == Version(3, 20, 0, ("alpine",))
    for tag in ("latest", "1.2.3.4", "v", "1..2", "1.2.3-", "1.2.3-a..b"):
        assert parse_version(tag) is None


parts = st.integers(min_value=0, max_value=30)
pre = st.lists(
    st.one_of(st.integers(0, 5).map(str), st.sampled_from(["alpha", "beta", "rc"])),
    max_size=2,
).map(tuple)
versions = st.builds(Version, parts, parts, parts, pre)


@given(versions, versions)
def test_order_is_total_and_antisymmetric(a: Version, b: Version) -> None:
    assert (a < b) + (b < a) + (a == b) == 1


@given(versions)
def test_a_version_prints_and_reads_back(v: Version) -> None:
    assert parse_version(str(v)) == v


@given(versions, parts, parts, parts)
def test_caret_is_its_comparators(v: Version, major: int, minor: int, patch: int) -> None:
    base = f"{major}.{minor}.{patch}"
    if major > 0:
        upper = f"{major + 1}.0.0-0"
    elif minor > 0:
        upper = f"0.{minor + 1}.0-0"
    else:
        upper = f"0.0.{patch + 1}-0"
    assert parse_range(f"^{base}").matches(v) == parse_range(f">={base} <{upper}").matches(v)


@given(versions, parts, parts)
def test_tilde_and_x_ranges_agree(v: Version, major: int, minor: int) -> None:
    a = parse_range(f"~{major}.{minor}").matches(v)
    assert a == parse_range(f"{major}.{minor}.x").matches(v)
    assert a == parse_range(f">={major}.{minor}.0 <{major}.{minor + 1}.0-0").matches(v)


@given(versions)
def test_a_release_satisfies_its_exact_range_only(v: Version) -> None:
    exact = parse_range(f"={v}")
    assert exact.matches(v)
    assert not exact.matches(Version(v.major, v.minor, v.patch + 1))
