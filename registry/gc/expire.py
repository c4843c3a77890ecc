"""Retention: delete the tags the policies select (``retention.py`` decides which), each
digest's tags in one cycle, sparing a tag pushed again since it was looked at."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Sequence

from registry.gc.inventory import read_tags
from registry.gc.retention import RetentionPolicy, TagRecord, expired_tags, policy_for
from registry.gc.run import Repository, Run
from registry.reference import Digest, parse_digest
from registry.store import CLOCK_RESOLUTION, Tag


async def expire_tags(run: Run, repo: Repository, policies: Sequence[RetentionPolicy]) -> None:
    """Read the tags of ``repo`` and delete the expired ones; note when the next tag
    may expire by age alone."""
    await read_tags(run, repo)
    policy = policy_for(repo.name, policies)
    if policy is None:
        return
    times = await run.each(repo.tags, lambda t: run.io(run.store.modified(Tag(repo.name, t))))
    # Tags a change listener would refuse to delete (immutable tags) are protected.
    protected = run.store.changes.protected_tag
    records = [
        TagRecord(tag, str(target), pushed_at)
        for (tag, target), pushed_at in zip(repo.tags.items(), times, strict=True)
        if pushed_at is not None and protected(repo.name, tag) is None
    ]
    expired: dict[Digest, list[TagRecord]] = defaultdict(list)
    for record in expired_tags(records, policy, run.now):
        expired[parse_digest(record.digest)].append(record)
    if policy.older_than is not None:
        # A tag left now may expire as it ages (whether it does also depends on the
        # others, which change only with a push: then the repository is marked anyway).
        for record in records:
            if not policy.protects(record.name):
                repo.due_at(record.pushed_at + policy.older_than + CLOCK_RESOLUTION)
    if run.dry_run:
        for group in expired.values():
            _forget(run, repo, group)
        return
    await run.each(expired, lambda d: run.limited(lambda: _untag(run, repo, d, expired[d])))


async def _untag(run: Run, repo: Repository, digest: Digest, group: list[TagRecord]) -> None:
    async with run.cycle([digest]) as cycle:
        if await run.io(cycle.claimed_fresh(digest)):
            run.report.spared += len(group)
            repo.due_at(run.now)  # look again next run
            return
        unchanged = await run.each(group, lambda r: _unchanged(run, repo, r))
        doomed = [r for r, same in zip(group, unchanged, strict=True) if same]
        run.report.spared += len(group) - len(doomed)  # pushed again
        tags = [Tag(repo.name, record.name) for record in doomed]
        await run.io(cycle.delete(tags, {str(tag): digest for tag in tags}))
        _forget(run, repo, doomed)


async def _unchanged(run: Run, repo: Repository, record: TagRecord) -> bool:
    """Whether the tag still names what it named, and was not pushed again, since the
    run looked at it."""
    target, modified = await asyncio.gather(
        run.io(run.store.tags.read(repo.name, record.name)),
        run.io(run.store.modified(Tag(repo.name, record.name))),
    )
    return str(target) == record.digest and modified == record.pushed_at


def _forget(run: Run, repo: Repository, gone: list[TagRecord]) -> None:
    for record in gone:
        del repo.tags[record.name]
        run.report.tags_deleted.append(f"{repo.name}:{record.name}")
