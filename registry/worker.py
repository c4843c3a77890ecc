"""One worker process of ``registry serve --workers N``, started by registry/supervisor.py:
``python -m registry.worker <listening fd> <ready fd> <plan as JSON>``. It serves on the
socket the supervisor bound, writes a byte to the pipe once it serves and every
HEARTBEAT seconds after, and dies with the supervisor (PR_SET_PDEATHSIG: SIGTERM, so it
finishes its requests first)."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import socket
import sys

from registry.serve_plan import ServePlan

_PR_SET_PDEATHSIG = 1
HEARTBEAT = 1.0  # seconds between the bytes a serving worker writes to the pipe


def _die_with_parent() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() == 1:  # the supervisor died before the line above
        sys.exit(0)


def main(argv: list[str]) -> None:
    listening, ready, plan = int(argv[0]), int(argv[1]), ServePlan.loads(argv[2])
    _die_with_parent()
    os.set_blocking(ready, False)

    def beat() -> None:
        """A byte on the pipe, from the event loop: the supervisor hears it only while
        the loop turns (a worker stuck in a call is silent, and replaced)."""
        with contextlib.suppress(BlockingIOError):  # the supervisor is busy: it has some
            os.write(ready, b"1")
        asyncio.get_running_loop().call_later(HEARTBEAT, beat)

    from registry import server

    server.run(plan, socket.socket(fileno=listening), beat)


if __name__ == "__main__":
    main(sys.argv[1:])
