"""Quotas as configured (``policy.quotas``), pure: which quotas a repository falls under,
and how refusals and figures are worded.

A quota's repositories share one limit (a namespace: ``team-a/**``), or with
``per_repository`` each of them has the limit of its own. A repository counts towards
every quota whose patterns match it, and a push must fit all of them.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from registry.config import PolicyConfig
from registry.patterns import literal_prefix, matches_any


@dataclass(frozen=True)
class Quota:
    name: str
    repositories: tuple[str, ...]
    limit: int
    per_repository: bool = False

    def covers(self, repository: str) -> bool:
        return matches_any(self.repositories, repository)

    def prefixes(self) -> tuple[str, ...]:
        """What every repository of the quota starts with (to narrow a catalog listing)."""
        return tuple(literal_prefix(p) for p in self.repositories)

    def describe(self) -> str:
        each = " each" if self.per_repository else ""
        return f"quota {self.name!r} ({', '.join(self.repositories)}: {human(self.limit)}{each})"


@dataclass(frozen=True)
class QuotaSettings:
    upload_grant: int = 64 * 2**20
    pending_window: float = 3600.0
    session_idle: float = 900.0
    compact_interval: float = 60.0


@dataclass(frozen=True)
class QuotaRules:
    quotas: tuple[Quota, ...] = ()
    settings: QuotaSettings = QuotaSettings()

    @classmethod
    def from_config(cls, policy: PolicyConfig) -> QuotaRules:
        s = policy.quota
        return cls(
            tuple(
                Quota(str(q.name), tuple(q.repositories), q.limit, q.per_repository)
                for q in policy.quotas
            ),
            QuotaSettings(s.upload_grant, s.pending_window, s.session_idle, s.compact_interval),
        )

    def of(self, repository: str) -> list[Quota]:
        return [q for q in self.quotas if q.covers(repository)]

    def named(self, name: str) -> Quota | None:
        return next((q for q in self.quotas if q.name == name), None)

    def usage_groups(self) -> dict[str, list[str]]:
        """What the collector should count per group (``Collector(usage_groups=...)``):
        every shared quota's repository patterns, by the quota's name."""
        return {q.name: list(q.repositories) for q in self.quotas if not q.per_repository}


def usage_groups(policy: PolicyConfig) -> dict[str, list[str]]:
    return QuotaRules.from_config(policy).usage_groups()


def repository_key(repository: str) -> str:
    """A short fixed-length key for a repository in reservation names."""
    return hashlib.sha256(repository.encode()).hexdigest()[:16]


def human(size: int | float) -> str:
    """Bytes as people read them: 1.5 GiB, 300 MiB, 512 B."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def percent(used: int, limit: int) -> float | None:
    return None if limit <= 0 else round(100.0 * used / limit, 1)
