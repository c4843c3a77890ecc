"""Immutable tags: once a tag a rule covers exists, nothing moves it or deletes it.

The rules (``policy.immutable_tags``) are pure: a rule covers ``repository:tag`` when a
repository pattern matches, a tag pattern matches and no exception does (patterns of
registry/patterns.py). The tags clients write as referrer fallbacks and cosign
signatures -- ``sha256-<hex>`` and ``sha256-<hex>.sig`` / ``.att`` / ``.sbom`` -- are
exempt unless a rule says otherwise: a signature tag is *meant* to be replaced (cosign
appends a signature by pushing a new manifest under the same tag), and Harbor refusing
it is why re-signing an immutable image fails there (goharbor/harbor#17332).

``ImmutableTagGuard`` is a store change listener, so every path that changes tags --
the API, replication, the collector's retention -- is checked in one place:

* a manifest PUT that would point an existing covered tag at another digest: DENIED;
  the same digest again passes (idempotent CI retries);
* a tag DELETE of a covered tag: DENIED;
* a manifest DELETE by digest while a covered tag names it: DENIED -- deleting the
  manifest deletes its tags, and would let a push then point the tag anywhere;
* a collector delete of a covered tag: refused (retention leaves such tags alone in the
  first place: ``protects_tag``, asked through ``Changes.protected_tag``).

Cache fills of the pull-through cache (origin ``proxy``) are not checked: a cached
tag mirrors the upstream's, and pinning it would serve stale content for ever.

Two pushes creating one covered tag at once with different digests: each writes an
intent (store/tag_intents.py) and lists the others before its tag is written, so at
least one sees the other and is refused; the tag is then written by at most one of
them. The guarantee: a client answered 201 for ``tag -> D`` finds the tag naming D
for as long as the rule covers it -- assuming the push writes its tag within the
intent window (a minute; it writes within seconds of the check). A push that loses the
race withdraws its intent; one refused later (by a quota) or killed holds up other
digests for that tag for up to the minute.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from registry import errors
from registry.config import ImmutableTagRuleConfig
from registry.context import current
from registry.errors import RegistryError
from registry.patterns import matches_any
from registry.policy import metrics
from registry.reference import Digest
from registry.store import Tag
from registry.store.changes import (
    Change,
    Collected,
    ManifestDeleted,
    ManifestPushed,
    TagDeleted,
)
from registry.store.tag_intents import TagIntents
from registry.store.tags import TagStore

# Referrer fallback tags (distribution-spec: <alg>-<hex truncated to 64>) and cosign's
# signature, attestation and SBOM tags next to them.
REFERRER_TAG = re.compile(r"^(?:sha256|sha512)-[0-9a-f]{64}(?:\.(?:sig|att|sbom))?$")


def is_referrer_tag(tag: str) -> bool:
    return REFERRER_TAG.match(tag) is not None


@dataclass(frozen=True)
class ImmutableRule:
    name: str
    repositories: tuple[str, ...]
    tags: tuple[str, ...] = ("*",)
    exceptions: tuple[str, ...] = ()
    exempt_referrer_tags: bool = True

    def covers(self, repository: str, tag: str) -> bool:
        if not matches_any(self.repositories, repository):
            return False
        if self.exempt_referrer_tags and is_referrer_tag(tag):
            return False
        return matches_any(self.tags, tag) and not matches_any(self.exceptions, tag)

    def describe(self) -> str:
        return f"rule {self.name!r} (repositories {', '.join(self.repositories)}; tags " + (
            f"{', '.join(self.tags)}"
            + (f" except {', '.join(self.exceptions)}" if self.exceptions else "")
            + ")"
        )


@dataclass(frozen=True)
class ImmutableTags:
    """The configured rules, in order; the first that covers a tag is named."""

    rules: tuple[ImmutableRule, ...] = ()

    @classmethod
    def from_config(cls, rules: Sequence[ImmutableTagRuleConfig]) -> ImmutableTags:
        return cls(
            tuple(
                ImmutableRule(
                    name=r.name or f"immutable_tags[{i}]",
                    repositories=tuple(r.repositories),
                    tags=tuple(r.tags),
                    exceptions=tuple(r.exceptions),
                    exempt_referrer_tags=r.exempt_referrer_tags,
                )
                for i, r in enumerate(rules)
            )
        )

    def rule_for(self, repository: str, tag: str) -> ImmutableRule | None:
        for rule in self.rules:
            if rule.covers(repository, tag):
                return rule
        return None


def _denied(message: str, repository: str, tag: str, rule: ImmutableRule) -> RegistryError:
    metrics.IMMUTABLE_REFUSALS.labels(rule.name).inc()
    return RegistryError(
        errors.DENIED,
        f"{message}: tag {repository}:{tag} is immutable by {rule.describe()}; "
        "push a new tag instead (an admin can change policy.immutable_tags)",
        detail={"repository": repository, "tag": tag, "rule": rule.name},
    )


class ImmutableTagGuard:
    """The change listener that enforces the rules (and the TagProtector retention asks)."""

    def __init__(self, rules: ImmutableTags, tags: TagStore, intents: TagIntents) -> None:
        self.rules = rules
        self._tags = tags
        self._intents = intents

    def protects_tag(self, repository: str, tag: str) -> str | None:
        rule = self.rules.rule_for(repository, tag)
        return None if rule is None else f"immutable by {rule.describe()}"

    async def before(self, change: Change) -> None:
        if current().origin == "proxy":
            return
        match change:
            case ManifestPushed():
                await self._pushed(change)
            case TagDeleted(repository=repo, tag=tag):
                rule = self.rules.rule_for(repo, tag)
                if rule is not None:
                    raise _denied("cannot delete", repo, tag, rule)
            case ManifestDeleted(repository=repo, digest=digest, tags=tags):
                for tag in tags:
                    rule = self.rules.rule_for(repo, tag)
                    if rule is not None:
                        raise _denied(f"cannot delete manifest {digest}", repo, tag, rule)
            case Collected(objects=objects):
                for obj in objects:
                    if isinstance(obj, Tag):
                        rule = self.rules.rule_for(obj.repository, obj.name)
                        if rule is not None:
                            raise _denied("cannot collect", obj.repository, obj.name, rule)

    async def _pushed(self, change: ManifestPushed) -> None:
        repo, digest = change.repository, change.digest
        for tag in change.tags:
            rule = self.rules.rule_for(repo, tag)
            if rule is None:
                continue
            previous = change.previous.get(tag)
            if previous is not None and previous != digest:
                raise _denied(f"cannot move it from {previous} to {digest}", repo, tag, rule)
            if previous is None:
                await self._create(repo, tag, digest, rule)

    async def _create(self, repo: str, tag: str, digest: Digest, rule: ImmutableRule) -> None:
        """The tag is new: declare the intent, then make sure no racing push declared
        another digest and none wrote the tag meanwhile."""
        record, racing = await self._intents.declare(repo, tag, digest)
        if racing:
            await self._intents.withdraw(repo, tag, record)
            metrics.IMMUTABLE_REFUSALS.labels(rule.name).inc()
            raise RegistryError(
                errors.DENIED,
                f"another push is creating immutable tag {repo}:{tag} with "
                f"{racing[0].digest} at the same moment ({rule.describe()}); "
                "retry, and the tag will name whichever push won",
                detail={"repository": repo, "tag": tag, "rule": rule.name},
            )
        now = await self._tags.read(repo, tag)
        if now is not None and now != digest:
            await self._intents.withdraw(repo, tag, record)
            raise _denied(f"cannot move it from {now} to {digest}", repo, tag, rule)
