"""Usage that drifted from storage comes back: compaction follows storage where a change
failed after its journal entry, a quota added to existing content counts it, and the
collector's count corrects any other drift -- but only from a run that no change of
the namespace overlapped."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from registry import errors
from registry.errors import RegistryError
from registry.policy import Governance
from registry.store import RegistryStore, UsageSnapshot, open_store
from registry.store.changes import Change, ManifestPushed
from storage_backends.memory import MemoryDriver
from tests.images import Image, image
from tests.policy.conftest import Stores, policy_config, upload
from tests.policy.test_usage_machine import recount

QUOTA = {"quotas": [{"name": "team", "repositories": ["team/**"], "limit": "1GiB"}]}
REPOS = ["team/a", "team/b"]


async def push(store: RegistryStore, repo: str, img: Image, tag: str = "v1") -> None:
    for data in img.blobs.values():
        await upload(store, repo, data)
    await store.manifests.put(repo, tag, img.manifest, img.media_type)


async def used(governance: Governance) -> int:
    assert governance.book is not None
    view = await governance.book.view(governance.rules.quotas[0])
    return view.figures().used


async def compact(governance: Governance, settle: float = 0.0) -> Any:
    assert governance.compactor is not None
    governance.compactor.settle = settle
    return await governance.compactor.upkeep()


class RefuseManifests:
    """A listener after the quota's that refuses manifests: the journal has the entry,
    storage never gets the change (as a crash between the two would leave it)."""

    async def before(self, change: Change) -> None:
        if isinstance(change, ManifestPushed):
            raise RegistryError(errors.UNAVAILABLE, "the storage failed")


def test_an_entry_whose_change_never_landed_is_dropped_at_compaction() -> None:
    stores = Stores(policy_config(QUOTA))
    store, governance = stores.open()
    img = image(layers=2, layer_size=5000)

    async def scenario() -> None:
        for data in img.blobs.values():
            await upload(store, "team/a", data)
        store.changes.listen(RefuseManifests())
        with pytest.raises(RegistryError):
            await store.manifests.put("team/a", "v1", img.manifest, img.media_type)
        assert await used(governance) > 0  # the entry says it is held
        # Not before the entry has settled: the change might still be landing.
        await compact(governance, settle=120.0)
        assert await used(governance) > 0
        stores.clock.now += 121
        report = await compact(governance, settle=120.0)
        assert report.ledgers["team"].fixed == 1
        assert await used(governance) == (await recount(store, REPOS))[0] == 0

    asyncio.run(scenario())


def test_a_quota_added_to_existing_content_counts_it() -> None:
    stores = Stores(policy_config({}))
    bare, _ = stores.open()
    asyncio.run(push(bare, "team/a", image()))
    asyncio.run(push(bare, "team/b", image()))
    stores.config = stores.config.model_validate(policy_config(QUOTA))
    store, governance = stores.open()

    async def scenario() -> None:
        assert governance.book is not None
        view = await governance.book.view(governance.rules.quotas[0])
        assert not view.complete and view.figures().used == 0
        report = await compact(governance)
        assert report.ledgers["team"].counted
        assert await used(governance) == (await recount(store, REPOS))[0] > 0

    asyncio.run(scenario())


def snapshot(at: float, groups: dict[str, int], started: float | None) -> UsageSnapshot:
    return UsageSnapshot(finished_at=at, groups=groups, started_at=started)


def drifted() -> tuple[Stores, RegistryStore, Governance, RegistryStore]:
    """A ledger that missed a push: made by a process without the policy's listeners."""
    stores = Stores(policy_config(QUOTA))
    store, governance = stores.open()
    asyncio.run(push(store, "team/a", image()))
    asyncio.run(compact(governance))  # the ledger's first count: exact
    blind = open_store(stores.config, driver=MemoryDriver(stores.shared, clock=stores.clock.time))
    asyncio.run(push(blind, "team/b", image(layers=3)))
    stores.clock.now += 1000
    asyncio.run(compact(governance))
    return stores, store, governance, blind


def test_drift_is_corrected_from_a_collection_the_namespace_sat_out() -> None:
    stores, store, governance, _ = drifted()

    async def scenario() -> None:
        truth = (await recount(store, REPOS))[0]
        assert await used(governance) < truth
        now = stores.clock.now
        await store.usage.write(snapshot(now - 5, {"team": truth}, started=now - 10))
        stores.clock.now += 200  # past settle after the run's end
        report = await compact(governance, settle=120.0)
        assert report.ledgers["team"].corrected is not None
        assert await used(governance) == truth
        # The correction holds on: later pushes and deletes count on top of it.
        extra = image()
        await push(store, "team/a", extra, "v2")
        assert await used(governance) == (await recount(store, REPOS))[0]

    asyncio.run(scenario())


def test_a_namespace_changed_during_the_collection_is_not_corrected() -> None:
    stores, store, governance, _ = drifted()

    async def scenario() -> None:
        before = await used(governance)
        started = stores.clock.now
        stores.clock.now += 5
        await push(store, "team/a", image(), "during")  # while the collector runs
        stores.clock.now += 5
        await store.usage.write(snapshot(stores.clock.now, {"team": 1}, started=started))
        stores.clock.now += 200
        report = await compact(governance, settle=120.0)
        assert report.ledgers["team"].corrected is None
        assert await used(governance) > before

    asyncio.run(scenario())


def test_without_its_start_a_run_is_bounded_by_the_one_before() -> None:
    stores, store, governance, _ = drifted()

    async def scenario() -> None:
        truth = (await recount(store, REPOS))[0]
        await store.usage.write(snapshot(stores.clock.now, {"team": truth}, started=None))
        stores.clock.now += 200
        first = await compact(governance, settle=120.0)
        assert first.ledgers["team"].corrected is None  # no run before it: unknown start
        await store.usage.write(snapshot(stores.clock.now, {"team": truth}, started=None))
        stores.clock.now += 200
        second = await compact(governance, settle=120.0)
        assert second.ledgers["team"].corrected is not None
        assert await used(governance) == truth

    asyncio.run(scenario())
