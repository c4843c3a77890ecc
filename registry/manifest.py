"""Manifests and indexes: media types, validation, and what a manifest references (pure).

Supports OCI image manifest and index (image-spec 1.1, artifacts with ``artifactType``
and ``subject``) and Docker schema2 manifest and manifest list. Docker schema1 is
refused: it was deprecated in 2019 and signs content the registry would have to rewrite.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from registry import errors
from registry.errors import RegistryError
from registry.reference import Digest, parse_digest

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_SCHEMA1 = (
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
)

IMAGE_TYPES = (OCI_MANIFEST, DOCKER_MANIFEST)
INDEX_TYPES = (OCI_INDEX, DOCKER_LIST)
MANIFEST_TYPES = IMAGE_TYPES + INDEX_TYPES


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: Digest
    size: int
    urls: tuple[str, ...] = ()


@dataclass(frozen=True)
class Manifest:
    media_type: str
    blobs: tuple[Descriptor, ...]  # config and layers that must be in the repository
    manifests: tuple[Descriptor, ...]  # children of an index
    subject: Descriptor | None = None
    artifact_type: str | None = None
    annotations: dict[str, str] = field(default_factory=dict)

    def referrer_descriptor(self, digest: Digest, size: int) -> dict[str, Any]:
        """The descriptor of this manifest in its subject's referrers index."""
        desc: dict[str, Any] = {"mediaType": self.media_type, "digest": str(digest), "size": size}
        if self.artifact_type:
            desc["artifactType"] = self.artifact_type
        if self.annotations:
            desc["annotations"] = self.annotations
        return desc


def _invalid(message: str) -> RegistryError:
    return RegistryError(errors.MANIFEST_INVALID, message)


def _descriptor(raw: Any, where: str) -> Descriptor:
    if not isinstance(raw, dict):
        raise _invalid(f"{where}: a descriptor must be an object")
    media_type = raw.get("mediaType")
    digest = raw.get("digest")
    size = raw.get("size")
    if not isinstance(media_type, str) or not media_type:
        raise _invalid(f"{where}: mediaType must be a non-empty string")
    if not isinstance(digest, str):
        raise _invalid(f"{where}: digest must be a string")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise _invalid(f"{where}: size must be a non-negative integer")
    try:
        parsed = parse_digest(digest)
    except RegistryError as exc:
        raise _invalid(f"{where}: {exc.message}") from None
    urls = raw.get("urls") or ()
    if not isinstance(urls, list | tuple) or not all(isinstance(u, str) for u in urls):
        raise _invalid(f"{where}: urls must be a list of strings")
    return Descriptor(media_type, parsed, size, tuple(urls))


def _optional_str(doc: dict[str, Any], key: str) -> str | None:
    value = doc.get(key)
    if value is not None and not isinstance(value, str):
        raise _invalid(f"{key} must be a string")
    return value


def parse_manifest(body: bytes, content_type: str | None) -> Manifest:
    """Validate a manifest and say what it references. Raises MANIFEST_INVALID."""
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise _invalid(f"manifest is not valid JSON: {exc}") from None
    except RecursionError:
        # Real manifests nest a few levels; the decoder gives up near a thousand.
        raise _invalid("manifest JSON is nested too deeply") from None
    if not isinstance(doc, dict):
        raise _invalid("manifest must be a JSON object")
    header_type = (content_type or "").split(";")[0].strip().lower() or None
    field_type = doc.get("mediaType")
    if field_type is not None and not isinstance(field_type, str):
        raise _invalid("mediaType must be a string")
    if (
        header_type in DOCKER_SCHEMA1
        or field_type in DOCKER_SCHEMA1
        or doc.get("schemaVersion") == 1
    ):
        raise _invalid("Docker schema1 manifests are not supported")
    if field_type and header_type and header_type in MANIFEST_TYPES and field_type != header_type:
        raise _invalid(f"mediaType {field_type!r} does not match Content-Type {header_type!r}")
    media_type = field_type or header_type
    if media_type not in MANIFEST_TYPES:
        # No usable type: infer it from the shape, as image-spec allows for OCI types.
        if media_type is None or media_type == "application/json":
            media_type = OCI_INDEX if "manifests" in doc else OCI_MANIFEST
        else:
            raise _invalid(f"unsupported manifest media type: {media_type!r}")
    if doc.get("schemaVersion") != 2:
        raise _invalid("schemaVersion must be 2")

    annotations = doc.get("annotations") or {}
    if not isinstance(annotations, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in annotations.items()
    ):
        raise _invalid("annotations must map strings to strings")
    subject = _descriptor(doc["subject"], "subject") if doc.get("subject") is not None else None
    artifact_type = _optional_str(doc, "artifactType")

    if media_type in IMAGE_TYPES:
        if "config" not in doc:
            raise _invalid("an image manifest needs a config descriptor")
        config = _descriptor(doc["config"], "config")
        layers_raw = doc.get("layers")
        if layers_raw is None:
            layers_raw = []
        if not isinstance(layers_raw, list):
            raise _invalid("layers must be a list")
        layers = [_descriptor(d, f"layers[{i}]") for i, d in enumerate(layers_raw)]
        # Foreign (non-distributable) layers live at their URLs, not in the registry.
        blobs = tuple(d for d in [config, *layers] if not d.urls)
        if artifact_type is None and media_type == OCI_MANIFEST:
            # image-spec: the referrers API reports the config media type then.
            artifact_type = config.media_type
        return Manifest(media_type, blobs, (), subject, artifact_type, annotations)

    children_raw = doc.get("manifests")
    if not isinstance(children_raw, list):
        raise _invalid("an index needs a manifests list")
    children = tuple(_descriptor(d, f"manifests[{i}]") for i, d in enumerate(children_raw))
    return Manifest(media_type, (), children, subject, artifact_type, annotations)
