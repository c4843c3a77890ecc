"""Full passes on each rule's interval, and on demand, under a lease per rule
(``replication-<rule>``, store/lease.py): whichever processes and replicas run, one of
them runs a rule's pass at a time; ``registry replicate run`` takes the same lease.

The interval is measured from the start of the last pass *in storage*, so that N
workers do not run a rule N times per interval, and a restart does not run every rule
at once: a process that finds a rule due takes its lease, reads the last start again,
and passes only if it is still due. A pass checks the lease before each job and stops
when the lease is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable

from registry.replication import metrics
from registry.replication.runner import RuleRunner
from registry.replication.state import RunRecord
from registry.store import LeaseLostError, RegistryStore

log = logging.getLogger("registry.replication")

FIRST_DELAY = 5.0  # the longest a rule never run before waits after start (jittered)


class RuleBusyError(Exception):
    """Another process runs the rule's pass now."""


class RulePausedError(Exception):
    """A pull rule while the registry is read-only."""


async def run_leased(
    store: RegistryStore,
    runner: RuleRunner,
    trigger: str,
    ttl: float,
    *,
    wait: float = 0.0,
    due: Callable[[RunRecord | None], bool] | None = None,
) -> RunRecord | None:
    """One pass of ``runner`` under its lease. Waits up to ``wait`` seconds for the
    lease (RuleBusyError after that). ``due``, given the last pass in storage once the
    lease is held, says whether to pass at all (None returned when not)."""
    clock = store.clock
    lease = store.lease(runner.rule.lease_name, ttl)
    deadline = clock.monotonic() + wait
    while not await lease.acquire():
        if clock.monotonic() >= deadline:
            holder = await lease.holder()
            raise RuleBusyError(
                f"rule {runner.name!r} is running in another process"
                + (f" (lease held by {holder.owner[:8]})" if holder else "")
            )
        await clock.sleep(min(ttl / 4, 1.0))
    async with lease.kept():
        if due is not None and not due((await runner.runs_status.load()).last):
            return None
        return await runner.full_pass(trigger, check=lease.check)


class Scheduler:
    def __init__(
        self,
        store: RegistryStore,
        lease_ttl: float,
        paused: Callable[[], Awaitable[bool]] | None = None,
    ) -> None:
        self.store = store
        self.lease_ttl = lease_ttl
        self.paused = paused  # asked before a pull rule's pass (read-only mode)
        self._due: dict[str, float] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def forget(self, name: str) -> None:
        """The rule changed or went: its next time is read from storage again, and a
        pass in progress is cancelled (a chunked upload resumes from its slot later)."""
        self._due.pop(name, None)
        task = self._tasks.pop(name, None)
        if task is not None:
            task.cancel()

    async def tick(self, runners: dict[str, RuleRunner]) -> None:
        """Start the passes that are due (each in a task of its own)."""
        now = self.store.clock.time()
        for name, runner in runners.items():
            interval = runner.rule.interval
            task = self._tasks.get(name)
            if interval is None or (task is not None and not task.done()):
                continue
            due = self._due.get(name)
            if due is None:
                last = (await runner.runs_status.load()).last
                due = (
                    last.started + interval
                    if last is not None
                    else now + random.uniform(0, min(interval, FIRST_DELAY))
                )
                self._due[name] = due
            if due <= now:
                self._tasks[name] = asyncio.create_task(
                    self._pass(runner, interval), name=f"registry-replication-{name}"
                )

    async def _pass(self, runner: RuleRunner, interval: float) -> None:
        name = runner.name
        now = self.store.clock.time()
        try:
            if runner.config.direction == "pull" and self.paused and await self.paused():
                log.info("replication %s: pass skipped, the registry is read-only", name)
                self._due[name] = now + interval
                return

            def due(last: RunRecord | None) -> bool:
                return last is None or last.started + interval <= self.store.clock.time()

            run = await run_leased(self.store, runner, "schedule", self.lease_ttl, due=due)
            if run is None:  # another process passed meanwhile
                last = (await runner.runs_status.load()).last
                self._due[name] = (last.started if last else now) + interval
                return
            self._due[name] = run.started + interval
        except RuleBusyError:
            metrics.RUNS.labels(name, "skipped").inc()
            self._due[name] = now + min(interval, self.lease_ttl)
        except asyncio.CancelledError:
            raise
        except LeaseLostError as exc:
            log.error("replication %s: pass stopped: %s", name, exc)
            self._due[name] = now + min(interval, self.lease_ttl)
        except Exception:
            log.exception("replication %s: the scheduled pass failed", name)
            self._due[name] = now + interval

    async def stop(self) -> None:
        tasks = list(self._tasks.values())
        self._tasks.clear()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
