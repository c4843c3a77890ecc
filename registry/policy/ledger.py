"""The fold of one quota's journal: which blobs the quota's repositories hold, and why.
Pure (no I/O): registry/policy/quotas.py reads the records and applies them here.

Every blob is counted once per ledger however many of its repositories hold it, by the
reasons that hold it (a *holder* is a fact about one repository):

* **used** -- a manifest stored in repository ``r`` holds itself and the blobs it
  references (config, layers); index children are manifests of their own. A manifest
  DELETE or the collector's removal of the revision drops its holds at once: usage is
  right straight after a delete. This is what the collector's mark counts per group.
* **pending** -- a blob linked into ``r`` (pushed or mounted) within the last
  ``pending_window``, and since a manifest of ``r`` last started or stopped using it,
  that no manifest uses: a push in progress. It counts against the quota (so that blobs
  cannot be pushed without limit ahead of a manifest), never as usage; a push that has
  not sent its manifest by then has failed, and its blobs stop counting. Pushing or
  mounting the blob again starts the window again; deleting the manifest that used it
  does not (the room comes back at once).
* **releasable** ("freed after GC") -- a blob still linked into ``r`` that nothing above
  holds any more (its manifest was deleted, or its push failed). The storage keeps it
  until the collector sweeps the link, and frees its bytes then if no other repository
  holds it.

Used bytes are what storage shows -- revisions and what they reference -- so a count
from storage alone gives the same figure (the collector's mark makes it).

Ops (store/usage_log.py) are facts about one repository and are applied as set
operations -- adding a holder twice or dropping a missing one changes nothing, times
only move forward -- so entries that two processes write at once never lose or
double an update, and their order matters only between an add and a drop of the same
manifest or link in one repository.

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
    links: dict[str, dict[str, float]] = field(default_factory=dict)  # d -> r -> linked at
    # d -> r -> when a manifest of r last started or stopped using d
    settled: dict[str, dict[str, float]] = field(default_factory=dict)
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
            self.add_link(str(op[2]), repo, int(op[3]), at)
        elif kind == "B":
            self.drop_link(str(op[2]), repo)
        elif kind == "m":
            manifest = str(op[2])
            self._size(manifest, int(op[3]), actual=True)
            self._hold(manifest, repo, manifest)
            self._settle(manifest, repo, at)
            for digest, size in op[4]:
                self._size(str(digest), int(size), actual=False)
                self._hold(str(digest), repo, manifest)
                self._settle(str(digest), repo, at)
        elif kind == "M":
            self.release(repo, str(op[2]), at)

    def release(self, repo: str, manifest: str, at: float) -> None:
        """Drop what manifest ``manifest`` of ``repo`` holds (at ``at``)."""
        for digest in self.vias.pop((repo, manifest), set()):
            self._settle(digest, repo, at)
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

    def drop_link(self, digest: str, repo: str) -> None:
        """The link is gone: neither pending nor releasable in ``repo``."""
        for table in (self.links, self.settled):
            times = table.get(digest)
            if times is not None:
                times.pop(repo, None)
                if not times:
                    del table[digest]
        self._forget(digest)

    def _settle(self, digest: str, repo: str, at: float) -> None:
        if digest in self.links:  # only a linked blob can be pending
            times = self.settled.setdefault(digest, {})
            times[repo] = max(times.get(repo, at), at)

    def add_link(self, digest: str, repo: str, size: int, at: float) -> None:
        """``digest`` (of ``size`` stored bytes) linked into ``repo`` at ``at``."""
        self._size(digest, size, actual=True)
        links = self.links.setdefault(digest, {})
        links[repo] = max(links.get(repo, at), at)

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

    def _forget(self, digest: str) -> None:
        if digest not in self.refs and digest not in self.links:
            self.sizes.pop(digest, None)
            self.declared.discard(digest)
            self.settled.pop(digest, None)

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
        settled = self.settled.get(digest, {})
        return any(
            at > now - window and at > settled.get(r, 0.0)
            for r, at in self.links.get(digest, {}).items()
            if repo is None or r == repo
        )

    def counted(self, digest: str, now: float, window: float, repo: str | None = None) -> bool:
        """Whether ``digest`` counts against the quota now (used or pending)."""
        return self.holds(digest, repo) or self.is_pending(digest, now, window, repo)

    def pending(self, now: float, window: float, repo: str | None = None) -> int:
        return sum(
            self.sizes.get(d, 0) for d in self.links if self.is_pending(d, now, window, repo)
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
            "links": self.links,
            "settled": self.settled,
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
            links={
                str(d): {str(r): float(t) for r, t in rs.items()}
                for d, rs in state.get("links", {}).items()
            },
            settled={
                str(d): {str(r): float(t) for r, t in rs.items()}
                for d, rs in state.get("settled", {}).items()
            },
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
