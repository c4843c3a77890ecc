"""Replication in one process of ``registry serve``: a runner per rule, the event
consumers of push rules (registered with the events service before the app serves), and
one background loop that starts due passes, reloads the rules when the configuration
file changes, and reports the lag of event rules.

Reloading (docs/replication.md): every ``replication.reload_interval`` the loop looks
at the configuration file's modification time and size; when they changed it reads the
whole file again (with the same ``REGISTRY_*`` variables) and, if it is valid, applies
its ``replication`` section -- other sections need a restart. A changed rule gets a new
runner: copies in progress finish with the settings they started with, new work uses
the new ones. A removed rule stops: its pass in progress is cancelled (a chunked upload
resumes from its slot if the rule comes back within a day: ``expire_removed_uploads``)
and events waiting for it are dropped. A
new push rule follows events only after a restart (the events lease holder reads its
consumers when it takes the lease); its interval and ``registry replicate run`` work at
once. An invalid file is logged and the running rules stay as they are.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable

from pydantic import ValidationError

from registry.config import Config, ReplicationConfig, load_config
from registry.events import EventService
from registry.replication import metrics
from registry.replication.consumer import ReplicationConsumer
from registry.replication.runner import UPLOADS_SWEEP, RuleRunner
from registry.replication.scheduler import RulePausedError, Scheduler, run_leased
from registry.replication.state import RunRecord, UploadSlots, expire_uploads
from registry.replication.status import event_time, oldest_waiting
from registry.store import RegistryStore
from registry.tasks import stop_task

log = logging.getLogger("registry.replication")

TICK = 1.0  # how often due passes are looked for
LAG_EVERY = 5.0  # how often the delivering process reports the lag of event rules
STOP_TIMEOUT = 10.0


class ReplicationService:
    def __init__(
        self,
        store: RegistryStore,
        config: Config,
        events: EventService | None = None,
        *,
        config_file: str | None = None,
        paused: Callable[[], Awaitable[bool]] | None = None,
    ) -> None:
        self.store = store
        self.settings = config.replication
        self.events = events
        self.config_file = config_file
        self.runners = {r.name: RuleRunner(store, r) for r in config.replication.rules}
        self.consumers: dict[str, ReplicationConsumer] = {}
        if events is not None:
            for runner in self.runners.values():
                if runner.rule.on_events:
                    consumer = ReplicationConsumer(runner)
                    events.add_consumer(consumer)
                    self.consumers[runner.name] = consumer
        self.paused = paused
        self.scheduler = Scheduler(store, self.settings.lease_ttl, paused)
        self._file_seen = _file_stamp(config_file)
        self._task: asyncio.Task[None] | None = None

    @property
    def rules(self) -> list[str]:
        return list(self.runners)

    def start(self) -> None:
        if self._task is None and (self.runners or self.config_file):
            self._task = asyncio.create_task(self._loop(), name="registry-replication")

    async def stop(self) -> None:
        task, self._task = self._task, None
        await stop_task(task, STOP_TIMEOUT)
        await self.scheduler.stop()
        for runner in self.runners.values():
            await runner.retire()

    # ------------------------------------------------------------------ on demand

    async def run_now(self, name: str, *, wait: float = 0.0) -> RunRecord | None:
        """One full pass of rule ``name`` now (``trigger`` manual), under its lease;
        RuleBusyError when another process holds it longer than ``wait``,
        RulePausedError for a pull rule while the registry is read-only."""
        runner = self.runners[name]
        if runner.config.direction == "pull" and self.paused is not None and await self.paused():
            raise RulePausedError(f"rule {name!r} writes here, and the registry is read-only")
        return await run_leased(self.store, runner, "manual", self.settings.lease_ttl, wait=wait)

    # ------------------------------------------------------------------ the loop

    async def _loop(self) -> None:
        clock = self.store.clock
        last_lag = 0.0
        last_look = clock.monotonic()
        last_sweep: float | None = None
        while True:
            try:
                await self.scheduler.tick(self.runners)
                now = clock.monotonic()
                if self.config_file and now - last_look >= self.settings.reload_interval:
                    last_look = now
                    await self.reload_if_changed()
                if now - last_lag >= LAG_EVERY:
                    last_lag = now
                    await self.report_lag()
                if last_sweep is None or now - last_sweep >= UPLOADS_SWEEP:
                    last_sweep = now
                    await self.expire_removed_uploads()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("replication: the background loop failed a round")
            await clock.sleep(TICK)

    async def report_lag(self) -> None:
        """Lag and queue depth of event rules, from the process that delivers them."""
        dispatcher = self.events.dispatcher if self.events is not None else None
        if dispatcher is None or not dispatcher.holding:
            return
        now = self.store.clock.time()
        for name in self.consumers:
            queue = dispatcher.queues.get(f"replication/{name}")
            depth = queue.depth if queue is not None else 0
            metrics.QUEUED.labels(name).set(depth)
            oldest = await oldest_waiting(self.store, f"replication/{name}") if depth else None
            since = event_time(oldest) if oldest is not None else None
            metrics.LAG.labels(name).set(max(0.0, now - since) if since is not None else 0.0)

    async def expire_removed_uploads(self) -> int:
        """The upload slots of rules configured no more (each configured rule's runner
        sweeps its own): dropped once expired. Their sessions on the remote are left to
        its own expiry, since the way to it went with the rule."""
        state = self.store.replication
        now = self.store.clock.time()
        count = 0
        for rule in await state.rules():
            if rule not in self.runners:
                count += await expire_uploads(UploadSlots(state, rule, ""), now)
        return count

    # ------------------------------------------------------------------ reloading

    async def reload_if_changed(self) -> bool:
        stamp = _file_stamp(self.config_file)
        if stamp == self._file_seen or self.config_file is None:
            return False
        self._file_seen = stamp
        try:
            config = await asyncio.to_thread(load_config, self.config_file)
        except Exception as exc:  # a file in the middle of an edit, or a mistake
            log.error(
                "replication: %s changed but is not valid (%s); the rules stay as they were",
                self.config_file,
                _why(exc),
            )
            return False
        await self.apply(config.replication)
        return True

    async def apply(self, settings: ReplicationConfig) -> list[str]:
        """Switch to ``settings``' rules; returns what changed, one line each (logged)."""
        old = {name: runner.config for name, runner in self.runners.items()}
        new = {rule.name: rule for rule in settings.rules}
        self.settings = settings
        self.scheduler.lease_ttl = settings.lease_ttl
        changes: list[str] = []
        for name in [n for n in old if n not in new]:
            consumer = self.consumers.get(name)
            if consumer is not None:
                consumer.runner = None
            self.scheduler.forget(name)
            await self.runners.pop(name).retire()
            changes.append(f"rule {name} removed")
        for name, rule in new.items():
            if name in old and old[name] == rule:
                continue
            runner = RuleRunner(self.store, rule)
            previous = self.runners.get(name)
            self.runners[name] = runner
            if previous is not None:
                self.scheduler.forget(name)
                await previous.retire()
            consumer = self.consumers.get(name)
            if consumer is not None:
                consumer.runner = runner if runner.rule.on_events else None
            elif runner.rule.on_events:
                changes.append(
                    f"rule {name}: follows events after the next restart; its interval and "
                    "`registry replicate run` work now"
                )
            changes.append(f"rule {name} {'changed' if previous else 'added'}")
        for line in changes:
            log.info("replication: %s", line)
        return changes


def _why(exc: Exception) -> str:
    """What is wrong, in one line: the settings and the rules they break (never the
    values: they may be secrets)."""
    if isinstance(exc, ValidationError):
        return "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:3]
        )
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _file_stamp(path: str | None) -> tuple[float, int] | None:
    if path is None:
        return None
    try:
        info = os.stat(path)
    except OSError:
        return None
    return (info.st_mtime, info.st_size)
