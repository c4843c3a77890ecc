"""``registry replicate status [RULE]`` and ``registry replicate run RULE``.

``status`` reads what the rules did from storage (the same as ``GET /api/replication``).
``run`` makes one full pass of a rule in this process, with the code the server runs on
the rule's interval and under the same lease, so it is safe while the registry serves;
writes of a pull rule are recorded as events like the server's.

Exit status: 0 done, 1 the pass failed or some jobs failed (listed), 2 invalid
configuration or no such rule, 75 (EX_TEMPFAIL) another process is running the rule.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from typing import Any

from registry.config import Config
from registry.config_check import CONFIG_FILE_ENV, load_or_exit
from registry.listeners import install_listeners
from registry.preflight import require_existing_storage
from registry.replication.scheduler import RuleBusyError, RulePausedError
from registry.replication.service import ReplicationService
from registry.replication.state import RunRecord
from registry.replication.status import render, report
from registry.request_log import setup_logging
from registry.store import StorageError, open_store

EXIT_BUSY = 75


def add_command(commands: Any) -> None:
    p = commands.add_parser(
        "replicate",
        help="replication: each rule's status; run a rule now",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="replicate_command", required=True)
    status = sub.add_parser("status", help="what each rule did, what waits, what failed")
    status.add_argument("rule", nargs="?", help="only this rule")
    run = sub.add_parser("run", help="one full pass of a rule now")
    run.add_argument("rule", help="the rule's name (replication.rules)")
    run.add_argument(
        "--wait",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="wait this long for a pass another process is running (default: do not)",
    )
    for q in (status, run):
        q.add_argument("--config", help=f"YAML configuration file (default ${CONFIG_FILE_ENV})")
        q.add_argument("--data-dir", help="filesystem storage folder, as for `registry serve`")
        q.add_argument("--json", action="store_true", help="print JSON")
        q.set_defaults(func=replicate_command)


def replicate_command(args: argparse.Namespace) -> None:
    if args.data_dir:
        os.environ["REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY"] = os.path.abspath(args.data_dir)
    config = load_or_exit(args.config or os.environ.get(CONFIG_FILE_ENV) or None, files=True)
    command = args.replicate_command
    names = [r.name for r in config.replication.rules]
    if args.rule is not None and args.rule not in names:
        known = ", ".join(names) or "none are configured"
        print(
            f"registry replicate {command}: no rule named {args.rule!r} ({known})",
            file=sys.stderr,
        )
        raise SystemExit(2)
    require_existing_storage(config, f"registry replicate {command}", writes=command == "run")
    try:
        if command == "status":
            asyncio.run(_status(config, args.rule, args.json))
            return
        setup_logging(config.log.level, config.log.format)
        run = asyncio.run(_run(config, args.rule, args.wait))
    except RuleBusyError as exc:
        print(f"registry replicate run: {exc}; try again later (or --wait)", file=sys.stderr)
        raise SystemExit(EXIT_BUSY) from None
    except RulePausedError as exc:
        print(f"registry replicate run: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    except StorageError as exc:
        print(f"registry replicate {command}: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    _print_run(args.rule, run, args.json)
    if run.outcome != "ok":
        raise SystemExit(1)


async def _status(config: Config, rule: str | None, as_json: bool) -> None:
    store = open_store(config)
    try:
        doc = await report(store, list(config.replication.rules), time.time(), rule)
    finally:
        await store.close()
    print(json.dumps(doc, indent=2) if as_json else render(doc, time.time()))


async def _run(config: Config, rule: str, wait: float) -> RunRecord:
    store = open_store(config)
    # As `registry serve` does: immutable tags and quotas hold for a pull's writes, and
    # they are recorded as events (webhooks and audits see them; delivery is the server's).
    events = install_listeners(store, config).events

    async def readonly() -> bool:
        return config.storage.readonly or await store.readonly_flag.read() is not None

    service = ReplicationService(store, config, events, paused=readonly)
    try:
        run = await service.run_now(rule, wait=wait)
        assert run is not None
        return run
    finally:
        await service.stop()
        await store.close()


def _print_run(rule: str, run: RunRecord, as_json: bool) -> None:
    if as_json:
        print(json.dumps(run.as_dict(), indent=2))
        return
    t = run.tally
    print(
        f"{rule}: {run.outcome} in {run.finished - run.started:.1f}s: {t.artifacts} copied "
        f"({t.manifests} manifests, {t.blobs} blobs uploaded, {t.mounted} mounted, "
        f"{t.skipped} skipped, {t.bytes} bytes), {t.deletes} deleted, {t.failed} failed"
    )
    if run.error:
        print(f"stopped: {run.error}")
    if t.failed:
        print(f"failed jobs: `registry replicate status {rule}` lists them with their reasons")
