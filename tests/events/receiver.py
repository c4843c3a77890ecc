"""A webhook receiver for the tests: a real HTTP server in a thread that keeps every
request it gets, and answers with a status the test can change (down, then up)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Delivery:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def events(self) -> list[dict[str, Any]]:
        doc = self.json
        if isinstance(doc, dict) and "events" in doc:
            return list(doc["events"])
        return [doc] if isinstance(doc, dict) else list(doc)


class Receiver:
    """``url`` takes POSTs; ``status`` is what it answers (e.g. 503 while "down")."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.deliveries: list[Delivery] = []
        self.refused = 0
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", "0"))
                body = self.rfile.read(length)
                status = receiver.status
                with receiver._lock:
                    if 200 <= status < 300:
                        headers = {k.lower(): v for k, v in self.headers.items()}
                        receiver.deliveries.append(Delivery(self.path, headers, body))
                    else:
                        receiver.refused += 1
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/events"

    def events(self) -> list[dict[str, Any]]:
        with self._lock:
            return [e for d in self.deliveries for e in d.events]

    def wait_for(
        self, done: Callable[[list[dict[str, Any]]], bool], timeout: float = 20.0
    ) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            events = self.events()
            if done(events):
                return events
            time.sleep(0.05)
        raise AssertionError(f"the receiver did not get what was expected: {self.events()}")

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
