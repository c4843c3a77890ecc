"""Garbage collection and retention: reclaim space online without losing a pushed image.

``collector`` marks and sweeps (its docstring has the safety argument), ``lease`` lets
one collection run at a time, ``retention`` decides which tags go, ``background`` runs
it inside the server and ``command`` as ``registry gc``.
"""

from registry.gc.background import BackgroundCollector, background_collector
from registry.gc.collector import (
    CollectionBusyError,
    CollectionReport,
    Collector,
    reference_budget,
)
from registry.gc.lease import Lease, LeaseLostError

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
