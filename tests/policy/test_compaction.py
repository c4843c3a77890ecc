"""Compaction of the usage records: entries folded into a checkpoint and deleted while
readers keep the same figures, one compactor at a time, stale reservations removed,
an entry from a lagging clock folded in order."""

from __future__ import annotations

import asyncio
import time

from registry.policy import Governance
from registry.policy.book import UsageBook
from registry.policy.ledger import Figures
from tests.images import image
from tests.images import push_image as push_through_api
from tests.policy.conftest import Factory, Stores, policy_config, upload

QUOTA = {"quotas": [{"name": "team", "repositories": ["team/**"], "limit": "1GiB"}]}


async def figures(governance: Governance, book: UsageBook | None = None) -> Figures:
    book = book or governance.book
    assert book is not None
    return (await book.view(governance.rules.quotas[0])).figures()


async def push_image(stores: Stores, governance: Governance, repo: str) -> None:
    store = governance.book.store  # type: ignore[union-attr]
    img = image(layers=2, layer_size=3000)
    for data in img.blobs.values():
        await upload(store, repo, data)
        stores.clock.now += 0.5
    await store.manifests.put(repo, "v1", img.manifest, img.media_type)


def test_compaction_folds_entries_and_every_reader_keeps_its_figures() -> None:
    stores = Stores(policy_config(QUOTA))
    store, governance = stores.open()
    _, other = stores.open()  # another process, which read before the compaction

    async def scenario() -> None:
        await push_image(stores, governance, "team/a")
        await push_image(stores, governance, "team/b")
        before = await figures(governance)
        assert before == await figures(other)
        stores.clock.now += 200
        assert governance.compactor is not None
        report = await governance.compactor.run_once()
        assert report is not None and report.ledgers["team"].folded > 0
        listing = await store.usage_log.listing("team")
        assert listing.entries == [] and len(listing.checkpoints) == 1
        assert await figures(other) == before  # its cached state gave way to the checkpoint
        assert await figures(governance, UsageBook(store, governance.rules.settings)) == before
        # Changes after the checkpoint count on top of it.
        await push_image(stores, governance, "team/c")
        assert (await figures(other)).used > before.used

    asyncio.run(scenario())


def test_one_compactor_at_a_time() -> None:
    stores = Stores(policy_config(QUOTA))
    store, _governance = stores.open()
    _, other = stores.open()

    async def scenario() -> None:
        lease = store.lease("usage", 60.0)
        assert await lease.acquire()
        assert other.compactor is not None
        assert await other.compactor.run_once() is None
        await lease.release()
        assert await other.compactor.run_once() is not None

    asyncio.run(scenario())


def test_stale_reservations_are_removed() -> None:
    stores = Stores(policy_config(QUOTA | {"quota": {"session_idle": 60}}))
    store, governance = stores.open()

    async def scenario() -> None:
        await store.usage_log.reserve("team", "abandoned", 1000)
        stores.clock.now += 30
        await store.usage_log.reserve("team", "alive", 2000)
        assert governance.compactor is not None
        await governance.compactor.upkeep()
        assert {r.holder for r in (await store.usage_log.listing("team")).reservations} == {
            "abandoned",
            "alive",
        }
        stores.clock.now += 100  # abandoned: 130 s old, more than twice the idle time
        await governance.compactor.upkeep()
        left = (await store.usage_log.listing("team")).reservations
        assert [r.holder for r in left] == ["alive"]

    asyncio.run(scenario())


def test_an_entry_from_a_lagging_clock_is_folded_in_order() -> None:
    """A writer whose clock lags writes an entry named before ones a reader applied:
    the reader folds again, and agrees with a reader that saw them all at once."""
    stores = Stores(policy_config(QUOTA))
    store, governance = stores.open()

    async def scenario() -> None:
        await push_image(stores, governance, "team/a")
        view = await governance.book.view(governance.rules.quotas[0])  # type: ignore[union-attr]
        manifest = next(m for (r, m) in view.ledger.vias if r == "team/a")
        applied = await figures(governance)
        lagging, _ = stores.open()  # another process, whose clock lags
        stores.clock.now -= 3600
        await lagging.usage_log.append("team", [["M", "team/a", manifest]])
        stores.clock.now += 3600
        # The late entry sorts first: the delete is then overridden by the push.
        late = await figures(governance)
        fresh = await figures(governance, UsageBook(store, governance.rules.settings))
        assert late == fresh == applied

    asyncio.run(scenario())


def test_the_server_compacts_in_the_background(make_registry: Factory) -> None:
    """``registry serve`` runs the upkeep loop: a ledger gets its first checkpoint (and
    the gauges their figures) without anyone asking."""
    config = policy_config(QUOTA | {"quota": {"compact_interval": 0.1}})
    registry = make_registry(config)
    client = registry.client()
    push_through_api(client, "team/app", image(layers=1), "v1")
    deadline = time.monotonic() + 20
    while not any(p.startswith("quotas/team/c-") for p in registry.stored_files()):
        assert time.monotonic() < deadline, "no checkpoint was written"
        time.sleep(0.1)
    assert client.get("/api/usage").json()["namespaces"][0]["counted"] is True
