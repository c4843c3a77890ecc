"""Storage drivers: small async byte stores that know nothing about registries."""

from storage_backends.base import (
    Driver,
    FileInfo,
    FileWriter,
    InvalidOffsetError,
    InvalidPathError,
    PathNotFoundError,
    StorageError,
)

__all__ = [
    "Driver",
    "FileInfo",
    "FileWriter",
    "InvalidOffsetError",
    "InvalidPathError",
    "PathNotFoundError",
    "StorageError",
]
