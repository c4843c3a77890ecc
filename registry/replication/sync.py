"""A full pass of a rule: list the source's repositories and tags (following the
remote's pagination), compare each selected tag with the target's, copy what is new or
moved, copy referrers the target lacks, and, with ``deletes``, delete the target's tags
that the source no longer has. The failed jobs of earlier deliveries and passes run
first.

A pass is how pull rules replicate (on their interval, or ``registry replicate run``),
and, for push rules, the safety net behind events: after a queue overflowed, for changes
made before the rule existed, or on a schedule of its own. Comparing costs one tag read
per selected tag on each side (a HEAD on a remote) and one referrers listing per image;
copying costs only what differs. Repositories and tags run ``parallel`` at once;
referrer tags (cosign's, the referrers tag schema's) after the tags of their subjects.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, TypeVar

from registry.reference import Digest
from registry.replication.copier import Copier, all_of
from registry.replication.endpoints import Endpoint
from registry.replication.rules import referrer_subject, selected_tags
from registry.replication.state import Job, RunRecord

if TYPE_CHECKING:
    from registry.replication.runner import RuleRunner

T = TypeVar("T")


async def run_pass(runner: RuleRunner, copier: Copier, run: RunRecord) -> None:
    rule = runner.rule
    for record in list(runner.failures.known.values()):
        if rule.wants_repository(record.job.repository):
            await runner.attempt(copier, record.job, run)
        else:
            await runner.failures.clear(record.job)  # the rule no longer selects it
    names = await runner.source.repositories(rule.repositories)
    repositories = [n for n in names if rule.wants_repository(n)]
    limit = asyncio.Semaphore(rule.parallel)

    async def one(repository: str) -> None:
        async with limit:
            await _repository(runner, copier, run, repository)

    await all_of([one(r) for r in repositories])


async def _repository(runner: RuleRunner, copier: Copier, run: RunRecord, repository: str) -> None:
    rule = runner.rule
    dst = copier.target_of(repository)
    parallel = rule.parallel
    tags = await runner.source.tags(repository)
    digests = await _digests(
        runner.source, repository, [t for t in tags if rule.tags.matches(t)], parallel
    )
    selected = selected_tags(rule, tags, digests)
    digests |= await _digests(
        runner.source, repository, [t for t in selected if t not in digests], parallel
    )
    present = set(await runner.target.tags(dst))
    there = await _digests(runner.target, dst, [t for t in selected if t in present], parallel)

    changed = [t for t in selected if digests.get(t) is not None and there.get(t) != digests[t]]
    subjects = [t for t in changed if referrer_subject(t) is None or rule.tags.matches(t)]
    referrer_tags = [t for t in changed if t not in subjects]
    for batch in (subjects, referrer_tags):
        await _bounded(
            parallel, [_job(runner, copier, run, Job("copy", repository, t)) for t in batch]
        )
    if rule.referrers:
        # Referrers made after their subject was copied (a signature added later).
        unchanged: set[Digest] = {
            digests[t]
            for t in selected
            if t not in changed and t in digests and referrer_subject(t) is None
        }
        await _bounded(
            parallel,
            [
                _job(runner, copier, run, Job("referrers", repository, str(d)))
                for d in sorted(unchanged)
            ],
        )
    if rule.deletes:
        gone = sorted(t for t in present - set(tags) if rule.wants_tag(t))
        await _bounded(
            parallel, [_job(runner, copier, run, Job("untag", repository, t)) for t in gone]
        )


def _job(
    runner: RuleRunner, copier: Copier, run: RunRecord, job: Job
) -> Callable[[], Awaitable[bool]]:
    return lambda: runner.attempt(copier, job, run)


async def _digests(
    endpoint: Endpoint, repository: str, tags: Sequence[str], parallel: int
) -> dict[str, Digest]:
    """What each tag names (tags that vanished meanwhile are left out)."""
    found = await _bounded(parallel, [_reader(endpoint, repository, t) for t in tags])
    return {t: d for t, d in zip(tags, found, strict=True) if d is not None}


def _reader(
    endpoint: Endpoint, repository: str, tag: str
) -> Callable[[], Awaitable[Digest | None]]:
    return lambda: endpoint.tag_digest(repository, tag)


async def _bounded(limit: int, work: Sequence[Callable[[], Awaitable[T]]]) -> list[T]:
    """Run ``work`` with at most ``limit`` at once; results in order. The first error
    cancels the rest and is raised (see copier.all_of)."""
    results: list[T | None] = [None] * len(work)
    slots = asyncio.Semaphore(limit)

    async def one(i: int) -> None:
        async with slots:
            results[i] = await work[i]()

    await all_of([one(i) for i in range(len(work))])
    return results  # type: ignore[return-value]
