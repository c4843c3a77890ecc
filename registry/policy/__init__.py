"""Governance: immutable tags, quotas and usage (docs/governance.md).

``install(store, policy)`` puts the listeners on a store's changes; whatever opens a
store that changes content (``registry serve``, ``registry gc``) calls it, so that
every path is checked and counted in one place.
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request

from registry.config import PolicyConfig
from registry.policy.book import LedgerView, UsageBook
from registry.policy.compaction import BackgroundUpkeep, Compactor
from registry.policy.immutable import ImmutableTagGuard, ImmutableTags
from registry.policy.quota_rules import Quota, QuotaRules, usage_groups
from registry.policy.quotas import QuotaExceeded, QuotaGuard
from registry.store import RegistryStore


@dataclass
class Governance:
    """What ``install`` put on one store."""

    rules: QuotaRules
    immutable: ImmutableTagGuard | None = None
    quotas: QuotaGuard | None = None
    book: UsageBook | None = None
    compactor: Compactor | None = None

    def background(self) -> BackgroundUpkeep | None:
        """The upkeep loop of ``registry serve`` (None when nothing is configured)."""
        if self.compactor is None:
            return None
        return BackgroundUpkeep(self.compactor, self.rules.settings.compact_interval)


def install(store: RegistryStore, policy: PolicyConfig) -> Governance:
    """Listen to ``store``'s changes as ``policy`` says: immutable tags first (a refused
    change is then never counted), then quotas."""
    rules = QuotaRules.from_config(policy)
    governance = Governance(rules)
    if policy.immutable_tags:
        governance.immutable = ImmutableTagGuard(
            ImmutableTags.from_config(policy.immutable_tags), store.tags, store.tag_intents
        )
        store.changes.listen(governance.immutable)
    if policy.immutable_tags or rules.quotas:
        governance.book = UsageBook(store, rules.settings)
        governance.compactor = Compactor(store, rules, governance.book)
    if rules.quotas:
        assert governance.book is not None
        governance.quotas = QuotaGuard(store, rules, governance.book)
        store.changes.listen(governance.quotas)
    return governance


def governance_of(request: Request) -> Governance | None:
    governance: Governance | None = getattr(request.app.state, "policy", None)
    return governance


def quota_guard(request: Request) -> QuotaGuard | None:
    governance = governance_of(request)
    return None if governance is None else governance.quotas


__all__ = [
    "BackgroundUpkeep",
    "Compactor",
    "Governance",
    "ImmutableTagGuard",
    "ImmutableTags",
    "LedgerView",
    "Quota",
    "QuotaExceeded",
    "QuotaGuard",
    "QuotaRules",
    "UsageBook",
    "governance_of",
    "install",
    "quota_guard",
    "usage_groups",
]
