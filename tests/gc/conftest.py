"""Fixtures of the garbage-collection tests:
gc_server  a real server whose own collector is off (the tests run ``registry gc`` when
           they mean to), per backend
rig        the collector's rig: a store and a collector in this process over a gated
           memory driver, in virtual time (tests/gc/inprocess.py)
"""

from __future__ import annotations

import pytest

from tests.conftest import BACKENDS, start_server
from tests.gc.inprocess import CollectorRig
from tests.server import RegistryServer


@pytest.fixture(scope="module", params=BACKENDS)
def gc_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> RegistryServer:
    """One server per module and backend, background collection off, and no read
    cache: the tests see what a `registry gc` process deleted through this server at
    once (the cache's lag behind another process is tests/s3/test_staleness.py's)."""
    config = {"gc": {"enabled": False}, "storage": {"cache": {"ttl": 0}}}
    return start_server(request, tmp_path_factory.mktemp("gc"), request.param, config=config)


@pytest.fixture
def rig() -> CollectorRig:
    return CollectorRig()
