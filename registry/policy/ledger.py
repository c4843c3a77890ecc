"""The fold of one quota's journal: which blobs the quota's repositories hold, and why.
Pure (no I/O): registry/policy/quotas.py reads the records and applies them here.

Every blob is counted once per ledger however many of its repositories hold it, by the
reasons that hold it (a *holder* is a fact about one repository):

* **used** -- a manifest stored in repository ``r`` holds itself and the blobs it
  references (config, layers); index children are manifests of their own. A manifest
  DELETE or the collector's removal of the revision drops its holds at once: usage is
  right straight after a delete. This is what the collector's mark counts per group.
* **pending** -- a blob pushed or mounted into ``r`` that no manifest of ``r`` uses
  yet: a push in progress. It counts against the quota for ``pending_window`` after the
  push (so that blobs cannot be pushed without limit ahead of a manifest), never as
  usage; a push that has not sent its manifest by then has failed, and its blobs stop
  counting.
* **releasable** ("freed after GC") -- a blob still linked into ``r`` that nothing above
  holds any more (its manifest was deleted, or its push failed). The storage keeps it
  until the collector sweeps the link, and frees its bytes then if no other repository
  holds it.

Ops (store/usage_log.py) are facts about one repository and are applied as set
operations -- adding a holder twice or dropping a missing one changes nothing -- so
entries that two processes write at once never lose or double an update.

Sizes are the stored sizes of pushed blobs; a size only a manifest's descriptor gives
(a blob linked before the ledger existed) counts until the stored one is known.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from registry.store import UsageOp


@dataclass(frozen=True)
class Figures:
    """Bytes of a ledger (or of one of its repositories) at one moment."""

    used: int = 0  # held by manifests (with the collector's correction)
    pending: int = 0  # pushed, not yet used by a manifest, within the pending window
    releasable: int = 0  # linked, held by nothing: freed (or unlinked) by the next GC
    manifests: int = 0


@dataclass
class Ledger:
    sizes: dict[str, int] = field(default_factory=dict)  # digest -> bytes
    declared: set[str] = field(default_factory=set)  # sizes only a descriptor gave
    refs: dict[str, dict[str, set[str]]] = field(default_factory=dict)  # d -> r -> manifests
    vias: dict[tuple[str, str], set[str]] = field(default_factory=dict)  # (r, m) -> digests
    new: dict[str, dict[str, float]] = field(default_factory=dict)  # d -> r -> pushed at
    links: dict[str, set[str]] = field(default_factory=dict)  # d -> repositories
    # The collector's correction (quotas.py: from a quiet run's count), whole and per repo.
    offset: int = 0
    repo_offsets: dict[str, int] = field(default_factory=dict)
    snapshot_seen: float = 0.0  # finished_at of the last collector snapshot considered
    last_change: float = 0.0  # the latest entry folded in
    repo_last_change: dict[str, float] = field(default_factory=dict)
    # Incremental sums of the used bytes (without the corrections).
    used_bytes: int = 0
    repo_used: dict[str, int] = field(default_factory=dict)

    # ------------------------------------------------------------------ applying ops

    def apply(self, ops: Iterable[UsageOp], at: float) -> None:
        """Apply one entry's ops, written at ``at``; malformed ops are skipped."""
        for op in ops:
            try:
                self._apply(op, at)
            except (IndexError, TypeError, ValueError):
                continue

    def _apply(self, op: UsageOp, at: float) -> None:
        kind, repo = str(op[0]), str(op[1])
        self.last_change = max(self.last_change, at)
        self.repo_last_change[repo] = max(self.repo_last_change.get(repo, 0.0), at)
        if kind == "b":
            digest = str(op[2])
            self._size(digest, int(op[3]), actual=True)
            self.new.setdefault(digest, {})[repo] = at
            self.links.setdefault(digest, set()).add(repo)
        elif kind == "B":
            self.drop_link(str(op[2]), repo)
        elif kind == "m":
            manifest = str(op[2])
            self._size(manifest, int(op[3]), actual=True)
            self._hold(manifest, repo, manifest)
            for digest, size in op[4]:
                self._size(str(digest), int(size), actual=False)
                self._hold(str(digest), repo, manifest)
                self._drop(self.new, str(digest), repo)  # no longer pending: used
        elif kind == "M":
            self.release(repo, str(op[2]))

    def release(self, repo: str, manifest: str) -> None:
        """Drop what manifest ``manifest`` of ``repo`` holds."""
        for digest in self.vias.pop((repo, manifest), set()):
            by_repo = self.refs.get(digest, {})
            manifests = by_repo.get(repo)
            if manifests is None:
                continue
            manifests.discard(manifest)
            if not manifests:
                del by_repo[repo]
                self._add_used(repo, -self.sizes.get(digest, 0))
            if not by_repo:
                self.refs.pop(digest, None)
                self.used_bytes -= self.sizes.get(digest, 0)
            self._forget(digest)

    def drop_pending(self, digest: str, repo: str) -> None:
        self._drop(self.new, digest, repo)
        self._forget(digest)

    def drop_link(self, digest: str, repo: str) -> None:
        """The link is gone: neither pending nor releasable in ``repo``."""
        self._drop(self.new, digest, repo)
        links = self.links.get(digest)
        if links is not None:
            links.discard(repo)
            if not links:
                del self.links[digest]
        self._forget(digest)

    def add_link(self, digest: str, repo: str, size: int) -> None:
        """A link found in storage that no op told of (releasable unless held)."""
        self._size(digest, size, actual=True)
        self.links.setdefault(digest, set()).add(repo)

    def _hold(self, digest: str, repo: str, manifest: str) -> None:
        by_repo = self.refs.setdefault(digest, {})
        size = self.sizes.get(digest, 0)
        if not by_repo:
            self.used_bytes += size
        manifests = by_repo.get(repo)
        if manifests is None:
            manifests = by_repo[repo] = set()
            self._add_used(repo, size)
        manifests.add(manifest)
        self.vias.setdefault((repo, manifest), set()).add(digest)

    def _add_used(self, repo: str, delta: int) -> None:
        value = self.repo_used.get(repo, 0) + delta
        if value:
            self.repo_used[repo] = value
        else:
            self.repo_used.pop(repo, None)

    def _size(self, digest: str, size: int, *, actual: bool) -> None:
        """A stored size replaces a declared one; a declared one never replaces any."""
        old = self.sizes.get(digest)
        if old is not None and not (actual and digest in self.declared):
            return
        size = max(size, 0)
        self.sizes[digest] = size
        if actual:
            self.declared.discard(digest)
        else:
            self.declared.add(digest)
        delta = size - (old or 0)
        by_repo = self.refs.get(digest)
        if delta and by_repo:
            self.used_bytes += delta
            for repo in by_repo:
                self._add_used(repo, delta)

    @staticmethod
    def _drop(table: dict[str, dict[str, float]], digest: str, repo: str) -> None:
        holders = table.get(digest)
        if holders is not None:
            holders.pop(repo, None)
            if not holders:
                del table[digest]

    def _forget(self, digest: str) -> None:
        if digest not in self.refs and digest not in self.new and digest not in self.links:
            self.sizes.pop(digest, None)
            self.declared.discard(digest)

    def prune(self, now: float, window: float) -> None:
        """Forget pending holds older than the window (failed pushes: only their links
        remain, releasable)."""
        for digest in [d for d, h in self.new.items() if max(h.values()) <= now - window]:
            del self.new[digest]
            self._forget(digest)

    # ------------------------------------------------------------------ figures

    @property
    def used(self) -> int:
        return self.used_bytes + self.offset

    def repo_total(self, repo: str) -> int:
        return self.repo_used.get(repo, 0) + self.repo_offsets.get(repo, 0)

    def holds(self, digest: str, repo: str | None = None) -> bool:
        """Whether a manifest uses ``digest`` (in ``repo``, or in any repository)."""
        by_repo = self.refs.get(digest)
        if not by_repo:
            return False
        return repo is None or repo in by_repo

    def is_pending(self, digest: str, now: float, window: float, repo: str | None = None) -> bool:
        if self.holds(digest, repo):
            return False
        pushed = self.new.get(digest, {})
        times = pushed.values() if repo is None else [pushed[repo]] if repo in pushed else []
        return any(t > now - window for t in times)

    def counted(self, digest: str, now: float, window: float, repo: str | None = None) -> bool:
        """Whether ``digest`` counts against the quota now (used or pending)."""
        return self.holds(digest, repo) or self.is_pending(digest, now, window, repo)

    def pending(self, now: float, window: float, repo: str | None = None) -> int:
        return sum(
            self.sizes.get(d, 0) for d in self.new if self.is_pending(d, now, window, repo)
        )

    def releasable(self, now: float, window: float, repo: str | None = None) -> int:
        return sum(
            self.sizes.get(d, 0)
            for d, repos in self.links.items()
            if (repo is None or repo in repos) and not self.counted(d, now, window, repo)
        )

    def manifests(self, repo: str | None = None) -> int:
        return sum(1 for r, _ in self.vias if repo is None or r == repo)

    def repositories(self) -> set[str]:
        return {
            *self.repo_used,
            *(r for r, _ in self.vias),
            *(r for holders in self.new.values() for r in holders),
            *(r for repos in self.links.values() for r in repos),
        }

    def figures(self, now: float, window: float, repo: str | None = None) -> Figures:
        return Figures(
            used=self.used if repo is None else self.repo_total(repo),
            pending=self.pending(now, window, repo),
            releasable=self.releasable(now, window, repo),
            manifests=self.manifests(repo),
        )

    def added_by(
        self,
        repo: str,
        digests: Mapping[str, int],
        now: float,
        window: float,
        *,
        per_repository: bool,
    ) -> int:
        """Bytes that holding ``digests`` (digest -> size) in ``repo`` would add to what
        counts against the quota: those not counted yet (in the ledger, or in ``repo``
        for a per-repository quota)."""
        scope = repo if per_repository else None
        added = 0
        for digest, size in digests.items():
            if not self.counted(digest, now, window, scope):
                stored = digest in self.sizes and digest not in self.declared
                added += self.sizes[digest] if stored else size
        return added

    # ------------------------------------------------------------------ checkpoints

    def to_state(self) -> dict[str, Any]:
        return {
            "sizes": self.sizes,
            "declared": sorted(self.declared),
            "vias": [[r, m, sorted(ds)] for (r, m), ds in sorted(self.vias.items())],
            "new": self.new,
            "links": {d: sorted(rs) for d, rs in self.links.items()},
            "offset": self.offset,
            "repo_offsets": self.repo_offsets,
            "snapshot_seen": self.snapshot_seen,
            "last_change": self.last_change,
            "repo_last_change": self.repo_last_change,
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> Ledger:
        ledger = cls(
            sizes={str(d): int(s) for d, s in state.get("sizes", {}).items()},
            declared={str(d) for d in state.get("declared", ())},
            new={
                str(d): {str(r): float(t) for r, t in rs.items()}
                for d, rs in state.get("new", {}).items()
            },
            links={str(d): {str(r) for r in rs} for d, rs in state.get("links", {}).items()},
            offset=int(state.get("offset", 0)),
            repo_offsets={str(r): int(v) for r, v in state.get("repo_offsets", {}).items()},
            snapshot_seen=float(state.get("snapshot_seen", 0.0)),
            last_change=float(state.get("last_change", 0.0)),
            repo_last_change={
                str(r): float(t) for r, t in state.get("repo_last_change", {}).items()
            },
        )
        for repo, manifest, digests in state.get("vias", ()):
            for digest in digests:
                ledger._hold(str(digest), str(repo), str(manifest))
        return ledger
