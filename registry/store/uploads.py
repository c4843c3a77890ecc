"""Upload sessions, kept in storage so any worker process or replica can continue them.

A session is ``_uploads/<id>/state``: a JSON head (when it started; whether the session
still holds its bytes inline) followed, while it holds at most ``INLINE_MAX`` bytes, by
those bytes. A small blob -- most configs and many layers -- so costs one small write per
request and is stored at its address when it is committed, with no data file to write,
move and delete; the commit then deletes the state file alone (on S3 nine requests
instead of twenty-two for docker's POST, PATCH, PUT). A whole blob small enough to hold,
pushed in one request (``push``), needs no session at all.

A session that outgrows ``INLINE_MAX`` rewrites its state once (no longer inline) and
then keeps ``_uploads/<id>/data`` (the bytes so far, an appendable driver file) and,
after every request that added bytes, ``_uploads/<id>/sha256-<offset>``: the SHA-256 of
the first <offset> bytes, or nothing when it is not known. Progress goes to a new file
each time rather than rewriting the state: replacing a file that exists costs a flush of
the new one on ext4 (auto_da_alloc), milliseconds on a busy disk, on every PATCH. The
newest of these files says when the session was last active (expiry). The state is
rewritten before the data file is begun, so a data file is only ever appended to and
every progress file names a prefix of it.

The running digest of a data file: hashlib cannot serialise a hash's internal state, so

* while a session's chunks keep arriving at one process, that process keeps the live
  hasher in a small LRU cache and continues it;
* after every request the hex digest of the bytes so far is written, so the common
  ``PATCH`` (whole body) then ``PUT ?digest=`` (empty) finishes on any worker without
  reading the data again;
* when a chunk lands on a process without the live hasher, it is appended unhashed and
  its progress file is empty; the final ``PUT`` then re-hashes the stored data once.
  Data is hashed at most twice, and only in that case.

A stream that verifies itself (``append(..., verified=digest)``: the remote client's
``BlobStream``, which raises before its last piece unless the bytes it yielded have
that digest) is not hashed again: once it has ended and its bytes are written, the
session holds content of that digest, and the commit against it needs no hash. The
pull-through cache stores what it fetches so, hashing each byte once.
"""

from __future__ import annotations

import asyncio
import contextlib
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
from storage_backends import (
    Driver,
    ExpectingWriter,
    FileWriter,
    Folders,
    GatheringWriter,
    PathNotFoundError,
)

UPLOAD_ID_RE = re.compile(r"^[0-9a-f]{32}$")
BLOCK = 2 * 1024 * 1024  # most bytes gathered for one write+hash step
EAGER = 1024 * 1024  # a step begins with this much once the previous one has finished
INLINE_HASH = 64 * 1024  # a step this small is hashed on the event loop
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
    # What the session held when its state was written: its bytes while inline; for a
    # data-file session the data file says (``UploadStore.size``). ``sha256`` is the
    # digest of data[:offset] as sessions of earlier versions kept it.
    offset: int = 0
    sha256: str | None = None
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


class _Verified:
    """Stands in for the hasher of a session whose stream verified itself: its digest."""

    def __init__(self, hexdigest: str) -> None:
        self._hexdigest = hexdigest

    def hexdigest(self) -> str:
        return self._hexdigest


class _RunningHash:
    """An upload's hasher, counting what it took: the hasher is kept for the session's
    next chunk only when it took exactly the bytes the file gained (a failed or cut-off
    write must not leave a hash of bytes the file lacks, which could verify content
    that is not stored)."""

    def __init__(self, hasher: Any) -> None:
        self.hasher = hasher
        self.hashed = 0
        self.last: asyncio.Future[None] | None = None  # the latest update (in a thread)

    def update(self, pieces: list[bytes]) -> None:
        for piece in pieces:
            self.hasher.update(piece)
            self.hashed += len(piece)

    @property
    def settled(self) -> bool:
        return self.last is None or self.last.done()


async def _write_pieces(writer: FileWriter, pieces: list[bytes]) -> None:
    if isinstance(writer, GatheringWriter):
        await writer.write_pieces(pieces)  # one writev: no join
    else:
        block = pieces[0] if len(pieces) == 1 else await asyncio.to_thread(b"".join, pieces)
        await writer.write(block)


async def _ingest(
    stream: AsyncIterator[bytes], writer: FileWriter, hasher: _RunningHash | None
) -> int:
    """Copy ``stream`` to ``writer`` in steps of EAGER to BLOCK bytes, hashing as the
    bytes pass.

    The event loop only collects the pieces the server received; the write of a step
    and its hash run in two threads (both release the GIL) while the loop collects the
    next one. The first step begins with the first piece, each later one as soon as
    the previous one has finished and EAGER bytes are there: the threads do not idle
    while a request's first BLOCK arrives, and whenever the disk keeps up little is
    left to do when the body ends. Memory per upload: about two blocks, and what the
    server lets wait unread (registry/server.py, BODY_HIGH_WATER)."""
    loop = asyncio.get_running_loop()
    received = 0
    parts: list[bytes] = []
    gathered = 0
    pending: asyncio.Future[Any] | None = None
    eager = 1  # the first step begins with the first piece: the threads idle till then

    async def step(pieces: list[bytes], size: int) -> None:
        if hasher is None:
            await _write_pieces(writer, pieces)
        elif size <= INLINE_HASH:
            hasher.update(pieces)  # microseconds: less than a hop to a thread and back
            await _write_pieces(writer, pieces)
        else:
            hasher.last = loop.run_in_executor(None, hasher.update, pieces)
            await asyncio.gather(_write_pieces(writer, pieces), hasher.last)

    try:
        async for chunk in stream:
            if not chunk:
                continue
            parts.append(chunk)
            gathered += len(chunk)
            received += len(chunk)
            if pending is not None and pending.done():
                await pending  # at once; raises what the step raised
                pending = None
            if gathered >= BLOCK or (pending is None and gathered >= eager):
                if pending is not None:
                    await pending
                pending = asyncio.ensure_future(step(parts, gathered))
                eager = EAGER
                parts = []
                gathered = 0
    finally:
        # Whatever arrived is kept, also when the client went away mid-request: the
        # session's Range then tells the client where to resume.
        if pending is not None:
            await pending
        if parts:
            await step(parts, gathered)
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
        *,
        verified: Digest | None = None,
        length: int | None = None,
    ) -> int:
        """Append a chunk; ``start`` (from Content-Range) must be the current size, or
        UploadOffsetError. ``verified``: ``stream`` is a whole blob that verifies itself
        against this digest (it raises before its last piece otherwise), appended to an
        empty session -- its bytes are not hashed again. ``length``: how many bytes
        ``stream`` brings, if the request said (Content-Length)."""
        if state.inline is not None:
            return await self._append_inline(name, state, stream, start, verified, length)
        return await self._append_file(name, state, stream, start, verified=verified, length=length)

    async def _append_file(
        self,
        name: str,
        state: UploadState,
        stream: AsyncIterator[bytes],
        start: int | None = None,
        fresh: bool = False,
        verified: Digest | None = None,
        length: int | None = None,
    ) -> int:
        """Append to the session's data file; ``fresh``: begin it."""
        writer = await self._driver.writer(
            layout.upload_data(name, state.upload_id), append=not fresh
        )
        try:
            size = writer.size
            if start is not None and start != size:
                raise UploadOffsetError(state.upload_id, start, size)
            hasher = self._hashers.take(state.upload_id, size)
            if isinstance(hasher, _Verified):
                hasher = None  # more bytes after a verified blob: of unknown digest
            if hasher is None and size == 0:
                hasher = hashlib.sha256()
            # Only a whole blob from the start, of the digest the session keeps.
            known = None
            if verified is not None and verified.algorithm == "sha256" and size == 0:
                known = verified.hex
            running = None if hasher is None or known else _RunningHash(hasher)
            if length is not None and isinstance(writer, ExpectingWriter):
                writer.expect(length)
            ended = False
            try:
                await _ingest(stream, writer, running)
                ended = True
            finally:
                await writer.close()
                gained = writer.size - size
                state.offset = writer.size
                if gained:
                    state.sha256 = None  # a digest kept by an earlier version: of less
                hexdigest = ""
                if known and ended:
                    hexdigest = known
                    self._hashers.keep(state.upload_id, writer.size, _Verified(known))
                elif running is not None and running.settled and running.hashed == gained:
                    self._hashers.keep(state.upload_id, writer.size, running.hasher)
                    hexdigest = running.hasher.copy().hexdigest()
                else:
                    self._hashers.drop(state.upload_id)
                if gained:
                    progress = layout.upload_progress(name, state.upload_id, writer.size)
                    await self._driver.put(progress, hexdigest.encode())
        except BaseException:
            await writer.close()
            raise
        return writer.size

    async def _append_inline(
        self,
        name: str,
        state: UploadState,
        stream: AsyncIterator[bytes],
        start: int | None,
        verified: Digest | None = None,
        length: int | None = None,
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
        # Too much to hold: from now on the bytes are in a data file. The state says so
        # first (a crash before the data file has them leaves a session that holds
        # less, and says so), then the file is begun with what was held.
        state.inline, state.offset, state.sha256 = None, 0, None
        await self._driver.put(layout.upload_state(name, state.upload_id), state.dump())
        whole = verified if not held else None  # the stream is all the session holds
        coming = None if length is None else len(held) + length
        return await self._append_file(
            name, state, _prefixed(parts, chunks), fresh=True, verified=whole, length=coming
        )

    async def _save_inline(self, name: str, state: UploadState, data: bytes) -> None:
        state.inline, state.offset = data, len(data)
        state.sha256 = hashlib.sha256(data).hexdigest()
        await self._driver.put(layout.upload_state(name, state.upload_id), state.dump())

    async def push(
        self,
        name: str,
        digest: Digest,
        stream: AsyncIterator[bytes],
        length: int | None = None,
    ) -> BlobInfo:
        """A whole blob in one request (POST ?digest=), of ``length`` bytes if the request
        said. One that fits in INLINE_MAX is verified in memory and stored at its
        address, with no session; a larger one goes through a session that does not
        outlive the request."""
        chunks = aiter(stream)
        parts: list[bytes] = []
        if await _gather(chunks, INLINE_MAX, parts):
            data = b"".join(parts)
            _verify(digest, hashlib.new(digest.algorithm, data).hexdigest())
            return await self._place(name, digest, len(data), _stored(self._driver, digest, data))
        state = await self.create(name, inline=False)
        try:
            await self._append_file(
                name, state, _prefixed(parts, chunks), fresh=True, length=length
            )
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
            elif size == 0:
                hexdigest = hashlib.sha256().hexdigest()
            elif state.offset == size and state.sha256 is not None:
                hexdigest = state.sha256
            else:
                hexdigest = await self._progress(name, state.upload_id, size)
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
        return await self._place(name, digest, len(held), place, state.upload_id, inline=True)

    async def _place(
        self,
        name: str,
        digest: Digest,
        size: int,
        place: Callable[[bool], Awaitable[None]],
        session: str | None = None,
        *,
        inline: bool = False,
    ) -> BlobInfo:
        """Store verified data at its address (``place(present)``, told whether it is
        there already), link it into ``name`` and end the ``session``.

        Claimed before the data and link are placed (the garbage collector then spares
        the blob or has finished with it), and again if placing them outlasted the
        reference budget: a 201 means a recent claim, which the collector honours for
        its grace period. ``inline``: the session holds its bytes in its state."""
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
            await self._end(name, session, inline)
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

    async def _end(self, name: str, upload_id: str, inline: bool) -> None:
        """Remove a committed session. One that holds its bytes inline is its state file
        alone: that file goes (on S3 one request, where removing everything below the
        session's prefix costs a listing, a delete and a look for multipart uploads),
        then its folder where folders stay (the filesystem). Anything else a misbehaving
        client left there (a data file of a concurrent request) stays until the session
        expires (``purge_expired``)."""
        self._hashers.drop(upload_id)
        if not inline:
            await self._driver.delete(layout.upload_dir(name, upload_id))
            return
        await self._driver.delete_many([layout.upload_state(name, upload_id)])
        if isinstance(self._driver, Folders):
            await self._driver.remove_folder(layout.upload_dir(name, upload_id))

    async def _progress(self, name: str, upload_id: str, offset: int) -> str | None:
        """The hex SHA-256 of the session's first ``offset`` bytes, if a request wrote it."""
        try:
            raw = await self._driver.get(layout.upload_progress(name, upload_id, offset))
        except PathNotFoundError:
            return None
        return raw.decode() if re.fullmatch(rb"[0-9a-f]{64}", raw) else None

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
        """The sessions of ``name`` not touched since ``older_than`` (storage time): their
        state and their newest progress file are older."""
        expired = []
        for upload_id in await self.list_ids(name):
            if await self._last_active(name, upload_id) < older_than:
                expired.append(upload_id)
        return expired

    async def _last_active(self, name: str, upload_id: str) -> float:
        try:
            active = (await self._driver.stat(layout.upload_state(name, upload_id))).modified
        except PathNotFoundError:
            active = 0.0
        offsets = [
            int(f[len(layout.UPLOAD_PROGRESS) :])
            for f in await self._driver.list(layout.upload_dir(name, upload_id))
            if f.startswith(layout.UPLOAD_PROGRESS) and f[len(layout.UPLOAD_PROGRESS) :].isdigit()
        ]
        if offsets:
            newest = layout.upload_progress(name, upload_id, max(offsets))
            with contextlib.suppress(PathNotFoundError):
                active = max(active, (await self._driver.stat(newest)).modified)
        return active

    async def purge_expired(self, name: str, older_than: float) -> int:
        """Remove the sessions of ``name`` not touched since ``older_than``; returns how many.
        On S3 the driver's delete also aborts the sessions' multipart uploads."""
        expired = await self.expired_ids(name, older_than)
        for upload_id in expired:
            await self.cancel(name, upload_id)
        return len(expired)
