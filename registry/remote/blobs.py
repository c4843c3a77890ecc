"""A blob GET as an async stream that verifies what passes through it.

Bytes are hashed as they pass. The last piece of a full blob is handed out only after
its size and digest verified, so a consumer that streams to its own client and to storage
at once never hands out a complete body of wrong content: on a cut, padded or corrupted
body it gets a VerificationError instead of the last piece, and aborts. A range answer is
checked for its length (a part cannot be checked against the digest).

The other pieces are handed out at once and hashed in a thread meanwhile, in order, while
the next piece arrives: hashing adds no wait to the stream but at its end, and holds at
most one piece back from being freed.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from types import TracebackType
from typing import Any

from registry.reference import ByteRange, Digest
from registry.remote.errors import RemoteError, VerificationError
from registry.remote.session import Answer, Session

# Pieces at least this large are hashed in a thread (a large ``chunk_size``).
THREAD_HASH_MIN = 256 * 1024


def hasher_for(digest: Digest) -> Any:
    """A hashlib object for the digest's algorithm (sha256, sha512)."""
    return hashlib.new(digest.algorithm)


class BlobStream:
    """The body of one blob GET. Iterate it once; close it (``async with``) always.

    ``size`` is the number of bytes this stream yields: the blob's size, or the range's
    length for a partial answer (``partial``)."""

    def __init__(
        self,
        session: Session,
        answer: Answer,
        digest: Digest,
        size: int | None,
        byte_range: ByteRange | None,
        skip: int = 0,
        chunk_size: int | None = None,
    ) -> None:
        self._session = session
        self._answer = answer
        self.digest = digest
        self.size = size
        self.byte_range = byte_range
        self.media_type = answer.headers.get("content-type")
        self._skip = skip  # a 200 to a range request: bytes to drop before the range
        self._chunk_size = chunk_size
        self.bytes_read = 0  # bytes yielded so far
        self._used = False
        self._failed: str | None = None

    @property
    def partial(self) -> bool:
        return self.byte_range is not None

    @property
    def status(self) -> int:
        return self._answer.status

    async def __aenter__(self) -> BlobStream:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose(error=exc_type.__name__ if exc_type else None)

    async def aclose(self, error: str | None = None) -> None:
        await self._answer.aclose(error=error or self._failed)

    def _fail(self, reason: str) -> VerificationError:
        self._failed = "VerificationError"
        return VerificationError(
            f"{self.digest}: {reason}",
            upstream=self._session.name,
            operation=self._answer.operation,
            status=self.status,
        )

    def __aiter__(self) -> AsyncIterator[bytes]:
        if self._used:
            raise RuntimeError("a BlobStream can be iterated once")
        self._used = True
        return self._verified()

    async def _raw(self) -> AsyncIterator[bytes]:
        """The body as it arrives, less the bytes before a range the remote ignored."""
        skip = self._skip
        async for chunk in self._answer.chunks():
            if skip:
                if len(chunk) <= skip:
                    skip -= len(chunk)
                    continue
                chunk, skip = chunk[skip:], 0
            if chunk:
                yield chunk

    async def _gathered(self) -> AsyncIterator[list[bytes]]:
        """The body's pieces, gathered until they hold ``chunk_size`` bytes (None: one
        piece at a time). Gathered here rather than by httpx's chunker, which copies
        every byte three times on the event loop."""
        batch: list[bytes] = []
        size = 0
        async for chunk in self._raw():
            batch.append(chunk)
            size += len(chunk)
            if self._chunk_size is None or size >= self._chunk_size:
                yield batch
                batch, size = [], 0
        if batch:
            yield batch

    async def _verified(self) -> AsyncIterator[bytes]:
        hasher = None if self.partial else hasher_for(self.digest)
        expected = self.size
        held: bytes | None = None  # the unknown-length case keeps one piece back
        count = 0
        bucket = self._session.bucket
        hashing = _Hashing(hasher)
        try:
            async for pieces in self._gathered():
                chunk = pieces[0] if len(pieces) == 1 else b"".join(pieces)
                if expected is not None and count + len(chunk) > expected:
                    if self.partial and self._skip:
                        chunk = chunk[: expected - count]  # a whole body: stop at the range
                    else:
                        raise self._fail(f"body is longer than {expected} bytes")
                count += len(chunk)
                if bucket is not None:
                    await bucket.take(len(chunk))
                await hashing.add(chunk)
                if expected is not None:
                    if count == expected:
                        await hashing.settle()
                        self._check(hasher, count)
                    self.bytes_read += len(chunk)
                    yield chunk
                    if count == expected and self.partial and self._skip:
                        return  # the rest of a whole body that answered a range
                    continue
                if held is not None:
                    self.bytes_read += len(held)
                    yield held
                held = chunk
        except RemoteError as exc:
            if isinstance(exc, VerificationError):
                raise
            # The remote closed or stalled mid-body: what came is incomplete.
            raise self._fail(f"body ended after {count} bytes: {exc.reason}") from None
        if expected is not None and count < expected:
            raise self._fail(f"body ended after {count} of {expected} bytes")
        if expected is None:
            await hashing.settle()
            self._check(hasher, count)
            if held is not None:
                self.bytes_read += len(held)
                yield held

    def _check(self, hasher: Any, count: int) -> None:
        if hasher is None:
            return
        got = f"{self.digest.algorithm}:{hasher.hexdigest()}"
        if got != str(self.digest):
            raise self._fail(f"content of {count} bytes has digest {got}")


class _Hashing:
    """A running hash fed in order, large pieces in a thread while the stream goes on:
    ``add`` waits only for the piece before (so one piece at most is held), ``settle``
    for the last."""

    def __init__(self, hasher: Any | None) -> None:
        self._hasher = hasher
        self._running: asyncio.Future[None] | None = None

    async def add(self, piece: bytes) -> None:
        if self._hasher is None:
            return
        await self.settle()
        if len(piece) >= THREAD_HASH_MIN:
            # hashlib lets go of the GIL: the loop goes on meanwhile. (A future, not a
            # task: a stream dropped mid-hash leaves nothing pending behind.)
            loop = asyncio.get_running_loop()
            self._running = loop.run_in_executor(None, self._hasher.update, piece)
        else:
            self._hasher.update(piece)

    async def settle(self) -> None:
        running, self._running = self._running, None
        if running is not None:
            await running
