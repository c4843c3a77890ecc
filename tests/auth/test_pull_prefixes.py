"""Policy.pull_prefixes: every repository a caller may pull starts with one of them, so
the catalog may read only the names below them."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from registry.auth.access import PULL, Identity, build_policy

NAMES = st.lists(st.sampled_from(["a", "b", "a-b", "a.b", "a_b", "ab"]), min_size=1, max_size=3)
PATTERNS = st.text(alphabet="ab-._/*?[]{}", min_size=1, max_size=8)


def test_prefixes_are_the_literal_parts_of_the_pull_grants() -> None:
    policy = build_policy(
        {"pusher": ["push"]},
        [
            (["team/*/app", "team-b/**"], "reader", ["alice"], []),
            (["secret/*"], "pusher", ["alice"], []),  # push only: nothing to list
            (["other/*"], "admin", ["bob"], []),
        ],
        [(["public/*", "lib-?", "public/tools/*"], "reader")],
    )
    alice = Identity("alice")
    assert policy.pull_prefixes(alice) == ("lib-", "public/", "public/tools/", "team-b/", "team/")
    assert policy.pull_prefixes(None) == ("lib-", "public/", "public/tools/")
    assert "other/" in policy.pull_prefixes(Identity("bob"))
    everything = build_policy({}, [(["*"], "admin", ["root"], [])], [])
    assert everything.pull_prefixes(Identity("root")) == ("",)


@given(
    patterns=st.lists(PATTERNS, min_size=1, max_size=3),
    anonymous=st.lists(PATTERNS, max_size=2),
    names=st.lists(NAMES.map("/".join), max_size=20),
)
def test_every_pullable_name_starts_with_a_prefix(
    patterns: list[str], anonymous: list[str], names: list[str]
) -> None:
    policy = build_policy({}, [(patterns, "reader", ["u"], [])], [(anonymous, "reader")])
    for identity in (Identity("u"), None):
        prefixes = policy.pull_prefixes(identity)
        for name in names:
            if PULL in policy.repository_actions(identity, name):
                assert any(name.startswith(p) for p in prefixes), (name, prefixes)
