"""Storage drivers: small async byte stores that know nothing about registries."""

from storage_backends.base import (
    DirectRead,
    DirectReads,
    Driver,
    ExpectingWriter,
    FileInfo,
    FileWriter,
    Folders,
    GatheringWriter,
    InvalidOffsetError,
    InvalidPathError,
    PathNotFoundError,
    StorageError,
)
from storage_backends.checked import CheckedDriver, Observer

__all__ = [
    "CheckedDriver",
    "DirectRead",
    "DirectReads",
    "Driver",
    "ExpectingWriter",
    "FileInfo",
    "FileWriter",
    "Folders",
    "GatheringWriter",
    "InvalidOffsetError",
    "InvalidPathError",
    "Observer",
    "PathNotFoundError",
    "StorageError",
]
