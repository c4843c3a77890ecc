"""What the API suite needs of a registry, in this process (``tests.asgi_registry``) or
a real ``registry serve`` process (``ServerTarget``): one test body runs on both."""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any, Protocol

import httpx

from tests.server import RegistryServer


class RegistryTarget(Protocol):
    def client(self, **kwargs: Any) -> httpx.Client: ...

    def raw_request(self, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
        """Send ``path`` exactly as given (no client-side normalisation): status, body."""
        ...

    def stored_files(self) -> list[str]:
        """Every path in the registry's storage (temporary and unfinished ones too)."""
        ...


def stray_files(paths: list[str]) -> list[str]:
    """The paths no completed operation should leave: temporary files, upload sessions."""
    return [p for p in paths if p.startswith(".tmp/") or "/_uploads/" in p]


class ServerTarget:
    """A real ``registry serve`` process; ``server`` has what only it has (port, log).
    ``stored_files`` lists its data folder unless given another listing (S3's)."""

    def __init__(
        self, server: RegistryServer, stored_files: Callable[[], list[str]] | None = None
    ) -> None:
        self.server = server
        self._stored_files = stored_files

    def client(self, **kwargs: Any) -> httpx.Client:
        return self.server.client(**kwargs)

    def raw_request(self, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
        server = self.server
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
            s.sendall(
                f"{method} {path} HTTP/1.1\r\nHost: {server.host}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                + body
            )
            data = b""
            while chunk := s.recv(65536):
                data += chunk
        head, _, content = data.partition(b"\r\n\r\n")
        return int(head.split(b" ", 2)[1]), content

    def stored_files(self) -> list[str]:
        if self._stored_files is not None:
            return self._stored_files()
        root = self.server.data_dir
        return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
