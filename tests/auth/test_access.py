"""Pure access logic: the scope grammar, RBAC evaluation over users, groups and the
anonymous grants, the token grant (an intersection), and the route table. The pattern
grammar of grants is tested in tests/unit/test_patterns.py."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from hypothesis import given
from hypothesis import strategies as st

from registry.app import create_app
from registry.auth.access import (
    ROUTE_ACCESS,
    Identity,
    Kind,
    ResourceScope,
    ScopeError,
    build_policy,
    grant_scopes,
    merge_scopes,
    parse_scope,
    required_scopes,
    route_need,
    scope_covers,
)
from registry.config import load_config
from registry.ui import load_ui

alnum = st.text(alphabet="abcxyz0129", min_size=1, max_size=6)
component = st.tuples(alnum, st.sampled_from(["", ".", "_", "__", "-", "--"]), alnum).map(
    lambda t: t[0] + (t[1] + t[2] if t[1] else "")
)
names = st.lists(component, min_size=1, max_size=4).map("/".join)
action_sets = st.sets(st.sampled_from(["pull", "push", "delete"]), min_size=1).map(frozenset)


def repo(name: str, *actions: str) -> ResourceScope:
    return ResourceScope("repository", name, frozenset(actions))


POLICY = build_policy(
    roles={"pusher": ["push"]},
    grants=[
        (["**"], "admin", ["root"], []),
        (["team-a/*"], "writer", [], ["team-a"]),
        (["team-a/*"], "reader", ["bob"], []),
        (["*/base"], "reader", ["bob"], []),
        (["team-b/*"], "maintainer", [], ["ops"]),
        (["drop/*"], "pusher", ["bob"], []),
        (["shared/*"], "reader", ["*"], []),
    ],
    anonymous=[(["public/*"], "reader")],
)
ALICE = Identity("alice", frozenset({"team-a"}))
BOB = Identity("bob")
CAROL = Identity("carol", frozenset({"ops", "team-a"}))
ROOT = Identity("root")
NOBODY = Identity("nobody")


# ------------------------------------------------------------------------ scope grammar


def test_parse_scope_reads_type_name_and_actions() -> None:
    assert parse_scope("repository:samalba/my-app:pull,push") == [
        repo("samalba/my-app", "pull", "push")
    ]


def test_parse_scope_splits_a_space_separated_list() -> None:
    assert parse_scope("repository:a/b:pull registry:catalog:*") == [
        repo("a/b", "pull"),
        ResourceScope("registry", "catalog", frozenset({"*"})),
    ]


def test_parse_scope_keeps_a_colon_in_the_name() -> None:
    # scope.md: a name may carry a registry host with a port.
    (s,) = parse_scope("registry:localhost:5000/x:pull")
    assert (s.type, s.name, s.actions) == ("registry", "localhost:5000/x", frozenset({"pull"}))


def test_parse_scope_ignores_the_deprecated_resource_class() -> None:
    assert parse_scope("repository(plugin):a/b:pull") == [repo("a/b", "pull")]


@pytest.mark.parametrize(
    "text",
    [
        "repository",
        "repository:a/b",
        "repository::pull",
        "Repo:a/b:pull",
        "repository:a/b:PULL",
        "repository:UPPER/case:pull",
        "repository:a//b:pull",
    ],
)
def test_parse_scope_refuses_malformed_scopes(text: str) -> None:
    with pytest.raises(ScopeError):
        parse_scope(text)


@given(names, action_sets)
def test_scope_text_round_trips(name: str, actions: frozenset[str]) -> None:
    s = ResourceScope("repository", name, actions)
    assert parse_scope(str(s)) == [s]


@given(st.lists(st.tuples(st.sampled_from(["a/x", "b/y"]), action_sets), min_size=1))
def test_merge_scopes_unions_actions_per_resource(items: list[tuple[str, frozenset[str]]]) -> None:
    merged = merge_scopes(repo(n, *a) for n, a in items)
    assert sorted(s.name for s in merged) == sorted({n for n, _ in items})
    for s in merged:
        assert s.actions == frozenset().union(*(a for n, a in items if n == s.name))


def test_scope_covers_needs_every_action_on_the_same_resource() -> None:
    granted = [repo("a/x", "pull"), repo("a/x", "push"), repo("b/y", "pull")]
    assert scope_covers(granted, repo("a/x", "pull", "push"))
    assert not scope_covers(granted, repo("b/y", "pull", "push"))
    assert not scope_covers(granted, repo("c/z", "pull"))
    assert scope_covers([repo("c/z", "*")], repo("c/z", "delete"))


# ------------------------------------------------------------------------------- policy


def test_group_membership_grants_the_group_role() -> None:
    assert POLICY.repository_actions(ALICE, "team-a/app") == {"pull", "push"}
    assert POLICY.repository_actions(ALICE, "team-b/app") == frozenset()


def test_user_binding_grants_the_user_role() -> None:
    assert POLICY.repository_actions(BOB, "team-a/app") == {"pull"}


def test_roles_from_several_bindings_add_up() -> None:
    assert POLICY.repository_actions(CAROL, "team-a/app") == {"pull", "push"}
    assert POLICY.repository_actions(CAROL, "team-b/app") == {"pull", "push", "delete"}


def test_grant_patterns_follow_the_one_grammar() -> None:
    # "team-a/*" is one level, as in retention; "**" crosses segments.
    assert POLICY.repository_actions(ALICE, "team-a/sub/app") == frozenset()
    assert POLICY.repository_actions(BOB, "a/b/base") == frozenset()
    assert POLICY.repository_actions(ROOT, "a/b/c") == {"pull", "push", "delete"}


def test_suffix_pattern_binding() -> None:
    assert POLICY.repository_actions(BOB, "anything/base") == {"pull"}
    assert POLICY.repository_actions(BOB, "anything/other") == frozenset()


def test_custom_role() -> None:
    assert POLICY.repository_actions(BOB, "drop/box") == {"push"}


def test_admin_holds_every_action_everywhere() -> None:
    assert POLICY.repository_actions(ROOT, "any/thing") == {"pull", "push", "delete"}
    assert POLICY.may_list_catalog(ROOT)


def test_every_user_binding_needs_a_login() -> None:
    assert POLICY.repository_actions(NOBODY, "shared/lib") == {"pull"}
    assert POLICY.repository_actions(None, "shared/lib") == frozenset()


def test_anonymous_grants_hold_for_everyone() -> None:
    assert POLICY.repository_actions(None, "public/app") == {"pull"}
    assert POLICY.repository_actions(NOBODY, "public/app") == {"pull"}
    assert POLICY.repository_actions(None, "team-a/app") == frozenset()


def test_an_unbound_user_gets_nothing_but_the_shared_grants() -> None:
    for name in ("team-a/x", "team-b/x", "x/base", "drop/x"):
        assert POLICY.repository_actions(NOBODY, name) == frozenset()


@given(names, st.sampled_from([ALICE, BOB, CAROL, ROOT, NOBODY, None]))
def test_a_policy_never_grants_what_no_binding_covers(name: str, who: Identity | None) -> None:
    empty = build_policy({}, [], [])
    assert empty.repository_actions(who, name) == frozenset()
    assert not empty.may_list_catalog(who)


@given(names, st.sampled_from([ALICE, BOB, CAROL, NOBODY, None]))
def test_being_logged_in_never_loses_the_anonymous_rights(name: str, who: Identity | None) -> None:
    if who is not None:
        assert POLICY.repository_actions(None, name) <= POLICY.repository_actions(who, name)


def test_catalog_is_open_to_callers_who_may_pull_something() -> None:
    assert POLICY.may_list_catalog(None)  # public/* pull
    assert build_policy({}, [(["x/*"], "writer", ["u"], [])], []).may_list_catalog(Identity("u"))
    pusher_only = build_policy({"pusher": ["push"]}, [(["x/*"], "pusher", ["u"], [])], [])
    assert not pusher_only.may_list_catalog(Identity("u"))


def test_build_policy_refuses_unknown_roles() -> None:
    with pytest.raises(KeyError):
        build_policy({}, [(["*"], "superuser", ["u"], [])], [])


def test_a_grant_bound_to_nobody_is_never_anonymous() -> None:
    policy = build_policy({}, [(["*"], "admin", [], [])], [])
    assert policy.repository_actions(None, "a/b") == frozenset()


# ------------------------------------------------------------------ token grant contents


def test_token_grant_is_the_intersection_of_asked_and_allowed() -> None:
    asked = [repo("team-a/app", "pull", "push", "delete")]
    assert grant_scopes(POLICY, BOB, asked) == [repo("team-a/app", "pull")]
    assert grant_scopes(POLICY, ALICE, asked) == [repo("team-a/app", "pull", "push")]


def test_token_grant_leaves_out_resources_with_nothing_granted() -> None:
    asked = [repo("team-b/app", "pull"), repo("public/app", "pull", "push")]
    assert grant_scopes(POLICY, BOB, asked) == [repo("public/app", "pull")]


def test_token_grant_merges_several_scopes_for_a_mount() -> None:
    asked = [
        repo("team-a/new", "pull", "push"),
        repo("team-a/old", "pull"),
        repo("team-a/new", "pull"),
    ]
    assert grant_scopes(POLICY, ALICE, asked) == [
        repo("team-a/new", "pull", "push"),
        repo("team-a/old", "pull"),
    ]


def test_token_grant_of_a_star_asks_for_everything_held() -> None:
    assert grant_scopes(POLICY, CAROL, [repo("team-b/x", "*")]) == [
        repo("team-b/x", "pull", "push", "delete")
    ]


def test_token_grant_for_the_catalog() -> None:
    catalog = ResourceScope("registry", "catalog", frozenset({"*"}))
    assert grant_scopes(POLICY, ROOT, [catalog]) == [catalog]
    pusher_only = build_policy({"pusher": ["push"]}, [(["x/*"], "pusher", ["u"], [])], [])
    assert grant_scopes(pusher_only, Identity("u"), [catalog]) == []


def test_token_grant_of_unknown_resource_types_is_empty() -> None:
    assert grant_scopes(POLICY, ROOT, [ResourceScope("plugin", "x", frozenset({"pull"}))]) == []


@given(names, action_sets, st.sampled_from([ALICE, BOB, CAROL, ROOT, NOBODY, None]))
def test_token_grant_never_exceeds_the_request_or_the_policy(
    name: str, actions: frozenset[str], who: Identity | None
) -> None:
    for s in grant_scopes(POLICY, who, [repo(name, *actions)]):
        assert s.actions <= actions
        assert s.actions <= POLICY.repository_actions(who, name)
        assert POLICY.allows(who, s)


# --------------------------------------------------------------------------- route table


def _app(tmp_path: Path, **env: str) -> FastAPI:
    environ = {
        "REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY": str(tmp_path / "data"),
        "REGISTRY_AUTH_TOKEN_KEY_FILE": str(tmp_path / "key.pem"),
        **env,
    }
    app = create_app(load_config(None, environ=environ))
    load_ui(app)  # its routes are in the table too
    return app


def _route_methods(routes: Iterable[Any]) -> set[tuple[str, str]]:
    """(path template, method) of every endpoint, through included routers."""
    out: set[tuple[str, str]] = set()
    for route in routes:
        included = getattr(route, "original_router", None)  # FastAPI >= 0.16x wraps them
        if included is not None:
            out |= _route_methods(included.routes)
            continue
        for method in getattr(route, "methods", None) or ():
            out.add((route.path, method))
    return out


def test_every_route_of_the_application_is_in_the_access_table(tmp_path: Path) -> None:
    """The table is the one place saying what each request needs: a route added without
    an entry would be refused with auth on, so it must not exist."""
    routes = _route_methods(_app(tmp_path, REGISTRY_AUTH_MODE="token").routes)
    assert len(routes) > 20
    assert {r for r in routes if route_need(*r) is None} == set()


def test_table_entries_name_real_routes(tmp_path: Path) -> None:
    app = _app(tmp_path, REGISTRY_AUTH_MODE="token", REGISTRY_METRICS_ENABLED="true")
    assert set(ROUTE_ACCESS) - _route_methods(app.routes) == set()


@pytest.mark.parametrize(
    ("template", "method", "actions"),
    [
        ("/v2/{name:path}/manifests/{reference}", "GET", {"pull"}),
        ("/v2/{name:path}/manifests/{reference}", "HEAD", {"pull"}),
        ("/v2/{name:path}/blobs/{digest}", "GET", {"pull"}),
        ("/v2/{name:path}/tags/list", "GET", {"pull"}),
        ("/v2/{name:path}/referrers/{digest:path}", "GET", {"pull"}),
        ("/v2/{name:path}/manifests/{reference}", "PUT", {"pull", "push"}),
        ("/v2/{name:path}/blobs/uploads/", "POST", {"pull", "push"}),
        ("/v2/{name:path}/blobs/uploads/{upload_id}", "PATCH", {"pull", "push"}),
        ("/v2/{name:path}/blobs/uploads/{upload_id}", "PUT", {"pull", "push"}),
        ("/v2/{name:path}/blobs/uploads/{upload_id}", "GET", {"pull", "push"}),
        ("/v2/{name:path}/manifests/{reference}", "DELETE", {"delete"}),
        ("/v2/{name:path}/blobs/{digest}", "DELETE", {"delete"}),
    ],
)
def test_table_says_what_each_repository_route_needs(
    template: str, method: str, actions: set[str]
) -> None:
    need = route_need(template, method)
    assert need is not None and need.kind is Kind.REPOSITORY
    assert required_scopes(need, "a/b") == [ResourceScope("repository", "a/b", frozenset(actions))]


def test_table_catalog_and_base_entries() -> None:
    catalog = route_need("/v2/_catalog", "GET")
    assert catalog is not None
    assert [str(s) for s in required_scopes(catalog, None)] == ["registry:catalog:*"]
    base = route_need("/v2/", "GET")
    assert base is not None and base.kind is Kind.LOGIN and required_scopes(base, None) == []
    assert route_need("/v2/", "DELETE") is None
