"""Counting what is hashed: how many bytes SHA-256 objects take, wherever they are made
(``hashlib.sha256`` and ``hashlib.new``, in this process and its threads) -- to pin
that a path hashes each byte once."""

from __future__ import annotations

import hashlib
import threading
from typing import Any

import pytest


class CountingHashes:
    """Counts the bytes hash objects made by ``hashlib.sha256`` and ``hashlib.new``
    take, from the moment it is made (``monkeypatch`` undoes it)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.hashed = 0
        lock = threading.Lock()  # hashes run in threads too
        sha256, new = hashlib.sha256, hashlib.new
        counter = self

        class Counted:
            def __init__(self, inner: Any) -> None:
                self._inner = inner

            def update(self, data: bytes) -> None:
                with lock:
                    counter.hashed += len(data)
                self._inner.update(data)

            def copy(self) -> Counted:
                return Counted(self._inner.copy())

            def __getattr__(self, name: str) -> Any:
                return getattr(self._inner, name)

        def counted_sha256(data: bytes = b"", **kwargs: Any) -> Counted:
            hasher = Counted(sha256(**kwargs))
            hasher.update(data)
            return hasher

        def counted_new(name: str, data: bytes = b"", **kwargs: Any) -> Counted:
            hasher = Counted(new(name, **kwargs))
            hasher.update(data)
            return hasher

        monkeypatch.setattr(hashlib, "sha256", counted_sha256)
        monkeypatch.setattr(hashlib, "new", counted_new)
