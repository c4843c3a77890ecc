"""The S3 driver: the Driver protocol on boto3, for AWS S3 and compatible servers.

boto3 blocks, so every call runs in one bounded thread pool per driver (as many threads
as HTTP connections), never on the event loop. Appendable writers are S3 multipart
uploads whose state -- upload id, parts, and the tail smaller than a part -- is saved
in one sidecar object next to the key on ``close`` (one request to save, one to
resume), so that a writer closed in one process can be continued in another. The
sidecar suffixes contain ``@``, a character the path check (``storage_backends.checked``)
refuses, so they can never collide with a real file (``.upload`` could: tags such as
``v1.upload`` are files). As the protocol says, written data becomes a readable,
listable, movable object only on ``commit``.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import email.utils
import itertools
import json
import logging
import math
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar, cast
from urllib.parse import unquote_plus, urlsplit
from xml.etree import ElementTree

import boto3
import botocore.session
import botocore.utils
from botocore.config import Config as BotoConfig
from botocore.exceptions import BotoCoreError, ClientError

from storage_backends import malloc, socket_get, socket_put
from storage_backends.base import DirectRead, FileInfo, PathNotFoundError, StorageError
from storage_backends.s3_data import S3DataLoader

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

T = TypeVar("T")
log = logging.getLogger(__name__)

MiB = 1 << 20
GiB = 1 << 30
# A pull holds about two of these (one being read, one the socket has not taken yet),
# and a read copies its chunk once more for a moment (http.client): small enough that
# many pulls in flight cost little (32 pulls of 16 MiB: 197 MiB over all processes
# against 226 with 512 KiB), large enough that the thread hop per read stays cheap
# (server CPU per GiB pulled: about 10% more than with 512 KiB).
READ_CHUNK = 256 * 1024
# Reads this large go by the GET's own socket to the client (open_direct); smaller ones
# cost a connection more than they save.
DIRECT_MIN = 256 * 1024
DIRECT_URL_EXPIRY = 300  # s: the presigned GET is sent at once
DIRECT_HEAD_TIMEOUT = 60.0  # s: botocore's read timeout
MIN_PART = 5 * MiB  # S3's smallest part, except for the last one
MAX_PART = 5 * GiB  # S3's largest part, and the largest single CopyObject
MAX_PARTS = 10_000
# What a store that does not take a presigned UploadPart answers (a signature it does
# not check that way, a method it does not allow there).
_NO_PRESIGNED_PUTS = frozenset({400, 403, 405, 501})
# Part sizes double every this many parts, so that 10,000 parts hold terabytes.
PARTS_PER_DOUBLING = 1000
COPY_PART = 512 * MiB
DELETE_BATCH = 1000  # DeleteObjects takes at most 1000 keys
LIST_PAGE = 1000

STATE_SUFFIX = "@upload"
TAIL_SUFFIX = "@tail"  # the tail of a version 1 state, which kept it apart
_SIDECARS = (STATE_SUFFIX, TAIL_SUFFIX)
_MISSING = frozenset({"NoSuchKey", "404", "NotFound"})
_NO_UPLOAD = frozenset({"NoSuchUpload", "NoSuchKey", "404"})  # RGW says NoSuchKey
# Keys DeleteObjects could not delete are tried again, unless the store refused them:
# RGW answers UnknownError for a key another request is writing at that moment.
_REFUSED = frozenset({"AccessDenied", "AllAccessDisabled", "InvalidObjectState"})
DELETE_RETRY_DELAYS = (0.05, 0.2, 0.5)
# Characters allowed in path components that sort below '/': a directory "a" lists
# after a sibling "a-b" in S3's key order ("a-b" < "a/") but before it by name.
_BELOW_SLASH = frozenset("!+-.")


# The malloc arenas a process keeps (bound_malloc).
_ARENA_MAX = 2


# Bytes moved by transfers since memory was last given back (below: a small blob's
# transfers do not make the process trim).
RELEASE_AFTER = 8 * MiB


class _Releaser:
    """Gives memory freed by transfers back to the system once none is in flight.

    glibc keeps freed part and chunk buffers in its heaps for reuse, so a worker stays
    at the size of its busiest moment: a burst of pulls or a push of large parts leaves
    tens of MiB resident that nothing uses. ``malloc_trim`` returns the free pages
    (about a millisecond); it runs when the last read ends or a writer finishes, after
    at least RELEASE_AFTER bytes moved. Process-wide, like the heaps; event loop only."""

    def __init__(self) -> None:
        self.reading = 0
        self._moved = 0

    def done(self, moved: int) -> None:
        self._moved += moved
        if self.reading == 0 and self._moved >= RELEASE_AFTER:
            self._moved = 0
            malloc.trim()


_release = _Releaser()


def bound_malloc() -> None:
    """Keep the process's freed buffers from piling up (glibc; elsewhere a no-op).

    The driver runs boto3 in up to ``max_pool_connections`` threads, and glibc gives
    each thread an arena of its own (up to eight per core) which keeps what was freed in
    it for that thread's next allocation: every arena ends up holding its own set of
    part-sized and chunk-sized holes (measured: 440 MiB per worker after pushes and
    pulls on S3). Two arenas bound a worker to about what its transfers in flight hold.
    (A fixed mmap threshold would return freed parts at once too, but faulting a new
    part's pages in cost pushes 60% more CPU.) Process-wide, idempotent."""
    malloc.set_option(malloc.M_ARENA_MAX, _ARENA_MAX)


def direct_reads_possible(endpoint_url: str | None) -> bool:
    """A GET's socket can carry the body to the client (socket_get): the endpoint speaks
    plain HTTP, and botocore would reach it without a proxy (HTTP_PROXY, NO_PROXY)."""
    parts = urlsplit(endpoint_url or "")
    if parts.scheme != "http":
        return False
    host = parts.hostname or ""
    return "http" not in urllib.request.getproxies() or bool(urllib.request.proxy_bypass(host))


def parse_timestamp(value: str) -> datetime:
    """A time as S3 writes it: ISO 8601 in XML bodies (``2026-12-05T08:00:00.000Z``),
    an HTTP date in headers (``Sat, 05 Dec 2026 08:00:00 GMT``). botocore's default
    parser (dateutil) spent two thirds of a 50-key listing's CPU on them; anything
    else still goes to it."""
    try:
        if value.endswith("Z"):
            return datetime.fromisoformat(value)
        if value.endswith("GMT"):
            return email.utils.parsedate_to_datetime(value)
    except (ValueError, TypeError):
        pass
    parsed: datetime = botocore.utils.parse_timestamp(value)
    return parsed


# The members of a ListObjectsV2 answer kept, as botocore's model names them (it drops
# any other element, such as RGW's <Type>); those listed under _LIST_DECODED are keys.
_LIST_MEMBERS = frozenset(
    {"Name", "Prefix", "Delimiter", "MaxKeys", "IsTruncated", "ContinuationToken"}
    | {"NextContinuationToken", "KeyCount", "StartAfter", "Contents", "CommonPrefixes"}
    | {"Key", "LastModified", "ETag", "Size", "StorageClass"}
)
_LIST_DECODED = frozenset({"Key", "Prefix", "Delimiter", "StartAfter"})
_LIST_INTS = frozenset({"KeyCount", "MaxKeys", "Size"})


def _list_fields(node: ElementTree.Element, url_encoded: bool) -> dict[str, Any]:
    """One element of a ListObjectsV2 answer as botocore's parser gives it: ints,
    timestamps, booleans, and keys url-decoded as its after-call handler does."""
    out: dict[str, Any] = {}
    for child in node:
        name = child.tag.rpartition("}")[2]
        if name not in _LIST_MEMBERS:
            continue
        text = child.text or ""
        if name in ("Contents", "CommonPrefixes"):
            out.setdefault(name, []).append(_list_fields(child, url_encoded))
        elif name in _LIST_INTS:
            out[name] = int(text)
        elif name == "LastModified":
            out[name] = parse_timestamp(text)
        elif name == "IsTruncated":
            out[name] = text == "true"
        elif name in _LIST_DECODED and url_encoded:
            out[name] = unquote_plus(text)
        else:
            out[name] = text
    return out


def parse_listing(
    response_dict: dict[str, Any], customized_response_dict: dict[str, Any], **_: Any
) -> None:
    """botocore's ``before-parse`` hook for ListObjectsV2: the answer read in one pass of
    ElementTree instead of botocore's shape-driven parser, which spent 60% of a 50-key
    listing's CPU on it (and the url-decoding pass after it). The body is left empty for
    botocore's parser; what this gives replaces its result. Errors go botocore's way."""
    if response_dict.get("status_code") != 200 or not response_dict.get("body"):
        return
    # The configured endpoint's answer, which botocore parses with this same parser.
    root = ElementTree.fromstring(response_dict["body"])  # noqa: S314
    encoding = root.find("{*}EncodingType")
    url_encoded = encoding is not None and encoding.text == "url"
    customized_response_dict.update(_list_fields(root, url_encoded))
    response_dict["body"] = b""


def _code(e: ClientError) -> str:
    return str(e.response.get("Error", {}).get("Code", ""))


def _not_implemented(e: StorageError) -> bool:
    return isinstance(e.__cause__, ClientError) and _code(e.__cause__) == "NotImplemented"


def _bytes(buffer: bytearray) -> bytes:
    """A request body as it is: botocore sends a bytearray without copying it (its
    stubs say bytes only)."""
    return cast(bytes, buffer)


def _is_sidecar(key: str) -> bool:
    return key.endswith(_SIDECARS)


def part_threshold(part_size: int, part_number: int) -> int:
    """Size of part ``part_number`` (1-based): ``part_size`` doubling every 1000 parts."""
    base = max(part_size, MIN_PART)
    return min(base << ((part_number - 1) // PARTS_PER_DOUBLING), MAX_PART)


def copy_ranges(size: int, part_size: int) -> Iterator[tuple[int, int]]:
    """Inclusive byte ranges of (almost) equal size: each within S3's part limits when
    ``size >= MIN_PART``, so that all of them may precede further parts."""
    count = math.ceil(size / min(max(part_size, MIN_PART), MAX_PART))
    count = max(1, min(count, size // MIN_PART, MAX_PARTS))
    bounds = [i * size // count for i in range(count + 1)]
    for first, end in itertools.pairwise(bounds):
        yield first, end - 1


@dataclass
class _Part:
    number: int
    etag: str
    size: int


@dataclass(eq=False)
class _StreamedPart:
    """A part being sent as its bytes arrive: the bytes the writer held when it began
    (sent first), and how many of the request's bytes followed them."""

    put: socket_put.Put
    number: int
    size: int
    held: bytearray

    @property
    def streamed(self) -> int:
        """The request's bytes sent in it so far (none while the held ones go first)."""
        return max(0, self.size - len(self.held) - self.put.remaining)


@dataclass
class _UploadState:
    """What ``<key>@upload`` holds: the multipart upload, then a newline and the tail.

    ``tail_size`` and ``tail_etag`` describe a tail kept apart in ``<key>@tail``, as
    version 1 of the format did; a state of this version has its tail inline, and they
    are 0 and None."""

    upload_id: str | None
    parts: list[_Part]
    tail_size: int = 0
    tail_etag: str | None = None

    def dumps(self, tail: bytearray) -> bytearray:
        """The sidecar's bytes: ``tail`` itself, with the state put in front of it."""
        head = json.dumps(
            {
                "version": 2,
                "upload_id": self.upload_id,
                "parts": [[p.number, p.etag, p.size] for p in self.parts],
                "tail_size": len(tail),
            }
        ).encode()
        tail[:0] = head + b"\n"  # JSON holds no raw newline: the first one ends it
        return tail

    @classmethod
    def loads(cls, raw: bytes) -> tuple[_UploadState, bytes]:
        """The state and its inline tail (empty for a version 1 state)."""
        head, _, tail = raw.partition(b"\n")
        d = json.loads(head)
        parts = [_Part(int(n), str(e), int(s)) for n, e, s in d["parts"]]
        if int(d["version"]) == 1:
            return cls(d["upload_id"], parts, int(d["tail_size"]), d["tail_etag"]), b""
        if len(tail) != int(d["tail_size"]):
            raise ValueError(f"a tail of {len(tail)} bytes where the state says {d['tail_size']}")
        return cls(d["upload_id"], parts), tail


class S3Writer:
    """An appendable multipart upload; memory holds at most about one part, and none
    while the request in progress said how many bytes it brings (``expect``)."""

    def __init__(
        self,
        driver: S3Driver,
        path: str,
        state: _UploadState | None = None,
        data: bytes = b"",
        saved: bool = False,
    ) -> None:
        """Continue ``state`` (``saved``: as read from ``<key>@upload``); ``data`` starts
        the buffer."""
        self._driver = driver
        self._path = path
        self._key = driver._key(path)
        self._has_sidecars = saved
        state = state or _UploadState(None, [])
        self._upload_id = state.upload_id
        self._parts = state.parts
        # A version 1 tail, fetched when it is needed.
        self._tail_size = state.tail_size
        self._tail_etag = state.tail_etag
        # The bytes held are _buf[:_fill]; the rest is room for the part being gathered,
        # made once and reused part after part: a buffer grown piece by piece is
        # reallocated as it grows, and glibc then holds old and new at once (measured:
        # a second 256 MiB push took the process 30 MiB above its start instead of 18).
        self._buf = bytearray(data)
        self._fill = len(data)
        self._size = sum(p.size for p in self._parts) + self._tail_size + len(data)
        # Whether this writer holds something the sidecars lack; if not, close() has
        # nothing to save.
        self._dirty = state.upload_id is not None and not saved
        self._closed = False
        # Bytes the request in progress still brings (``expect``), and the part they
        # are being sent in.
        self._coming = 0
        self._streaming: _StreamedPart | None = None

    @property
    def size(self) -> int:
        return self._size

    async def _load_tail(self) -> None:
        if not self._tail_size:
            return
        got = await self._driver._get_optional(self._key + TAIL_SUFFIX, if_match=self._tail_etag)
        if got is None or len(got) != self._tail_size:
            raise StorageError(f"{self._path}: the upload's saved tail does not match its state")
        self._buf[:0] = got
        self._fill += len(got)
        self._tail_size = 0

    def _threshold(self) -> int:
        return part_threshold(self._driver._part_size, len(self._parts) + 1)

    def _check_open(self) -> None:
        if self._closed:
            raise StorageError(f"writer for {self._path} is closed")

    async def write(self, data: bytes) -> None:
        await self.write_pieces((data,))

    def expect(self, length: int) -> None:
        """``length`` more bytes come in the request in progress (its Content-Length):
        parts of them go to the store as they arrive, none gathered in memory
        (storage_backends.ExpectingWriter). On a plain-HTTP endpoint without a proxy,
        as direct reads; elsewhere each part is gathered first, as without the hint."""
        self._coming = length if self._driver._stream_parts else 0

    async def write_pieces(self, pieces: Sequence[bytes]) -> None:
        """Each piece copied into the part being gathered as it is: what a push gathered
        is not joined first (storage_backends.GatheringWriter). Or sent on into the
        part being streamed (``expect``)."""
        self._check_open()
        if not any(pieces):
            return
        await self._load_tail()
        self._dirty = True
        for piece in pieces:
            view = memoryview(piece)
            while view:
                if self._streaming is None and (size := self._streamed_size()):
                    await self._begin_streamed_part(size)
                part = self._streaming
                if part is not None:
                    n = min(part.put.remaining, len(view))
                    await self._stream(part, view[:n])
                else:
                    n = self._gather(view)
                    if self._fill >= self._threshold():
                        await self._send_part()
                self._coming = max(0, self._coming - n)
                view = view[n:]

    def _gather(self, view: memoryview) -> int:
        """Copy what fits of ``view`` into the part being gathered; how much did."""
        # Room for a whole part, or for what the request said it brings if that is
        # less; made at once, held bytes first.
        threshold = self._threshold()
        room = threshold if not self._coming else min(threshold, self._fill + self._coming)
        if len(self._buf) < room:
            grown = bytearray(room)
            grown[: self._fill] = memoryview(self._buf)[: self._fill]
            self._buf = grown
        n = min(room - self._fill, len(view))
        self._buf[self._fill : self._fill + n] = view[:n]
        self._fill += n
        self._size += n
        return n

    def _streamed_size(self) -> int:
        """The size of a part to stream now, 0 if none: the bytes held and those still
        coming, a part's worth at most, but all of them when the rest would be smaller
        than a part may be (S3: 5 MiB, except the last). Fewer than that: gathered."""
        total = self._fill + self._coming
        threshold = self._threshold()
        if self._coming == 0 or total < MIN_PART:
            return 0
        return total if total < min(threshold + MIN_PART, MAX_PART) else threshold

    async def _begin_streamed_part(self, size: int) -> None:
        d = self._driver
        upload_id = await self._start_upload()
        number = len(self._parts) + 1
        url = await d._presigned(
            "upload_part", self._key, DIRECT_URL_EXPIRY, UploadId=upload_id, PartNumber=number
        )
        put = socket_put.Put(url, size, DIRECT_HEAD_TIMEOUT)
        part = _StreamedPart(put, number, size, self._take())
        self._streaming = part
        if part.held:
            await self._stream(part, memoryview(part.held), held=True)

    async def _stream(self, part: _StreamedPart, data: memoryview, held: bool = False) -> None:
        """Send ``data`` on in ``part`` (``held``: bytes the writer held, already
        counted); the part is added once its last byte is sent and the store took it."""
        try:
            await part.put.send(data)
            if not held:
                self._size += len(data)
            if part.put.remaining:
                return
            status, headers, body = await part.put.finish()
        except socket_put.PutFailed as e:
            self._refused(part, e.status, str(e), e)
        except BaseException:
            self._drop_streamed_part()
            raise
        etag = headers.get("etag")
        if status != 200 or not etag:
            self._refused(part, status, f"{status} {body.decode('utf-8', 'replace')[:300]}")
        self._streaming = None
        self._parts.append(_Part(part.number, etag, part.size))

    def _refused(
        self, part: _StreamedPart, status: int | None, why: str, cause: Exception | None = None
    ) -> NoReturn:
        self._drop_streamed_part()
        if status in _NO_PRESIGNED_PUTS:
            # A store that takes no presigned parts: this process gathers them from now
            # on. This request fails (its bytes are gone); its client sends them again.
            self._driver._stream_parts = False
            log.warning("s3: parts are gathered from now on: a streamed part got %s", why)
        raise StorageError(f"{self._path}: part {part.number} was not taken: {why}") from cause

    def _drop_streamed_part(self) -> None:
        """Close the part being streamed, unfinished: the store keeps nothing of it, so
        neither does the writer (its size goes back), but the bytes it held before the
        part began are held again."""
        part, self._streaming = self._streaming, None
        if part is None:
            return
        part.put.abort()
        self._size -= part.streamed
        self._buf, self._fill = part.held, len(part.held)
        self._coming = 0

    def _take(self) -> bytearray:
        """The bytes held, as a buffer of their own; the writer then holds none."""
        held, fill = self._buf, self._fill
        self._buf, self._fill = bytearray(), 0
        del held[fill:]  # nothing to cut when the part is full
        return held

    async def _start_upload(self) -> str:
        """The multipart upload's id, the upload begun if it was not; before a part."""
        if len(self._parts) >= MAX_PARTS:
            raise StorageError(f"{self._path}: more than {MAX_PARTS} parts")
        if self._upload_id is None:
            d = self._driver
            resp = await d._call(
                lambda: d._s3.create_multipart_upload(
                    Bucket=d._bucket, Key=self._key, **d._object_args
                )
            )
            self._upload_id = resp["UploadId"]
        return self._upload_id

    async def _send_part(self) -> None:
        d = self._driver
        upload_id = await self._start_upload()
        number = len(self._parts) + 1
        # The buffer itself is the body: a part is never copied.
        body = self._take()
        try:
            resp_part = await d._call(
                lambda: d._s3.upload_part(
                    Bucket=d._bucket,
                    Key=self._key,
                    UploadId=upload_id,
                    PartNumber=number,
                    Body=_bytes(body),
                )
            )
        except BaseException:
            # A copy: a cancelled call's thread may still be sending the buffer.
            self._buf, self._fill = bytearray(body), len(body)
            raise
        self._parts.append(_Part(number, resp_part["ETag"], len(body)))
        self._buf = body  # the next part's room

    async def close(self) -> None:
        """Save the upload state and the tail, so that a later writer can continue."""
        if self._closed:
            return
        self._closed = True
        self._drop_streamed_part()  # what the request did not bring is not kept
        if not self._dirty:
            return
        d = self._driver
        # Loaded first: a version 1 tail becomes part of the new state's inline one.
        await self._load_tail()
        if self._fill >= max(MIN_PART, self._threshold() // 2):
            # Sent as a part of its own rather than saved as the tail: a client that
            # pushes in chunks of 10 MiB would otherwise have each chunk's tail written
            # to the sidecar and read back by the next one, up to a part each way.
            # Half the part size keeps 10,000 parts enough for terabytes.
            await self._send_part()
        payload = _UploadState(self._upload_id, self._parts).dumps(self._take())
        _release.done(len(payload))
        await d._call(
            lambda: d._s3.put_object(
                Bucket=d._bucket,
                Key=self._key + STATE_SUFFIX,
                Body=_bytes(payload),
                ContentType="application/octet-stream",
                **d._sidecar_args,
            )
        )

    async def commit(self) -> None:
        """Complete the upload (or PUT the object if it never reached a part)."""
        self._check_open()
        if self._streaming is not None:
            self._drop_streamed_part()
            raise StorageError(f"{self._path}: committed before its last part's bytes came")
        await self._load_tail()
        self._closed = True
        d = self._driver
        if self._upload_id is None:
            body = _bytes(self._take())
            await d._call(
                lambda: d._s3.put_object(
                    Bucket=d._bucket, Key=self._key, Body=body, **d._object_args
                )
            )
        else:
            if self._fill or not self._parts:
                await self._send_part()
            upload_id = self._upload_id
            parts: Any = [{"ETag": p.etag, "PartNumber": p.number} for p in self._parts]
            # RGW answers with an empty ETag; nothing here needs it.
            await d._call(
                lambda: d._s3.complete_multipart_upload(
                    Bucket=d._bucket,
                    Key=self._key,
                    UploadId=upload_id,
                    MultipartUpload={"Parts": parts},
                )
            )
        self._take()
        _release.done(self._size)
        if self._has_sidecars:
            await d._delete_keys([self._key + s for s in _SIDECARS])

    async def _abandon(self) -> None:
        """Drop what this writer started, leaving stored files alone."""
        self._closed = True
        self._drop_streamed_part()
        self._take()
        if self._upload_id is not None and not self._has_sidecars:
            await self._driver._abort(self._key, self._upload_id)

    async def cancel(self) -> None:
        """Abort the upload and delete the key and its sidecars."""
        self._closed = True
        self._drop_streamed_part()
        self._take()
        d = self._driver
        if self._upload_id is not None:
            await d._abort(self._key, self._upload_id)
        await d._delete_keys([self._key, *(self._key + s for s in _SIDECARS)])


@dataclass(frozen=True)
class S3Settings:
    """What the driver needs to know; ``storage.s3`` of the registry's configuration
    makes one (``S3Config.driver_settings``), where the defaults and the rules live."""

    bucket: str
    region: str
    endpoint_url: str | None
    path_style: bool
    prefix: str
    access_key_id: str | None
    secret_access_key: str | None = field(repr=False)
    encrypt: bool
    kms_key_id: str | None
    storage_class: str | None
    max_pool_connections: int
    part_size: int
    verify_tls: bool


class S3Driver:
    name = "s3"

    def __init__(self, config: S3Settings) -> None:
        if not config.bucket:
            raise StorageError("storage.s3.bucket is not set")
        bound_malloc()
        self._bucket = config.bucket
        root = config.prefix.strip("/")
        self._root = f"{root}/" if root else ""
        self._part_size = max(config.part_size, MIN_PART)
        # Above this size move() copies in parts; tests lower both to reach that path.
        self._copy_limit = MAX_PART
        self._copy_part_size = COPY_PART
        self._pool = ThreadPoolExecutor(
            max_workers=max(1, config.max_pool_connections), thread_name_prefix="s3"
        )
        self._object_args: Any = {}
        self._sidecar_args: Any = {}
        if config.encrypt:
            if config.kms_key_id:
                self._object_args.update(
                    ServerSideEncryption="aws:kms", SSEKMSKeyId=config.kms_key_id
                )
            else:
                self._object_args["ServerSideEncryption"] = "AES256"
            # Sidecars hold upload data too, so they are encrypted alike.
            self._sidecar_args = dict(self._object_args)
        if config.storage_class:
            # Only for the data: sidecars are small and short-lived, which cold classes
            # (minimum sizes and durations) would bill as large and long-lived.
            self._object_args["StorageClass"] = config.storage_class
        core = botocore.session.get_session()
        # botocore's data cut to the calls below (storage_backends/s3_data.py).
        core.get_component("data_loader").file_loader = S3DataLoader()
        core.get_component("response_parser_factory").set_parser_defaults(
            timestamp_parser=parse_timestamp
        )
        session = boto3.session.Session(
            aws_access_key_id=config.access_key_id,
            aws_secret_access_key=config.secret_access_key,
            region_name=config.region,
            botocore_session=core,
        )
        self._s3: S3Client = session.client(
            "s3",
            endpoint_url=config.endpoint_url,
            verify=config.verify_tls,
            config=BotoConfig(
                signature_version="s3v4",
                max_pool_connections=max(1, config.max_pool_connections),
                s3={"addressing_style": "path" if config.path_style else "auto"},
                retries={"mode": "standard"},
                # Newer botocore checksums by default, which RGW and others reject.
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
                # The calls are typed (mypy with boto3-stubs); checking them again
                # costs a sixth of a listing's CPU.
                parameter_validation=False,
            ),
        )
        self._s3.meta.events.register("before-parse.s3.ListObjectsV2", parse_listing)
        self._direct = direct_reads_possible(config.endpoint_url)
        # Whether parts are streamed (S3Writer.expect): until the store refuses one.
        self._stream_parts = self._direct

    # -- plumbing

    def _key(self, path: str) -> str:
        return self._root + path

    def _dir_key(self, prefix: str) -> str:
        return self._root + prefix + "/" if prefix else self._root

    async def _call(self, fn: Callable[[], T], missing: str | None = None) -> T:
        """Run ``fn`` in the pool; map botocore errors to StorageError (or, when
        ``missing`` is given, a missing key to PathNotFoundError(missing))."""
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._pool, fn)
        except ClientError as e:
            if missing is not None and _code(e) in _MISSING:
                raise PathNotFoundError(missing) from None
            raise StorageError(f"s3: {e}") from e
        except BotoCoreError as e:
            raise StorageError(f"s3: {e}") from e

    async def _delete_keys(self, keys: Sequence[str]) -> None:
        """Delete objects (not prefixes), 1000 keys per DeleteObjects request, the
        requests side by side in the pool. Returns or raises only when all of them have
        finished: a caller ordering its deletes must not have one still in flight."""
        unique = list(dict.fromkeys(keys))
        batches = [unique[i : i + DELETE_BATCH] for i in range(0, len(unique), DELETE_BATCH)]
        if len(batches) == 1:
            await self._delete_batch(batches[0])
            return
        results = await asyncio.gather(
            *(self._delete_batch(b) for b in batches), return_exceptions=True
        )
        for result in results:
            if isinstance(result, BaseException):
                raise result

    async def _delete_batch(self, keys: builtins.list[str]) -> None:
        for delay in (*DELETE_RETRY_DELAYS, None):
            batch: Any = {"Objects": [{"Key": k} for k in keys], "Quiet": True}
            call = partial(self._s3.delete_objects, Bucket=self._bucket, Delete=batch)
            resp = await self._call(call)
            # Quiet: only failures are listed. A missing key is none (AWS never lists
            # one, but some compatible servers do).
            errors = [e for e in resp.get("Errors", []) if e.get("Code") not in _MISSING]
            if not errors:
                return
            if delay is None or any(e.get("Code") in _REFUSED for e in errors):
                first = errors[0]
                raise StorageError(
                    f"s3: could not delete {len(errors)} keys, e.g. "
                    f"{first.get('Key')}: {first.get('Code')} {first.get('Message')}"
                )
            keys = [str(e.get("Key")) for e in errors]
            await asyncio.sleep(delay)

    async def _abort(self, key: str, upload_id: str) -> None:
        def abort() -> None:
            try:
                self._s3.abort_multipart_upload(Bucket=self._bucket, Key=key, UploadId=upload_id)
            except ClientError as e:
                if _code(e) not in _NO_UPLOAD:
                    raise

        await self._call(abort)

    async def _get_optional(self, key: str, if_match: str | None = None) -> bytes | None:
        def get() -> bytes | None:
            try:
                if if_match is None:
                    resp = self._s3.get_object(Bucket=self._bucket, Key=key)
                else:
                    resp = self._s3.get_object(Bucket=self._bucket, Key=key, IfMatch=if_match)
            except ClientError as e:
                if _code(e) in _MISSING:
                    return None
                raise
            with resp["Body"] as body:
                return body.read()

        return await self._call(get)

    # -- small files

    async def get(self, path: str) -> bytes:
        key = self._key(path)

        def get() -> bytes:
            resp = self._s3.get_object(Bucket=self._bucket, Key=key)
            with resp["Body"] as body:
                return body.read()

        return await self._call(get, missing=path)

    async def put(self, path: str, data: bytes) -> None:
        key = self._key(path)
        await self._call(
            lambda: self._s3.put_object(
                Bucket=self._bucket, Key=key, Body=data, **self._object_args
            )
        )

    # -- streams

    async def read(
        self, path: str, offset: int = 0, length: int | None = None
    ) -> AsyncIterator[bytes]:
        key = self._key(path)
        if length == 0:
            await self._call(
                lambda: self._s3.head_object(Bucket=self._bucket, Key=key), missing=path
            )
            return
        if offset == 0 and length is None:
            byte_range = None
        elif length is None:
            byte_range = f"bytes={offset}-"
        else:
            byte_range = f"bytes={offset}-{offset + length - 1}"

        def open_body() -> tuple[Any, int, bytes] | None:
            """The body, its length and its first chunk: one thread hop."""
            try:
                if byte_range is None:
                    resp = self._s3.get_object(Bucket=self._bucket, Key=key)
                else:
                    resp = self._s3.get_object(Bucket=self._bucket, Key=key, Range=byte_range)
            except ClientError as e:
                if _code(e) == "InvalidRange":  # the offset is at or after the end
                    return None
                raise
            body, size = resp["Body"], int(resp["ContentLength"])
            return body, size, body.read(min(READ_CHUNK, size))

        opened = await self._call(open_body, missing=path)
        if opened is None:
            return
        body, left, chunk = opened
        size = left
        ahead: asyncio.Future[bytes] | None = None
        _release.reading += 1
        try:
            while chunk:
                left -= len(chunk)
                # The next chunk is read while the caller sends this one; none is asked
                # for past the end (a small blob is one hop).
                if left > 0:
                    ahead = asyncio.ensure_future(self._call(partial(body.read, READ_CHUNK)))
                yield chunk
                chunk = b"" if ahead is None else await ahead
                ahead = None
        finally:
            if ahead is not None:  # the body is closed only once no thread reads it
                with contextlib.suppress(Exception):
                    await ahead
            body.close()
            _release.reading -= 1
            _release.done(size - left)

    async def open_direct(self, path: str, offset: int, length: int) -> DirectRead | None:
        """The bytes on a GET's own socket, for the server to splice to the client: the
        process never reads them (no thread hop per chunk, no buffers). Only for a
        plain-HTTP endpoint reached without a proxy, and for DIRECT_MIN bytes or more;
        None otherwise, and when the store does not answer as expected (``read`` then
        tries, with botocore's retries)."""
        if not self._direct or length < DIRECT_MIN:
            return None
        url = await self._presigned("get_object", self._key(path), DIRECT_URL_EXPIRY)
        last = offset + length - 1
        try:
            async with asyncio.timeout(DIRECT_HEAD_TIMEOUT):
                resp = await socket_get.get(url, {"Range": f"bytes={offset}-{last}"})
        except (socket_get.GetFailed, TimeoutError) as e:
            why = str(e) or f"no answer in {DIRECT_HEAD_TIMEOUT:.0f} s"
            log.warning("s3: a direct read of %s fell back to boto3: %s", path, why)
            return None
        if resp.status == 206 and resp.length == length:
            return DirectRead(resp.sock, None, length - len(resp.body_start), resp.body_start)
        resp.close()
        if resp.status == 404:
            raise PathNotFoundError(path)
        log.warning("s3: a direct read of %s got %s: read by boto3", path, resp.status)
        return None

    async def writer(self, path: str, append: bool = False) -> S3Writer:
        key = self._key(path)
        raw = await self._get_optional(key + STATE_SUFFIX)
        state, tail = None, b""
        if raw is not None:
            try:
                state, tail = _UploadState.loads(raw)
            except (ValueError, KeyError, TypeError) as e:
                raise StorageError(f"{path}: unreadable upload state: {e}") from e
        if not append:
            if state is not None:
                # A new file replaces an unfinished one: stop billing for its parts.
                if state.upload_id is not None:
                    await self._abort(key, state.upload_id)
                await self._delete_keys([key + s for s in _SIDECARS])
            return S3Writer(self, path)
        if state is not None:
            return S3Writer(self, path, state, data=tail, saved=True)
        return await self._continue_object(path, key)

    async def _continue_object(self, path: str, key: str) -> S3Writer:
        """A writer appending to a committed object (or a new one if nothing is there)."""

        def head() -> int:
            try:
                return self._s3.head_object(Bucket=self._bucket, Key=key)["ContentLength"]
            except ClientError as e:
                if _code(e) in _MISSING:
                    return 0
                raise

        size = await self._call(head)
        if size == 0:
            return S3Writer(self, path)
        if size < MIN_PART:
            return S3Writer(self, path, data=await self.get(path))
        # Too big to hold: the existing bytes become the first parts, copied server-side.
        resp = await self._call(
            lambda: self._s3.create_multipart_upload(
                Bucket=self._bucket, Key=key, **self._object_args
            )
        )
        upload_id = resp["UploadId"]
        try:
            parts = await self._copy_parts(key, key, upload_id, size, self._copy_part_size)
        except StorageError as e:
            await self._abort(key, upload_id)
            if not _not_implemented(e):
                raise
            return await self._stream_copy(path, path)
        except BaseException:
            await self._abort(key, upload_id)
            raise
        return S3Writer(self, path, _UploadState(upload_id, parts))

    async def _stream_copy(self, src: str, dst: str) -> S3Writer:
        """A writer for ``dst`` holding a copy of ``src``, read and written through
        this process: for servers that cannot copy (RGW 16, encrypted objects)."""
        writer = S3Writer(self, dst)
        try:
            async for chunk in self.read(src):
                await writer.write(chunk)
        except BaseException:
            await writer._abandon()
            raise
        return writer

    async def _copy_parts(
        self, src_key: str, dst_key: str, upload_id: str, size: int, part_size: int
    ) -> list[_Part]:
        async def copy(number: int, first: int, last: int) -> _Part:
            resp = await self._call(
                lambda: self._s3.upload_part_copy(
                    Bucket=self._bucket,
                    Key=dst_key,
                    UploadId=upload_id,
                    PartNumber=number,
                    CopySource={"Bucket": self._bucket, "Key": src_key},
                    CopySourceRange=f"bytes={first}-{last}",
                )
            )
            return _Part(number, resp["CopyPartResult"]["ETag"], last - first + 1)

        ranges = list(copy_ranges(size, part_size))
        return list(
            await asyncio.gather(*(copy(i, a, b) for i, (a, b) in enumerate(ranges, start=1)))
        )

    # -- metadata

    async def stat(self, path: str) -> FileInfo:
        key = self._key(path)

        def head() -> FileInfo | None:
            try:
                resp = self._s3.head_object(Bucket=self._bucket, Key=key)
                return FileInfo(path, resp["ContentLength"], resp["LastModified"].timestamp())
            except ClientError as e:
                if _code(e) not in _MISSING:
                    raise
            listing = self._s3.list_objects_v2(Bucket=self._bucket, Prefix=key + "/", MaxKeys=1)
            for obj in listing.get("Contents", []):
                return FileInfo(path, 0, obj["LastModified"].timestamp(), is_dir=True)
            return None

        info = await self._call(head)
        if info is None:
            raise PathNotFoundError(path)
        return info

    async def list(
        self,
        prefix: str,
        *,
        start_after: str | None = None,
        limit: int | None = None,
        recursive: bool = False,
    ) -> list[str]:
        base = self._dir_key(prefix)
        if limit is not None and limit <= 0:
            return []
        names: set[str] = set()
        token: str | None = None
        while True:
            want = LIST_PAGE if limit is None else min(LIST_PAGE, limit - len(names) + 2)
            kwargs: Any = {"Bucket": self._bucket, "Prefix": base, "MaxKeys": want}
            if not recursive:
                kwargs["Delimiter"] = "/"
            if token is not None:
                kwargs["ContinuationToken"] = token
            elif start_after is not None:
                kwargs["StartAfter"] = base + start_after
            resp = await self._call(partial(self._s3.list_objects_v2, **kwargs))
            for obj in resp.get("Contents", []):
                name = obj["Key"][len(base) :]
                if name and not _is_sidecar(name):
                    names.add(name)
            for cp in resp.get("CommonPrefixes", []):
                names.add(cp["Prefix"][len(base) :].rstrip("/"))
            names.discard("")
            if start_after is not None:
                names = {n for n in names if n > start_after}
            token = resp.get("NextContinuationToken") if resp.get("IsTruncated") else None
            if token is None or (limit is not None and len(names) >= limit):
                break
        ordered = sorted(names)
        if limit is None or token is None or recursive:
            return ordered if limit is None else ordered[:limit]
        # The listing stopped early in S3's key order, where directory "a" (key "a/")
        # comes after "a-b"; by name it comes before, so look for such directories.
        last = ordered[limit - 1]
        for i, ch in enumerate(last):
            if i and ch in _BELOW_SLASH:
                cand = last[:i]
                if cand in names or (start_after is not None and cand <= start_after):
                    continue
                if await self._has_children(base + cand + "/"):
                    names.add(cand)
        return sorted(names)[:limit]

    async def _has_children(self, key_prefix: str) -> bool:
        resp = await self._call(
            lambda: self._s3.list_objects_v2(Bucket=self._bucket, Prefix=key_prefix, MaxKeys=1)
        )
        return bool(resp.get("Contents"))

    # -- moving and deleting

    async def move(self, src: str, dst: str) -> None:
        src_key, dst_key = self._key(src), self._key(dst)

        def head() -> int:
            return self._s3.head_object(Bucket=self._bucket, Key=src_key)["ContentLength"]

        size = await self._call(head, missing=src)
        if src_key == dst_key:
            return  # S3 refuses to copy an object onto itself; nothing is to be done
        try:
            if size <= self._copy_limit:
                await self._call(
                    lambda: self._s3.copy_object(
                        Bucket=self._bucket,
                        Key=dst_key,
                        CopySource={"Bucket": self._bucket, "Key": src_key},
                        **self._object_args,
                    ),
                    missing=src,
                )
            else:
                await self._multipart_copy(src_key, dst_key, size)
        except StorageError as e:
            if not _not_implemented(e):
                raise
            writer = await self._stream_copy(src, dst)
            try:
                await writer.commit()
            except BaseException:
                await writer._abandon()
                raise
        await self._delete_keys([src_key, *(src_key + s for s in _SIDECARS)])

    async def _multipart_copy(self, src_key: str, dst_key: str, size: int) -> None:
        resp = await self._call(
            lambda: self._s3.create_multipart_upload(
                Bucket=self._bucket, Key=dst_key, **self._object_args
            )
        )
        upload_id = resp["UploadId"]
        try:
            parts = await self._copy_parts(src_key, dst_key, upload_id, size, self._copy_part_size)
            done: Any = [{"ETag": p.etag, "PartNumber": p.number} for p in parts]
            await self._call(
                lambda: self._s3.complete_multipart_upload(
                    Bucket=self._bucket,
                    Key=dst_key,
                    UploadId=upload_id,
                    MultipartUpload={"Parts": done},
                )
            )
        except BaseException:
            await self._abort(dst_key, upload_id)
            raise

    async def delete(self, path: str) -> None:
        key = self._key(path)
        # The path may be a file or a prefix, so both go; and unfinished multipart
        # uploads below it are aborted, so that none keeps being billed. The two are
        # independent: run side by side, they cost the latency of the longer.
        await asyncio.gather(self._delete_tree(key), self._abort_uploads_under(key))

    async def delete_many(self, paths: Sequence[str]) -> None:
        await self._delete_keys([self._root + p for p in paths])

    async def _abort_uploads_under(self, key: str) -> None:
        for upload_key, upload_id in await self._uploads_under(key):
            await self._abort(upload_key, upload_id)

    async def _delete_tree(self, key: str) -> None:
        """The file at ``key`` with its sidecars, and every file below it: the file goes
        in the request that deletes the first page below it."""
        token: str | None = None
        first: builtins.list[str] = [key, *(key + s for s in _SIDECARS)]
        while True:
            kwargs: Any = {"Bucket": self._bucket, "Prefix": key + "/", "MaxKeys": DELETE_BATCH}
            if token is not None:
                kwargs["ContinuationToken"] = token
            resp = await self._call(partial(self._s3.list_objects_v2, **kwargs))
            keys = first + [obj["Key"] for obj in resp.get("Contents", [])]
            first = []
            if keys:
                await self._delete_keys(keys)
            token = resp.get("NextContinuationToken") if resp.get("IsTruncated") else None
            if token is None:
                break

    async def _uploads_under(self, key: str) -> builtins.list[tuple[str, str]]:
        """Multipart uploads for ``key`` itself or any key below it."""
        found: builtins.list[tuple[str, str]] = []
        markers: Any = {}
        while True:
            kwargs: Any = {"Bucket": self._bucket, "Prefix": key, **markers}
            resp = await self._call(partial(self._s3.list_multipart_uploads, **kwargs))
            for up in resp.get("Uploads", []):
                k = up.get("Key", "")
                if k == key or k.startswith(key + "/"):
                    found.append((k, up.get("UploadId", "")))
            if not resp.get("IsTruncated"):
                return found
            markers = {
                "KeyMarker": resp.get("NextKeyMarker", ""),
                "UploadIdMarker": resp.get("NextUploadIdMarker", ""),
            }

    # -- the rest

    async def url_for(self, path: str, expires_in: int = 1200) -> str | None:
        return await self._presigned("get_object", self._key(path), expires_in)

    async def _presigned(self, operation: str, key: str, expires_in: int, **params: Any) -> str:
        """A URL that does ``operation`` on ``key`` (with ``params``) for ``expires_in``
        seconds, signed here: no request is made."""
        return await self._call(
            partial(
                self._s3.generate_presigned_url,
                operation,
                Params={"Bucket": self._bucket, "Key": key, **params},
                ExpiresIn=expires_in,
            )
        )

    async def close(self) -> None:
        # Calls still running (only those of requests cut off by a stop: the rest have
        # finished) are not waited for: a store that does not answer would hold the
        # stop for its timeouts. The process ends without them (uvicorn re-raises the
        # SIGTERM it stopped on, which no thread holds up).
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._s3.close()
