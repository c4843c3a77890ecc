"""What a manifest holds, as the UI shows it: the summary of a tag's row (media type,
size as pulled, platforms), the details of an image (layers, config, history) or an
index (its platforms), and the tree of its referrers.

Everything is read through the store, and only what a page shows: a summary costs the
manifest (and, for an image, its config; for an index, its children) once per process,
since content is addressed by digest and never changes -- the cache cannot go stale.
Whether a manifest belongs to a repository is asked again on every read.
"""

from __future__ import annotations

import asyncio
import json
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from registry.errors import RegistryError
from registry.manifest import INDEX_TYPES, parse_manifest
from registry.reference import Digest, parse_digest
from registry.store import RegistryStore, StoredManifest

OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
IMAGE_CONFIGS = (OCI_CONFIG, DOCKER_CONFIG)
CONFIG_MAX = 4 * 1024 * 1024  # a config larger than this is not read for display
SUMMARIES_CACHED = 4096
REFERRERS_DEPTH = 4  # referrers of referrers of ... this deep
REFERRERS_SHOWN = 200  # at most this many nodes in one tree

# Referrer kinds by artifact type, first match wins (cosign, notation, sigstore bundles,
# SPDX, CycloneDX, in-toto and SLSA as the common tools write them).
_KINDS = (
    ("signature", ("signature", "cosign.artifact.sig", "sigstore.bundle", ".sig.")),
    ("sbom", ("spdx", "cyclonedx", "sbom", "syft")),
    ("attestation", ("in-toto", "intoto", "attestation", "provenance", "slsa", "vex")),
)


def artifact_kind(artifact_type: str | None) -> str:
    """``signature``, ``sbom``, ``attestation`` or ``artifact`` for an artifact type."""
    text = (artifact_type or "").lower()
    for kind, needles in _KINDS:
        if any(n in text for n in needles):
            return kind
    return "artifact"


def platform_text(doc: Any) -> str | None:
    """``os/architecture[/variant]`` of a platform object (an index entry's or a
    config's), or None without both os and architecture."""
    if not isinstance(doc, dict):
        return None
    os_name, arch, variant = doc.get("os"), doc.get("architecture"), doc.get("variant")
    if not isinstance(os_name, str) or not isinstance(arch, str) or not os_name or not arch:
        return None
    return f"{os_name}/{arch}" + (f"/{variant}" if isinstance(variant, str) and variant else "")


@dataclass(frozen=True)
class ManifestSummary:
    digest: Digest
    media_type: str
    size: int  # the manifest's own bytes
    pulled_bytes: int  # manifest, config and layers; an index: every platform's
    platforms: tuple[str, ...]
    artifact_type: str | None
    is_index: bool


@dataclass(frozen=True)
class Layer:
    digest: str
    size: int
    media_type: str
    title: str | None  # org.opencontainers.image.title (an artifact's file name)
    command: str | None  # the history entry that made it


@dataclass(frozen=True)
class HistoryEntry:
    created: str | None
    created_by: str
    comment: str | None
    layer: str | None  # the digest of the layer it made; None: an empty layer


@dataclass(frozen=True)
class ImageConfig:
    created: str | None
    author: str | None
    platform: str | None
    entrypoint: list[str] | None
    cmd: list[str] | None
    env: list[str]
    labels: dict[str, str]
    exposed_ports: list[str]
    user: str | None
    working_dir: str | None
    history: list[HistoryEntry]


@dataclass(frozen=True)
class Child:
    """A manifest of an index: a platform's image, or an attestation beside them."""

    digest: str
    media_type: str
    platform: str | None
    size: int  # as pulled
    annotations: dict[str, str]
    present: bool  # stored in this repository


@dataclass(frozen=True)
class Referrer:
    digest: str
    media_type: str
    artifact_type: str | None
    kind: str
    size: int
    annotations: dict[str, str]
    referrers: tuple[Referrer, ...] = ()


@dataclass(frozen=True)
class ManifestDetails:
    stored: StoredManifest
    summary: ManifestSummary
    annotations: dict[str, str]
    subject: str | None
    config_digest: str | None = None
    config_media_type: str | None = None
    config_size: int = 0
    config: ImageConfig | None = None
    config_note: str | None = None  # why the config is not shown
    layers: list[Layer] = field(default_factory=list)
    children: list[Child] = field(default_factory=list)


class Contents:
    """The UI's reads of manifests, with the per-process cache of summaries."""

    def __init__(self, store: RegistryStore, cached: int = SUMMARIES_CACHED) -> None:
        self._store = store
        self._cached = cached
        self._summaries: OrderedDict[Digest, ManifestSummary] = OrderedDict()

    async def summary(self, name: str, digest: Digest) -> ManifestSummary:
        """The summary of manifest ``digest`` in ``name``; MANIFEST_UNKNOWN when it is
        not there."""
        stored = await self._store.manifests.revision(name, digest)
        return await self._summary_of(name, stored)

    async def _summary_of(self, name: str, stored: StoredManifest) -> ManifestSummary:
        hit = self._summaries.get(stored.digest)
        if hit is not None:
            self._summaries.move_to_end(stored.digest)
            return hit
        doc = await self._document(stored)
        summary = await self._summarize(name, stored, doc)
        self._summaries[stored.digest] = summary
        while len(self._summaries) > self._cached:
            self._summaries.popitem(last=False)
        return summary

    async def _document(self, stored: StoredManifest) -> dict[str, Any]:
        raw = await self._store.manifests.content(stored)
        parse_manifest(raw, stored.media_type)  # stored content was checked at its push
        doc: dict[str, Any] = json.loads(raw)
        return doc

    async def _summarize(
        self, name: str, stored: StoredManifest, doc: dict[str, Any]
    ) -> ManifestSummary:
        artifact_type = _text(doc.get("artifactType"))
        if stored.media_type in INDEX_TYPES:
            children = [c for c in doc.get("manifests", []) if isinstance(c, dict)]
            platforms = tuple(p for c in children if (p := platform_text(c.get("platform"))))
            sizes = await asyncio.gather(*(self._child_size(name, c) for c in children))
            return ManifestSummary(
                stored.digest,
                stored.media_type,
                stored.size,
                stored.size + sum(sizes),
                platforms,
                artifact_type,
                True,
            )
        config = _object(doc.get("config"))
        layers = [d for d in doc.get("layers") or [] if isinstance(d, dict)]
        pulled = stored.size + _size(config) + sum(_size(d) for d in layers)
        platform = None
        if config.get("mediaType") in IMAGE_CONFIGS:
            platform = platform_text(await self._config_doc(name, config))
        elif artifact_type is None and isinstance(config.get("mediaType"), str):
            artifact_type = config["mediaType"]
        return ManifestSummary(
            stored.digest,
            stored.media_type,
            stored.size,
            pulled,
            (platform,) if platform else (),
            artifact_type,
            False,
        )

    async def _child_size(self, name: str, descriptor: dict[str, Any]) -> int:
        """What pulling one manifest of an index costs (its descriptor's size when it
        is not stored here)."""
        try:
            digest = parse_digest(str(descriptor.get("digest")))
            stored = await self._store.manifests.revision(name, digest)
        except RegistryError:
            return _size(descriptor)
        if stored.media_type in INDEX_TYPES:
            return stored.size  # nested indexes are not followed
        return (await self._summary_of(name, stored)).pulled_bytes

    async def _config_doc(self, name: str, descriptor: dict[str, Any]) -> dict[str, Any] | None:
        """The config blob as JSON when it is linked into ``name`` and small enough."""
        try:
            digest = parse_digest(str(descriptor.get("digest")))
            info = await self._store.blobs.stat(name, digest)
        except RegistryError:
            return None
        if info.size > CONFIG_MAX:
            return None
        try:
            doc = json.loads(await self._store.blobs.get_small(digest))
        except (ValueError, RecursionError):
            return None
        return doc if isinstance(doc, dict) else None

    # ------------------------------------------------------------------ one manifest

    async def details(self, name: str, digest: Digest) -> ManifestDetails:
        """Everything the manifest page shows of ``digest`` in ``name`` (its referrers
        aside); MANIFEST_UNKNOWN when it is not there."""
        stored = await self._store.manifests.revision(name, digest)
        doc = await self._document(stored)
        summary = await self._summary_of(name, stored)
        annotations = _strings(doc.get("annotations"))
        subject = doc.get("subject")
        subject_digest = _text(subject.get("digest")) if isinstance(subject, dict) else None
        if summary.is_index:
            entries = [c for c in doc.get("manifests", []) if isinstance(c, dict)]
            children = await asyncio.gather(*(self._child(name, c) for c in entries))
            return ManifestDetails(
                stored, summary, annotations, subject_digest, children=list(children)
            )
        config = _object(doc.get("config"))
        image: ImageConfig | None = None
        config_doc: dict[str, Any] | None = None
        note: str | None = None
        if config.get("mediaType") in IMAGE_CONFIGS:
            config_doc = await self._config_doc(name, config)
            if config_doc is None:
                note = "The config is not stored in this repository, or too large to show."
        layers = [d for d in doc.get("layers") or [] if isinstance(d, dict)]
        if config_doc is not None:
            image = _image_config(config_doc, layers)
        commands = _layer_commands(image, len(layers))
        return ManifestDetails(
            stored,
            summary,
            annotations,
            subject_digest,
            config_digest=_text(config.get("digest")),
            config_media_type=_text(config.get("mediaType")),
            config_size=_size(config),
            config=image,
            config_note=note,
            layers=[
                Layer(
                    str(d.get("digest")),
                    _size(d),
                    str(d.get("mediaType", "")),
                    _strings(d.get("annotations")).get("org.opencontainers.image.title"),
                    commands[i],
                )
                for i, d in enumerate(layers)
            ],
        )

    async def _child(self, name: str, descriptor: dict[str, Any]) -> Child:
        digest_text = str(descriptor.get("digest"))
        size = await self._child_size(name, descriptor)
        try:
            present = await self._store.manifests.has_revision(name, parse_digest(digest_text))
        except RegistryError:
            present = False
        return Child(
            digest_text,
            str(descriptor.get("mediaType", "")),
            platform_text(descriptor.get("platform")),
            size,
            _strings(descriptor.get("annotations")),
            present,
        )

    # ------------------------------------------------------------------ referrers

    async def referrers(
        self,
        name: str,
        subject: Digest,
        depth: int = REFERRERS_DEPTH,
        shown: int = REFERRERS_SHOWN,
    ) -> tuple[list[Referrer], bool]:
        """The referrers of ``subject`` in ``name`` with theirs, ``depth`` levels deep,
        at most ``shown`` in all; and whether some were left out."""
        walk = _Walk(shown)
        tree = await self._referrers_of(name, subject, depth, walk, frozenset())
        return tree, walk.truncated

    async def _referrers_of(
        self, name: str, subject: Digest, depth: int, walk: _Walk, seen: frozenset[Digest]
    ) -> list[Referrer]:
        seen = seen | {subject}  # a cycle cannot be pushed, but a damaged index is read too
        if walk.left <= 0 or depth <= 0:
            walk.truncated = walk.truncated or await self._has_referrers(name, subject)
            return []
        descriptors: list[dict[str, Any]] = []
        last: str | None = None
        while len(descriptors) < walk.left:
            page, more = await self._store.referrers.page(name, subject, last, 100)
            descriptors += [d for _, d in page]
            if not more or not page:
                break
            last = page[-1][0]
        else:
            walk.truncated = True
        out: list[Referrer] = []
        for d in descriptors:
            if walk.left <= 0:
                walk.truncated = True
                break
            try:
                digest = parse_digest(str(d.get("digest")))
            except RegistryError:
                continue
            walk.left -= 1
            children: list[Referrer] = []
            if digest not in seen:
                children = await self._referrers_of(name, digest, depth - 1, walk, seen)
            artifact_type = _text(d.get("artifactType"))
            out.append(
                Referrer(
                    str(digest),
                    str(d.get("mediaType", "")),
                    artifact_type,
                    artifact_kind(artifact_type),
                    _size(d),
                    _strings(d.get("annotations")),
                    tuple(children),
                )
            )
        out.sort(key=lambda r: (r.artifact_type or "", r.annotations.get(CREATED, ""), r.digest))
        return out

    async def _has_referrers(self, name: str, subject: Digest) -> bool:
        page, _ = await self._store.referrers.page(name, subject, None, 1)
        return bool(page)


@dataclass
class _Walk:
    """What is left of a referrers tree's budget, and whether something was left out."""

    left: int
    truncated: bool = False


CREATED = "org.opencontainers.image.created"


def _size(descriptor: dict[str, Any]) -> int:
    size = descriptor.get("size")
    return size if isinstance(size, int) and not isinstance(size, bool) and size >= 0 else 0


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _strings(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        return {}
    return {str(k): str(v) for k, v in value.items()}


def _string_list(value: Any) -> list[str] | None:
    if not isinstance(value, list):
        return None
    return [str(v) for v in value]


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _image_config(doc: dict[str, Any], layers: list[dict[str, Any]]) -> ImageConfig:
    """The parts of an image config (image-spec config.md) the UI shows; the history's
    non-empty entries are matched to the layers in order, as the spec defines them."""
    run = _object(doc.get("config"))
    history: list[HistoryEntry] = []
    layer_index = 0
    for entry in doc.get("history") or []:
        if not isinstance(entry, dict):
            continue
        layer = None
        if not entry.get("empty_layer"):
            if layer_index < len(layers):
                layer = str(layers[layer_index].get("digest"))
            layer_index += 1
        history.append(
            HistoryEntry(
                _text(entry.get("created")),
                str(entry.get("created_by") or ""),
                _text(entry.get("comment")),
                layer,
            )
        )
    ports = run.get("ExposedPorts")
    return ImageConfig(
        created=_text(doc.get("created")),
        author=_text(doc.get("author")),
        platform=platform_text(doc),
        entrypoint=_string_list(run.get("Entrypoint")),
        cmd=_string_list(run.get("Cmd")),
        env=_string_list(run.get("Env")) or [],
        labels=_strings(run.get("Labels")),
        exposed_ports=sorted(str(p) for p in ports) if isinstance(ports, dict) else [],
        user=_text(run.get("User")),
        working_dir=_text(run.get("WorkingDir")),
        history=history,
    )


def _layer_commands(image: ImageConfig | None, count: int) -> list[str | None]:
    commands: list[str | None] = [None] * count
    if image is None:
        return commands
    layer_entries = [h for h in image.history if h.layer is not None]
    for i, entry in enumerate(layer_entries[:count]):
        commands[i] = entry.created_by or None
    return commands
