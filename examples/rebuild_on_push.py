#!/usr/bin/env python3
"""Rebuild an image whenever its base is pushed: a webhook receiver for the registry's
events (docs/events.md, "Automated builds").

It checks each request's Standard Webhooks signature, skips events it has seen (the
registry delivers at least once: the same id may come twice), and on a push of the
watched tag (``base:latest``) builds the Containerfile in ``--context`` FROM exactly
the pushed digest with buildah, and pushes the result. Builds run one at a time; pushes
that arrive during a build are folded into the next one. Python's standard library
and buildah only.

    WEBHOOK_SECRET=whsec_... python3 rebuild_on_push.py --registry localhost:5000 \\
        --watch base:latest --context ./app --image app:latest --port 8000
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import logging
import os
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

log = logging.getLogger("rebuild")
TOLERANCE = 300  # seconds between the signature's timestamp and our clock


def verified(secrets: list[str], headers: Any, body: bytes) -> bool:
    """Standard Webhooks: v1,<base64 HMAC-SHA256 of "<id>.<timestamp>.<body>">, made
    with one of our secrets (two while one is rotated)."""
    msg_id, stamp = headers.get("webhook-id", ""), headers.get("webhook-timestamp", "")
    if not stamp.isdigit() or abs(time.time() - int(stamp)) > TOLERANCE:
        return False
    signed = f"{msg_id}.{stamp}.".encode() + body
    offered = headers.get("webhook-signature", "").split()
    for secret in secrets:
        key = base64.b64decode(secret.removeprefix("whsec_"))
        mac = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
        if any(hmac.compare_digest("v1," + mac, s) for s in offered):
            return True
    return False


class Rebuilder:
    """One build at a time, always of the newest base pushed."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.wanted: str | None = None  # the base digest to build on next
        self.cond = threading.Condition()
        threading.Thread(target=self._loop, daemon=True).start()

    def base_pushed(self, digest: str) -> None:
        with self.cond:
            self.wanted = digest
            self.cond.notify()

    def _loop(self) -> None:
        while True:
            with self.cond:
                while self.wanted is None:
                    self.cond.wait()
                digest, self.wanted = self.wanted, None
            try:
                self.build(digest)
            except subprocess.CalledProcessError as exc:
                log.error("build on %s failed: %s", digest, exc)

    def build(self, digest: str) -> None:
        a = self.args
        base = f"{a.registry}/{a.watch.partition(':')[0]}@{digest}"
        image = f"{a.registry}/{a.image}"
        tls = f"--tls-verify={'true' if a.tls_verify else 'false'}"
        log.info("building %s on %s", image, base)
        subprocess.run(
            ["buildah", "build", tls, "--build-arg", f"BASE={base}", "-t", image, a.context],
            check=True,
        )
        subprocess.run(["buildah", "push", tls, image, f"docker://{image}"], check=True)
        log.info("pushed %s", image)


def handler(secrets: list[str], watch: str, rebuilder: Rebuilder) -> type[BaseHTTPRequestHandler]:
    repository, _, tag = watch.partition(":")
    seen: set[str] = set()
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            if not verified(secrets, self.headers, body):
                self.send_response(401)
                self.end_headers()
                return
            for event in json.loads(body).get("events", []):
                with lock:
                    if event["id"] in seen:  # delivered again: done already
                        continue
                    seen.add(event["id"])
                target = event.get("target", {})
                if (
                    event.get("action") == "push"
                    and target.get("repository") == repository
                    and target.get("tag") == tag
                ):
                    rebuilder.base_pushed(target["digest"])
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    return Handler


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--registry", required=True, help="host:port of the registry")
    p.add_argument("--watch", default="base:latest", help="repository:tag to rebuild on")
    p.add_argument("--context", required=True, help="build context with a Containerfile")
    p.add_argument("--image", required=True, help="repository:tag to push the build as")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--tls-verify", action="store_true", help="the registry serves HTTPS")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    # One secret, or two (comma-separated) while the registry's is being rotated.
    secrets = [s for s in os.environ["WEBHOOK_SECRET"].split(",") if s]
    server = ThreadingHTTPServer(
        ("127.0.0.1", args.port), handler(secrets, args.watch, Rebuilder(args))
    )
    log.info("listening on 127.0.0.1:%d for pushes of %s", args.port, args.watch)
    server.serve_forever()


if __name__ == "__main__":
    main()
