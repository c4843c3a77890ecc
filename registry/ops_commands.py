"""The operator's commands beside ``registry serve``: check-config, readonly, healthcheck."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from typing import Any

from registry.config import Config
from registry.config_check import CONFIG_FILE_ENV, check_config, load_or_exit
from registry.health import local_url, probe
from registry.preflight import require_existing_storage
from registry.store import MaintenanceFlag, StorageError, open_store


def add_commands(commands: Any) -> None:
    """Register the subcommands on ``registry``'s subparsers."""
    p = commands.add_parser(
        "check-config",
        help="validate a configuration file and the REGISTRY_* environment",
        description="Validate FILE and the REGISTRY_* variables as `registry serve` reads "
        "them; print each problem with its line. Exit 0 when valid, 1 when not.",
    )
    p.add_argument("file", help="YAML configuration file")
    p.set_defaults(func=check_config_command)

    p = commands.add_parser(
        "readonly",
        help="switch read-only maintenance mode on or off for every worker and replica",
        description="Writes (on) or removes (off) the maintenance flag in the configured "
        "storage. Every process serving that storage refuses pushes and deletes with 503 "
        "within storage.readonly_flag_ttl; pulls keep working.",
    )
    p.add_argument("action", choices=["on", "off", "status"])
    p.add_argument("--reason", default="", help="shown to clients in the 503 message")
    p.add_argument("--config", help=f"YAML configuration file (default ${CONFIG_FILE_ENV})")
    p.add_argument("--data-dir", help="filesystem storage folder, as for `registry serve`")
    p.set_defaults(func=readonly_command)

    p = commands.add_parser(
        "healthcheck",
        help="probe a server's health endpoint (the container's HEALTHCHECK)",
        description="GET PATH on the server at --url, or else on the one the configuration "
        "describes (its port and TLS, read as `registry serve` reads them). Exit 0 when it "
        "answers 200, 1 when not.",
    )
    p.add_argument(
        "--url",
        help="the server's base URL, e.g. https://registry.example.com:5000 "
        "(default: from the configuration)",
    )
    p.add_argument("--path", default="/health/ready", help="default /health/ready")
    p.add_argument("--timeout", type=float, default=5.0, help="seconds (default 5)")
    p.add_argument("--config", help=f"YAML configuration file (default ${CONFIG_FILE_ENV})")
    p.set_defaults(func=healthcheck_command)


def _config(args: argparse.Namespace) -> Config:
    if getattr(args, "data_dir", None):
        os.environ["REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY"] = os.path.abspath(args.data_dir)
    return load_or_exit(args.config or os.environ.get(CONFIG_FILE_ENV) or None)


def check_config_command(args: argparse.Namespace) -> None:
    result = check_config(args.file, os.environ, files=True)
    for problem in result.problems:
        print(problem)
    errors = sum(1 for p in result.problems if p.severity == "error")
    if not result.ok:
        print(f"{args.file}: invalid, {errors} error{'' if errors == 1 else 's'}")
        raise SystemExit(1)
    print(f"{args.file}: OK")


def readonly_command(args: argparse.Namespace) -> None:
    config = _config(args)
    require_existing_storage(config, "registry readonly", writes=args.action != "status")
    try:
        flag = asyncio.run(_switch(config, args.action, args.reason))
    except StorageError as exc:
        hint = ""
        if config.storage.driver == "s3":
            hint = " (check storage.s3.endpoint_url, the bucket and the credentials)"
        print(f"registry readonly: the storage does not answer: {exc}{hint}", file=sys.stderr)
        raise SystemExit(1) from None
    if config.storage.readonly:
        print("read-only: storage.readonly is true in the configuration (pushes get 405)")
    elif flag is None:
        print("read-write: no maintenance flag in storage")
    else:
        since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(flag.since))
        reason = f", reason: {flag.reason}" if flag.reason else ""
        print(f"maintenance: read-only since {since}{reason} (pushes and deletes get 503)")
    if args.action != "status":
        ttl = config.storage.readonly_flag_ttl
        print(f"every worker and replica on this storage follows within {ttl:g}s")


async def _switch(config: Config, action: str, reason: str) -> MaintenanceFlag | None:
    store = open_store(config)
    try:
        if action == "on":
            await store.readonly_flag.set(reason)
        elif action == "off":
            await store.readonly_flag.clear()
        return await store.readonly_flag.read()
    finally:
        await store.close()


def healthcheck_command(args: argparse.Namespace) -> None:
    if args.url:
        url = args.url.rstrip("/") + "/" + args.path.lstrip("/")
    else:
        url = local_url(_config(args), args.path)
    healthy, text = probe(url, args.timeout)
    print(text.strip(), file=sys.stdout if healthy else sys.stderr)
    if not healthy:
        raise SystemExit(1)
