"""What ``GET /api/usage`` and ``registry usage`` show: per quota (namespace) and per
repository the bytes held, the bytes held only there, the quota and how full it is,
and the counts of tags and manifests.

Two sources, each named in the answer: the quotas' ledgers are live (right after every
push and delete); the rest -- repositories under no quota, tags, bytes held only in one
place -- is what the collector's last mark counted (``collected_at`` says when).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from registry.policy.book import LedgerView, UsageBook
from registry.policy.quota_rules import Quota, QuotaRules, human, percent
from registry.store import RegistryStore, RepositoryUsage


@dataclass
class QuotaUse:
    name: str
    limit: int
    used_bytes: int
    percent: float | None


@dataclass
class NamespaceRow:
    name: str
    repositories: list[str]  # the quota's patterns
    per_repository: bool
    limit: int
    used_bytes: int  # held by manifests, each blob once (the fullest repository's, per repo)
    pending_bytes: int  # pushed, not yet used by a manifest: counts against the limit only
    in_flight_bytes: int  # reserved by upload sessions and pushes in progress
    releasable_bytes: int  # released by deletes and failed pushes; freed after GC
    unique_bytes: int | None  # held by no repository outside (last collection), if counted
    percent: float | None  # (used + pending + in flight) of the limit
    manifests: int
    counted: bool  # False until the ledger was first counted from storage


@dataclass
class RepositoryRow:
    name: str
    held_bytes: int
    unique_bytes: int | None  # held by no other repository (last collection)
    tags: int | None  # last collection
    manifests: int
    source: str  # "live" (a quota's ledger) or "collection"
    quotas: list[str] = field(default_factory=list)
    quota: QuotaUse | None = None  # a per-repository quota's figures


@dataclass
class UsageReport:
    generated_at: float
    collected_at: float | None
    total_bytes: int | None  # every blob stored (admins)
    reclaimable_bytes: int | None  # what the next collection frees (admins)
    namespaces: list[NamespaceRow]
    repositories: list[RepositoryRow]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _selected(only: str | None, quota: Quota | None, repo: str | None) -> bool:
    """Whether a row belongs to what ``registry usage NAMESPACE`` asked for: a quota
    by name, or the repositories named ``NAMESPACE`` or below it."""
    if only is None:
        return True
    if quota is not None and quota.name == only:
        return True
    return repo is not None and (repo == only or repo.startswith(only.rstrip("/") + "/"))


async def build_report(
    store: RegistryStore,
    rules: QuotaRules,
    book: UsageBook | None,
    *,
    visible: Callable[[str], bool] = lambda _name: True,
    admin: bool = True,
    only: str | None = None,
) -> UsageReport:
    snapshot = await store.usage.read()
    collected: dict[str, RepositoryUsage] = (
        {r.name: r for r in snapshot.repositories} if snapshot else {}
    )
    views: dict[str, LedgerView] = {}
    if book is not None:
        for quota in rules.quotas:
            views[quota.name] = await book.view(quota)

    names = set(collected)
    for view in views.values():
        names |= view.ledger.repositories()
    rows: list[RepositoryRow] = []
    for name in sorted(names):
        quotas = rules.of(name)
        if not visible(name) or not (
            _selected(only, None, name) or any(_selected(only, q, name) for q in quotas)
        ):
            continue
        rows.append(_repository_row(name, quotas, views, collected.get(name)))

    namespaces = []
    for quota in rules.quotas:
        shown = views.get(quota.name)
        if shown is None:
            continue
        if only not in (None, quota.name) and not any(quota.name in r.quotas for r in rows):
            continue
        if not admin and not any(visible(n) for n in names if quota.covers(n)):
            continue
        namespaces.append(_namespace_row(quota, shown, snapshot.group_unique if snapshot else {}))
    return UsageReport(
        generated_at=store.clock.time(),
        collected_at=snapshot.finished_at if snapshot else None,
        total_bytes=snapshot.total_bytes if snapshot and admin else None,
        reclaimable_bytes=snapshot.reclaimable_bytes if snapshot and admin else None,
        namespaces=namespaces,
        repositories=rows,
    )


def _namespace_row(quota: Quota, view: LedgerView, unique: Mapping[str, int]) -> NamespaceRow:
    if quota.per_repository:
        repos = sorted(view.ledger.repositories()) or [""]
        figures = max((view.figures(r) for r in repos), key=lambda f: f.used + f.pending)
        whole = view.ledger.figures(view.now, view.settings.pending_window)
        releasable, manifests = whole.releasable, whole.manifests
    else:
        figures = view.figures()
        releasable, manifests = figures.releasable, figures.manifests
    in_flight = view.in_flight()
    return NamespaceRow(
        name=quota.name,
        repositories=list(quota.repositories),
        per_repository=quota.per_repository,
        limit=quota.limit,
        used_bytes=figures.used,
        pending_bytes=figures.pending,
        in_flight_bytes=in_flight,
        releasable_bytes=releasable,
        unique_bytes=None if quota.per_repository else unique.get(quota.name),
        percent=percent(figures.used + figures.pending + in_flight, quota.limit),
        manifests=manifests,
        counted=view.complete,
    )


def _repository_row(
    name: str,
    quotas: list[Quota],
    views: dict[str, LedgerView],
    collected: RepositoryUsage | None,
) -> RepositoryRow:
    live = next((views[q.name] for q in quotas if q.name in views), None)
    if live is not None:
        figures = live.ledger.figures(live.now, live.settings.pending_window, name)
        held, manifests, source = figures.used, figures.manifests, "live"
    else:
        held = collected.held_bytes if collected else 0
        manifests = collected.manifests if collected else 0
        source = "collection"
    row = RepositoryRow(
        name=name,
        held_bytes=held,
        unique_bytes=collected.unique_bytes if collected else None,
        tags=collected.tags if collected else None,
        manifests=manifests,
        source=source,
        quotas=[q.name for q in quotas],
    )
    for quota in quotas:
        view = views.get(quota.name)
        if quota.per_repository and view is not None:
            used = view.counted(name)
            row.quota = QuotaUse(quota.name, quota.limit, used, percent(used, quota.limit))
    return row


def render(report: UsageReport) -> str:
    """The report as ``registry usage`` prints it."""
    lines: list[str] = []
    if report.namespaces:
        lines.append(
            f"{'NAMESPACE':<24} {'USED':>10} {'PENDING':>10} {'IN FLIGHT':>10} "
            f"{'LIMIT':>13} {'USE':>6} {'RELEASABLE':>10} {'MANIFESTS':>9}"
        )
        for n in report.namespaces:
            use = "-" if n.percent is None else f"{n.percent:.1f}%"
            each = " each" if n.per_repository else ""
            lines.append(
                f"{n.name:<24} {human(n.used_bytes):>10} {human(n.pending_bytes):>10} "
                f"{human(n.in_flight_bytes):>10} {human(n.limit) + each:>13} {use:>6} "
                f"{human(n.releasable_bytes):>10} {n.manifests:>9}"
                + ("" if n.counted else "  (first count from storage pending)")
            )
        lines.append("")
    lines.append(
        f"{'REPOSITORY':<40} {'HELD':>10} {'ONLY HERE':>10} {'TAGS':>6} {'MANIFESTS':>9}  QUOTA"
    )
    for r in report.repositories:
        unique = "-" if r.unique_bytes is None else human(r.unique_bytes)
        tags = "-" if r.tags is None else str(r.tags)
        quota = ", ".join(r.quotas) or "-"
        if r.quota is not None and r.quota.percent is not None:
            quota += f" {r.quota.percent:.1f}% of {human(r.quota.limit)}"
        lines.append(
            f"{r.name:<40} {human(r.held_bytes):>10} {unique:>10} {tags:>6} "
            f"{r.manifests:>9}  {quota}"
        )
    collected = report.collected_at
    if collected is None:
        lines.append("\nno collection has counted yet: repositories under no quota are not shown")
    else:
        when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(collected))
        lines.append(f"\nlive: quota figures; 'ONLY HERE', tags and others: collection of {when}")
    if report.namespaces:
        lines.append(
            "USED: held by manifests; PENDING: pushed, no manifest yet; both count against "
            "LIMIT. RELEASABLE: released by deletes, freed by the next collection."
        )
    if report.total_bytes is not None:
        lines.append(
            f"stored {human(report.total_bytes)}; the next collection frees "
            f"{human(report.reclaimable_bytes or 0)}"
        )
    return "\n".join(lines)
