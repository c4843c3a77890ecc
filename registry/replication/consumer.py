"""A push rule as a reader of the event outbox (registry/events/consumer.py).

The dispatcher hands it the confirmed events it ``wants``, in order, at least once, and
tries a batch again after a backoff when ``deliver`` raises -- which it does only when
the target or the storage cannot be reached, so a target that is down for an hour
receives everything once it is back, in order per repository, without anyone running
anything again. The retry policy never gives up (no dead letters): a rule owes its
target every change. A job that fails for a reason of its own is recorded as a failure
instead (registry/replication/state.py) and the queue moves on.

Events of changes made by replication itself (``origin == "replication"``: a pull
rule's writes) are ignored, so that two sites replicating into each other do not send
each change back and forth; changes a remote's replication makes here over HTTP are
client changes, and the copy back stops at once because the target has them already.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from registry.events import DeliveryError, DeliveryPolicy, Event, RetryPolicy
from registry.replication.runner import RuleRunner
from registry.replication.state import Job

log = logging.getLogger("registry.replication")

BATCH = 50  # events per delivery: repositories in a batch are replicated at once
FOREVER = 999_999_999  # maxretries: a rule never drops what it owes its target


def job_of(event: Event) -> Job | None:
    """The job an event asks of a push rule (None: nothing)."""
    target = event.target
    if event.kind == "manifest" and event.action == "push":
        if target.tag:
            return Job("copy", target.repository, target.tag)
        return Job("referrer", target.repository, target.digest)
    if event.action == "delete" and event.kind == "tag" and target.tag:
        return Job("untag", target.repository, target.tag)
    if event.action == "delete" and event.kind == "manifest" and target.digest:
        return Job("delete", target.repository, target.digest)
    return None


class ReplicationConsumer:
    """One per push rule with ``trigger.events``, registered before the app serves. Its
    runner can be replaced while it runs (a reloaded rule) or removed (``None``: the
    rule is gone, and what waits for it is dropped)."""

    def __init__(self, runner: RuleRunner) -> None:
        self.name = runner.rule.name
        self.runner: RuleRunner | None = runner
        retry = runner.config.retry
        self._policy = DeliveryPolicy(
            batch=BATCH,
            queue_limit=runner.config.queue_limit,
            retry=RetryPolicy(
                threshold=retry.threshold,
                backoff=retry.backoff,
                maxbackoff=retry.maxbackoff,
                maxretries=FOREVER,
            ),
        )

    @property
    def consumer_id(self) -> str:
        return f"replication/{self.name}"

    @property
    def policy(self) -> DeliveryPolicy:
        return self._policy

    def wants(self, event: Event) -> bool:
        runner = self.runner
        if runner is None or event.origin == "replication":
            return False
        job = job_of(event)
        if job is None:
            return False
        rule = runner.rule
        if not rule.wants_repository(job.repository):
            return False
        if job.action in ("copy", "untag"):
            if not rule.wants_tag(job.reference):
                return False
        elif job.action == "referrer" and not rule.referrers:
            return False
        return rule.deletes or job.action in ("copy", "referrer")

    async def deliver(self, events: Sequence[Event]) -> None:
        runner = self.runner
        if runner is None:
            log.warning("replication %s: rule removed; %d events dropped", self.name, len(events))
            return
        jobs = [j for j in map(job_of, events) if j is not None]
        error = await runner.deliver(jobs)
        if error is not None:
            raise DeliveryError(error)

    async def close(self) -> None:
        """The runner is closed by the service that made it."""
