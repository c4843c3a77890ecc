"""The events lease's ttl (and each replication rule's, taken the same way): the
configuration refuses one its holder could lose between renewals, and with the shortest
it accepts, the holder keeps it. In virtual time."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from registry.config import Config
from registry.events.dispatcher import LEASE
from registry.store import SETTLE, LeaseLostError, RegistryStore
from storage_backends.memory import MemoryDriver
from tests.clocks import VirtualClock

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.parametrize("section", ["notifications", "replication"])
@pytest.mark.parametrize("ttl", [2 * SETTLE, SETTLE, 0.0])
def test_a_lease_ttl_of_at_most_twice_the_settle_time_is_refused(section: str, ttl: float) -> None:
    with pytest.raises(ValidationError) as refused:
        Config.model_validate({section: {"lease_ttl": ttl}})
    [error] = refused.value.errors()
    assert error["loc"][0] == section
    if section == "notifications":  # replication's own floor (5s) says no first
        assert "more than twice the lease's settle time" in error["msg"]


def test_a_lease_ttl_above_twice_the_settle_time_is_accepted() -> None:
    config = Config.model_validate({"notifications": {"lease_ttl": 2 * SETTLE + 0.5}})
    assert config.notifications.lease_ttl == 2 * SETTLE + 0.5


@pytest.mark.parametrize("ttl", [2 * SETTLE + 0.5, 3.0, 30.0])
async def test_the_holder_keeps_a_lease_of_the_shortest_ttl_accepted(ttl: float) -> None:
    """Taking the lease spends a settle time of the half ttl its holder may go without a
    renewal: the first renewal must come a quarter ttl after the lease's write, not a
    quarter ttl after the holder starts work."""
    clock = VirtualClock()
    store = RegistryStore(MemoryDriver(clock=clock.time), clock=clock)
    Config.model_validate({"notifications": {"lease_ttl": ttl}})  # accepted
    lease = store.lease(LEASE, ttl)
    assert await lease.acquire()
    async with lease.kept():
        for _ in range(int(10 * ttl / 0.1)):
            lease.check()  # LeaseLostError when the holder counts it lost
            await clock.sleep(0.1)
    assert await lease.read() is None  # released


async def test_a_holder_whose_lease_was_taken_over_stops() -> None:
    """The check still bites: renewals that stop make the holder count the lease lost."""
    clock = VirtualClock()
    store = RegistryStore(MemoryDriver(clock=clock.time), clock=clock)
    ttl = 2 * SETTLE + 0.5
    lease = store.lease(LEASE, ttl)
    assert await lease.acquire()
    await clock.sleep(ttl / 2)  # no renewer running
    with pytest.raises(LeaseLostError):
        lease.check()
