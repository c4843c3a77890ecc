"""From what the store is about to change to the events that describe it (pure).

One function per change, as distribution's ``notifications/bridge.go`` builds its
events, with the same target fields per action:

=====================  ======  ===============================================
change                 action  target
=====================  ======  ===============================================
manifest push          push    mediaType, size, digest, length, repository,
                               url (by digest), tag (one event per tag pushed)
manifest pull          pull    the same; tag when pulled by tag
manifest delete        delete  digest, repository; then one tag delete per tag
tag delete             delete  repository, tag
blob push              push    mediaType (application/octet-stream), size,
                               digest, length, repository, url
blob mount             mount   the same, and fromRepository
blob pull              pull    the same as a push
blob delete            delete  digest, repository
repository created     create  repository (not in distribution)
collector deletes      delete  as a tag or manifest delete, origin ``gc``
=====================  ======  ===============================================

A manifest pushed under several tags (``?tag=a&tag=b``) makes one event per tag, so that
a receiver that acts on ``base:latest`` sees that tag whatever else came with it;
distribution takes only the first. The collector's deletes of links, referrer entries
and blob data make no events: a client sees tags and manifests, and a link the
collector removes is one no manifest uses.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from registry.context import RequestContext
from registry.events.model import (
    BLOB_MEDIA_TYPE,
    Action,
    Event,
    Kind,
    Record,
    Source,
    State,
    Target,
)
from registry.events.model import RequestRecord as RequestFields
from registry.store.changes import (
    BlobMounted,
    BlobPushed,
    BlobUnlinked,
    Change,
    Collected,
    ManifestDeleted,
    ManifestPushed,
    RepositoryCreated,
    TagDeleted,
)
from registry.store.objects import Revision, Tag


def rfc3339(moment: float) -> str:
    """A timestamp as Go's RFC 3339 with nanoseconds writes it: UTC, no trailing zeros."""
    text = datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")
    return text.rstrip("0").rstrip(".") + "Z"


@dataclass(frozen=True)
class Origin:
    """Where and when a change is made: the request (or background work), the
    registry's URL as the client used it, and the process that records it."""

    context: RequestContext
    base_url: str  # "" when unknown: events carry no url then
    source: Source
    now: float
    new_id: Callable[[], str] = lambda: str(uuid.uuid4())

    def event(self, action: Action, kind: Kind, target: Target, wants_refs: bool = False) -> Event:
        c = self.context
        return Event(
            id=self.new_id(),
            timestamp=rfc3339(self.now),
            action=action,
            kind=kind,
            target=target,
            request=RequestFields(c.request_id, c.addr, c.host, c.method, c.user_agent),
            actor=c.actor or "",
            source=self.source,
            origin=c.origin,
            wants_references=wants_refs,
        )

    def url(self, repository: str, what: str, digest: str) -> str:
        return f"{self.base_url}/v2/{repository}/{what}/{digest}" if self.base_url else ""


def record_for(change: Change, origin: Origin, *, references: bool = False) -> Record | None:
    """The outbox record of ``change``; None when it makes no event."""
    match change:
        case RepositoryCreated(repository=repo):
            event = origin.event("create", "repository", Target(repo))
            return Record((event,), (State("repository", repo),))
        case ManifestPushed():
            return _manifest_pushed(change, origin, references)
        case TagDeleted(repository=repo, tag=tag, digest=digest):
            event = origin.event("delete", "tag", Target(repo, tag=tag))
            named = State("tag", repo, str(digest), tag)
            return Record((event,), (State("tag", repo, str(digest), tag, False),), (named,))
        case ManifestDeleted(repository=repo, digest=digest, tags=tags):
            return _deleted(repo, str(digest), tags, origin)
        case BlobPushed(repository=repo, digest=digest, size=size):
            event = origin.event("push", "blob", _blob_target(origin, repo, str(digest), size))
            return Record((event,), (State("link", repo, str(digest)),))
        case BlobMounted(repository=repo, digest=digest, size=size, source=source):
            target = _blob_target(origin, repo, str(digest), size, source)
            event = origin.event("mount", "blob", target)
            return Record((event,), (State("link", repo, str(digest)),))
        case BlobUnlinked(repository=repo, digest=digest):
            event = origin.event("delete", "blob", Target(repo, digest=str(digest)))
            linked = State("link", repo, str(digest))
            return Record((event,), (State("link", repo, str(digest), present=False),), (linked,))
        case Collected():
            return _collected(change, origin)
    return None


def manifest_pulled(
    origin: Origin,
    repository: str,
    digest: str,
    media_type: str,
    size: int,
    tag: str = "",
    *,
    references: bool = False,
) -> Record:
    target = Target(
        repository,
        media_type=media_type,
        digest=digest,
        size=size,
        url=origin.url(repository, "manifests", digest),
        tag=tag,
    )
    return Record((origin.event("pull", "manifest", target, references),), (None,))


def blob_pulled(origin: Origin, repository: str, digest: str, size: int) -> Record:
    event = origin.event("pull", "blob", _blob_target(origin, repository, digest, size))
    return Record((event,), (None,))


def _blob_target(origin: Origin, repo: str, digest: str, size: int, source: str = "") -> Target:
    return Target(
        repo,
        media_type=BLOB_MEDIA_TYPE,
        digest=digest,
        size=size,
        url=origin.url(repo, "blobs", digest),
        from_repository=source,
    )


def _manifest_pushed(change: ManifestPushed, origin: Origin, references: bool) -> Record:
    repo, digest = change.repository, str(change.digest)
    target = Target(
        repo,
        media_type=change.manifest.media_type,
        digest=digest,
        size=change.size,
        url=origin.url(repo, "manifests", digest),
    )
    facts = tuple(
        State("tag", repo, str(before) if before else "", tag, before is not None)
        for tag, before in change.previous.items()
    )
    if not change.tags:
        event = origin.event("push", "manifest", target, references)
        return Record((event,), (State("revision", repo, digest),), facts)
    events = tuple(
        origin.event("push", "manifest", _with_tag(target, t), references) for t in change.tags
    )
    checks = tuple(State("tag", repo, digest, t) for t in change.tags)
    return Record(events, checks, facts)


def _with_tag(target: Target, tag: str) -> Target:
    return Target(target.repository, target.media_type, target.digest, target.size, target.url, tag)


def _deleted(repo: str, digest: str, tags: tuple[str, ...], origin: Origin) -> Record:
    """A manifest delete, then a tag delete per tag that named it (as distribution's
    handler untags them after deleting the manifest)."""
    events = [origin.event("delete", "manifest", Target(repo, digest=digest))]
    checks: list[State | None] = [State("revision", repo, digest, present=False)]
    facts = [State("revision", repo, digest)]
    for tag in tags:
        events.append(origin.event("delete", "tag", Target(repo, tag=tag)))
        checks.append(State("tag", repo, digest, tag, False))
        facts.append(State("tag", repo, digest, tag))
    return Record(tuple(events), tuple(checks), tuple(facts))


def _collected(change: Collected, origin: Origin) -> Record | None:
    events: list[Event] = []
    checks: list[State | None] = []
    facts: list[State] = []
    for obj in change.objects:
        match obj:
            case Tag(repository=repo, name=tag):
                target = change.tag_targets.get(str(obj))
                digest = str(target) if target is not None else ""
                events.append(origin.event("delete", "tag", Target(repo, tag=tag)))
                checks.append(State("tag", repo, digest, tag, False) if digest else None)
                if digest:
                    facts.append(State("tag", repo, digest, tag))
            case Revision(repository=repo, digest=d):
                events.append(origin.event("delete", "manifest", Target(repo, digest=str(d))))
                checks.append(State("revision", repo, str(d), present=False))
                facts.append(State("revision", repo, str(d)))
    if not events:
        return None
    return Record(tuple(events), tuple(checks), tuple(facts))
