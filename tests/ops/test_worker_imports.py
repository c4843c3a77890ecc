"""A serving process loads uvicorn's server without uvicorn's command line, reloader and
multiprocess supervisor (registry/uvicorn_parts.py), and uvicorn's own names still
work for whoever asks for them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import start_server

UNUSED = ["uvicorn.main", "click", "watchfiles", "multiprocessing", "uvicorn.supervisors"]


def run_python(code: str) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    result: dict[str, object] = json.loads(out.stdout.splitlines()[-1])
    return result


def test_serving_imports_none_of_uvicorns_command_line() -> None:
    got = run_python(
        "import json, sys\n"
        "from registry import uvicorn_parts\n"
        "uvicorn_parts.load_without_main()\n"
        "from registry import app, server\n"
        f"print(json.dumps({{'loaded': [m for m in {UNUSED!r} if m in sys.modules]}}))\n"
    )
    assert got == {"loaded": []}


def test_uvicorns_names_load_on_first_use() -> None:
    got = run_python(
        "import json, sys, importlib.metadata\n"
        "from registry import uvicorn_parts\n"
        "uvicorn_parts.load_without_main()\n"
        "import uvicorn, uvicorn.config\n"
        "before = 'uvicorn.main' in sys.modules\n"
        "from uvicorn import Config\n"
        "config_early = Config is uvicorn.config.Config\n"
        "config_early = config_early and 'uvicorn.main' not in sys.modules\n"
        "import uvicorn.main\n"
        "main = sys.modules['uvicorn.main']  # uvicorn.main is the click command\n"
        "print(json.dumps({'before': before, 'config_early': config_early,\n"
        "    'run': uvicorn.run is main.run, 'server': uvicorn.Server is main.Server,\n"
        "    'version': uvicorn.__version__ == importlib.metadata.version('uvicorn')}))\n"
    )
    assert got == {
        "before": False,
        "config_early": True,
        "run": True,
        "server": True,
        "version": True,
    }


def test_the_workers_of_a_real_server_do_not_map_the_reloader(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    server = start_server(request, tmp_path, workers=2)
    assert server.proc is not None
    workers = subprocess.run(
        ["pgrep", "-P", str(server.proc.pid)], capture_output=True, text=True
    ).stdout.split()
    assert len(workers) == 2
    for pid in workers:
        # watchfiles' extension: mapped only if uvicorn.main (its reloader) was imported.
        assert "watchfiles" not in Path(f"/proc/{pid}/maps").read_text()
