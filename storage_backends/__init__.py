"""Storage drivers: small async byte stores that know nothing about registries."""

from storage_backends.base import (
    Driver,
    FileInfo,
    FileWriter,
    Folders,
    GatheringWriter,
    InvalidOffsetError,
    InvalidPathError,
    LocalFiles,
    PathNotFoundError,
    StorageError,
)
from storage_backends.checked import CheckedDriver, Observer

__all__ = [
    "CheckedDriver",
    "Driver",
    "FileInfo",
    "FileWriter",
    "Folders",
    "GatheringWriter",
    "InvalidOffsetError",
    "InvalidPathError",
    "LocalFiles",
    "Observer",
    "PathNotFoundError",
    "StorageError",
]
