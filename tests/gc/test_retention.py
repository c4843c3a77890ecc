"""Retention policy evaluation (pure): which tags go, which policy applies. The pattern
grammar itself is tested in tests/unit/test_patterns.py."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from registry.gc.retention import (
    RetentionPolicy,
    TagRecord,
    UntaggedPolicy,
    expired_tags,
    policy_for,
    untagged_age,
)

DAY = 86400.0
NOW = 1_800_000_000.0


def tags(*spec: tuple[str, float]) -> list[TagRecord]:
    """Tags by name and age in days."""
    return [
        TagRecord(name, f"sha256:{i:064x}", NOW - age * DAY) for i, (name, age) in enumerate(spec)
    ]


def names(records: list[TagRecord]) -> list[str]:
    return [t.name for t in records]


def test_keep_last_keeps_the_newest_unprotected_tags() -> None:
    policy = RetentionPolicy(keep_last=2, protect=("latest", "v*"))
    found = tags(("a", 5), ("b", 4), ("c", 3), ("d", 2), ("latest", 9), ("v1", 10), ("v2.0", 8))
    assert names(expired_tags(found, policy, NOW)) == ["a", "b"]


def test_older_than_deletes_tags_not_pushed_for_that_long() -> None:
    policy = RetentionPolicy(older_than=30 * DAY)
    found = tags(("old", 31), ("recent", 29), ("edge", 30))
    assert names(expired_tags(found, policy, NOW)) == ["old"]


def test_both_conditions_must_hold() -> None:
    """GitLab's semantics: beyond the newest N *and* older than the age."""
    policy = RetentionPolicy(keep_last=1, older_than=7 * DAY)
    found = tags(("newest-old", 8), ("older", 9), ("young", 1))
    # "young" is the newest; "newest-old" is second but old enough; so is "older".
    assert names(expired_tags(found, policy, NOW)) == ["newest-old", "older"]
    assert names(expired_tags(tags(("a", 1), ("b", 2)), policy, NOW)) == []


def test_a_policy_without_conditions_deletes_nothing() -> None:
    assert expired_tags(tags(("a", 100)), RetentionPolicy(), NOW) == []


def test_protected_tags_never_count_towards_keep_last() -> None:
    policy = RetentionPolicy(keep_last=1, protect=("release-*",))
    found = tags(("release-1", 0), ("release-2", 0), ("x", 1), ("y", 2))
    assert names(expired_tags(found, policy, NOW)) == ["y"]


def test_equal_push_times_rank_by_name() -> None:
    # S3 keeps whole seconds: tags pushed within one second have equal times.
    same = [TagRecord(n, "sha256:" + "0" * 64, NOW) for n in ("a", "c", "b")]
    assert names(expired_tags(same, RetentionPolicy(keep_last=1), NOW + 1)) == ["a", "b"]


def test_the_first_matching_policy_applies() -> None:
    team = RetentionPolicy(repositories=("team/*",), keep_last=5)
    rest = RetentionPolicy(repositories=("**",), keep_last=50)
    assert policy_for("team/app", [team, rest]) is team
    assert policy_for("team/sub/app", [team, rest]) is rest
    assert policy_for("other", [team]) is None


def test_untagged_age() -> None:
    assert untagged_age(UntaggedPolicy(delete=False), 3600) is None
    assert untagged_age(UntaggedPolicy(older_than=0), 3600) == 3600
    assert untagged_age(UntaggedPolicy(older_than=DAY), 3600) == DAY


# ---------------------------------------------------------------------------- properties

tag_names = st.from_regex(r"[a-z0-9][a-z0-9._-]{0,10}", fullmatch=True)
ages = st.floats(min_value=0, max_value=400 * DAY, allow_nan=False)
records = st.dictionaries(tag_names, ages, max_size=30).map(
    lambda d: [TagRecord(n, "sha256:" + "0" * 64, NOW - a) for n, a in d.items()]
)
policies = st.builds(
    RetentionPolicy,
    keep_last=st.none() | st.integers(min_value=0, max_value=10),
    older_than=st.none() | st.floats(min_value=0, max_value=100 * DAY, allow_nan=False),
    protect=st.lists(st.sampled_from(["latest", "v*", "release-*", "a*", "*-rc"]), max_size=3).map(
        tuple
    ),
)


@given(records, policies)
def test_property_protected_and_young_tags_are_never_expired(
    found: list[TagRecord], policy: RetentionPolicy
) -> None:
    for tag in expired_tags(found, policy, NOW):
        assert not policy.protects(tag.name)
        if policy.older_than is not None:
            assert NOW - tag.pushed_at > policy.older_than


@given(records, policies)
def test_property_the_newest_keep_last_unprotected_tags_survive(
    found: list[TagRecord], policy: RetentionPolicy
) -> None:
    expired = {t.name for t in expired_tags(found, policy, NOW)}
    unprotected = [t for t in found if not policy.protects(t.name)]
    survivors = [t for t in unprotected if t.name not in expired]
    if policy.keep_last is not None:
        assert len(survivors) >= min(policy.keep_last, len(unprotected))
        newest = sorted(unprotected, key=lambda t: (t.pushed_at, t.name), reverse=True)
        assert not expired & {t.name for t in newest[: policy.keep_last]}
    if policy.keep_last is None and policy.older_than is None:
        assert not expired


@given(records, policies)
def test_property_applying_a_policy_twice_deletes_nothing_more(
    found: list[TagRecord], policy: RetentionPolicy
) -> None:
    expired = {t.name for t in expired_tags(found, policy, NOW)}
    remaining = [t for t in found if t.name not in expired]
    assert expired_tags(remaining, policy, NOW) == []


@given(records, policies, st.floats(min_value=0, max_value=100 * DAY, allow_nan=False))
def test_property_time_only_adds_to_what_goes(
    found: list[TagRecord], policy: RetentionPolicy, later: float
) -> None:
    now_expired = {t.name for t in expired_tags(found, policy, NOW)}
    later_expired = {t.name for t in expired_tags(found, policy, NOW + later)}
    assert now_expired <= later_expired
