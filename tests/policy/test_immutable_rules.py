"""The immutable-tag rules, pure: which tags a rule covers, and the referrer fallback and
cosign tags it leaves alone."""

from __future__ import annotations

import hypothesis.strategies as st
from hypothesis import given

from registry.config import ImmutableTagRuleConfig
from registry.policy.immutable import ImmutableRule, ImmutableTags, is_referrer_tag

HEX = st.text("0123456789abcdef", min_size=64, max_size=64)


@given(HEX, st.sampled_from(["", ".sig", ".att", ".sbom"]), st.sampled_from(["sha256", "sha512"]))
def test_referrer_and_cosign_tags_are_recognised(hex_: str, suffix: str, alg: str) -> None:
    tag = f"{alg}-{hex_}{suffix}"
    assert is_referrer_tag(tag)
    every = ImmutableRule("all", ("**",))
    assert not every.covers("a/b", tag)
    assert ImmutableRule("all", ("**",), exempt_referrer_tags=False).covers("a/b", tag)


@given(HEX, st.sampled_from([".sig2", ".txt", "-x", ".SIG"]))
def test_lookalikes_are_not_referrer_tags(hex_: str, suffix: str) -> None:
    assert not is_referrer_tag(f"sha256-{hex_}{suffix}")
    assert not is_referrer_tag(f"sha256-{hex_[:63]}")
    assert ImmutableRule("all", ("**",)).covers("a", f"sha256-{hex_}{suffix}")


@given(st.from_regex(r"v[0-9]{1,3}\.[0-9]{1,3}(-rc[0-9])?", fullmatch=True))
def test_exceptions_win_over_tag_patterns(tag: str) -> None:
    rule = ImmutableRule("r", ("prod/**",), ("v*",), ("*-rc*",))
    assert rule.covers("prod/app", tag) == ("-rc" not in tag)
    assert not rule.covers("dev/app", tag)


def test_the_first_covering_rule_is_named() -> None:
    rules = ImmutableTags.from_config(
        [
            ImmutableTagRuleConfig(repositories=["prod/**"], tags=["v*"]),
            ImmutableTagRuleConfig(name="all-prod", repositories=["prod/**"]),
        ]
    )
    assert rules.rule_for("prod/app", "v1").name == "immutable_tags[0]"  # type: ignore[union-attr]
    assert rules.rule_for("prod/app", "latest").name == "all-prod"  # type: ignore[union-attr]
    assert rules.rule_for("dev/app", "v1") is None
