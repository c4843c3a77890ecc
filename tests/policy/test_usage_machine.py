"""Usage equals an independent recount from storage after any sequence of pushes, mounts,
deletes, garbage collections, compactions and time passing.

A hypothesis state machine drives one store (the memory driver, with a clock the test
moves) through the store's own operations, so every path the listeners see is taken:
uploads, mounts (from a repository under the quota and from one outside it), manifest
pushes with shared layers, deletes by digest and by tag, blob unlinks, collections with
the real collector. After every step a second "process" (a fresh store and book over
the same storage) reads the quota's ledger, and its figures must equal a count made
from storage alone: the blobs the quota's manifests reference, each once, by their
stored size -- for the namespace and for every repository.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
from collections.abc import AsyncIterator
from typing import Any

import hypothesis.strategies as st
from hypothesis import HealthCheck, settings
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from registry.config import Config, GcConfig
from registry.errors import RegistryError
from registry.gc import Collector
from registry.manifest import parse_manifest
from registry.policy import Governance, install
from registry.policy.book import UsageBook
from registry.reference import Digest, parse_digest
from registry.store import BlobData, RegistryStore, open_store
from storage_backends.memory import MemoryDriver, MemoryStore
from tests.policy.conftest import ManualClock

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
QUOTA = "team"
INSIDE = ["team/a", "team/b", "team/sub/c"]
OUTSIDE = "other/x"
WINDOW = 100.0
CONFIG: dict[str, Any] = {
    "gc": {"enabled": False, "grace_period": 0},
    "policy": {
        "quotas": [{"name": QUOTA, "repositories": ["team/**"], "limit": "1GiB"}],
        "quota": {"pending_window": WINDOW, "session_idle": 1000},
    },
}


async def _body(data: bytes) -> AsyncIterator[bytes]:
    yield data


def blob(i: int) -> bytes:
    # Sizes that make every sum distinct enough to catch a blob counted twice.
    return hashlib.sha256(str(i).encode()).digest() * (i + 1)


def manifest_of(layers: list[bytes], nonce: int) -> bytes:
    config = json.dumps({"nonce": nonce}).encode()
    doc = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": _descriptor(config, "application/vnd.oci.image.config.v1+json"),
        "layers": [_descriptor(b, "application/vnd.oci.image.layer.v1.tar") for b in layers],
    }
    return json.dumps(doc).encode(), config  # type: ignore[return-value]


def _descriptor(data: bytes, media_type: str) -> dict[str, Any]:
    return {
        "mediaType": media_type,
        "digest": "sha256:" + hashlib.sha256(data).hexdigest(),
        "size": len(data),
    }


def sha(data: bytes) -> Digest:
    return parse_digest("sha256:" + hashlib.sha256(data).hexdigest())


async def recount(store: RegistryStore, repos: list[str]) -> tuple[int, dict[str, int]]:
    """From storage alone: the bytes the manifests of ``repos`` reference (themselves,
    config and layers), each blob once -- over all of them and per repository."""

    async def held(repo: str) -> set[Digest]:
        digests: set[Digest] = set()
        for manifest in await store.manifests.revisions(repo):
            digests.add(manifest)
            body = await store.blobs.get_small(manifest)
            digests |= {d.digest for d in parse_manifest(body, None).blobs}
        return digests

    async def size(digest: Digest) -> int:
        info = await store.stat(BlobData(digest))
        assert info is not None, f"{digest} is referenced but not stored"
        return info.size

    per_repo = {repo: await held(repo) for repo in repos}
    everything = set().union(*per_repo.values())
    sizes = {d: await size(d) for d in everything}
    return sum(sizes.values()), {r: sum(sizes[d] for d in ds) for r, ds in per_repo.items()}


class UsageMachine(RuleBasedStateMachine):
    @initialize()
    def start(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.clock = ManualClock()
        self.shared = MemoryStore()
        self.config = Config.model_validate(CONFIG)
        self.store = self._open()
        self.governance: Governance = install(self.store, self.config.policy)
        # The model: links (repository, digest) -> (linked at, size), and per repository
        # its manifests with the digests each uses.
        self.links: dict[tuple[str, str], tuple[float, int]] = {}
        self.manifests: dict[str, dict[str, set[str]]] = {r: {} for r in INSIDE}
        # (repository, digest) -> when a manifest there last started or stopped using it
        self.settled: dict[tuple[str, str], float] = {}
        self.nonce = 0

    def _open(self) -> RegistryStore:
        driver = MemoryDriver(self.shared, clock=self.clock.time)
        return open_store(self.config, driver=driver, clock=self.clock)

    def teardown(self) -> None:
        if hasattr(self, "loop"):
            self.loop.close()

    def run(self, coro: Any) -> Any:
        self.clock.now += 0.01  # time passes between the steps of clients
        return self.loop.run_until_complete(coro)

    def linked(self, repo: str) -> set[str]:
        return {d for (r, d) in self.links if r == repo}

    def upload(self, repo: str, data: bytes) -> None:
        async def push() -> None:
            state = await self.store.uploads.create(repo)
            await self.store.uploads.append(repo, state, _body(data))
            await self.store.uploads.commit(repo, state, sha(data))

        self.run(push())
        self.links[(repo, str(sha(data)))] = (self.clock.now, len(data))

    # ------------------------------------------------------------------ rules

    @rule(repo=st.sampled_from([*INSIDE, OUTSIDE]), i=st.integers(0, 7))
    def push_blob(self, repo: str, i: int) -> None:
        self.upload(repo, blob(i))

    @rule(
        source=st.sampled_from([*INSIDE, OUTSIDE]),
        into=st.sampled_from(INSIDE),
        i=st.integers(0, 7),
    )
    def mount(self, source: str, into: str, i: int) -> None:
        digest = sha(blob(i))
        if str(digest) not in self.linked(source) or source == into:
            return
        info = self.run(self.store.blobs.mount(into, digest, source))
        assert info is not None
        self.links[(into, str(digest))] = (self.clock.now, info.size)

    @rule(
        repo=st.sampled_from(INSIDE),
        layers=st.lists(st.integers(0, 7), min_size=1, max_size=3, unique=True),
        tag=st.sampled_from([None, "latest", "v1"]),
    )
    def push_manifest(self, repo: str, layers: list[int], tag: str | None) -> None:
        for i in layers:
            if str(sha(blob(i))) not in self.linked(repo):
                self.upload(repo, blob(i))
        self.nonce += 1
        body, config = manifest_of([blob(i) for i in layers], self.nonce)
        self.upload(repo, config)
        self.run(self.store.manifests.put(repo, tag or str(sha(body)), body, OCI_MANIFEST))
        uses = {str(sha(body)), str(sha(config)), *(str(sha(blob(i))) for i in layers)}
        self.manifests[repo][str(sha(body))] = uses
        self.settle(repo, uses)

    def settle(self, repo: str, digests: set[str]) -> None:
        for digest in digests:
            self.settled[(repo, digest)] = self.clock.now

    @precondition(lambda self: any(self.manifests.values()))
    @rule(data=st.data())
    def delete_manifest(self, data: st.DataObject) -> None:
        repo = data.draw(st.sampled_from([r for r in INSIDE if self.manifests[r]]))
        digest = data.draw(st.sampled_from(sorted(self.manifests[repo])))
        self.run(self.store.manifests.delete(repo, digest))
        self.settle(repo, self.manifests[repo].pop(digest))

    @rule(repo=st.sampled_from(INSIDE), tag=st.sampled_from(["latest", "v1"]))
    def delete_tag(self, repo: str, tag: str) -> None:
        with contextlib.suppress(RegistryError):  # no such tag
            self.run(self.store.manifests.delete(repo, tag))

    @rule(repo=st.sampled_from(INSIDE), i=st.integers(0, 7))
    def unlink_blob(self, repo: str, i: int) -> None:
        digest = str(sha(blob(i)))
        if digest not in self.linked(repo):
            return
        self.run(self.store.blobs.unlink(repo, parse_digest(digest)))
        del self.links[(repo, digest)]

    @rule(seconds=st.sampled_from([1.0, 30.0, 150.0]))
    def time_passes(self, seconds: float) -> None:
        self.clock.now += seconds

    @rule(untagged=st.sampled_from(["delete", "keep"]))
    def collect(self, untagged: str) -> None:
        self.clock.now += 2.0  # past the clock resolution: the grace period (0) is over
        gc = GcConfig.model_validate({"grace_period": 0, "untagged": {"policy": untagged}})
        collector = Collector(self.store, gc, upload_expiry=3600, settle=0.0)
        self.run(collector.run())
        # What the collector removed, the model forgets.
        for repo in INSIDE:
            revisions = {str(d) for d in self.run(self.store.manifests.revisions(repo))}
            for gone in set(self.manifests[repo]) - revisions:
                self.settle(repo, self.manifests[repo].pop(gone))
        for repo in [*INSIDE, OUTSIDE]:
            linked = {str(d) for d in self.run(self.store.blobs.links(repo))}
            for digest in self.linked(repo) - linked:
                del self.links[(repo, digest)]

    @rule()
    def compact(self) -> None:
        assert self.governance.compactor is not None
        self.governance.compactor.settle = 0.0
        self.run(self.governance.compactor.upkeep())

    # ------------------------------------------------------------------ invariants

    @invariant()
    def usage_equals_recount(self) -> None:
        if not hasattr(self, "store"):
            return
        other = self._open()  # another process over the same storage
        rules = self.governance.rules
        book = UsageBook(other, rules.settings)
        view = self.run(book.view(rules.quotas[0]))
        total, per_repo = self.run(recount(other, INSIDE))
        assert view.figures().used == total
        for repo in INSIDE:
            assert view.ledger.figures(view.now, WINDOW, repo).used == per_repo[repo], repo
        used = {d for repo in INSIDE for uses in self.manifests[repo].values() for d in uses}
        recent = {
            d: size
            for (r, d), (at, size) in self.links.items()
            if r in INSIDE
            and at > view.now - WINDOW
            and at > self.settled.get((r, d), 0.0)
            and d not in used
        }
        assert view.figures().pending == sum(recent.values())
        stale = {
            d: size
            for (r, d), (_, size) in self.links.items()
            if r in INSIDE and d not in used and d not in recent
        }
        assert view.figures().releasable == sum(stale.values())


UsageMachine.TestCase.settings = settings(
    max_examples=60,
    stateful_step_count=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestUsageMachine = UsageMachine.TestCase
