"""What the store is about to change, told to the listeners first.

Every store operation that changes what a client can see -- a repository created, a
manifest pushed (with its tags), a tag or manifest deleted, a blob pushed, mounted or
unlinked, and the garbage collector's deletes -- describes the change as one of the
records below and awaits ``Changes.before(change)`` *before* its first visible write.
So a listener can

* refuse the change by raising a ``RegistryError`` (immutable tags, quotas): nothing
  has been written yet;
* record it durably (the event outbox, usage accounting) in the same step that makes
  it visible, or before: a change acknowledged to a client is never without its record,
  even with kill -9 right after. The reverse can happen (a record for a change that a
  crash then kept from landing), so what a record drives must check that the change is
  visible before it acts on it.

Listeners run in the order they were added; the first that raises stops the change.
They must be quick on the common path: they sit on every push.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from registry.manifest import Manifest
from registry.reference import Digest
from registry.store.objects import StoredObject


@dataclass(frozen=True)
class RepositoryCreated:
    repository: str


@dataclass(frozen=True)
class ManifestPushed:
    """A manifest PUT that passed its checks, about to be stored and tagged."""

    repository: str
    digest: Digest
    size: int
    manifest: Manifest  # media type, config, layers, index children, subject
    tags: tuple[str, ...] = ()  # tags this PUT points at the manifest
    # What each of ``tags`` names now (None: the tag is new): a tag whose target differs
    # from ``digest`` moves.
    previous: Mapping[str, Digest | None] = field(default_factory=dict)


@dataclass(frozen=True)
class TagDeleted:
    repository: str
    tag: str
    digest: Digest  # what the tag named


@dataclass(frozen=True)
class ManifestDeleted:
    """A DELETE by digest: the manifest goes, with every tag that names it."""

    repository: str
    digest: Digest
    media_type: str
    size: int
    tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class BlobPushed:
    """An upload verified against its digest, about to be linked into the repository."""

    repository: str
    digest: Digest
    size: int


@dataclass(frozen=True)
class BlobMounted:
    repository: str
    digest: Digest
    size: int
    source: str  # the repository it is mounted from


@dataclass(frozen=True)
class BlobUnlinked:
    """A blob DELETE: the blob is no longer visible in the repository."""

    repository: str
    digest: Digest


@dataclass(frozen=True)
class Collected:
    """One step of the garbage collector's deletes (retention included): tags, revisions,
    referrer entries, links or blob data, with what the collector knew of them."""

    objects: tuple[StoredObject, ...]
    # For the tags in ``objects``: the manifest each named when it was deleted.
    tag_targets: Mapping[str, Digest] = field(default_factory=dict)  # str(Tag) -> digest


Change = (
    RepositoryCreated
    | ManifestPushed
    | TagDeleted
    | ManifestDeleted
    | BlobPushed
    | BlobMounted
    | BlobUnlinked
    | Collected
)


class ChangeListener(Protocol):
    async def before(self, change: Change) -> None:
        """Called before ``change`` becomes visible; raise a RegistryError to refuse it."""
        ...


@runtime_checkable
class TagProtector(Protocol):
    """A listener that refuses to let some tags go can say which in advance, so that
    retention leaves them alone instead of trying (immutable tags)."""

    def protects_tag(self, repository: str, tag: str) -> str | None:
        """Why ``repository:tag`` may not be deleted (e.g. the rule), or None."""
        ...


class Changes:
    """The store's listeners (none by default)."""

    def __init__(self) -> None:
        self._listeners: list[ChangeListener] = []

    def listen(self, listener: ChangeListener) -> None:
        self._listeners.append(listener)

    async def before(self, change: Change) -> None:
        for listener in self._listeners:
            await listener.before(change)

    @property
    def listeners(self) -> Sequence[ChangeListener]:
        return tuple(self._listeners)

    def protected_tag(self, repository: str, tag: str) -> str | None:
        """Why a listener would refuse deleting ``repository:tag``; None: none would."""
        for listener in self._listeners:
            if isinstance(listener, TagProtector):
                reason = listener.protects_tag(repository, tag)
                if reason is not None:
                    return reason
        return None
