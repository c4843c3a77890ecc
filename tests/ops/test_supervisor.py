"""``registry serve --workers N``: the supervisor (registry/supervisor.py) on a real
server -- workers replaced when they die, dying with it, rolled over on SIGHUP without
a refused request, a port it cannot bind reported with uvicorn's status 3, and the
supervisor holding no application."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from registry.supervisor import STOP_MARGIN
from tests.conftest import start_server
from tests.server import RegistryServer


def workers_of(pid: int) -> set[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True)
    return {int(p) for p in out.stdout.split()}


def wait_for(check: object, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise AssertionError("timed out")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped by a parent gone) counts as gone.
    with open(f"/proc/{pid}/stat") as f:
        return f.read().split(") ")[1][0] != "Z"


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@pytest.fixture
def server(request: pytest.FixtureRequest, tmp_path: Path) -> RegistryServer:
    return start_server(request, tmp_path, workers=2)


def test_a_worker_that_dies_is_replaced_and_the_port_keeps_answering(
    server: RegistryServer,
) -> None:
    assert server.proc is not None
    first = workers_of(server.proc.pid)
    assert len(first) == 2
    victim = min(first)
    os.kill(victim, signal.SIGKILL)
    wait_for(lambda: len(workers_of(server.proc.pid) - first) == 1)  # type: ignore[union-attr]
    for _ in range(20):
        assert httpx.get(f"{server.url}/v2/", timeout=10).status_code == 200
    assert "died (status -9), starting another" in server.log()


def test_a_stuck_worker_is_killed_and_replaced(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """SIGSTOP stands for an event loop blocked in a call: no heartbeat comes. The other
    worker keeps serving; the stuck one goes after ``http.worker_timeout``."""
    server = start_server(request, tmp_path, workers=2, config={"http": {"worker_timeout": "2s"}})
    assert server.proc is not None
    first = workers_of(server.proc.pid)
    time.sleep(3)  # busy or idle, a serving worker is heard from: none is killed
    assert workers_of(server.proc.pid) == first
    victim = min(first)
    os.kill(victim, signal.SIGSTOP)
    started = time.monotonic()
    wait_for(lambda: not alive(victim), timeout=10)
    assert 1.5 <= time.monotonic() - started <= 5
    wait_for(lambda: len(workers_of(server.proc.pid) - first) == 1)  # type: ignore[union-attr]
    for _ in range(20):
        assert httpx.get(f"{server.url}/v2/", timeout=10).status_code == 200
    log = server.log()
    assert f"Child process [{victim}] has not answered for 2s" in log
    assert "died (status -9), starting another" in log


def test_a_worker_stuck_in_a_stop_is_killed_and_the_stop_ends(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """SIGSTOP again: the stuck worker never ends its stop. The supervisor kills it once
    the graceful timeout and STOP_MARGIN are over, and exits."""
    config = {"http": {"graceful_timeout": "1s", "worker_timeout": "120s"}}
    server = start_server(request, tmp_path, workers=2, config=config)
    assert server.proc is not None
    victim = min(workers_of(server.proc.pid))
    os.kill(victim, signal.SIGSTOP)
    started = time.monotonic()
    code = server.stop(timeout=60)
    took = time.monotonic() - started
    assert code == 0
    assert 1 + STOP_MARGIN - 1 <= took <= 1 + STOP_MARGIN + 5, took
    assert not alive(victim)
    assert f"Child process [{victim}] did not stop within 21s: killing it" in server.log()


def test_the_workers_die_with_the_supervisor_even_after_kill_9(server: RegistryServer) -> None:
    assert server.proc is not None
    workers = workers_of(server.proc.pid)
    server.stop(signal.SIGKILL)
    wait_for(lambda: not any(alive(p) for p in workers))


def test_sighup_replaces_every_worker_without_refusing_a_connection(server: RegistryServer) -> None:
    assert server.proc is not None
    before = workers_of(server.proc.pid)
    failures: list[str] = []
    done = threading.Event()

    def load() -> None:
        # A new connection each time: one kept alive may be closed by a worker that
        # stops just as the next request is sent, the race of every graceful restart.
        while not done.is_set():
            try:
                status = httpx.get(f"{server.url}/v2/", timeout=10).status_code
                if status != 200:
                    failures.append(str(status))
            except httpx.TransportError as e:
                failures.append(repr(e))

    thread = threading.Thread(target=load)
    thread.start()
    try:
        server.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: not (workers_of(server.proc.pid) & before), timeout=60)  # type: ignore[union-attr]
        wait_for(lambda: len(workers_of(server.proc.pid)) == 2)  # type: ignore[union-attr]
    finally:
        done.set()
        thread.join()
    assert failures == []


def test_the_supervisor_loads_no_application_and_starts_no_resource_tracker(
    server: RegistryServer,
) -> None:
    assert server.proc is not None
    assert rss_mib(server.proc.pid) < 25
    for pid in workers_of(server.proc.pid):
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        assert b"registry.worker" in cmdline


def test_a_port_it_cannot_bind_stops_it_with_status_3(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
        cmd = [sys.executable, "-m", "registry", "serve", "--host", "127.0.0.1"]
        cmd += ["--port", str(port), "--workers", "2", "--data-dir", str(tmp_path / "d")]
        done = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, timeout=60)
    assert done.returncode == 3
    assert b"Address already in use" in done.stderr


def test_ttin_adds_a_worker_and_ttou_retires_one(server: RegistryServer) -> None:
    assert server.proc is not None
    pid = server.proc.pid
    server.proc.send_signal(signal.SIGTTIN)
    wait_for(lambda: len(workers_of(pid)) == 3)
    server.proc.send_signal(signal.SIGTTOU)
    wait_for(lambda: len(workers_of(pid)) == 2)
    assert httpx.get(f"{server.url}/v2/", timeout=10).status_code == 200
