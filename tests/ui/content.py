"""Images that look like real ones, for the UI's pages: a config with an entrypoint,
environment, labels, ports and a history whose commands made the layers; indexes of
several platforms; and referrers (signatures, SBOMs, attestations) with annotations."""

from __future__ import annotations

import gzip
import json
import os
from typing import Any

from tests.images import EMPTY_JSON, OCI_CONFIG, OCI_INDEX, OCI_LAYER, OCI_MANIFEST, Image
from tests.images import descriptor as desc

CREATED = "2024-05-01T12:00:00Z"
HISTORY = [
    ("/bin/sh -c #(nop) ADD file:3b1c0f7e in / ", False),
    ("/bin/sh -c apk add --no-cache ca-certificates tzdata", False),
    ("/bin/sh -c #(nop)  ENV APP_HOME=/srv/app", True),
    ("COPY ./dist /srv/app # buildkit", False),
    ("EXPOSE map[8080/tcp:{} 9090/tcp:{}]", True),
    ('CMD ["serve","--port","8080"]', True),
]


def app_image(
    platform: tuple[str, str, str | None] = ("linux", "amd64", None), layer_size: int = 4096
) -> Image:
    os_name, arch, variant = platform
    layers = [gzip.compress(os.urandom(layer_size * (i + 1)), 1) for i in range(3)]
    config_doc: dict[str, Any] = {
        "created": CREATED,
        "author": "Platform Team <platform@example.com>",
        "architecture": arch,
        "os": os_name,
        "config": {
            "User": "app",
            "WorkingDir": "/srv/app",
            "Entrypoint": ["/usr/local/bin/app"],
            "Cmd": ["serve", "--port", "8080"],
            "Env": ["PATH=/usr/local/bin:/usr/bin:/bin", "APP_HOME=/srv/app", "TZ=UTC"],
            "Labels": {
                "org.opencontainers.image.source": "https://git.example.com/team/web",
                "org.opencontainers.image.version": "1.4.2",
            },
            "ExposedPorts": {"8080/tcp": {}, "9090/tcp": {}},
        },
        "rootfs": {
            "type": "layers",
            "diff_ids": [f"sha256:{os.urandom(32).hex()}" for _ in layers],
        },
        "history": [
            {"created": CREATED, "created_by": cmd, **({"empty_layer": True} if empty else {})}
            for cmd, empty in HISTORY
        ],
    }
    if variant:
        config_doc["variant"] = variant
    config = json.dumps(config_doc).encode()
    doc = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": desc(OCI_CONFIG, config),
        "layers": [desc(OCI_LAYER, b) for b in layers],
        "annotations": {"org.opencontainers.image.created": CREATED},
    }
    blobs = {desc(OCI_CONFIG, b)["digest"]: b for b in [config, *layers]}
    return Image(json.dumps(doc, indent=2).encode(), OCI_MANIFEST, blobs)


PLATFORMS = [("linux", "amd64", None), ("linux", "arm64", None), ("linux", "arm", "v7")]


def app_index(children: list[Image] | None = None) -> Image:
    children = children or [app_image(p) for p in PLATFORMS]
    entries = []
    for child, (os_name, arch, variant) in zip(children, PLATFORMS, strict=False):
        platform = {
            "os": os_name,
            "architecture": arch,
            **({"variant": variant} if variant else {}),
        }
        entries.append({**desc(child.media_type, child.manifest), "platform": platform})
    doc = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}
    return Image(json.dumps(doc).encode(), OCI_INDEX, {}, children)


def referrer(subject: Image, artifact_type: str, payload: bytes, **annotations: str) -> Image:
    """An artifact that refers to ``subject`` (image-spec 1.1: empty config)."""
    empty = b"{}"
    doc = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": artifact_type,
        "config": desc(EMPTY_JSON, empty),
        "layers": [desc(artifact_type, payload)],
        "subject": desc(subject.media_type, subject.manifest),
        "annotations": {"org.opencontainers.image.created": CREATED, **annotations},
    }
    blobs = {desc(EMPTY_JSON, b)["digest"]: b for b in (empty, payload)}
    return Image(json.dumps(doc).encode(), OCI_MANIFEST, blobs)
