"""Registry semantics over a storage driver: the one place that knows the layout.

Everything else -- the routes, the garbage collector, read-only mode, health, and every
feature to come -- asks a ``RegistryStore`` in registry terms and never sees a driver
or a path. Background work takes a named ``lease`` so that one process of many does it,
and reads the storage's time from a ``storage_clock`` of its own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from registry.store import layout
from registry.store.blobs import BlobFiles, BlobInfo, BlobStore
from registry.store.catalog import Catalog
from registry.store.changed import ChangedRepositories, ChangeRecord
from registry.store.changes import Changes
from registry.store.claims import (
    DEFAULT_REFERENCE_BUDGET,
    BlobBusyError,
    Claims,
    Cutoff,
    Cycle,
    reference_budget,
)
from registry.store.clock import CLOCK_RESOLUTION, SYSTEM_CLOCK, Clock, StorageClock
from registry.store.lease import SETTLE, Lease, LeaseLostError, LeaseRecord
from registry.store.login_attempts import LoginAttempts
from registry.store.maintenance import MaintenanceFlag, ReadOnlyFlag
from registry.store.manifests import ManifestStore, StoredManifest
from registry.store.mark_state import (
    BlobHolders,
    ManifestFacts,
    MarkState,
    MarkStateError,
    MarkSummary,
    RepositoryRecord,
    RepositorySummary,
)
from registry.store.objects import (
    BlobClaim,
    BlobData,
    Link,
    ObjectInfo,
    ReferrerEntry,
    Revision,
    StoredObject,
    Tag,
)
from registry.store.outbox import Outbox
from registry.store.proxy import FillClaim, ProxyRecords, ReferrersList, TagCheck
from registry.store.pushes import PushTimes
from registry.store.read_cache import ReadCache
from registry.store.referrers import ReferrersIndex
from registry.store.replication import ReplicationState
from registry.store.session_keys import SessionKeys
from registry.store.tag_intents import TagIntent, TagIntents
from registry.store.tags import TagStore
from registry.store.uploads import UploadOffsetError, UploadState, UploadStore
from registry.store.usage import RepositoryUsage, UsageSnapshot, UsageSnapshots
from registry.store.usage_log import (
    Checkpoint,
    EntryName,
    JournalEntry,
    Listing,
    Reservation,
    UsageLog,
    UsageOp,
    new_holder,
)
from storage_backends import CheckedDriver, Driver, PathNotFoundError, StorageError
from storage_backends.checked import Observer
from storage_backends.factory import open_driver

if TYPE_CHECKING:
    from registry.config import Config


class RegistryStore:
    """Everything the registry keeps, over one driver."""

    def __init__(
        self,
        driver: Driver,
        *,
        reference_budget: float = DEFAULT_REFERENCE_BUDGET,
        clock: Clock = SYSTEM_CLOCK,
        redirect_expiry: float | None = None,
        read_cache: ReadCache | None = None,
    ) -> None:
        self._driver = driver
        self.clock = clock
        # Told of every change before it is visible (store/changes.py).
        self.changes = Changes()
        # First of the listeners: the collector re-marks only the repositories that
        # changed (store/changed.py), so every change is recorded, by every process.
        self.changed = ChangedRepositories(driver, clock, reference_budget)
        self.changes.listen(self.changed)
        # What pulls may answer from without asking the storage (store/read_cache.py).
        self.read_cache = ReadCache(clock) if read_cache is None else read_cache
        self.changes.listen(self.read_cache)
        self.catalog = Catalog(driver, self.changes)
        self.tags = TagStore(driver, self.read_cache)
        self.claims = Claims(
            driver, clock, reference_budget, self.changes, after_delete=self.tags.collected
        )
        self.blobs = BlobStore(
            driver, self.catalog, self.claims, self.changes, redirect_expiry, self.read_cache
        )
        self.referrers = ReferrersIndex(driver)
        self.manifests = ManifestStore(
            driver,
            self.blobs,
            self.tags,
            self.referrers,
            self.catalog,
            self.claims,
            self.changes,
            self.read_cache,
        )
        self.uploads = UploadStore(driver, self.blobs, self.claims, self.changes)
        self.readonly_flag = ReadOnlyFlag(driver)
        self.login_attempts = LoginAttempts(driver)
        self.usage = UsageSnapshots(driver)
        # Quotas and immutable tags (registry/policy) keep their records here.
        self.usage_log = UsageLog(driver, clock)
        self.tag_intents = TagIntents(driver, clock)
        self.outbox = Outbox(driver, clock)
        self.proxy = ProxyRecords(driver)
        # Read by the web UI; ``pushes`` records only once it listens to ``changes``.
        self.pushes = PushTimes(driver, clock)
        self.session_keys = SessionKeys(driver, clock)
        # Replication's upload sessions in flight, run status and failures.
        self.replication = ReplicationState(driver)
        self.mark_state = MarkState(driver)

    def lease(
        self, name: str, ttl: float, *, owner: str | None = None, settle: float = SETTLE
    ) -> Lease:
        """The lease called ``name`` (``gc`` for the collector), as a new would-be
        holder sees it."""
        return Lease(self._driver, name, ttl, owner=owner, settle=settle, clock=self.clock)

    def storage_clock(self, name: str) -> StorageClock:
        """The storage's time, read through a probe of ``name``'s own."""
        return StorageClock(self._driver, name)

    async def stat(self, obj: StoredObject) -> ObjectInfo | None:
        """Size and modification time of a stored object, None when it is not stored."""
        try:
            info = await self._driver.stat(layout.path_of(obj))
        except PathNotFoundError:
            return None
        return ObjectInfo(info.size, info.modified)

    async def modified(self, obj: StoredObject) -> float | None:
        info = await self.stat(obj)
        return None if info is None else info.modified

    async def ping(self) -> None:
        """One cheap request that fails when the storage is unreachable, the bucket
        missing or the credentials wrong (a listing of one name at the root)."""
        await self._driver.list("", limit=1)

    async def close(self) -> None:
        await self._driver.close()


def open_store(
    config: Config,
    *,
    driver: Driver | None = None,
    observer: Observer | None = None,
    clock: Clock = SYSTEM_CLOCK,
) -> RegistryStore:
    """The store over the configured driver -- or over ``driver`` (tests give a
    MemoryDriver), wrapped as the configured one would be -- with the reference budget
    the collector's grace period asks of pushes and the configured blob redirects (only
    drivers that can serve URLs redirect) and read cache. ``observer`` times every
    storage call."""
    if driver is None:
        driver = open_driver(config.storage, observer)
    else:
        driver = CheckedDriver(driver, observer)
    s3 = config.storage.s3
    cache = config.storage.cache
    return RegistryStore(
        driver,
        reference_budget=reference_budget(config.gc.grace_period),
        clock=clock,
        redirect_expiry=s3.redirect_expiry if s3.redirect else None,
        read_cache=ReadCache(
            clock, cache.ttl_for(config.storage.driver), cache.entries, cache.manifest_bytes
        ),
    )


__all__ = [
    "CLOCK_RESOLUTION",
    "SETTLE",
    "SYSTEM_CLOCK",
    "BlobBusyError",
    "BlobClaim",
    "BlobData",
    "BlobFiles",
    "BlobHolders",
    "BlobInfo",
    "BlobStore",
    "Catalog",
    "ChangeRecord",
    "ChangedRepositories",
    "Checkpoint",
    "Claims",
    "Clock",
    "Cutoff",
    "Cycle",
    "EntryName",
    "FillClaim",
    "JournalEntry",
    "Lease",
    "LeaseLostError",
    "LeaseRecord",
    "Link",
    "Listing",
    "MaintenanceFlag",
    "ManifestFacts",
    "ManifestStore",
    "MarkState",
    "MarkStateError",
    "MarkSummary",
    "ObjectInfo",
    "Outbox",
    "PathNotFoundError",
    "ProxyRecords",
    "PushTimes",
    "ReadCache",
    "ReadOnlyFlag",
    "ReferrerEntry",
    "ReferrersIndex",
    "ReferrersList",
    "RegistryStore",
    "ReplicationState",
    "RepositoryRecord",
    "RepositorySummary",
    "RepositoryUsage",
    "Reservation",
    "Revision",
    "SessionKeys",
    "StorageClock",
    "StorageError",
    "StoredManifest",
    "StoredObject",
    "Tag",
    "TagCheck",
    "TagIntent",
    "TagIntents",
    "TagStore",
    "UploadOffsetError",
    "UploadState",
    "UploadStore",
    "UsageLog",
    "UsageOp",
    "UsageSnapshot",
    "UsageSnapshots",
    "new_holder",
    "open_store",
    "reference_budget",
]
