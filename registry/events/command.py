"""``registry events list|replay|purge``: what waits for each consumer, and its dead
letters -- safe while the registry serves.

``list`` shows each consumer's queue (events waiting, the retry in progress and its last
error) and dead letters; ``--dead`` lists the dead events one per line. ``replay`` hands
dead letters back to the delivering process as a pending record addressed to their
consumer (the same event ids: receivers that de-duplicate see each once) and then
deletes them; ``purge`` deletes them. Both take ``--id`` to pick events.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from registry.config import Config
from registry.config_check import CONFIG_FILE_ENV, load_or_exit
from registry.events.model import Record, Segment
from registry.events.queue import Cursor, DeadLetter
from registry.preflight import require_existing_storage
from registry.store import RegistryStore, StorageError, open_store


@dataclass
class ConsumerStatus:
    consumer: str
    queued: int = 0
    tries: int = 0  # failed attempts of the batch at the head of the queue
    error: str = ""
    next_attempt: float = 0.0
    dead: int = 0  # events in the dead letters
    dead_letters: list[DeadLetter] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["dead_letters"] = [
            {
                "at": d.at,
                "tries": d.tries,
                "error": d.error,
                "events": [e.dump() for e in d.events],
            }
            for d in self.dead_letters
        ]
        return doc


async def status(store: RegistryStore, consumer: str) -> ConsumerStatus:
    outbox = store.outbox
    raw = await outbox.read_cursor(consumer)
    cursor = Cursor.load(raw) if raw is not None else Cursor()
    out = ConsumerStatus(consumer, tries=cursor.tries, error=cursor.error, next_attempt=cursor.due)
    segments = await outbox.segments(consumer)
    if segments:
        last = await outbox.read_segment(consumer, segments[-1])
        end = Segment.load(last).end if last is not None else segments[-1]
        out.queued = max(0, end - max(cursor.next, segments[0]))
    out.dead_letters = await dead_letters(store, consumer)
    out.dead = sum(len(d.events) for d in out.dead_letters)
    return out


async def statuses(store: RegistryStore, consumers: Sequence[str] = ()) -> list[ConsumerStatus]:
    names = sorted({*consumers, *await store.outbox.consumers()})
    return [await status(store, c) for c in names]


async def dead_letters(store: RegistryStore, consumer: str) -> list[DeadLetter]:
    found = []
    for seq in await store.outbox.dead_letters(consumer):
        raw = await store.outbox.read_dead_letter(consumer, seq)
        if raw is not None:
            found.append(DeadLetter.load(seq, raw))
    return found


def _picked(letter: DeadLetter, ids: Sequence[str]) -> bool:
    return not ids or any(e.id in ids for e in letter.events)


async def replay(store: RegistryStore, consumer: str, ids: Sequence[str] = ()) -> int:
    """Queue dead letters again for ``consumer`` (all, or those holding ``ids``);
    returns how many events."""
    count = 0
    picked = [d for d in await dead_letters(store, consumer) if _picked(d, ids)]
    for letter in picked:
        record = Record(letter.events, (None,) * len(letter.events), to=consumer)
        await store.outbox.add(store.outbox.new_key(), record.dump())
        count += len(letter.events)
    # Deleted after they are pending again: a crash in between replays them twice.
    await store.outbox.delete_dead_letters(consumer, [d.seq for d in picked])
    return count


async def purge(store: RegistryStore, consumer: str, ids: Sequence[str] = ()) -> int:
    picked = [d for d in await dead_letters(store, consumer) if _picked(d, ids)]
    await store.outbox.delete_dead_letters(consumer, [d.seq for d in picked])
    return sum(len(d.events) for d in picked)


# ------------------------------------------------------------------------------ CLI


def add_command(commands: Any) -> None:
    p = commands.add_parser(
        "events",
        help="inspect event queues and dead letters; replay or purge dead letters",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="events_command", required=True)
    for name, help_text in (
        ("list", "each consumer's queue and dead letters"),
        ("replay", "deliver dead letters again"),
        ("purge", "delete dead letters"),
    ):
        q = sub.add_parser(name, help=help_text)
        q.add_argument("--endpoint", help="an endpoint's name (notifications.endpoints)")
        q.add_argument("--consumer", help="any consumer, as <kind>/<name>")
        q.add_argument("--config", help=f"YAML configuration file (default ${CONFIG_FILE_ENV})")
        q.add_argument("--data-dir", help="filesystem storage folder, as for `registry serve`")
        if name == "list":
            q.add_argument("--dead", action="store_true", help="list the dead events")
            q.add_argument("--json", action="store_true", help="print JSON")
        else:
            q.add_argument("--id", action="append", default=[], help="only this event id")
            q.add_argument("--all", action="store_true", help="every consumer's dead letters")
        q.set_defaults(func=events_command)


def _consumer(args: argparse.Namespace, config: Config) -> str | None:
    if args.endpoint:
        if args.endpoint not in {e.name for e in config.notifications.endpoints}:
            print(f"registry events: no endpoint named {args.endpoint!r}", file=sys.stderr)
            raise SystemExit(2)
        return f"endpoint/{args.endpoint}"
    return str(args.consumer) if args.consumer else None


def events_command(args: argparse.Namespace) -> None:
    if args.data_dir:
        os.environ["REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY"] = os.path.abspath(args.data_dir)
    config = load_or_exit(args.config or os.environ.get(CONFIG_FILE_ENV) or None)
    command = args.events_command
    require_existing_storage(config, f"registry events {command}", writes=command != "list")
    consumer = _consumer(args, config)
    if command != "list" and consumer is None and not args.all:
        print(f"registry events {command}: give --endpoint, --consumer or --all", file=sys.stderr)
        raise SystemExit(2)
    try:
        asyncio.run(_run(args, config, command, consumer))
    except (StorageError, ValueError) as exc:
        print(f"registry events {command}: {exc}", file=sys.stderr)
        raise SystemExit(1) from None


async def _run(
    args: argparse.Namespace, config: Config, command: str, consumer: str | None
) -> None:
    store = open_store(config)
    try:
        configured = [f"endpoint/{e.name}" for e in config.notifications.endpoints]
        wanted = [consumer] if consumer else configured
        found = await statuses(store, wanted)
        if consumer is not None:
            found = [s for s in found if s.consumer == consumer]
        if command == "list":
            _print_list(found, dead=args.dead, as_json=args.json)
            return
        act = replay if command == "replay" else purge
        for s in found:
            count = await act(store, s.consumer, args.id)
            verb = "queued again" if command == "replay" else "deleted"
            print(f"{s.consumer}: {count} dead events {verb}")
    finally:
        await store.close()


def _print_list(found: Sequence[ConsumerStatus], *, dead: bool, as_json: bool) -> None:
    if as_json:
        print(json.dumps([s.as_dict() for s in found], indent=2))
        return
    for s in found:
        line = f"{s.consumer}: {s.queued} queued, {s.dead} dead"
        if s.tries:
            line += f"; failing: {s.tries} attempts, last error: {s.error}"
        print(line)
        if dead:
            for letter in s.dead_letters:
                for e in letter.events:
                    ref = e.target.tag or e.target.digest
                    print(
                        f"  {e.id} {e.timestamp} {e.action} {e.target.repository} {ref} "
                        f"({letter.tries} attempts: {letter.error})"
                    )
