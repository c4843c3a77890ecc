"""The ``registry`` command: serve (and the maintenance commands beside it)."""

from __future__ import annotations

import argparse
import atexit
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence

from registry.banner import StartFacts, print_banner, registry_version
from registry.config import Config
from registry.config_check import CONFIG_FILE_ENV, load_or_exit
from registry.preflight import storage_unreachable

# CLI flags become REGISTRY_* variables, so worker processes started by uvicorn see
# exactly the configuration the parent validated.
_FLAG_ENV = {
    "host": "REGISTRY_HTTP_HOST",
    "port": "REGISTRY_HTTP_PORT",
    "workers": "REGISTRY_HTTP_WORKERS",
    "data_dir": "REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY",
    "tls_cert": "REGISTRY_HTTP_TLS_CERT",
    "tls_key": "REGISTRY_HTTP_TLS_KEY",
}


def _multiprocess_metrics(workers: int) -> None:
    """With several workers, each writes its metrics to a fresh folder that /metrics on
    any of them sums (prometheus_client's multiprocess mode); removed at exit."""
    if workers <= 1:
        return
    from registry.metrics import MULTIPROC_ENV

    path = tempfile.mkdtemp(prefix="registry-metrics-")
    os.environ[MULTIPROC_ENV] = path
    atexit.register(shutil.rmtree, path, True)


def _prepare(config: Config) -> StartFacts:
    """What the parent does once before any worker starts: the token signing key (made on
    first start), the data folder, and a look at the storage (a warning, never a stop)."""
    token = config.auth.token
    new_key = config.auth.mode == "token" and token.builtin and not os.path.lexists(token.key_file)
    if config.auth.mode != "none":
        from registry.auth import commands as auth_commands

        auth_commands.check_auth_or_exit(config)
    if config.storage.driver == "filesystem":
        root = os.path.abspath(config.storage.filesystem.rootdirectory)
        os.makedirs(root, exist_ok=True)  # preflight found it creatable
        os.environ["REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY"] = root
    return StartFacts(signing_key_generated=new_key, storage_error=_storage_check(config))


def _storage_check(config: Config) -> str | None:
    """The start-up look at the storage. On S3 it runs in a child process: the supervisor
    of the workers lives as long as they do, and would otherwise keep boto3 loaded
    (about 25 MiB) for one request."""
    if config.storage.driver != "s3":
        return storage_unreachable(config)
    import concurrent.futures
    import multiprocessing

    spawn = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=spawn) as child:
        return child.submit(storage_unreachable, config).result()


def serve(args: argparse.Namespace) -> None:
    from registry import server  # uvicorn: loaded only to serve

    if args.config:
        os.environ[CONFIG_FILE_ENV] = os.path.abspath(args.config)
    for flag, env in _FLAG_ENV.items():
        value = getattr(args, flag)
        if value is not None:
            os.environ[env] = os.path.abspath(value) if flag == "data_dir" else str(value)
    # The configuration's rules, then its files and data folder: one line each, exit 2.
    config = load_or_exit(os.environ.get(CONFIG_FILE_ENV), files=True)
    facts = _prepare(config)
    print_banner(config, facts)
    http = config.http
    _multiprocess_metrics(http.workers if config.metrics.enabled else 1)
    server.run(config)


def build_parser(serve_only: bool = False) -> argparse.ArgumentParser:
    """The command line; ``serve_only`` leaves the maintenance commands out, and with them
    what they import: the process that supervises the workers stays small."""
    parser = argparse.ArgumentParser(prog="registry", description=__doc__)
    parser.add_argument("--version", action="version", version=f"registry {registry_version()}")
    commands = parser.add_subparsers(dest="command", required=True)

    p = commands.add_parser("serve", help="run the registry HTTP server")
    p.add_argument("--host", help="address to listen on (default 0.0.0.0)")
    p.add_argument("--port", type=int, help="port to listen on (default 5000)")
    p.add_argument("--data-dir", help="filesystem storage folder (default ./data)")
    p.add_argument("--config", help="YAML configuration file")
    p.add_argument("--workers", type=int, help="worker processes (default 1)")
    p.add_argument("--tls-cert", help="serve HTTPS with this certificate (PEM)")
    p.add_argument("--tls-key", help="private key of --tls-cert (PEM)")
    p.set_defaults(func=serve)
    if not serve_only:
        # Imported here: the supervisor of the workers (``serve``) loads none of them.
        from registry import ops_commands
        from registry.auth import commands as auth_commands
        from registry.events import command as events_command
        from registry.gc import command as gc_command
        from registry.policy import command as usage_command
        from registry.replication import command as replicate_command

        ops_commands.add_commands(commands)
        gc_command.add_command(commands)
        usage_command.add_command(commands)
        events_command.add_command(commands)
        replicate_command.add_command(commands)
        auth_commands.add_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(serve_only=argv[:1] == ["serve"]).parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
