"""Test content: random blobs, image manifests and indexes, pushed over HTTP or written
as OCI layouts for skopeo."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
EMPTY_JSON = "application/vnd.oci.empty.v1+json"


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def descriptor(media_type: str, data: bytes, **extra: Any) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": sha256(data), "size": len(data), **extra}


@dataclass
class Image:
    """A manifest and the blobs it needs."""

    manifest: bytes
    media_type: str
    blobs: dict[str, bytes] = field(default_factory=dict)
    children: list[Image] = field(default_factory=list)

    @property
    def digest(self) -> str:
        return sha256(self.manifest)


def image(
    layers: int = 2,
    layer_size: int = 1024,
    docker: bool = False,
    platform: dict[str, str] | None = None,
    subject: Image | None = None,
    artifact_type: str | None = None,
    annotations: dict[str, str] | None = None,
) -> Image:
    config_doc = {
        "architecture": (platform or {}).get("architecture", "amd64"),
        "os": (platform or {}).get("os", "linux"),
        "rootfs": {"type": "layers", "diff_ids": []},
        "nonce": os.urandom(8).hex(),
    }
    config = json.dumps(config_doc).encode()
    layer_blobs = [gzip.compress(os.urandom(layer_size), 1) for _ in range(layers)]
    doc: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST if docker else OCI_MANIFEST,
        "config": descriptor(DOCKER_CONFIG if docker else OCI_CONFIG, config),
        "layers": [descriptor(DOCKER_LAYER if docker else OCI_LAYER, b) for b in layer_blobs],
    }
    if subject is not None:
        doc["subject"] = {
            "mediaType": subject.media_type,
            "digest": subject.digest,
            "size": len(subject.manifest),
        }
    if artifact_type is not None:
        doc["artifactType"] = artifact_type
    if annotations:
        doc["annotations"] = annotations
    blobs = {sha256(b): b for b in [config, *layer_blobs]}
    return Image(json.dumps(doc, indent=2).encode(), doc["mediaType"], blobs)


def index(children: list[Image], docker: bool = False) -> Image:
    platforms = [{"architecture": "amd64", "os": "linux"}, {"architecture": "arm64", "os": "linux"}]
    doc: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": DOCKER_LIST if docker else OCI_INDEX,
        "manifests": [
            {**descriptor(c.media_type, c.manifest), "platform": platforms[i % 2]}
            for i, c in enumerate(children)
        ],
    }
    return Image(json.dumps(doc).encode(), doc["mediaType"], {}, children)


def push_blob(client: httpx.Client, name: str, data: bytes) -> str:
    digest = sha256(data)
    r = client.post(
        f"/v2/{name}/blobs/uploads/",
        params={"digest": digest},
        content=data,
        headers={"Content-Type": "application/octet-stream"},
    )
    if r.status_code == 202:  # registries without single-POST pushes (distribution 2.8)
        url = httpx.URL(r.headers["Location"]).copy_merge_params({"digest": digest})
        r = client.put(url, content=data, headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 201, r.text
    return digest


def push_image(client: httpx.Client, name: str, img: Image, tag: str | None = None) -> str:
    """Push an image (children of an index first) and return its manifest digest."""
    for child in img.children:
        push_image(client, name, child)
    for data in img.blobs.values():
        push_blob(client, name, data)
    ref = tag or img.digest
    r = client.put(
        f"/v2/{name}/manifests/{ref}",
        content=img.manifest,
        headers={"Content-Type": img.media_type},
    )
    assert r.status_code == 201, r.text
    return img.digest


def write_oci_layout(path: Path, img: Image, tag: str = "latest") -> None:
    """An OCI image layout directory (``oci:`` transport of skopeo)."""
    blobs = path / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)

    def put(data: bytes) -> None:
        (blobs / sha256(data).split(":")[1]).write_bytes(data)

    def walk(i: Image) -> None:
        for c in i.children:
            walk(c)
        for data in i.blobs.values():
            put(data)
        put(i.manifest)

    walk(img)
    (path / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    top = descriptor(
        img.media_type, img.manifest, annotations={"org.opencontainers.image.ref.name": tag}
    )
    (path / "index.json").write_text(
        json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [top]})
    )


def write_dir_layout(path: Path, img: Image) -> None:
    """skopeo's ``dir:`` transport: manifest.json and one file per blob (hex name).

    Used for Docker schema2 images, which skopeo's ``oci:`` transport will not read."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "version").write_text("Directory Transport Version: 1.1\n")
    (path / "manifest.json").write_bytes(img.manifest)
    for digest, data in img.blobs.items():
        (path / digest.split(":")[1]).write_bytes(data)
