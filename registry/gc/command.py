"""``registry gc [--dry-run] [--full]``: one collection from the command line, with the code the
server runs in the background. Safe while the registry serves: it takes the same lease.

Exit status: 0 done, 2 invalid configuration, 75 (EX_TEMPFAIL) another collection holds
the lease -- try again later, 1 anything else.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from typing import Any

from registry.config import Config
from registry.config_check import load_or_exit
from registry.gc.background import collector_for
from registry.gc.collector import CollectionBusyError
from registry.gc.report import CollectionReport
from registry.listeners import install_listeners
from registry.preflight import require_existing_storage
from registry.request_log import setup_logging
from registry.store import LeaseLostError, StorageError, open_store

EXIT_BUSY = 75


def add_command(commands: Any) -> None:
    p = commands.add_parser(
        "gc",
        help="collect garbage once: unused blobs and manifests, expired tags and uploads",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--dry-run", action="store_true", help="change nothing; list what a collection would delete"
    )
    p.add_argument(
        "--full",
        action="store_true",
        help="mark every repository, not only those changed since the last collection",
    )
    p.add_argument("--config", help="YAML configuration file (default: $REGISTRY_CONFIG_FILE)")
    p.add_argument("--data-dir", help="filesystem storage folder (overrides the configuration)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=gc_command)


def gc_command(args: argparse.Namespace) -> None:
    if args.data_dir:
        os.environ["REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY"] = os.path.abspath(args.data_dir)
    config = load_or_exit(args.config or os.environ.get("REGISTRY_CONFIG_FILE") or None)
    require_existing_storage(config, "registry gc", writes=not args.dry_run)
    setup_logging(config.log.level, config.log.format)
    try:
        report = asyncio.run(collect_once(config, dry_run=args.dry_run, full=args.full))
    except CollectionBusyError as exc:
        print(f"registry gc: {exc}; try again later", file=sys.stderr)
        raise SystemExit(EXIT_BUSY) from None
    except (LeaseLostError, StorageError) as exc:
        print(f"registry gc: failed: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    print(json.dumps(report.as_dict(), indent=2) if args.json else report.render())


async def collect_once(
    config: Config,
    *,
    dry_run: bool = False,
    full: bool = False,
) -> CollectionReport:
    store = open_store(config)
    # As `registry serve` does: immutable tags kept, usage journaled, deletes recorded.
    install_listeners(store, config)
    try:
        return await collector_for(store, config).run(dry_run=dry_run, full=full)
    finally:
        await store.close()
