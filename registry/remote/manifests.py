"""Manifests as fetched from a remote: the exact bytes, their media type and digest, and
the rules that check them (pure)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from registry.errors import RegistryError
from registry.manifest import DOCKER_LIST, DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST
from registry.reference import Digest, parse_digest

# OCI 1.1's release candidates had an artifact manifest; some registries still hold them.
OCI_ARTIFACT_MANIFEST = "application/vnd.oci.artifact.manifest.v1+json"

# Every manifest type this client asks for. Docker schema1 is left out on purpose: this
# registry refuses it, and a remote that has the image in schema2 then answers schema2.
MANIFEST_MEDIA_TYPES = (
    OCI_INDEX,
    OCI_MANIFEST,
    DOCKER_LIST,
    DOCKER_MANIFEST,
    OCI_ARTIFACT_MANIFEST,
)

MANIFEST_MAX = 4 * 1024 * 1024  # this registry's own limit


@dataclass(frozen=True)
class ManifestInfo:
    """What a HEAD tells: enough to decide whether a cached copy is current."""

    digest: Digest
    media_type: str
    size: int


@dataclass(frozen=True)
class RemoteManifest:
    """A manifest exactly as the remote stored it (never re-serialised)."""

    body: bytes
    media_type: str
    digest: Digest

    @property
    def size(self) -> int:
        return len(self.body)

    @property
    def info(self) -> ManifestInfo:
        return ManifestInfo(self.digest, self.media_type, len(self.body))


def try_digest(value: str | None) -> Digest | None:
    if not value:
        return None
    try:
        return parse_digest(value.strip())
    except RegistryError:
        return None


def digest_of(body: bytes, algorithm: str = "sha256") -> Digest:
    return Digest(algorithm, hashlib.new(algorithm, body).hexdigest())


def media_type_of(content_type: str | None, body: bytes | None) -> str | None:
    """The Content-Type without parameters; for a generic or missing one, the body's
    ``mediaType`` field."""
    header = (content_type or "").split(";")[0].strip().lower()
    if header and header not in ("application/json", "application/octet-stream", "text/plain"):
        return header
    if body is None:
        return header or None
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return header or None
    field = doc.get("mediaType") if isinstance(doc, dict) else None
    return field if isinstance(field, str) and field else (header or None)
