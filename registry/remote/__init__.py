"""A client for other registries, shared by the pull-through cache and replication.

Start at ``RegistryClient`` (client.py); its settings are ``RemoteSettings``
(settings.py), its failures subclasses of ``RemoteError`` (errors.py).
"""

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
