"""Garbage collection and retention: reclaim space online without losing a pushed image.

``collector`` runs the phases (its docstring lists them): ``inventory`` lists, ``expire``
applies ``retention``, ``mark`` walks the pure ``graph``, ``sweep`` deletes and
``report`` says what happened. The lease that lets one collection run at a time and
the claim/tombstone protocol that keeps it apart from pushes are in ``registry/store``.
``background`` runs collections inside the server and ``command`` as ``registry gc``.
"""

from registry.gc.background import BackgroundCollector, background_collector
from registry.gc.collector import CollectionBusyError, Collector
from registry.gc.report import CollectionReport
from registry.store import Lease, LeaseLostError, reference_budget

__all__ = [
    "BackgroundCollector",
    "CollectionBusyError",
    "CollectionReport",
    "Collector",
    "Lease",
    "LeaseLostError",
    "background_collector",
    "reference_budget",
]
