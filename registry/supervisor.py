"""The process that starts the workers and stays while they serve (``--workers N`` with
N > 1): it binds the port, starts each worker as a fresh interpreter that inherits the
listening socket (registry/worker.py), starts another when one dies, and passes
SIGTERM and SIGINT on, then waits for the workers to finish their requests.

It loads the standard library and nothing else: it lives as long as the workers and
serves nothing, so every MiB it holds is wasted (about 12 MiB; uvicorn's supervisor
with multiprocessing's resource tracker beside it took 41). The workers are started
with ``subprocess``, so no resource tracker runs, and each dies with it (the kernel's
parent-death signal), also after a kill -9 of the supervisor.

Signals, as uvicorn's: TERM and INT stop; HUP replaces the workers one by one, each
replacement serving before the worker it replaces is stopped; TTIN adds a worker, TTOU
retires one. A worker that exits with uvicorn's start-up failure (status 3: the app,
TLS or the socket are broken and would fail again) stops the server with that status.

A serving worker writes a byte to its pipe every second from its event loop
(registry/worker.py). One silent for ``http.worker_timeout`` is stuck -- its loop is
blocked in a call, or the process is stopped -- and serves nobody, while the connections
it accepted wait: it is killed (SIGKILL, as gunicorn's arbiter does) and replaced.
"""

from __future__ import annotations

import logging
import os
import selectors
import signal
import socket
import subprocess
import sys
import time

from registry.serve_plan import ServePlan

log = logging.getLogger("registry.supervisor")

STARTUP_FAILURE = 3  # uvicorn.config.STARTUP_FAILURE, not imported: uvicorn is large
# A worker that died is replaced at most this often, so that one failing at once again
# and again does not spin.
RESTART_INTERVAL = 1.0
# How long a new worker may take to serve before HUP gives up replacing the old one.
READY_TIMEOUT = 30.0
# A stopping worker ends within its graceful timeout and its own bounded cleanup
# (registry/shutdown.py: CLEANUP_GRACE, 10 s, for requests cut off to save what they
# hold). One still there this much later (its event loop blocked, or the process
# stopped) is stuck: it is killed, so that a stop or a HUP never waits for it forever.
STOP_MARGIN = 20.0
# SIGCHLD only wakes the loop: a worker that died is replaced at once.
_SIGNALS = (
    signal.SIGTERM,
    signal.SIGINT,
    signal.SIGHUP,
    signal.SIGTTIN,
    signal.SIGTTOU,
    signal.SIGCHLD,
)


def bind(host: str, port: int) -> socket.socket:
    """The listening socket, as uvicorn binds it; inherited by the workers."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family=family)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        log.error("%s", e)
        sys.exit(STARTUP_FAILURE)
    sock.set_inheritable(True)
    return sock


class Supervisor:
    def __init__(self, plan: ServePlan, sock: socket.socket) -> None:
        self.plan = plan
        self.sock = sock
        self.wanted = plan.workers
        self.workers: list[subprocess.Popen[bytes]] = []
        self.status = 0
        self.ready: dict[int, int] = {}  # pid: the read end of its pipe
        self.heard: dict[int, float] = {}  # pid: when its last byte came (once serving)
        self.selector = selectors.DefaultSelector()
        self._signals: list[int] = []
        self._last_start = 0.0

    def start_worker(self) -> subprocess.Popen[bytes]:
        """A new worker; ``self.ready[pid]`` is the pipe it writes a byte to once it serves,
        and every second after."""
        fd = self.sock.fileno()
        ready_r, ready_w = os.pipe()
        cmd = [sys.executable, "-m", "registry.worker", str(fd), str(ready_w), self.plan.dumps()]
        try:
            proc = subprocess.Popen(cmd, pass_fds=(fd, ready_w))
        finally:
            os.close(ready_w)
        self.ready[proc.pid] = ready_r
        self.selector.register(ready_r, selectors.EVENT_READ, proc.pid)
        self._last_start = time.monotonic()
        return proc

    def run(self) -> int:
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_w, False)
        signal.set_wakeup_fd(wake_w)
        for sig in _SIGNALS:
            signal.signal(sig, lambda sig, _frame: self._signals.append(sig))
        scheme = "https" if self.plan.options.get("ssl_certfile") else "http"
        host, port = self.sock.getsockname()[:2]
        log.info("Listening on %s://%s:%d, %d workers", scheme, host, port, self.wanted)
        log.info("Started parent process [%d]", os.getpid())
        self.selector.register(wake_r, selectors.EVENT_READ)
        self.workers = [self.start_worker() for _ in range(self.wanted)]
        while self._step(wake_r):
            pass
        self.stop_all()
        self.selector.close()
        log.info("Stopping parent process [%d]", os.getpid())
        return self.status

    def _step(self, wake_r: int) -> bool:
        """One turn: signals first, then the workers' health. False: stop."""
        for key, _ in self.selector.select(timeout=0.5):
            if key.fd == wake_r:
                os.read(wake_r, 512)
            else:
                self._hear(key.fd, key.data)
        while self._signals:
            sig = self._signals.pop(0)
            if sig in (signal.SIGTERM, signal.SIGINT):
                log.info("Received %s, exiting.", signal.Signals(sig).name)
                return False
            if sig == signal.SIGHUP:
                log.info("Received SIGHUP, restarting processes.")
                self.replace_all()
            elif sig == signal.SIGTTIN:
                log.info("Received SIGTTIN, adding a worker.")
                self.wanted += 1
                self.workers.append(self.start_worker())
            elif sig == signal.SIGTTOU and self.wanted > 1:
                log.info("Received SIGTTOU, retiring a worker.")
                self.wanted -= 1
                self._stop(self.workers.pop())
        return self.keep_alive()

    def _hear(self, fd: int, pid: int) -> None:
        if os.read(fd, 512):
            self.heard[pid] = time.monotonic()
        else:  # the worker exited: its death is seen in keep_alive
            self.selector.unregister(fd)

    def keep_alive(self) -> bool:
        """Replace workers that died, kill those that are stuck; False when one could not
        start at all."""
        for i, worker in enumerate(self.workers):
            code = worker.poll()
            if code is None:
                self._kill_if_stuck(worker)
                continue
            if code == STARTUP_FAILURE:
                log.error("Child process [%d] failed to start, stopping.", worker.pid)
                self.status = STARTUP_FAILURE
                return False
            if time.monotonic() - self._last_start < RESTART_INTERVAL:
                continue  # next turn
            log.warning("Child process [%d] died (status %s), starting another", worker.pid, code)
            self._reap(worker)
            self.workers[i] = self.start_worker()
        return True

    def _kill_if_stuck(self, worker: subprocess.Popen[bytes]) -> None:
        heard = self.heard.get(worker.pid)
        if heard is None:
            return  # not serving yet: starting has no deadline here
        silent = time.monotonic() - heard
        if silent >= self.plan.worker_timeout:
            log.error(
                "Child process [%d] has not answered for %.0fs (its event loop is stuck): "
                "killing it",
                worker.pid,
                silent,
            )
            self.heard.pop(worker.pid)
            worker.kill()

    def replace_all(self) -> None:
        for i, old in enumerate(self.workers):
            new = self.start_worker()
            if not self._serving(new, READY_TIMEOUT):
                self._stop(new)
                log.error("A new worker was not ready in time: keeping the old ones.")
                return
            self._stop(old)
            self.workers[i] = new

    def stop_all(self) -> None:
        for worker in self.workers:
            _signal(worker, signal.SIGTERM)
        deadline = time.monotonic() + self._stop_limit()
        for worker in self.workers:
            self._reap(worker, deadline)

    def _stop(self, worker: subprocess.Popen[bytes]) -> None:
        _signal(worker, signal.SIGTERM)
        self._reap(worker, time.monotonic() + self._stop_limit())

    def _stop_limit(self) -> float:
        return float(self.plan.options["timeout_graceful_shutdown"]) + STOP_MARGIN

    def _reap(self, worker: subprocess.Popen[bytes], deadline: float | None = None) -> None:
        """Wait for ``worker`` to end (a stopping one until ``deadline``, then kill it)."""
        try:
            worker.wait(None if deadline is None else max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.error(
                "Child process [%d] did not stop within %.0fs: killing it",
                worker.pid,
                self._stop_limit(),
            )
            worker.kill()
            worker.wait()
        self.heard.pop(worker.pid, None)
        ready = self.ready.pop(worker.pid, None)
        if ready is not None:
            if ready in self.selector.get_map():
                self.selector.unregister(ready)
            os.close(ready)

    def _serving(self, worker: subprocess.Popen[bytes], timeout: float) -> bool:
        """Whether ``worker`` came to serve within ``timeout`` (it wrote its byte; a
        worker that exits first closes the pipe unwritten)."""
        with selectors.DefaultSelector() as selector:
            selector.register(self.ready[worker.pid], selectors.EVENT_READ)
            if not selector.select(timeout):
                return False
        if os.read(self.ready[worker.pid], 1) != b"1":
            return False
        self.heard[worker.pid] = time.monotonic()
        return True


def _signal(worker: subprocess.Popen[bytes], sig: int) -> None:
    if worker.poll() is None:
        worker.send_signal(sig)


def supervise(plan: ServePlan) -> None:
    """Serve with ``plan.workers`` worker processes until TERM or INT; exits with the
    status to report."""
    from registry.request_log import setup_logging

    setup_logging(plan.options["log_level"], plan.log_format)
    sock = bind(plan.options["host"], plan.options["port"])
    sys.exit(Supervisor(plan, sock).run())
