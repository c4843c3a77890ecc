"""The ``registry`` command: serve (and the maintenance commands beside it).

With several workers, the process that starts them lives as long as they do and needs
nothing of the application, so ``serve`` keeps it small: the configuration is read and
checked, the token key made, the storage looked at and the banner printed in a child
process, which hands back only what serving needs (``registry.serve_plan.ServePlan``),
and the workers are supervised by registry/supervisor.py.
Imports are therefore inside the functions that need them.
"""

from __future__ import annotations

import argparse
import atexit
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from registry.banner import StartFacts
    from registry.config import Config
    from registry.serve_plan import ServePlan

# The configuration file of ``registry serve`` (--config), read by every worker.
CONFIG_FILE_ENV = "REGISTRY_CONFIG_FILE"
_WORKERS_ENV = "REGISTRY_HTTP_WORKERS"

# CLI flags become REGISTRY_* variables, so worker processes started by uvicorn see
# exactly the configuration the parent validated.
_FLAG_ENV = {
    "host": "REGISTRY_HTTP_HOST",
    "port": "REGISTRY_HTTP_PORT",
    "workers": _WORKERS_ENV,
    "data_dir": "REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY",
    "tls_cert": "REGISTRY_HTTP_TLS_CERT",
    "tls_key": "REGISTRY_HTTP_TLS_KEY",
}


def _multiprocess_metrics(variable: str | None) -> None:
    """With several workers, each writes its metrics to a fresh folder that /metrics on
    any of them sums (prometheus_client's multiprocess mode); removed at exit."""
    if variable is None:
        return
    path = tempfile.mkdtemp(prefix="registry-metrics-")
    os.environ[variable] = path
    atexit.register(shutil.rmtree, path, True)


def _prepare(config: Config) -> tuple[StartFacts, dict[str, str]]:
    """What is done once before any worker starts: the token signing key (made on first
    start), the data folder, and a look at the storage (a warning, never a stop).
    Returns what was learnt and the variables the workers must see."""
    from registry.banner import StartFacts
    from registry.preflight import storage_unreachable

    token = config.auth.token
    new_key = config.auth.mode == "token" and token.builtin and not os.path.lexists(token.key_file)
    if config.auth.mode != "none":
        from registry.auth import commands as auth_commands

        auth_commands.check_auth_or_exit(config)
    env = {}
    if config.storage.driver == "filesystem":
        root = os.path.abspath(config.storage.filesystem.rootdirectory)
        os.makedirs(root, exist_ok=True)  # preflight found it creatable
        env["REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY"] = root
    facts = StartFacts(signing_key_generated=new_key, storage_error=storage_unreachable(config))
    return facts, env


def _plan() -> ServePlan:
    """The configuration's rules, then its files and data folder (one line each, exit
    2), the preparations and the banner: what serving needs."""
    from registry.banner import print_banner
    from registry.config_check import load_or_exit
    from registry.serve_plan import ServePlan

    config = load_or_exit(os.environ.get(CONFIG_FILE_ENV), files=True)
    facts, env = _prepare(config)
    print_banner(config, facts)
    metrics_env = None
    if config.metrics.enabled and config.http.workers > 1:
        from registry.metrics import MULTIPROC_ENV

        metrics_env = MULTIPROC_ENV
    return ServePlan.of(config, env, metrics_env)


def write_plan(fd: int) -> None:
    """``_plan`` in the child process ``serve`` starts: the plan goes to ``fd``."""
    try:
        plan = _plan()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
    with os.fdopen(fd, "w") as out:
        out.write(plan.dumps())


def _plan_from_child() -> ServePlan:
    """``_plan`` run in a fresh interpreter, which exits when done: what it loads (the
    configuration model, the storage client for a look) is gone with it."""
    import subprocess

    from registry.serve_plan import ServePlan

    read_end, write_end = os.pipe()
    code = "import sys; from registry.cli import write_plan; write_plan(int(sys.argv[1]))"
    try:
        cmd = [sys.executable, "-c", code, str(write_end)]
        child = subprocess.Popen(cmd, pass_fds=(write_end,))
    finally:
        os.close(write_end)
    with os.fdopen(read_end) as plan_in:
        raw = plan_in.read()
    if child.wait() != 0 or not raw:
        raise SystemExit(child.returncode or 1)
    return ServePlan.loads(raw)


def _workers_hint() -> int:
    """The number of workers the configuration asks for, read without checking it
    (the child does that): one worker means one process, which loads everything
    anyway, so it prepares itself and saves the child's start."""
    value: Any = os.environ.get(_WORKERS_ENV)
    path = os.environ.get(CONFIG_FILE_ENV)
    if value is None and path:
        import yaml

        try:
            with open(path, encoding="utf-8") as f:
                value = yaml.safe_load(f)["http"]["workers"]
        except (OSError, yaml.YAMLError, KeyError, TypeError):
            return 1
    try:
        return int(value)
    except (TypeError, ValueError):
        return 1


def serve(args: argparse.Namespace) -> None:
    if args.config:
        os.environ[CONFIG_FILE_ENV] = os.path.abspath(args.config)
    for flag, env in _FLAG_ENV.items():
        value = getattr(args, flag)
        if value is not None:
            os.environ[env] = os.path.abspath(value) if flag == "data_dir" else str(value)
    if _workers_hint() > 1:
        from registry import supervisor

        plan = _plan_from_child()
        os.environ.update(plan.env)
        _multiprocess_metrics(plan.metrics_env)
        supervisor.supervise(plan)
    else:
        from registry import uvicorn_parts

        uvicorn_parts.load_without_main()  # before anything imports uvicorn
        from registry import server  # uvicorn: loaded only to serve

        plan = _plan()
        os.environ.update(plan.env)
        server.run(plan)


class _Version(argparse.Action):
    """--version, which reads the installed package's metadata only when asked."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, help="show the version and exit")

    def __call__(self, parser: argparse.ArgumentParser, *args: Any) -> None:
        from registry.banner import registry_version

        print(f"registry {registry_version()}")
        parser.exit()


def build_parser(serve_only: bool = False) -> argparse.ArgumentParser:
    """The command line; ``serve_only`` leaves the maintenance commands out, and with them
    what they import: the process that supervises the workers stays small."""
    parser = argparse.ArgumentParser(prog="registry", description=__doc__)
    parser.add_argument("--version", action=_Version)
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
