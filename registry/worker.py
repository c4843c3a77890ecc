"""One worker process of ``registry serve --workers N``, started by registry/supervisor.py:
``python -m registry.worker <listening fd> <ready fd> <plan as JSON>``. It serves on the
socket the supervisor bound, writes one byte to the ready pipe once it serves, and dies
with the supervisor (PR_SET_PDEATHSIG: SIGTERM, so it finishes its requests first)."""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import sys

from registry.serve_plan import ServePlan

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() == 1:  # the supervisor died before the line above
        sys.exit(0)


def main(argv: list[str]) -> None:
    listening, ready, plan = int(argv[0]), int(argv[1]), ServePlan.loads(argv[2])
    _die_with_parent()

    def started() -> None:
        os.write(ready, b"1")
        os.close(ready)

    from registry import uvicorn_parts

    uvicorn_parts.load_without_main()  # before anything imports uvicorn
    from registry import server

    server.run(plan, socket.socket(fileno=listening), started)


if __name__ == "__main__":
    main(sys.argv[1:])
