"""Build the configured storage driver, wrapped as every production path uses it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from storage_backends.base import Driver
from storage_backends.checked import CheckedDriver, Observer

if TYPE_CHECKING:
    from storage_backends.s3 import S3Settings


class _FilesystemSection(Protocol):
    @property
    def rootdirectory(self) -> str: ...


class _S3Section(Protocol):
    def driver_settings(self) -> S3Settings: ...


class StorageSettings(Protocol):
    """What open_driver reads of the ``storage:`` configuration (the registry's
    StorageConfig is one; storage_backends imports nothing from the registry)."""

    @property
    def driver(self) -> str: ...

    @property
    def filesystem(self) -> _FilesystemSection: ...

    @property
    def s3(self) -> _S3Section: ...


def open_driver(storage_config: StorageSettings, observer: Observer | None = None) -> Driver:
    """The driver named by ``storage.driver`` (``filesystem`` or ``s3``), its paths
    checked and, given an ``observer``, its calls timed."""
    return CheckedDriver(_open_bare(storage_config), observer)


def _open_bare(storage_config: StorageSettings) -> Driver:
    if storage_config.driver == "filesystem":
        from storage_backends.filesystem import FilesystemDriver

        return FilesystemDriver(storage_config.filesystem.rootdirectory)
    if storage_config.driver == "s3":
        # Imported here so that a filesystem-only registry never loads botocore.
        from storage_backends.s3 import S3Driver

        return S3Driver(storage_config.s3.driver_settings())
    raise ValueError(f"unknown storage driver: {storage_config.driver!r}")
