"""Retention policies, evaluated without I/O: which tags go, and from when untagged
manifests may go.

Tag policies (GitLab's cleanup-policy semantics): the first policy whose repository
pattern matches applies. A tag is deleted when it matches no protected pattern and every
condition the policy sets holds: it is not among the ``keep_last`` most recently pushed
unprotected tags, and it was last pushed more than ``older_than`` seconds ago. Protected
tags are never deleted and do not count towards ``keep_last``.

Repository and tag patterns are those of registry/patterns.py (``*`` within one path
segment, ``**`` across segments; docs/patterns.md).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from registry.patterns import matches_any


@dataclass(frozen=True)
class TagRecord:
    """A tag as the collector found it: its target and when it was last pushed."""

    name: str
    digest: str
    pushed_at: float  # seconds since the epoch (the storage's clock)


@dataclass(frozen=True)
class RetentionPolicy:
    repositories: tuple[str, ...] = ("**",)
    keep_last: int | None = None
    older_than: float | None = None  # seconds
    protect: tuple[str, ...] = ()

    def protects(self, tag: str) -> bool:
        return matches_any(self.protect, tag)


@dataclass(frozen=True)
class UntaggedPolicy:
    delete: bool = True
    older_than: float = 0.0  # seconds


def policy_for(repository: str, policies: Sequence[RetentionPolicy]) -> RetentionPolicy | None:
    """The first policy whose repository patterns match ``repository``."""
    for policy in policies:
        if matches_any(policy.repositories, repository):
            return policy
    return None


def expired_tags(tags: Iterable[TagRecord], policy: RetentionPolicy, now: float) -> list[TagRecord]:
    """The tags ``policy`` deletes at time ``now``, sorted by name."""
    if policy.keep_last is None and policy.older_than is None:
        return []
    candidates = [t for t in tags if not policy.protects(t.name)]
    # Newest first; equal push times (S3 keeps whole seconds) rank by name, greater first,
    # so that the order is total and a re-evaluation agrees with the first.
    candidates.sort(key=lambda t: (t.pushed_at, t.name), reverse=True)
    expired = []
    for rank, tag in enumerate(candidates):
        if policy.keep_last is not None and rank < policy.keep_last:
            continue
        if policy.older_than is not None and now - tag.pushed_at <= policy.older_than:
            continue
        expired.append(tag)
    return sorted(expired, key=lambda t: t.name)


def untagged_age(policy: UntaggedPolicy, grace_period: float) -> float | None:
    """Untagged manifests nothing reaches may go once last pushed longer ago than this;
    None: the policy keeps them all. Never sooner than the grace period allows."""
    if not policy.delete:
        return None
    return max(policy.older_than, grace_period)
