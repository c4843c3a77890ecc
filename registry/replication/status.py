"""What `registry replicate status` and ``GET /api/replication`` show per rule, read
from storage so that any process answers the same: the last delivery of events and the
last full pass, the last success, the lag (age of the oldest event not replicated
yet) and what waits, the retry in progress, what was copied in total, and the jobs that
failed with their reasons."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from registry.config import ReplicationRuleConfig
from registry.events.command import status as queue_status
from registry.events.model import Event, Segment
from registry.events.queue import Cursor
from registry.replication.state import Failures, RunRecord, StatusRecord, Tally
from registry.store import RegistryStore

FAILURES_SHOWN = 100


async def oldest_waiting(store: RegistryStore, consumer: str) -> Event | None:
    """The first event of ``consumer``'s queue not delivered yet."""
    outbox = store.outbox
    raw = await outbox.read_cursor(consumer)
    cursor = Cursor.load(raw) if raw is not None else Cursor()
    for first in await outbox.segments(consumer):
        data = await outbox.read_segment(consumer, first)
        if data is None:
            continue
        segment = Segment.load(data)
        if segment.end <= cursor.next:
            continue
        return segment.events[max(0, cursor.next - segment.first)]
    return None


def event_time(event: Event) -> float | None:
    try:
        return datetime.fromisoformat(event.timestamp).timestamp()
    except ValueError:
        return None


async def rule_status(
    store: RegistryStore, config: ReplicationRuleConfig, now: float
) -> dict[str, Any]:
    name = config.name
    state = store.replication
    runs = StatusRecord.load(await state.read_status(name, "runs"))
    deliveries = StatusRecord.load(await state.read_status(name, "events"))
    failures = sorted(
        (await Failures(state, name).load()).values(), key=lambda f: (f.last, f.job.repository)
    )
    totals = Tally()
    totals.add(runs.totals)
    totals.add(deliveries.totals)
    interval = config.trigger.interval
    doc: dict[str, Any] = {
        "name": name,
        "direction": config.direction,
        "remote": config.remote.url,
        "trigger": {"events": config.on_events, "interval": interval},
        "last_run": _run(runs.last),
        "last_delivery": _run(deliveries.last),
        "last_success": max(runs.last_success, deliveries.last_success) or None,
        "next_run": (runs.last.started + interval if runs.last else None) if interval else None,
        "totals": totals.as_dict(),
        "failing": len(failures),
        "failures": [f.as_dict() for f in failures[-FAILURES_SHOWN:]],
    }
    if config.on_events:
        consumer = f"replication/{name}"
        queue = await queue_status(store, consumer)
        oldest = await oldest_waiting(store, consumer)
        since = event_time(oldest) if oldest is not None else None
        doc["events"] = {
            "queued": queue.queued,
            "lag_seconds": round(max(0.0, now - since), 3) if since is not None else 0.0,
            "oldest": oldest.timestamp if oldest is not None else None,
            "attempts": queue.tries,  # failed attempts of the batch at the head
            "error": queue.error,
            "next_attempt": queue.next_attempt if queue.tries else None,
        }
    return doc


def _run(run: RunRecord | None) -> dict[str, Any] | None:
    return run.as_dict() if run is not None else None


async def report(
    store: RegistryStore, rules: list[ReplicationRuleConfig], now: float, only: str | None = None
) -> dict[str, Any]:
    chosen = [r for r in rules if only is None or r.name == only]
    return {"rules": [await rule_status(store, r, now) for r in chosen]}


def render(doc: dict[str, Any], now: float) -> str:
    """The report as `registry replicate status` prints it."""
    lines: list[str] = []
    if not doc["rules"]:
        return "no replication rules are configured"
    for r in doc["rules"]:
        triggers = []
        if r["trigger"]["events"]:
            triggers.append("events")
        if r["trigger"]["interval"]:
            triggers.append(f"every {_duration(r['trigger']['interval'])}")
        lines.append(
            f"{r['name']}: {r['direction']} {'to' if r['direction'] == 'push' else 'from'} "
            f"{r['remote']} ({', '.join(triggers) or 'on demand'})"
        )
        events = r.get("events")
        if events is not None:
            line = f"  events: {events['queued']} waiting, lag {events['lag_seconds']:.1f}s"
            if events["attempts"]:
                line += f"; retrying ({events['attempts']} attempts): {events['error']}"
            lines.append(line)
        for label, run in (("last delivery", r["last_delivery"]), ("last pass", r["last_run"])):
            if run is not None:
                t = run["tally"]
                line = (
                    f"  {label}: {run['outcome']} {_ago(run['finished'] or run['started'], now)}"
                    f" ({run['trigger']}): {t['artifacts']} copied, {t['deletes']} deleted, "
                    f"{t['failed']} failed, {_bytes(t['bytes'])}"
                )
                if run["error"]:
                    line += f"; {run['error']}"
                lines.append(line)
        if r["next_run"]:
            lines.append(f"  next pass: {_ago(r['next_run'], now)}")
        t = r["totals"]
        lines.append(
            f"  in total: {t['artifacts']} artifacts, {t['blobs']} blobs copied "
            f"({_bytes(t['bytes'])}), {t['mounted']} mounted, {t['skipped']} skipped, "
            f"{t['deletes']} deleted"
        )
        if r["failing"]:
            lines.append(f"  failing: {r['failing']} jobs")
            for f in r["failures"][-10:]:
                sep = "@" if ":" in f["reference"] else ":"
                lines.append(
                    f"    {f['action']} {f['repository']}{sep}{f['reference']} "
                    f"({f['attempts']} attempts): {f['reason']}"
                )
    return "\n".join(lines)


def _bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def _duration(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"


def _ago(moment: float, now: float) -> str:
    delta = now - moment
    if delta >= 0:
        return f"{_duration(round(delta))} ago" if delta >= 1 else "just now"
    return f"in {_duration(round(-delta))}"
