"""Access decisions, pure (no I/O): the scope grammar, the table of what each route needs
and role-based policy evaluation (grants name repositories in the grammar of
registry/patterns.py).

Scopes follow distribution's ``docs/spec/auth/scope.md``: ``type:name:action[,action]``,
where the name may itself hold a ``:`` (a registry host with a port), so the type ends at
the first colon and the actions start after the last one.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import Enum

from registry.patterns import literal_prefix, matches_any
from registry.reference import is_valid_name

PULL = "pull"
PUSH = "push"
DELETE = "delete"
ANY_ACTION = "*"
REPOSITORY_ACTIONS = frozenset({PULL, PUSH, DELETE})

TOKEN_PATH = "/auth/token"  # noqa: S105 -- the built-in token service, the default realm
JWKS_PATH = "/.well-known/jwks.json"

REPOSITORY = "repository"
REGISTRY = "registry"
CATALOG = "catalog"

# Roles every configuration has; ``auth.roles`` may add more or redefine these.
BUILTIN_ROLES: Mapping[str, frozenset[str]] = {
    "reader": frozenset({PULL}),
    "writer": frozenset({PULL, PUSH}),
    "maintainer": frozenset({PULL, PUSH, DELETE}),
    "admin": frozenset({ANY_ACTION}),
}

# Every character a repository name may hold (registry/reference.py's grammar).
_TYPE_RE = re.compile(r"^([a-z0-9]+)(?:\([a-z0-9]+\))?$")
_ACTION_RE = re.compile(r"^[a-z*]+$")


class ScopeError(ValueError):
    """A scope string that does not follow the grammar."""


@dataclass(frozen=True)
class ResourceScope:
    """Actions on one typed, named resource: ``repository:team/app:pull,push``."""

    type: str
    name: str
    actions: frozenset[str]

    def __str__(self) -> str:
        return f"{self.type}:{self.name}:{','.join(sorted(self.actions))}"


def parse_scope(text: str) -> list[ResourceScope]:
    """Every resource scope in a space-separated scope list (a POST ``scope`` field or
    one of several GET ``scope`` parameters)."""
    return [_parse_one(part) for part in text.split()]


def _parse_one(text: str) -> ResourceScope:
    type_part, sep, rest = text.partition(":")
    name, sep2, actions_part = rest.rpartition(":")
    if not sep or not sep2 or not name:
        raise ScopeError(f"malformed scope: {text[:200]!r}")
    m = _TYPE_RE.match(type_part)
    if m is None:
        raise ScopeError(f"malformed resource type in scope: {text[:200]!r}")
    # The resource class ("repository(plugin)") is deprecated and ignored (scope.md).
    resource_type = m.group(1)
    actions = frozenset(a for a in actions_part.split(",") if a)
    if not all(_ACTION_RE.match(a) for a in actions):
        raise ScopeError(f"malformed actions in scope: {text[:200]!r}")
    if resource_type == REPOSITORY and not is_valid_name(name):
        raise ScopeError(f"invalid repository name in scope: {text[:200]!r}")
    return ResourceScope(resource_type, name, actions)


def merge_scopes(scopes: Iterable[ResourceScope]) -> list[ResourceScope]:
    """One entry per resource with the union of the actions, in a stable order."""
    merged: dict[tuple[str, str], set[str]] = {}
    for s in scopes:
        merged.setdefault((s.type, s.name), set()).update(s.actions)
    return [ResourceScope(t, n, frozenset(a)) for (t, n), a in sorted(merged.items())]


def scope_covers(granted: Iterable[ResourceScope], needed: ResourceScope) -> bool:
    """Whether ``granted`` (a token's access claim) holds every action of ``needed``."""
    have: set[str] = set()
    for g in granted:
        if g.type == needed.type and g.name == needed.name:
            have |= g.actions
    return ANY_ACTION in have or needed.actions <= have


# ------------------------------------------------------------------ the access table


class Kind(Enum):
    PUBLIC = "public"  # no credential needed (the token service itself)
    LOGIN = "login"  # any valid credential, no resource
    REPOSITORY = "repository"  # actions on the repository named in the path
    CATALOG = "catalog"  # registry:catalog:*


@dataclass(frozen=True)
class Need:
    kind: Kind
    actions: frozenset[str] = frozenset()


_PUBLIC = Need(Kind.PUBLIC)
_LOGIN = Need(Kind.LOGIN)
_CATALOG = Need(Kind.CATALOG, frozenset({ANY_ACTION}))
_PULL = Need(Kind.REPOSITORY, frozenset({PULL}))
# Clients ask for "pull,push" when they push, and a push reads too (mount checks, HEAD of
# blobs, resuming uploads): distribution requires both for every upload route.
_PUSH = Need(Kind.REPOSITORY, frozenset({PULL, PUSH}))
_DELETE = Need(Kind.REPOSITORY, frozenset({DELETE}))

_NAME = "/v2/{name:path}"
_UPLOAD = _NAME + "/blobs/uploads/{upload_id}"
_UI_REPOSITORY = "/ui/repositories/{name:path}"

# THE table: which access each route template and method needs. A route that is not
# listed is refused whenever auth is on (fail closed); tests/auth checks that every
# route of the application appears here.
ROUTE_ACCESS: Mapping[tuple[str, str], Need] = {
    ("/v2/", "GET"): _LOGIN,
    ("/v2/", "HEAD"): _LOGIN,
    ("/v2/_catalog", "GET"): _CATALOG,
    (_NAME + "/blobs/{digest}", "GET"): _PULL,
    (_NAME + "/blobs/{digest}", "HEAD"): _PULL,
    (_NAME + "/blobs/{digest}", "DELETE"): _DELETE,
    (_NAME + "/blobs/uploads/", "POST"): _PUSH,
    (_NAME + "/blobs/uploads", "POST"): _PUSH,
    # Upload sessions belong to the pusher: even reading one's status needs push.
    (_UPLOAD, "GET"): _PUSH,
    (_UPLOAD, "PATCH"): _PUSH,
    (_UPLOAD, "PUT"): _PUSH,
    (_UPLOAD, "DELETE"): _PUSH,
    (_NAME + "/manifests/{reference}", "GET"): _PULL,
    (_NAME + "/manifests/{reference}", "HEAD"): _PULL,
    (_NAME + "/manifests/{reference}", "PUT"): _PUSH,
    (_NAME + "/manifests/{reference}", "DELETE"): _DELETE,
    (_NAME + "/tags/list", "GET"): _PULL,
    (_NAME + "/referrers/{digest:path}", "GET"): _PULL,
    (TOKEN_PATH, "GET"): _PUBLIC,
    (TOKEN_PATH, "POST"): _PUBLIC,
    (JWKS_PATH, "GET"): _PUBLIC,
    # Probes and scrapers (routes/ops.py) are open by design: keep them off the public
    # side of a proxy (docs/operations.md).
    ("/health/live", "GET"): _PUBLIC,
    ("/health/live", "HEAD"): _PUBLIC,
    ("/health/ready", "GET"): _PUBLIC,
    ("/health/ready", "HEAD"): _PUBLIC,
    ("/metrics", "GET"): _PUBLIC,
    # Usage and quotas (registry/routes/usage.py): any logged-in caller; the route shows
    # each caller the repositories it may pull and their namespaces, admins everything.
    ("/api/usage", "GET"): _LOGIN,
    # The web UI (registry/ui/, when ui.enabled): public at this layer, because a browser
    # carries a session cookie, not the API's credentials. The UI evaluates the same
    # policy itself for every repository it shows and every action it offers or
    # performs, in one place (registry/ui/viewer.py).
    ("/", "GET"): _PUBLIC,
    ("/ui", "GET"): _PUBLIC,
    ("/ui/", "GET"): _PUBLIC,
    ("/ui/static/{file}", "GET"): _PUBLIC,
    ("/ui/static/{file}", "HEAD"): _PUBLIC,
    ("/ui/storage", "GET"): _PUBLIC,
    ("/ui/login", "GET"): _PUBLIC,
    ("/ui/login", "POST"): _PUBLIC,
    ("/ui/logout", "POST"): _PUBLIC,
    (_UI_REPOSITORY, "GET"): _PUBLIC,
    (_UI_REPOSITORY + "/-/manifests/{reference}", "GET"): _PUBLIC,
    (_UI_REPOSITORY + "/-/manifests/{reference}/delete", "GET"): _PUBLIC,
    (_UI_REPOSITORY + "/-/manifests/{reference}/delete", "POST"): _PUBLIC,
    (_UI_REPOSITORY + "/-/tags/{tag}/delete", "GET"): _PUBLIC,
    (_UI_REPOSITORY + "/-/tags/{tag}/delete", "POST"): _PUBLIC,
    # Replication status (registry/routes/replication.py): administrators only, which the
    # route checks (it names remotes and repositories of every namespace).
    ("/api/replication", "GET"): _LOGIN,
}


def route_need(template: str, method: str) -> Need | None:
    """What a route needs, or None when the table does not know it (refuse)."""
    return ROUTE_ACCESS.get((template, method.upper()))


def required_scopes(need: Need, name: str | None) -> list[ResourceScope]:
    """The resource scopes a request needs, as they appear in a Bearer challenge."""
    if need.kind is Kind.REPOSITORY:
        if name is None:
            raise ValueError("a repository route without a name parameter")
        return [ResourceScope(REPOSITORY, name, need.actions)]
    if need.kind is Kind.CATALOG:
        return [ResourceScope(REGISTRY, CATALOG, need.actions)]
    return []


# ----------------------------------------------------------------------------- policy


@dataclass(frozen=True)
class Identity:
    """An authenticated user and the groups it belongs to."""

    name: str
    groups: frozenset[str] = frozenset()


EVERY_USER = "*"  # in a grant's users: every authenticated user


@dataclass(frozen=True)
class Grant:
    """A role bound to users and groups on repository name patterns. A grant with no
    users and no groups is an anonymous grant: it applies to every caller."""

    repositories: tuple[str, ...]
    actions: frozenset[str]
    users: frozenset[str] = frozenset()
    groups: frozenset[str] = frozenset()

    def binds(self, identity: Identity | None) -> bool:
        if not self.users and not self.groups:
            return True
        if identity is None:
            return False
        return (
            EVERY_USER in self.users
            or identity.name in self.users
            or not self.groups.isdisjoint(identity.groups)
        )

    def covers(self, name: str) -> bool:
        return matches_any(self.repositories, name)


@dataclass(frozen=True)
class Policy:
    """Who may do what: grants for users and groups, plus the anonymous grants that hold
    for everyone (logged in or not)."""

    grants: tuple[Grant, ...] = ()

    def repository_actions(self, identity: Identity | None, name: str) -> frozenset[str]:
        """The concrete actions the caller holds on repository ``name`` ("*" expanded)."""
        held: set[str] = set()
        for g in self.grants:
            if g.binds(identity) and g.covers(name):
                held |= g.actions
        if ANY_ACTION in held:
            return REPOSITORY_ACTIONS
        return frozenset(held & REPOSITORY_ACTIONS)

    def pull_prefixes(self, identity: Identity | None) -> tuple[str, ...]:
        """Literal prefixes that every repository the caller may pull starts with, in
        order: each pattern's part before its first wildcard ("" when it starts with one).
        The catalog reads only the names below them, so that repositories outside cost
        a filtered caller nothing."""
        return tuple(
            sorted(
                {
                    literal_prefix(pattern)
                    for g in self.grants
                    if g.binds(identity) and (PULL in g.actions or ANY_ACTION in g.actions)
                    for pattern in g.repositories
                }
            )
        )

    def may_list_catalog(self, identity: Identity | None) -> bool:
        """The catalog is open to every caller who may pull something (it is filtered to
        what the caller may pull), and always to holders of "*" (admins)."""
        return any(
            g.binds(identity) and (PULL in g.actions or ANY_ACTION in g.actions)
            for g in self.grants
        )

    def is_admin(self, identity: Identity | None) -> bool:
        """Whether the caller holds every action on every repository (a grant of "*"
        on "**"): it sees the whole registry in reports such as /api/usage."""
        return any(
            g.binds(identity) and ANY_ACTION in g.actions and "**" in g.repositories
            for g in self.grants
        )

    def allows(self, identity: Identity | None, needed: ResourceScope) -> bool:
        granted = grant_for(self, identity, needed)
        return ANY_ACTION in granted or needed.actions <= granted


def grant_for(policy: Policy, identity: Identity | None, asked: ResourceScope) -> frozenset[str]:
    """The part of ``asked`` that the policy gives the caller (an intersection: asking
    for more than the role allows is not an error, the answer is just smaller)."""
    if asked.type == REPOSITORY:
        held = policy.repository_actions(identity, asked.name)
        if ANY_ACTION in asked.actions:
            return held
        return asked.actions & held
    if asked.type == REGISTRY and asked.name == CATALOG:
        if policy.may_list_catalog(identity):
            return asked.actions & frozenset({ANY_ACTION})
        return frozenset()
    return frozenset()


def grant_scopes(
    policy: Policy, identity: Identity | None, asked: Iterable[ResourceScope]
) -> list[ResourceScope]:
    """The access claim of a token: each asked resource with the actions granted, merged;
    resources with nothing granted are left out."""
    out: list[ResourceScope] = []
    for s in merge_scopes(asked):
        actions = grant_for(policy, identity, s)
        if actions:
            out.append(ResourceScope(s.type, s.name, actions))
    return out


def build_policy(
    roles: Mapping[str, Iterable[str]],
    grants: Iterable[tuple[Iterable[str], str, Iterable[str], Iterable[str]]],
    anonymous: Iterable[tuple[Iterable[str], str]],
) -> Policy:
    """A policy from role definitions, (repositories, role, users, groups) bindings and
    (repositories, role) anonymous bindings. Unknown roles raise KeyError."""
    role_actions = {**BUILTIN_ROLES, **{k: frozenset(v) for k, v in roles.items()}}
    out: list[Grant] = []
    for repositories, role, users, groups in grants:
        users, groups = frozenset(users), frozenset(groups)
        if not users and not groups:
            continue  # bound to nobody; never an accidental anonymous grant
        out.append(Grant(tuple(repositories), role_actions[role], users, groups))
    for repositories, role in anonymous:
        out.append(Grant(tuple(repositories), role_actions[role]))
    return Policy(tuple(out))
