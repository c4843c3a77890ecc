"""The store's change listeners, installed alike by every process that changes content:
``registry serve`` (create_app) and the commands that write (``registry gc``,
``registry replicate run``). A delete made by ``registry gc`` is refused, counted and
recorded exactly as the same delete made by the collector inside ``registry serve``.

In order (store/changes.py: the first that raises refuses the change): immutable tags
and quotas (registry/policy), the push times the web UI shows (when it is on), and last
the events recorder (registry/events), when anything reads events -- a webhook endpoint
or a replication rule that follows them. Only recording happens here: delivery stays
with the serving processes, under the events lease (``EventService.start``).
"""

from __future__ import annotations

from dataclasses import dataclass

from registry.config import Config
from registry.events import EventService
from registry.policy import Governance
from registry.policy import install as install_policy
from registry.store import RegistryStore


@dataclass
class StoreListeners:
    """What ``install_listeners`` put on one store."""

    governance: Governance
    events: EventService


def install_listeners(store: RegistryStore, config: Config) -> StoreListeners:
    governance = install_policy(store, config.policy)
    if config.ui.enabled:
        store.changes.listen(store.pushes)
    events = EventService(store, config)
    events.listen()  # last: a change refused above is never recorded
    return StoreListeners(governance, events)


__all__ = ["StoreListeners", "install_listeners"]
