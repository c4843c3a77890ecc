"""The usage figures, kept exact as the mark state changes blob by blob.

Each blob the collector knows of (a shard entry: its size, the repositories that keep
it firmly or only for the grace period) *contributes* to the sums: its size to the
total; to what the next collection would reclaim when nothing keeps it firmly; to the
unique bytes of its one holder when it has one; to the bytes of every group one of
its holders is in, once per group. When an entry changes, ``Tally.change`` takes away
what it contributed and adds what it contributes now, so the sums stay what a recount
of every entry would give -- after a full mark (which recounts from nothing) and after
any number of incremental ones. Held bytes, manifest and tag counts are per
repository, computed when it is marked.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from registry.patterns import matches_any
from registry.store import BlobHolders, MarkSummary, RepositoryUsage, UsageSnapshot


class Groups:
    """Which usage groups a repository is in (patterns of registry/patterns.py)."""

    def __init__(self, groups: Mapping[str, Sequence[str]]) -> None:
        self._patterns = {name: tuple(patterns) for name, patterns in groups.items()}
        self._of: dict[str, tuple[str, ...]] = {}

    @property
    def names(self) -> list[str]:
        return sorted(self._patterns)

    def of(self, repository: str) -> tuple[str, ...]:
        found = self._of.get(repository)
        if found is None:
            found = tuple(g for g, p in self._patterns.items() if matches_any(p, repository))
            self._of[repository] = found
        return found

    def holding(self, holders: Iterable[str]) -> set[str]:
        return {g for repository in holders for g in self.of(repository)}


class Tally:
    """The sums of the snapshot, from the last summary (or from nothing)."""

    def __init__(self, groups: Groups, summary: MarkSummary | None) -> None:
        self.groups = groups
        self.total = summary.total_bytes if summary else 0
        self.reclaimable = summary.reclaimable_bytes if summary else 0
        self.unique: dict[str, int] = (
            {n: s.unique_bytes for n, s in summary.repositories.items()} if summary else {}
        )
        self.group_bytes = {g: (summary.groups.get(g, 0) if summary else 0) for g in groups.names}

    def change(self, before: BlobHolders | None, after: BlobHolders | None) -> None:
        """Account for one entry going from ``before`` to ``after`` (None: absent)."""
        if before is not None:
            self._add(before, -1)
        if after is not None:
            self._add(after, 1)

    def _add(self, entry: BlobHolders, sign: int) -> None:
        size = sign * entry.size
        self.total += size
        if not entry.firm:
            self.reclaimable += size
        holders = entry.holders()
        if len(holders) == 1:
            (only,) = holders
            self.unique[only] = self.unique.get(only, 0) + size
        for group in self.groups.holding(holders):
            self.group_bytes[group] += size


def snapshot(summary: MarkSummary, finished_at: float) -> UsageSnapshot:
    """The snapshot ``store.usage`` keeps, from a summary the tally was written into."""
    return UsageSnapshot(
        finished_at=finished_at,
        total_bytes=summary.total_bytes,
        reclaimable_bytes=summary.reclaimable_bytes,
        repositories=tuple(
            RepositoryUsage(name, s.held_bytes, s.unique_bytes, s.manifests, s.tags)
            for name, s in sorted(summary.repositories.items())
        ),
        groups=dict(sorted(summary.groups.items())),
    )
