"""One rule in one process: its two endpoints, what its copies share, its failures and
its status documents, and the two ways its jobs run -- a delivery of events (push rules)
and a full pass (registry/replication/sync.py).

Every job goes through ``attempt``: done, or failed for a reason of its own (recorded in
storage with the reason, counted, and retried on the next event of its repository or
the next pass), or stopped by a transient error (the target or storage cannot be
reached), which ends the delivery or pass so that it is tried again later as a whole.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from registry.config import ReplicationRuleConfig
from registry.remote import CredentialsError, RegistryClient
from registry.replication import metrics
from registry.replication.copier import Copier, Transfers, all_of, is_transient, reason_of
from registry.replication.endpoints import Endpoint, LocalRegistry, RemoteRegistry
from registry.replication.rules import Rule
from registry.replication.state import (
    Failures,
    Job,
    RunRecord,
    StatusBook,
    Tally,
    UploadSlots,
    expire_uploads,
)
from registry.replication.sync import run_pass
from registry.store import RegistryStore

log = logging.getLogger("registry.replication")

T = TypeVar("T")

# How long a delivery trusts the failures it read (a pass in another process may have
# added some; they are retried by passes either way).
FAILURES_REFRESH = 60.0
# How often a runner looks for upload slots no copy resumes (state.UPLOAD_EXPIRY).
UPLOADS_SWEEP = 3600.0


class Stop(Exception):
    """A transient error stopped a delivery or pass; the message says which."""


class RuleRunner:
    def __init__(self, store: RegistryStore, config: ReplicationRuleConfig) -> None:
        self.store = store
        self.config = config
        self.rule = Rule.from_config(config)
        self.broken: str | None = None  # why the remote cannot be used at all
        self.client: RegistryClient | None = None
        try:
            self.client = RegistryClient(
                config.remote,
                name=f"replication/{config.name}",
                max_bytes_per_second=config.max_bytes_per_second,
            )
        except CredentialsError as exc:
            self.broken = f"the remote's credentials: {exc}"
        local = LocalRegistry(store, config.name)
        remote: Endpoint = RemoteRegistry(self.client) if self.client else local
        self.source: Endpoint = local if config.direction == "push" else remote
        self.target: Endpoint = remote if config.direction == "push" else local
        state = store.replication
        self.uploads = UploadSlots(
            state, config.name, config.remote.origin if config.direction == "push" else "local"
        )
        self.transfers = Transfers(self.uploads, config.parallel)
        self.failures = Failures(state, config.name)
        self.events_status = StatusBook(state, config.name, "events")
        self.runs_status = StatusBook(state, config.name, "runs")
        self._failures_read_at: float | None = None
        self._busy = 0
        self._retired = False
        self._uploads_loaded = False
        self._uploads_swept: float | None = None  # monotonic

    @property
    def name(self) -> str:
        return self.rule.name

    def copier(self) -> Copier:
        return Copier(self.rule, self.source, self.target, self.transfers)

    # ------------------------------------------------------------------ life

    async def using(self, work: Callable[[], Awaitable[T]]) -> T:
        """Run ``work`` while this runner is in use (a retired one closes after it)."""
        self._busy += 1
        try:
            if not self._uploads_loaded:
                await self.uploads.load()
                self._uploads_loaded = True
            await self._sweep_uploads()
            return await work()
        finally:
            self._busy -= 1
            if self._retired and self._busy == 0:
                await self._close()

    async def retire(self) -> None:
        """Replaced or removed: close once the work in progress is done."""
        self._retired = True
        if self._busy == 0:
            await self._close()

    async def _sweep_uploads(self) -> None:
        """Before a pass or a delivery, at most every UPLOADS_SWEEP: drop the upload
        slots no copy resumes, and the target's sessions they hold."""
        now = self.store.clock.monotonic()
        if self._uploads_swept is not None and now - self._uploads_swept < UPLOADS_SWEEP:
            return
        self._uploads_swept = now
        try:
            await expire_uploads(self.uploads, self.store.clock.time(), self.target)
        except Exception as exc:  # storage trouble: the next sweep tries again
            log.warning("replication %s: could not expire upload slots: %s", self.name, exc)

    async def _close(self) -> None:
        if self.client is not None:
            client, self.client = self.client, None
            await client.aclose()

    # ------------------------------------------------------------------ jobs

    async def attempt(self, copier: Copier, job: Job, run: RunRecord) -> bool:
        """Run ``job``; record its failure or clear it. Raises Stop on a transient error."""
        run.jobs += 1
        if copier.check is not None:
            copier.check()  # a pass's lease: LeaseLostError stops it
        try:
            changed = await copier.run(job)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if is_transient(exc):
                raise Stop(reason_of(exc)) from exc
            reason = reason_of(exc)
            dst = self.rule.mapping.target(job.repository) or ""
            await self.failures.record(job, dst, reason, self.store.clock.time())
            copier.tally.failed += 1
            metrics.FAILURES.labels(self.name).inc()
            metrics.FAILING.labels(self.name).set(len(self.failures.known))
            log.warning("replication %s: %s failed: %s", self.name, job, reason)
            return False
        if job.key in self.failures.known:
            await self.failures.clear(job)
            metrics.FAILING.labels(self.name).set(len(self.failures.known))
            log.info("replication %s: %s succeeded after failing before", self.name, job)
        return changed

    # ------------------------------------------------------------------ events

    async def deliver(self, jobs: Sequence[Job]) -> str | None:
        """Replicate the jobs of one batch of events: repositories at once, each in
        order, after the failed jobs of the same repository. Returns the error that
        stopped it (the dispatcher then tries the batch again after a backoff)."""
        return await self.using(lambda: self._deliver(jobs))

    async def _deliver(self, jobs: Sequence[Job]) -> str | None:
        if self.broken:
            return self.broken
        if self._retired:  # reloaded or stopping meanwhile: the batch comes again
            return "the rule is being replaced"
        clock = self.store.clock
        now = clock.time()
        if self._failures_read_at is None or now - self._failures_read_at > FAILURES_REFRESH:
            await self.failures.load()
            self._failures_read_at = now
            metrics.FAILING.labels(self.name).set(len(self.failures.known))
        groups: dict[str, list[Job]] = {}
        for job in jobs:
            groups.setdefault(job.repository, []).append(job)
        run = RunRecord("events", now)
        copier = self.copier()
        limit = asyncio.Semaphore(max(1, self.rule.parallel))

        async def replay(repository: str, queued: list[Job]) -> None:
            async with limit:
                for job in [*self.failures.of(repository), *queued]:
                    await self.attempt(copier, job, run)

        error: str | None = None
        try:
            # ``attempt`` turns every other error into a recorded failure: only a Stop
            # (or cancellation) ends the others.
            await all_of([replay(r, js) for r, js in groups.items()])
        except Stop as exc:
            error = str(exc)
        await self._finish(self.events_status, run, copier.tally, error)
        return error

    # ------------------------------------------------------------------ full passes

    async def full_pass(self, trigger: str, check: Callable[[], None] | None = None) -> RunRecord:
        """Everything the rule selects, compared and copied (and deleted); failed jobs
        first. ``check`` runs before each job (the lease's: it raises when lost). Raises
        nothing but cancellation: the outcome says how it went."""
        return await self.using(lambda: self._full_pass(trigger, check))

    async def _full_pass(self, trigger: str, check: Callable[[], None] | None) -> RunRecord:
        run = RunRecord(trigger, self.store.clock.time())
        copier = self.copier()
        copier.check = check
        error = self.broken
        if error is None:
            try:
                await self.failures.load()
                self._failures_read_at = self.store.clock.time()
                await run_pass(self, copier, run)
            except Stop as exc:
                error = str(exc)
            except Exception as exc:
                if not is_transient(exc):
                    log.exception("replication %s: the pass failed", self.name)
                error = reason_of(exc)
        metrics.FAILING.labels(self.name).set(len(self.failures.known))
        await self._finish(self.runs_status, run, copier.tally, error)
        metrics.RUNS.labels(self.name, run.outcome).inc()
        return run

    async def _finish(
        self, book: StatusBook, run: RunRecord, tally: Tally, error: str | None
    ) -> None:
        run.tally = tally
        run.finished = self.store.clock.time()
        run.error = error or ""
        run.outcome = "failed" if error else ("partial" if tally.failed else "ok")
        if error:
            log.warning("replication %s: %s stopped: %s", self.name, run.trigger, error)
        elif run.trigger != "events" or tally.artifacts or tally.deletes or tally.failed:
            log.info(
                "replication %s: %s done: %d copied, %d deleted, %d failed, %d bytes",
                self.name,
                run.trigger,
                tally.artifacts,
                tally.deletes,
                tally.failed,
                tally.bytes,
            )
        try:
            await book.save(run)
        except Exception as exc:  # the status is a report: never the reason to retry
            log.warning("replication %s: could not save its status: %s", self.name, exc)
        if run.outcome != "failed":
            metrics.LAST_SUCCESS.labels(self.name).set(run.finished)
