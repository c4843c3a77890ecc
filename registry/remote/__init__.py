"""A client for other registries, shared by the pull-through cache and replication.

Start at ``RegistryClient`` (client.py); its settings are ``RemoteSettings``
(settings.py), its failures subclasses of ``RemoteError`` (errors.py).

The package loads its modules when a name is first asked for: the configuration imports
``RemoteSettings``, and every process that reads a configuration would otherwise load
the HTTP client too (httpx, ~10 MiB) whether or not it talks to other registries.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from registry.remote.bandwidth import TokenBucket
    from registry.remote.blobs import BlobStream
    from registry.remote.client import Page, Referrers, RegistryClient, referrers_tag
    from registry.remote.errors import (
        Denied,
        NotFound,
        ProtocolError,
        RemoteError,
        TooManyRequests,
        Unauthorized,
        Unavailable,
        Unsupported,
        VerificationError,
    )
    from registry.remote.events import RequestHook, UpstreamRequest
    from registry.remote.headers import RateLimit
    from registry.remote.manifests import MANIFEST_MEDIA_TYPES, ManifestInfo, RemoteManifest
    from registry.remote.settings import (
        CredentialsError,
        RemoteCredentials,
        RemoteSettings,
        RemoteTimeouts,
    )
    from registry.remote.uploads import BlobSource, ProgressHook, UploadSession

_MODULES = {
    "BlobSource": "registry.remote.uploads",
    "BlobStream": "registry.remote.blobs",
    "CredentialsError": "registry.remote.settings",
    "Denied": "registry.remote.errors",
    "MANIFEST_MEDIA_TYPES": "registry.remote.manifests",
    "ManifestInfo": "registry.remote.manifests",
    "NotFound": "registry.remote.errors",
    "Page": "registry.remote.client",
    "ProgressHook": "registry.remote.uploads",
    "ProtocolError": "registry.remote.errors",
    "RateLimit": "registry.remote.headers",
    "Referrers": "registry.remote.client",
    "RegistryClient": "registry.remote.client",
    "RemoteCredentials": "registry.remote.settings",
    "RemoteError": "registry.remote.errors",
    "RemoteManifest": "registry.remote.manifests",
    "RemoteSettings": "registry.remote.settings",
    "RemoteTimeouts": "registry.remote.settings",
    "RequestHook": "registry.remote.events",
    "TokenBucket": "registry.remote.bandwidth",
    "TooManyRequests": "registry.remote.errors",
    "Unauthorized": "registry.remote.errors",
    "Unavailable": "registry.remote.errors",
    "Unsupported": "registry.remote.errors",
    "UploadSession": "registry.remote.uploads",
    "UpstreamRequest": "registry.remote.events",
    "VerificationError": "registry.remote.errors",
    "referrers_tag": "registry.remote.client",
}


def __getattr__(name: str) -> Any:
    module = _MODULES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "MANIFEST_MEDIA_TYPES",
    "BlobSource",
    "BlobStream",
    "CredentialsError",
    "Denied",
    "ManifestInfo",
    "NotFound",
    "Page",
    "ProgressHook",
    "ProtocolError",
    "RateLimit",
    "Referrers",
    "RegistryClient",
    "RemoteCredentials",
    "RemoteError",
    "RemoteManifest",
    "RemoteSettings",
    "RemoteTimeouts",
    "RequestHook",
    "TokenBucket",
    "TooManyRequests",
    "Unauthorized",
    "Unavailable",
    "Unsupported",
    "UploadSession",
    "UpstreamRequest",
    "VerificationError",
    "referrers_tag",
]
