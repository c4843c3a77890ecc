"""The bodies endpoints receive (pure): distribution's envelope, or CloudEvents 1.0.

**distribution** (the default): ``POST`` of ``{"events": [...]}`` with ``Content-Type:
application/vnd.docker.distribution.events.v2+json``, each event field for field as
distribution's ``notifications/event.go`` marshals it. Go's ``omitempty`` decides which
fields appear: a tag delete's target is ``{"repository", "tag"}``, a blob delete's
``{"digest", "repository"}``; ``request.id``, ``method`` and ``useragent`` are always
there, ``actor`` is ``{}`` without a user. (Distribution 2.8 named the same body
``...events.v1+json``; 3.0 renamed it v2 without changing a field.)

**cloudevents**: each event in structured mode (``application/cloudevents+json``):
``specversion`` 1.0, the event's ``id``, ``type`` ``registry.event.<action>``,
``source`` the repository's URL path ``/v2/<repository>``, ``subject`` the reference
(``repo:tag`` or ``repo@digest``), ``time``, and as ``data`` the very object the
distribution envelope would carry. The extension attribute ``origin`` says who made the
change. Several events in one request use the batch mode
(``application/cloudevents-batch+json``: a JSON array).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Literal

from registry.events.model import Event, Target

EVENTS_MEDIA_TYPE = "application/vnd.docker.distribution.events.v2+json"
CLOUDEVENT_MEDIA_TYPE = "application/cloudevents+json"
CLOUDEVENTS_BATCH_MEDIA_TYPE = "application/cloudevents-batch+json"
CLOUDEVENT_TYPE_PREFIX = "registry.event."

Format = Literal["distribution", "cloudevents"]


def distribution_target(target: Target) -> dict[str, Any]:
    """``Event.Target`` with Go's omitempty: the embedded descriptor's fields (in
    distribution 2.8's order), then length, repository, fromRepository, url, tag,
    references."""
    out: dict[str, Any] = {}
    if target.media_type:
        out["mediaType"] = target.media_type
    if target.size:
        out["size"] = target.size
    if target.digest:
        out["digest"] = target.digest
    if target.size:
        out["length"] = target.size
    if target.repository:
        out["repository"] = target.repository
    if target.from_repository:
        out["fromRepository"] = target.from_repository
    if target.url:
        out["url"] = target.url
    if target.tag:
        out["tag"] = target.tag
    if target.references:
        out["references"] = list(target.references)
    return out


def distribution_event(event: Event) -> dict[str, Any]:
    request: dict[str, Any] = {"id": event.request.id}
    if event.request.addr:
        request["addr"] = event.request.addr
    if event.request.host:
        request["host"] = event.request.host
    request["method"] = event.request.method
    request["useragent"] = event.request.useragent
    source: dict[str, Any] = {}
    if event.source.addr:
        source["addr"] = event.source.addr
    if event.source.instance_id:
        source["instanceID"] = event.source.instance_id
    return {
        "id": event.id,
        "timestamp": event.timestamp,
        "action": event.action,
        "target": distribution_target(event.target),
        "request": request,
        "actor": {"name": event.actor} if event.actor else {},
        "source": source,
    }


def cloudevent(event: Event) -> dict[str, Any]:
    target = event.target
    if target.tag:
        subject = f"{target.repository}:{target.tag}"
    elif target.digest:
        subject = f"{target.repository}@{target.digest}"
    else:
        subject = target.repository
    return {
        "specversion": "1.0",
        "id": event.id,
        "type": CLOUDEVENT_TYPE_PREFIX + event.action,
        "source": f"/v2/{target.repository}",
        "subject": subject,
        "time": event.timestamp,
        "datacontenttype": "application/json",
        "origin": event.origin,
        "data": distribution_event(event),
    }


def render(fmt: Format, events: Sequence[Event]) -> tuple[str, bytes]:
    """The Content-Type and body of one request carrying ``events``."""
    if fmt == "cloudevents":
        if len(events) == 1:
            return CLOUDEVENT_MEDIA_TYPE, _json(cloudevent(events[0]))
        return CLOUDEVENTS_BATCH_MEDIA_TYPE, _json([cloudevent(e) for e in events])
    return EVENTS_MEDIA_TYPE, _json({"events": [distribution_event(e) for e in events]})


def _json(doc: Any) -> bytes:
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()
