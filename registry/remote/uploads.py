"""Blob pushes to a remote: upload sessions that a caller can persist, and a chunked push
that resumes from the offset the remote acknowledged.

A session is just ``(repository, location, offset)``: plain values a caller can write to
storage after each chunk and hand to another process after a kill -9, which asks the
remote where it stands (``upload_status``) and goes on from there.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace

DEFAULT_CHUNK_SIZE = 16 * 1024 * 1024


@dataclass(frozen=True)
class UploadSession:
    repository: str
    location: str  # absolute URL of the session; may carry the remote's state in its query
    offset: int = 0  # bytes the remote acknowledged

    def moved(self, location: str | None, offset: int) -> UploadSession:
        return replace(self, location=location or self.location, offset=offset)


# Opens the blob's content from an offset to its end: a local file or storage reader, or
# another remote's stream. Called again at each resume.
BlobSource = Callable[[int], AsyncIterator[bytes]]
ProgressHook = Callable[[UploadSession], Awaitable[None] | None]


class SourceReader:
    """Cuts one source stream into consecutive request bodies of exact lengths."""

    def __init__(self, stream: AsyncIterator[bytes]) -> None:
        self._stream = stream
        self._left = b""

    async def take(self, length: int) -> AsyncIterator[bytes]:
        """The next ``length`` bytes, in pieces as they come."""
        remaining = length
        while remaining > 0:
            if self._left:
                piece, self._left = self._left[:remaining], self._left[remaining:]
            else:
                try:
                    piece = await anext(self._stream)
                except StopAsyncIteration:
                    raise ValueError(
                        f"the blob source ended {remaining} bytes short of the chunk"
                    ) from None
                if len(piece) > remaining:
                    piece, self._left = piece[:remaining], piece[remaining:]
            remaining -= len(piece)
            if piece:
                yield piece

    async def aclose(self) -> None:
        if hasattr(self._stream, "aclose"):
            await self._stream.aclose()
