"""Choose and open the configured driver."""

from __future__ import annotations

from typing import TYPE_CHECKING

from storage_backends.base import Driver

if TYPE_CHECKING:
    from registry.config import StorageConfig


def open_driver(config: StorageConfig) -> Driver:
    if config.driver == "s3":
        from storage_backends.s3 import S3Driver

        return S3Driver(config.s3)
    from storage_backends.filesystem import FilesystemDriver

    return FilesystemDriver(config.filesystem.rootdirectory)
