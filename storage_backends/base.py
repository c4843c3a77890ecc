"""The storage driver interface: bytes at paths, nothing about registries.

Paths are '/'-separated keys relative to the driver's root, such as
``blobs/sha256/ab/abcd.../data``. The registry validates every name, tag and digest
before it builds a path, and ``storage_backends.checked`` wraps every driver to refuse
paths with empty components or components starting with ``.``, so that a driver
receives only safe paths and checks none itself.

A driver is small and dumb: atomicity of a single ``put``/``move`` is its job;
everything about layout and meaning lives in ``registry/store``.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import BinaryIO, Protocol, runtime_checkable


class StorageError(Exception):
    """A driver failure that is not the caller's fault (I/O error, backend down)."""


class PathNotFoundError(StorageError):
    """Nothing is stored at the path."""

    def __init__(self, path: str) -> None:
        super().__init__(f"path not found: {path}")
        self.path = path


class InvalidPathError(StorageError):
    """The path has an empty component, one starting with '.', or a character drivers
    refuse."""


class InvalidOffsetError(StorageError):
    """An append did not start where the stored data ends."""


@dataclass(frozen=True)
class FileInfo:
    path: str
    size: int
    modified: float  # seconds since the epoch
    is_dir: bool = False


@runtime_checkable
class FileWriter(Protocol):
    """An appendable writer. Data is durable only after ``commit``; ``close`` keeps
    what was written so that a later ``writer(path, append=True)`` continues it."""

    @property
    def size(self) -> int:
        """Bytes stored so far, including what earlier writers appended."""
        ...

    async def write(self, data: bytes) -> None: ...

    async def commit(self) -> None:
        """Flush and make durable; the writer is closed afterwards."""
        ...

    async def close(self) -> None:
        """Stop writing and keep the data for a later append."""
        ...

    async def cancel(self) -> None:
        """Discard everything written at this path."""
        ...


@runtime_checkable
class GatheringWriter(Protocol):
    """A writer that takes several pieces in one call (the filesystem's writev): a push
    hands over what it gathered without joining it first. Optional."""

    async def write_pieces(self, pieces: Sequence[bytes]) -> None: ...


@runtime_checkable
class ExpectingWriter(Protocol):
    """A writer told how many bytes the request in progress brings (its Content-Length)
    before they come: S3 sends its parts on as the bytes arrive instead of gathering
    each in memory. Optional, and a hint: a request that brings fewer leaves the writer
    holding only what the store kept."""

    def expect(self, length: int) -> None: ...


@runtime_checkable
class Driver(Protocol):
    name: str

    async def get(self, path: str) -> bytes:
        """Return a small file whole (links, session state, manifests)."""
        ...

    async def put(self, path: str, data: bytes) -> None:
        """Atomically replace the file at ``path`` with ``data``."""
        ...

    def read(self, path: str, offset: int = 0, length: int | None = None) -> AsyncIterator[bytes]:
        """Stream ``length`` bytes (to the end when None) from ``offset``.

        Raises PathNotFoundError on the first iteration when nothing is stored."""
        ...

    async def writer(self, path: str, append: bool = False) -> FileWriter:
        """Open a writer; ``append`` continues what is stored at ``path``."""
        ...

    async def stat(self, path: str) -> FileInfo:
        """Size and modification time of a file, or is_dir for a prefix holding files."""
        ...

    async def list(
        self,
        prefix: str,
        *,
        start_after: str | None = None,
        limit: int | None = None,
        recursive: bool = False,
    ) -> list[str]:
        """Names below ``prefix``, relative to it, in byte order.

        Not recursive: the immediate children (files and directories). Recursive:
        every file, as a relative path. ``start_after`` is exclusive. A missing
        prefix lists as empty."""
        ...

    async def move(self, src: str, dst: str) -> None:
        """Move a file, replacing ``dst`` atomically."""
        ...

    async def delete(self, path: str) -> None:
        """Delete a file or everything below a prefix; missing paths are fine."""
        ...

    async def delete_many(self, paths: Sequence[str]) -> None:
        """Delete the files at ``paths``, in no particular order and possibly at once;
        missing ones are fine. Only files: a path that is a prefix leaves what is below
        it alone, and what an uncommitted writer holds is ``delete``'s to remove. Every
        path is checked before anything is deleted, and the call returns (or raises)
        only when every delete has finished, so that two calls in a row order their
        deletes.
        On S3 this costs one request per 1000 paths, where ``delete`` costs three per
        path."""
        ...

    async def url_for(self, path: str, expires_in: int = 1200) -> str | None:
        """A URL that serves the file directly (redirects), or None."""
        ...

    async def close(self) -> None: ...


@runtime_checkable
class Folders(Protocol):
    """A driver whose folders exist apart from the files in them (the filesystem): a
    folder that ``delete_many`` emptied stays until it is removed, where on S3 a prefix
    is gone with its last key. Optional: other drivers have nothing to remove."""

    async def remove_folder(self, path: str) -> None:
        """Remove the folder at ``path`` if it is empty; a missing one, or one that
        holds anything, is left as it is."""
        ...


@dataclass(eq=False)
class DirectRead:
    """Bytes of a stored object for the server to send itself (registry/zerocopy.py):
    ``head`` (already received), then ``count`` bytes of ``source``: a file from
    ``offset``, or a socket as they arrive (``offset`` None; nothing follows them on it).
    Whoever takes it closes it."""

    source: BinaryIO | socket.socket
    offset: int | None
    count: int
    head: bytes = b""

    def close(self) -> None:
        self.source.close()


@runtime_checkable
class DirectReads(Protocol):
    """A driver that can hand the server an object's bytes as a file or a socket, so
    that they go to the client without a copy through the process. Optional: other
    drivers (and this one, when it cannot for a read) stream through ``read``."""

    async def open_direct(self, path: str, offset: int, length: int) -> DirectRead | None:
        """``length`` bytes at ``offset`` of the object at ``path`` (the caller knows
        they are there), or None when they cannot go directly; raises
        PathNotFoundError when nothing is stored there."""
        ...
