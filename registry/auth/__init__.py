"""Authentication and authorization: users and groups, JWT bearer tokens, the access table
and role-based policy. See docs/auth.md."""

from registry.auth.access import ROUTE_ACCESS, Identity, Policy, ResourceScope, parse_scope
from registry.auth.authorizer import (
    Authorizer,
    Caller,
    authorize_request,
    is_admin,
    may_pull,
    repository_filter,
    repository_prefixes,
)
from registry.auth.token_service import TokenService

__all__ = [
    "ROUTE_ACCESS",
    "Authorizer",
    "Caller",
    "Identity",
    "Policy",
    "ResourceScope",
    "TokenService",
    "authorize_request",
    "is_admin",
    "may_pull",
    "parse_scope",
    "repository_filter",
    "repository_prefixes",
]
