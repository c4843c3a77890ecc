"""``registry usage [NAMESPACE]``: what each quota's namespace and each repository holds,
from the storage the configuration names (the numbers ``GET /api/usage`` gives admins).

NAMESPACE is a quota's name, or a repository name: that repository and those below it.
Exit status: 0, 2 invalid configuration, 1 the storage does not answer."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from typing import Any

from registry.config import Config
from registry.config_check import CONFIG_FILE_ENV, load_or_exit
from registry.policy import install
from registry.policy.report import UsageReport, build_report, render
from registry.preflight import require_existing_storage
from registry.store import StorageError, open_store


def add_command(commands: Any) -> None:
    p = commands.add_parser(
        "usage",
        help="bytes held per quota namespace and repository, with quotas and counts",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("namespace", nargs="?", help="a quota name, or a repository name prefix")
    p.add_argument("--config", help=f"YAML configuration file (default ${CONFIG_FILE_ENV})")
    p.add_argument("--data-dir", help="filesystem storage folder, as for `registry serve`")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=usage_command)


def usage_command(args: argparse.Namespace) -> None:
    if args.data_dir:
        os.environ["REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY"] = os.path.abspath(args.data_dir)
    config = load_or_exit(args.config or os.environ.get(CONFIG_FILE_ENV) or None)
    require_existing_storage(config, "registry usage", writes=False)
    try:
        report = asyncio.run(usage_report(config, args.namespace))
    except StorageError as exc:
        print(f"registry usage: the storage does not answer: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    print(json.dumps(report.as_dict(), indent=2) if args.json else render(report))


async def usage_report(config: Config, namespace: str | None = None) -> UsageReport:
    store = open_store(config)
    try:
        governance = install(store, config.policy)
        return await build_report(store, governance.rules, governance.book, only=namespace)
    finally:
        await store.close()
