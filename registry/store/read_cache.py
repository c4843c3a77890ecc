"""What this process read of the storage lately, kept so that pulls need not ask again.

Two kinds of facts, kept apart because only one of them can go stale:

* **Content-addressed facts never change**: the size of the blob stored under a digest,
  the bytes of a manifest. They are kept until the bounds push them out.
* **Repository facts change when something is deleted**: a blob's link into a
  repository, a manifest's revision record. Each is trusted for ``ttl`` seconds from the
  moment the read that found it *began*, then read from the storage again. A delete made
  by another process (another worker, another replica, the garbage collector of another
  process) is therefore seen here at most ``ttl`` seconds after it completed: that is
  the staleness bound docs/operations.md states. Deletes made by this process forget
  the fact at once.

What is *not* kept: what a tag points at (tags move with every push, and a pull by tag
must see the push that just happened on another replica), and absence (a blob missing
now may be pushed through another process a moment later). A fact is kept only after the
storage said it, never before a write lands.

**Pages of tags** are kept, but each is served only while the repository's tags version
(store/tags.py: a small object every process rewrites after it changes a tag) still
reads as it did before the page was listed, and for ``ttl`` at most: a version read
costs a fraction of a listing, and a tag pushed or deleted anywhere is seen at once.
The ttl bounds only what a writer killed between its tag write and its version write
leaves behind.

The cache serves reads only (``BlobStore.stat``, ``ManifestStore.resolve`` and
``content``, i.e. HEAD and GET). Pushes, mounts and the collector never consult it:
the claim protocol (store/claims.py) reads the storage at each of its steps, and a
cached "exists" must not let a push skip them.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from typing import TYPE_CHECKING, Generic, TypeVar

from registry.reference import Digest
from registry.store.changes import Change, Collected
from registry.store.clock import Clock
from registry.store.objects import BlobData, Link, Revision

if TYPE_CHECKING:
    from registry.store.manifests import StoredManifest

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class _Lru(Generic[K, V]):
    """A dict that forgets its least recently used entries beyond ``limit`` entries and,
    given ``weight``, beyond ``budget`` in total weight."""

    def __init__(self, limit: int, budget: int | None = None) -> None:
        self._items: OrderedDict[K, tuple[V, int]] = OrderedDict()
        self._limit = limit
        self._budget = budget
        self._weight = 0

    def __len__(self) -> int:
        return len(self._items)

    @property
    def weight(self) -> int:
        return self._weight

    def get(self, key: K) -> V | None:
        item = self._items.get(key)
        if item is None:
            return None
        self._items.move_to_end(key)
        return item[0]

    def put(self, key: K, value: V, weight: int = 0) -> None:
        if self._limit <= 0 or (self._budget is not None and weight > self._budget):
            return
        self.pop(key)
        self._items[key] = (value, weight)
        self._weight += weight
        while len(self._items) > self._limit or (
            self._budget is not None and self._weight > self._budget
        ):
            _, (_, dropped) = self._items.popitem(last=False)
            self._weight -= dropped

    def pop(self, key: K) -> None:
        item = self._items.pop(key, None)
        if item is not None:
            self._weight -= item[1]

    def clear(self) -> None:
        self._items.clear()
        self._weight = 0


class _Fact(Generic[V]):
    """A repository fact and until when (the process's monotonic time) it is trusted."""

    __slots__ = ("until", "value")

    def __init__(self, value: V, until: float) -> None:
        self.value = value
        self.until = until


class ReadCache:
    """The bounded in-process memory of one store: at most ``entries`` facts of each
    kind and ``content_bytes`` of manifest bodies. ``ttl`` 0 keeps nothing at all."""

    def __init__(
        self, clock: Clock, ttl: float = 0.0, entries: int = 0, content_bytes: int = 0
    ) -> None:
        self.clock = clock
        self.ttl = ttl
        on = ttl > 0
        limit = entries if on else 0
        # Content-addressed.
        self._sizes: _Lru[Digest, int] = _Lru(limit)
        self._bodies: _Lru[Digest, bytes] = _Lru(limit, content_bytes if on else 0)
        # Repository facts: a link's blob size, a revision's record.
        self._links: _Lru[tuple[str, Digest], _Fact[int]] = _Lru(limit)
        self._revisions: _Lru[tuple[str, Digest], _Fact[StoredManifest]] = _Lru(limit)
        # Tag pages by (repository, last, limit), with the tags version they were listed
        # under; weighed by their names' length, within the manifest bodies' budget.
        self._tag_pages: _Lru[tuple[str, str | None, int], _Fact[tuple[bytes, list[str]]]] = (
            _Lru(limit, content_bytes if on else 0)
        )

    @property
    def enabled(self) -> bool:
        return self.ttl > 0

    def started(self) -> float:
        """Call before a read whose answer may be kept, and pass the result to the
        ``keep_*`` method: a fact is trusted from when it was asked for."""
        return self.clock.monotonic()

    # ------------------------------------------------------------------ content-addressed

    def blob_size(self, digest: Digest) -> int | None:
        return self._sizes.get(digest)

    def keep_blob_size(self, digest: Digest, size: int) -> None:
        self._sizes.put(digest, size)

    def manifest_body(self, digest: Digest) -> bytes | None:
        return self._bodies.get(digest)

    def keep_manifest_body(self, digest: Digest, body: bytes) -> None:
        self._bodies.put(digest, body, len(body))

    # ------------------------------------------------------------------ repository facts

    def linked_size(self, name: str, digest: Digest) -> int | None:
        """The size of a blob linked into ``name``, if a read that began less than
        ``ttl`` ago found the link."""
        return self._fresh(self._links, (name, digest))

    def keep_link(self, name: str, digest: Digest, size: int, started: float) -> None:
        self._links.put((name, digest), _Fact(size, started + self.ttl))
        self._sizes.put(digest, size)

    def revision(self, name: str, digest: Digest) -> StoredManifest | None:
        """The revision record of ``digest`` in ``name``, if a read that began less than
        ``ttl`` ago found it."""
        return self._fresh(self._revisions, (name, digest))

    def keep_revision(
        self, name: str, digest: Digest, record: StoredManifest, started: float
    ) -> None:
        self._revisions.put((name, digest), _Fact(record, started + self.ttl))

    def tag_page(self, name: str, version: bytes, last: str | None, limit: int) -> list[str] | None:
        """The page listed under tags ``version``, if one was, less than ``ttl`` ago."""
        kept = self._fresh(self._tag_pages, (name, last, limit))
        if kept is None or kept[0] != version:
            return None
        return list(kept[1])

    def keep_tag_page(
        self,
        name: str,
        version: bytes,
        last: str | None,
        limit: int,
        tags: list[str],
        started: float,
    ) -> None:
        """Keep a page listed after ``version`` was read (``started`` before that read)."""
        weight = 64 + sum(len(t) + 8 for t in tags)
        self._tag_pages.put(
            (name, last, limit), _Fact((version, list(tags)), started + self.ttl), weight
        )

    def _fresh(self, lru: _Lru[K, _Fact[V]], key: K) -> V | None:
        fact = lru.get(key)
        if fact is None:
            return None
        if self.clock.monotonic() >= fact.until:
            lru.pop(key)
            return None
        return fact.value

    # ------------------------------------------------------------------ forgetting

    def forget_link(self, name: str, digest: Digest) -> None:
        self._links.pop((name, digest))

    def forget_revision(self, name: str, digest: Digest) -> None:
        self._revisions.pop((name, digest))

    def forget_blob(self, digest: Digest) -> None:
        """The blob's data is gone, or was found missing. What it was stays true, but
        is not worth its room; its links went before it (the collector's order)."""
        self._sizes.pop(digest)
        self._bodies.pop(digest)

    async def before(self, change: Change) -> None:
        """A change listener (store/changes.py): forget what the collector of this
        process is about to delete. Forgetting before the delete lands leaves a read in
        flight free to keep the fact again; the ttl bounds that as any other delete."""
        if not isinstance(change, Collected):
            return
        for obj in change.objects:
            if isinstance(obj, Link):
                self.forget_link(obj.repository, obj.digest)
            elif isinstance(obj, Revision):
                self.forget_revision(obj.repository, obj.digest)
            elif isinstance(obj, BlobData):
                self.forget_blob(obj.digest)

    def clear(self) -> None:
        for lru in (self._sizes, self._bodies, self._links, self._revisions, self._tag_pages):
            lru.clear()
