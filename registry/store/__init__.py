"""Registry semantics over a storage driver: the one place that knows the layout."""

from __future__ import annotations

from registry.store.blobs import DEFAULT_REFERENCE_BUDGET, BlobBusyError, BlobInfo, BlobStore
from registry.store.catalog import Catalog
from registry.store.login_attempts import LoginAttempts
from registry.store.manifests import ManifestStore, StoredManifest
from registry.store.referrers import ReferrersIndex
from registry.store.uploads import UploadState, UploadStore
from storage_backends import Driver


class RegistryStore:
    """Everything the routes need, over one driver."""

    def __init__(
        self, driver: Driver, *, reference_budget: float = DEFAULT_REFERENCE_BUDGET
    ) -> None:
        self.driver = driver
        self.catalog = Catalog(driver)
        self.blobs = BlobStore(driver, self.catalog, reference_budget)
        self.referrers = ReferrersIndex(driver)
        self.manifests = ManifestStore(driver, self.blobs, self.referrers, self.catalog)
        self.uploads = UploadStore(driver, self.blobs)
        self.login_attempts = LoginAttempts(driver)


__all__ = [
    "BlobBusyError",
    "BlobInfo",
    "BlobStore",
    "Catalog",
    "ManifestStore",
    "ReferrersIndex",
    "RegistryStore",
    "StoredManifest",
    "UploadState",
    "UploadStore",
]
