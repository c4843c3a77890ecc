"""Upload sessions, kept in storage so any worker process or replica can continue them.

A session is ``_uploads/<id>/state`` (JSON: when it started, and the SHA-256 of the
bytes so far with the offset it is valid for) and, once it holds more than
``INLINE_MAX`` bytes, ``_uploads/<id>/data`` (the bytes so far, an appendable driver
file). Until then the bytes follow the JSON in the state file, so that a small blob --
most configs and many layers -- costs one small write per request and is stored at its
address when it is committed, with no data file to write, move and delete (on S3
eleven requests instead of twenty-two for docker's POST, PATCH, PUT). A data file that
a request crashing while it moved the bytes there left beside such a state is never
read: the next move starts the file afresh, and the commit deletes the whole session.
A whole blob small enough to hold pushed in one request (``push``) needs no session at
all.

The running digest: hashlib cannot serialise a hash's internal state, so

* while a session's chunks keep arriving at one process, that process keeps the live
  hasher in a small LRU cache and continues it;
* after every request the hex digest of the bytes so far is written to the state, so
  the common ``PATCH`` (whole body) then ``PUT ?digest=`` (empty) finishes on any
  worker without reading the data again;
* when a chunk lands on a process without the live hasher, it is appended unhashed and
  the state forgets the digest; the final ``PUT`` then re-hashes the stored data once.
  Data is hashed at most twice, and only in that case.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import time
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from registry import errors
from registry.errors import RegistryError
from registry.reference import Digest, is_valid_name
from registry.store import layout
from registry.store.blobs import BlobInfo, BlobStore
from registry.store.changes import BlobPushed, Changes
from registry.store.claims import BlobBusyError, Claims
from storage_backends import Driver, FileWriter, PathNotFoundError

UPLOAD_ID_RE = re.compile(r"^[0-9a-f]{32}$")
BLOCK = 4 * 1024 * 1024  # bytes gathered before one write+hash step
INLINE_MAX = 256 * 1024  # bytes a session keeps in its state file, before a data file
_CACHE_SIZE = 256


class UploadOffsetError(Exception):
    """A chunk does not start where the stored data of its session ends."""

    def __init__(self, upload_id: str, start: int, size: int) -> None:
        super().__init__(f"chunk starts at {start}, but the upload holds {size} bytes")
        self.upload_id = upload_id
        self.start = start
        self.size = size  # what the session holds: the client resumes there


@dataclass
class UploadState:
    upload_id: str
    started_at: float
    offset: int = 0
    sha256: str | None = None  # hex digest of data[:offset], when known
    # The bytes so far while the session has no data file; None once it has one.
    inline: bytes | None = b""

    def dump(self) -> bytes:
        head = json.dumps(
            {
                "started_at": self.started_at,
                "offset": self.offset,
                "sha256": self.sha256,
                "inline": self.inline is not None,
            }
        ).encode()
        # JSON never holds a raw newline: the first one ends it.
        return head if self.inline is None else head + b"\n" + self.inline

    @classmethod
    def load(cls, upload_id: str, raw: bytes) -> UploadState:
        head, _, inline = raw.partition(b"\n")
        d = json.loads(head)
        return cls(
            upload_id,
            float(d["started_at"]),
            int(d["offset"]),
            d.get("sha256"),
            inline if d.get("inline") else None,
        )


class _Hashers:
    """Live hashers of the sessions this process served last, keyed by id and offset."""

    def __init__(self) -> None:
        self._items: OrderedDict[str, tuple[int, Any]] = OrderedDict()

    def take(self, upload_id: str, offset: int) -> Any | None:
        item = self._items.pop(upload_id, None)
        if item is not None and item[0] == offset:
            return item[1]
        return None

    def keep(self, upload_id: str, offset: int, hasher: Any) -> None:
        self._items[upload_id] = (offset, hasher)
        self._items.move_to_end(upload_id)
        while len(self._items) > _CACHE_SIZE:
            self._items.popitem(last=False)

    def drop(self, upload_id: str) -> None:
        self._items.pop(upload_id, None)


async def _ingest(stream: AsyncIterator[bytes], writer: FileWriter, hasher: Any | None) -> int:
    """Copy ``stream`` to ``writer`` in BLOCK-sized steps, hashing as the bytes pass.

    The event loop only collects the received pieces: joining them into a block, and the
    write and the hash of that block, run in threads (all release the GIL) while the
    loop receives the next block. Memory stays at about two blocks."""
    received = 0
    parts: list[bytes] = []
    gathered = 0
    pending: asyncio.Future[Any] | None = None

    async def step(pieces: list[bytes]) -> None:
        block = pieces[0] if len(pieces) == 1 else await asyncio.to_thread(b"".join, pieces)
        if hasher is None:
            await writer.write(block)
        else:
            await asyncio.gather(writer.write(block), asyncio.to_thread(hasher.update, block))

    try:
        async for chunk in stream:
            if not chunk:
                continue
            parts.append(chunk)
            gathered += len(chunk)
            received += len(chunk)
            if gathered >= BLOCK:
                if pending is not None:
                    await pending
                pending = asyncio.ensure_future(step(parts))
                parts = []
                gathered = 0
    finally:
        # Whatever arrived is kept, also when the client went away mid-request: the
        # session's Range then tells the client where to resume.
        if pending is not None:
            await pending
        if parts:
            await step(parts)
    return received


async def _gather(chunks: AsyncIterator[bytes], limit: int, into: list[bytes]) -> bool:
    """Move pieces of ``chunks`` into ``into`` until it holds more than ``limit`` bytes
    (False) or ``chunks`` ends (True)."""
    size = sum(map(len, into))
    while size <= limit:
        chunk = await anext(chunks, None)
        if chunk is None:
            return True
        into.append(chunk)
        size += len(chunk)
    return False


async def _prefixed(parts: list[bytes], rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    for part in parts:
        yield part
    async for chunk in rest:
        yield chunk


def _verify(digest: Digest, hexdigest: str) -> None:
    if hexdigest != digest.hex:
        raise RegistryError(
            errors.DIGEST_INVALID,
            f"upload has digest {digest.algorithm}:{hexdigest}, not {digest}",
            detail={"digest": str(digest)},
        )


def _stored(driver: Driver, digest: Digest, data: bytes) -> Callable[[bool], Awaitable[None]]:
    """Placing verified bytes held in memory: one atomic put, unless already there."""

    async def place(present: bool) -> None:
        if not present:
            await driver.put(layout.blob_data(digest), data)

    return place


class UploadStore:
    def __init__(self, driver: Driver, blobs: BlobStore, claims: Claims, changes: Changes) -> None:
        self._driver = driver
        self.blobs = blobs
        self.claims = claims
        self._changes = changes
        self._hashers = _Hashers()
        self._marked: set[str] = set()  # repositories whose uploading marker is written

    async def create(self, name: str, inline: bool = True) -> UploadState:
        """A new session; ``inline=False``: one whose bytes go to a data file at once."""
        # The marker lets the garbage collector find sessions of repositories that
        # never got a blob (and so are not in the catalog).
        if name not in self._marked:
            await self._driver.put(layout.uploading_marker(name), b"")
            self._marked.add(name)
        state = UploadState(uuid.uuid4().hex, time.time(), inline=b"" if inline else None)
        await self._driver.put(layout.upload_state(name, state.upload_id), state.dump())
        return state

    async def get(self, name: str, upload_id: str) -> UploadState:
        if not UPLOAD_ID_RE.match(upload_id):
            raise RegistryError(errors.BLOB_UPLOAD_UNKNOWN, detail={"uuid": upload_id[:100]})
        try:
            raw = await self._driver.get(layout.upload_state(name, upload_id))
        except PathNotFoundError:
            raise RegistryError(errors.BLOB_UPLOAD_UNKNOWN, detail={"uuid": upload_id}) from None
        return UploadState.load(upload_id, raw)

    async def size(self, name: str, state: UploadState) -> int:
        if state.inline is not None:
            return len(state.inline)
        # Ask a writer: the bytes of an open (closed, uncommitted) driver file need not
        # be visible to stat -- on S3 they are an unfinished multipart upload.
        writer = await self._driver.writer(layout.upload_data(name, state.upload_id), append=True)
        try:
            return writer.size
        finally:
            await writer.close()

    async def append(
        self,
        name: str,
        state: UploadState,
        stream: AsyncIterator[bytes],
        start: int | None = None,
    ) -> int:
        """Append a chunk; ``start`` (from Content-Range) must be the current size, or
        UploadOffsetError."""
        if state.inline is not None:
            return await self._append_inline(name, state, stream, start)
        return await self._append_file(name, state, stream, start)

    async def _append_file(
        self,
        name: str,
        state: UploadState,
        stream: AsyncIterator[bytes],
        start: int | None = None,
        fresh: bool = False,
    ) -> int:
        """Append to the session's data file; ``fresh``: start it anew."""
        data = layout.upload_data(name, state.upload_id)
        writer = await self._driver.writer(data, append=not fresh)
        try:
            size = writer.size
            if start is not None and start != size:
                raise UploadOffsetError(state.upload_id, start, size)
            hasher = self._hashers.take(state.upload_id, size)
            if hasher is None and size == 0:
                hasher = hashlib.sha256()
            try:
                await _ingest(stream, writer, hasher)
            finally:
                await writer.close()
                state.offset = writer.size
                if hasher is not None:
                    self._hashers.keep(state.upload_id, state.offset, hasher)
                    state.sha256 = hasher.copy().hexdigest()
                else:
                    state.sha256 = None
                await self._driver.put(layout.upload_state(name, state.upload_id), state.dump())
        except BaseException:
            await writer.close()
            raise
        return state.offset

    async def _append_inline(
        self, name: str, state: UploadState, stream: AsyncIterator[bytes], start: int | None
    ) -> int:
        held = state.inline or b""
        if start is not None and start != len(held):
            raise UploadOffsetError(state.upload_id, start, len(held))
        chunks = aiter(stream)
        parts = [held]
        try:
            ended = await _gather(chunks, INLINE_MAX, parts)
        except BaseException:
            # Keep what arrived, as a data file would: the session's Range then tells
            # the client where to resume.
            if len(parts) > 1:
                await self._save_inline(name, state, b"".join(parts))
            raise
        if ended:
            await self._save_inline(name, state, b"".join(parts))
            return state.offset
        # Too much to hold: from now on the bytes are in a data file, begun afresh (one
        # a crashed request left is never continued); the state says so when written.
        state.inline = None
        return await self._append_file(name, state, _prefixed(parts, chunks), fresh=True)

    async def _save_inline(self, name: str, state: UploadState, data: bytes) -> None:
        state.inline, state.offset = data, len(data)
        state.sha256 = hashlib.sha256(data).hexdigest()
        await self._driver.put(layout.upload_state(name, state.upload_id), state.dump())

    async def push(self, name: str, digest: Digest, stream: AsyncIterator[bytes]) -> BlobInfo:
        """A whole blob in one request (POST ?digest=). One that fits in INLINE_MAX is
        verified in memory and stored at its address, with no session; a larger one
        goes through a session that does not outlive the request."""
        chunks = aiter(stream)
        parts: list[bytes] = []
        if await _gather(chunks, INLINE_MAX, parts):
            data = b"".join(parts)
            _verify(digest, hashlib.new(digest.algorithm, data).hexdigest())
            return await self._place(name, digest, len(data), _stored(self._driver, digest, data))
        state = await self.create(name, inline=False)
        try:
            await self._append_file(name, state, _prefixed(parts, chunks), fresh=True)
            return await self.commit(name, state, digest)
        except BaseException:
            await self.cancel(name, state.upload_id)
            raise

    async def commit(self, name: str, state: UploadState, digest: Digest) -> BlobInfo:
        """Verify the whole upload against ``digest`` and make it visible in ``name``.
        Raises BlobBusyError when the collector keeps deleting the digest: retry later."""
        if state.inline is not None:
            return await self._commit_inline(name, state, state.inline, digest)
        data = layout.upload_data(name, state.upload_id)
        # Committing makes the bytes a readable file (S3: completes the multipart upload;
        # an upload that never received a byte becomes an empty file).
        writer = await self._driver.writer(data, append=True)
        size = writer.size
        await writer.commit()
        hexdigest: str | None = None
        if digest.algorithm == "sha256":
            hasher = self._hashers.take(state.upload_id, size)
            if hasher is not None:
                hexdigest = hasher.hexdigest()
            elif state.offset == size and state.sha256 is not None:
                hexdigest = state.sha256
            elif size == 0:
                hexdigest = hashlib.sha256().hexdigest()
        if hexdigest is None:
            hexdigest = await self.blobs.compute_digest(data, digest.algorithm)
        try:
            _verify(digest, hexdigest)
        except RegistryError:
            await self.cancel(name, state.upload_id)
            raise

        async def place(present: bool) -> None:
            if present:
                await self._driver.delete(data)
            else:
                await self._driver.move(data, layout.blob_data(digest))

        return await self._place(name, digest, size, place, state.upload_id)

    async def _commit_inline(
        self, name: str, state: UploadState, held: bytes, digest: Digest
    ) -> BlobInfo:
        try:
            _verify(digest, hashlib.new(digest.algorithm, held).hexdigest())
        except RegistryError:
            await self.cancel(name, state.upload_id)
            raise
        place = _stored(self._driver, digest, held)
        return await self._place(name, digest, len(held), place, state.upload_id)

    async def _place(
        self,
        name: str,
        digest: Digest,
        size: int,
        place: Callable[[bool], Awaitable[None]],
        session: str | None = None,
    ) -> BlobInfo:
        """Store verified data at its address (``place(present)``, told whether it is
        there already), link it into ``name`` and end the ``session``.

        Claimed before the data and link are placed (the garbage collector then spares
        the blob or has finished with it), and again if placing them outlasted the
        reference budget: a 201 means a recent claim, which the collector honours for
        its grace period."""
        claimed_at = self.claims.start()
        present = digest in await self.claims.claim([digest])
        try:
            await self._changes.before(BlobPushed(name, digest, size))
        except BaseException:
            if session is not None:
                await self.cancel(name, session)
            raise
        await place(present)
        await self.blobs.link(name, digest)
        if session is not None:
            await self._driver.delete(layout.upload_dir(name, session))
            self._hashers.drop(session)
        try:
            confirmed = await self.claims.confirm(digest, claimed_at)
        except BlobBusyError:
            confirmed = False
        if not confirmed:
            raise RegistryError(
                errors.UNAVAILABLE,
                f"{digest} was garbage-collected while it was stored; upload it again",
            )
        return BlobInfo(digest, size)

    async def cancel(self, name: str, upload_id: str) -> None:
        self._hashers.drop(upload_id)
        await self._driver.delete(layout.upload_dir(name, upload_id))

    async def list_ids(self, name: str) -> list[str]:
        return [i for i in await self._driver.list(layout.uploads(name)) if UPLOAD_ID_RE.match(i)]

    async def repositories(self) -> list[str]:
        """Every repository that has had upload sessions, also those never in the
        catalog (a push that stopped before its first blob)."""
        markers = await self._driver.list(layout.UPLOADING, recursive=True)
        names = [layout.catalog_name(m) for m in markers if m.endswith(layout.CATALOG_SUFFIX)]
        return [n for n in names if is_valid_name(n)]

    async def expired_ids(self, name: str, older_than: float) -> list[str]:
        """The sessions of ``name`` not touched since ``older_than`` (storage time)."""
        expired = []
        for upload_id in await self.list_ids(name):
            try:
                info = await self._driver.stat(layout.upload_state(name, upload_id))
                modified = info.modified
            except PathNotFoundError:
                modified = 0.0
            if modified < older_than:
                expired.append(upload_id)
        return expired

    async def purge_expired(self, name: str, older_than: float) -> int:
        """Remove the sessions of ``name`` not touched since ``older_than``; returns how many.
        On S3 the driver's delete also aborts the sessions' multipart uploads."""
        expired = await self.expired_ids(name, older_than)
        for upload_id in expired:
            await self.cancel(name, upload_id)
        return len(expired)
