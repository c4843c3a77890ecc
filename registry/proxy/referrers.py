"""Referrers of cached repositories: the upstream's list (from its referrers API, or its
referrers tag schema) is kept for the upstream's ``tag_ttl`` and served stale, with a
``Warning``, when the upstream fails; the referrers themselves are manifests, pulled
and cached by digest like any other. The list is kept whole and filtered here by
``artifactType``, so one fetch answers every filter."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from registry.proxy import metrics
from registry.proxy.failures import may_serve_stale, spec_error, stale_warning
from registry.proxy.routing import Route
from registry.proxy.single_flight import SingleFlight
from registry.proxy.upstreams import UpstreamClients
from registry.reference import Digest
from registry.remote import RemoteError
from registry.store import ReferrersList, RegistryStore

log = logging.getLogger("registry.proxy")


@dataclass(frozen=True)
class ReferrersAnswer:
    descriptors: list[dict[str, Any]]
    warning: str | None = None


class ReferrersCache:
    def __init__(self, store: RegistryStore, clients: UpstreamClients) -> None:
        self.store = store
        self.clients = clients
        self._flights: SingleFlight[ReferrersAnswer] = SingleFlight()

    async def answer(
        self, route: Route, subject: Digest, artifact_type: str | None
    ) -> ReferrersAnswer:
        kept = await self.store.proxy.referrers(route.local, subject)
        if kept is not None and self._age(kept) < route.upstream.config.tag_ttl:
            metrics.HITS.labels(route.upstream.name, "referrers").inc()
            found = ReferrersAnswer(kept.descriptors)
        else:
            metrics.MISSES.labels(route.upstream.name, "referrers").inc()
            found = await self._flights.run(
                (route.local, subject), lambda: self._fetch(route, subject, kept)
            )
        if artifact_type is None:
            return found
        return ReferrersAnswer(
            [d for d in found.descriptors if d.get("artifactType") == artifact_type],
            found.warning,
        )

    def _age(self, kept: ReferrersList) -> float:
        return self.store.clock.time() - kept.fetched_at

    async def _fetch(
        self, route: Route, subject: Digest, kept: ReferrersList | None
    ) -> ReferrersAnswer:
        client = self.clients.client(route.upstream)
        try:
            fetched = await client.get_referrers(route.remote, subject)
        except RemoteError as exc:
            limit = route.upstream.config.max_stale
            if (
                kept is not None
                and may_serve_stale(exc)
                and (limit is None or self._age(kept) <= limit)
            ):
                metrics.STALE.labels(route.upstream.name).inc()
                return ReferrersAnswer(kept.descriptors, stale_warning(exc))
            raise spec_error(exc, "referrers", {"digest": str(subject)}) from None
        await self.store.proxy.save_referrers(
            route.local, subject, fetched.manifests, self.store.clock.time()
        )
        return ReferrersAnswer(fetched.manifests)
