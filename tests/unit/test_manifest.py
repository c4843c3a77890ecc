"""Manifest parsing: media types, what a manifest references, artifactType rules."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from registry.errors import RegistryError
from registry.manifest import OCI_INDEX, OCI_MANIFEST, parse_manifest

D = "sha256:" + "a" * 64
E = "sha256:" + "b" * 64


def doc(**kw: object) -> bytes:
    base: dict[str, object] = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": D, "size": 2},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": E, "size": 3}],
    }
    base.update(kw)
    return json.dumps({k: v for k, v in base.items() if v is not None}).encode()


def test_image_references_config_and_layers() -> None:
    m = parse_manifest(doc(), OCI_MANIFEST)
    assert [str(d.digest) for d in m.blobs] == [D, E]
    assert m.manifests == ()
    assert m.artifact_type == "application/vnd.oci.image.config.v1+json"


def test_foreign_layers_are_not_required() -> None:
    layer = {
        "mediaType": "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
        "digest": E,
        "size": 3,
        "urls": ["https://example.com/layer"],
    }
    m = parse_manifest(doc(layers=[layer]), OCI_MANIFEST)
    assert [str(d.digest) for d in m.blobs] == [D]


def test_media_type_from_header_when_field_absent() -> None:
    m = parse_manifest(doc(mediaType=None), OCI_MANIFEST)
    assert m.media_type == OCI_MANIFEST


def test_index_references_children() -> None:
    body = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [{"mediaType": OCI_MANIFEST, "digest": D, "size": 10}],
        }
    ).encode()
    m = parse_manifest(body, OCI_INDEX)
    assert [str(d.digest) for d in m.manifests] == [D]
    assert m.blobs == ()
    assert m.artifact_type is None


def test_subject_and_artifact_type() -> None:
    m = parse_manifest(
        doc(
            subject={"mediaType": OCI_MANIFEST, "digest": E, "size": 5},
            artifactType="application/x",
        ),
        OCI_MANIFEST,
    )
    assert m.subject is not None and str(m.subject.digest) == E
    assert m.referrer_descriptor(m.subject.digest, 9)["artifactType"] == "application/x"


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=5),
        lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=8), c, max_size=4),
        max_leaves=20,
    )
)
def test_parser_only_ever_raises_manifest_invalid(value: object) -> None:
    try:
        parse_manifest(json.dumps(value).encode(), OCI_MANIFEST)
    except RegistryError as exc:
        assert exc.code.code == "MANIFEST_INVALID"


@given(st.binary(max_size=64))
def test_garbage_bytes_are_manifest_invalid(body: bytes) -> None:
    with pytest.raises(RegistryError) as info:
        parse_manifest(body, OCI_MANIFEST)
    assert info.value.code.code == "MANIFEST_INVALID"


@pytest.mark.parametrize(
    "body",
    [
        b'{"annotations":' + b"[" * 1000 + b"]" * 1000 + b"}",
        b'{"annotations":' + b"[" * 2000 + b"]" * 2000 + b"}",
        b'{"schemaVersion":2,"layers":' + b'{"a":' * 2000 + b"1" + b"}" * 2000 + b"}",
        b"[" * 100_000,
    ],
    ids=["1000-deep", "2000-deep", "2000-deep-objects", "100k-unclosed"],
)
def test_deeply_nested_json_is_manifest_invalid(body: bytes) -> None:
    with pytest.raises(RegistryError) as exc:
        parse_manifest(body, OCI_MANIFEST)
    assert exc.value.code.code == "MANIFEST_INVALID"
