"""The S3 driver's client is built from botocore's data cut to what it calls
(storage_backends/s3_data.py): the driver calls no operation the cut model lacks, each
operation kept is described exactly as in the whole model, and the requests the client
makes -- URL, headers, signature, body -- are byte for byte those of a client built from
the whole data."""

from __future__ import annotations

import ast
import datetime
from pathlib import Path
from typing import Any

import botocore.auth
import botocore.loaders
import botocore.session
import pytest
from botocore.awsrequest import AWSPreparedRequest, AWSResponse
from botocore.model import OperationModel, Shape

from storage_backends import s3, s3_data
from storage_backends.s3 import S3Driver, S3Settings
from storage_backends.s3_data import OPERATIONS, S3DataLoader

S3_SOURCE = Path(s3.__file__)


def settings(**overrides: Any) -> S3Settings:
    values: dict[str, Any] = {
        "bucket": "bucket",
        "region": "eu-west-3",
        "endpoint_url": "http://127.0.0.1:9",  # never reached: requests stop before sending
        "path_style": True,
        "prefix": "",
        "access_key_id": "AKIDEXAMPLE",
        "secret_access_key": "secret",
        "encrypt": False,
        "kms_key_id": None,
        "storage_class": None,
        "max_pool_connections": 4,
        "part_size": 5 << 20,
        "verify_tls": True,
    }
    return S3Settings(**(values | overrides))


def whole_data_client(monkeypatch: pytest.MonkeyPatch, config: S3Settings) -> Any:
    """The driver's client, built as the driver builds it but from botocore's whole data."""
    with monkeypatch.context() as m:
        m.setattr(s3, "S3DataLoader", botocore.loaders.JSONFileLoader)
        return S3Driver(config)._s3


def called_methods() -> set[str]:
    """The client methods storage_backends/s3.py calls (``<...>._s3.<method>(...)``)."""
    tree = ast.parse(S3_SOURCE.read_text())
    out = set()
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and isinstance(node.func.value, ast.Attribute)
            and node.func.value.attr == "_s3"
        ):
            out.add(node.func.attr)
    # partial(self._s3.list_objects_v2, ...): a method passed rather than called.
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "partial":
            first = node.args[0]
            if isinstance(first, ast.Attribute) and getattr(first.value, "attr", None) == "_s3":
                out.add(first.attr)
    return out


def test_the_driver_calls_only_operations_the_cut_model_keeps() -> None:
    whole = botocore.session.get_session().get_service_model("s3")
    by_method = {botocore.xform_name(op): op for op in whole.operation_names}
    methods = called_methods()
    assert {"get_object", "list_objects_v2", "upload_part"} <= methods  # the scan works
    called = {by_method[m] for m in methods if m in by_method}
    # generate_presigned_url("get_object", ...) signs a GetObject; close() is no request.
    assert methods - by_method.keys() == {"generate_presigned_url", "close"}
    assert called | {"GetObject"} == OPERATIONS


def described(shape: Shape | None, seen: frozenset[str] = frozenset()) -> Any:
    """A shape with every shape it refers to, resolved, as plain data (no documentation)."""
    if shape is None:
        return None
    out: dict[str, Any] = {
        "name": shape.name,
        "type": shape.type_name,
        "serialization": shape.serialization,
        "metadata": {k: v for k, v in shape.metadata.items() if k != "documentation"},
    }
    if shape.name in seen:  # a recursive shape: its name is enough the second time
        return out
    seen = seen | {shape.name}
    if shape.type_name == "structure":
        out["members"] = {n: described(m, seen) for n, m in shape.members.items()}  # type: ignore[attr-defined]
    elif shape.type_name == "list":
        out["member"] = described(shape.member, seen)  # type: ignore[attr-defined]
    elif shape.type_name == "map":
        out["key"] = described(shape.key, seen)  # type: ignore[attr-defined]
        out["value"] = described(shape.value, seen)  # type: ignore[attr-defined]
    return out


def operation(op: OperationModel) -> dict[str, Any]:
    return {
        "http": op.http,
        "metadata": {k: v for k, v in op.metadata.items() if k != "documentation"},
        "input": described(op.input_shape),
        "output": described(op.output_shape),
        "errors": [described(e) for e in op.error_shapes],
        "context": (op.static_context_parameters, op.context_parameters),
        "checksum": op.http_checksum,
        "auth": (op.auth_type, op.auth, op.unsigned_payload, op.request_compression),
        "endpoint": (op.endpoint, op.endpoint_discovery, op.is_endpoint_discovery_operation),
    }


def test_each_operation_kept_is_described_as_in_the_whole_model(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cut = S3Driver(settings())._s3.meta.service_model
    whole = whole_data_client(monkeypatch, settings()).meta.service_model
    assert set(cut.operation_names) == OPERATIONS
    assert cut.metadata == whole.metadata

    def context(model: Any) -> list[tuple[str, str]]:
        return [(p.name, p.type) for p in model.client_context_parameters]

    assert context(cut) == context(whole) != []
    for name in sorted(OPERATIONS):
        assert operation(cut.operation_model(name)) == operation(whole.operation_model(name))


def test_the_cut_model_has_no_shape_nothing_reaches() -> None:
    whole = botocore.session.get_session().get_service_model("s3")
    cut = S3Driver(settings())._s3.meta.service_model
    assert len(cut.shape_names) < len(whole.shape_names) / 3
    assert "Expires" in cut.shape_names  # the model's sdk-extras still apply


BUCKET = "bucket"
KEY = "some/dir/ü key+x"
# One call of every kind the driver makes, with the arguments it passes.
CALLS: list[tuple[str, dict[str, Any]]] = [
    ("get_object", {"Key": KEY}),
    ("get_object", {"Key": KEY, "IfMatch": '"etag"'}),
    ("get_object", {"Key": KEY, "Range": "bytes=3-99"}),
    ("head_object", {"Key": KEY}),
    ("put_object", {"Key": KEY, "Body": b"data"}),
    (
        "put_object",
        {"Key": KEY, "Body": bytearray(b"x" * 70), "ServerSideEncryption": "aws:kms"}
        | {"SSEKMSKeyId": "key-1", "StorageClass": "STANDARD_IA"},
    ),
    ("put_object", {"Key": KEY, "Body": b"", "ServerSideEncryption": "AES256"}),
    ("create_multipart_upload", {"Key": KEY, "ServerSideEncryption": "AES256"}),
    ("upload_part", {"Key": KEY, "UploadId": "u-1", "PartNumber": 3, "Body": b"part"}),
    (
        "upload_part_copy",
        {"Key": KEY, "UploadId": "u-1", "PartNumber": 2}
        | {"CopySource": {"Bucket": BUCKET, "Key": "src/ü"}, "CopySourceRange": "bytes=0-99"},
    ),
    (
        "complete_multipart_upload",
        {"Key": KEY, "UploadId": "u-1"}
        | {"MultipartUpload": {"Parts": [{"ETag": '"a"', "PartNumber": 1}]}},
    ),
    ("abort_multipart_upload", {"Key": KEY, "UploadId": "u-1"}),
    ("copy_object", {"Key": KEY, "CopySource": {"Bucket": BUCKET, "Key": "src/ü"}}),
    ("delete_objects", {"Delete": {"Objects": [{"Key": KEY}, {"Key": "b"}], "Quiet": True}}),
    ("list_objects_v2", {"Prefix": "some/", "Delimiter": "/", "MaxKeys": 1000}),
    (
        "list_objects_v2",
        {"Prefix": "some/", "ContinuationToken": "tok", "StartAfter": "some/a"},
    ),
    ("list_multipart_uploads", {"Prefix": "x/", "KeyMarker": "k", "UploadIdMarker": "u"}),
]


class _Raw:
    """An empty XML answer, as a response's raw stream."""

    def stream(self, **_: Any) -> Any:
        yield b"<Result></Result>"


def sent_requests(client: Any) -> list[tuple[str, str, dict[str, str], bytes]]:
    """What the client would send for each of CALLS (stopped before the network)."""
    sent: list[tuple[str, str, dict[str, str], bytes]] = []

    def capture(request: AWSPreparedRequest, **_: Any) -> AWSResponse:
        headers = {k: str(v) for k, v in request.headers.items()}
        headers.pop("amz-sdk-invocation-id", None)  # random per request
        body = request.body
        if hasattr(body, "read"):
            body = body.read()
        sent.append((request.method, request.url, headers, bytes(body or b"")))
        return AWSResponse(request.url, 200, {}, _Raw())

    client.meta.events.register_first("before-send.s3", capture)
    for method, kwargs in CALLS:
        getattr(client, method)(Bucket=BUCKET, **kwargs)
    sent.append(
        ("presigned", client.generate_presigned_url(
            "get_object", Params={"Bucket": BUCKET, "Key": KEY}, ExpiresIn=1200
        ), {}, b"")
    )  # fmt: skip
    return sent


@pytest.mark.parametrize(
    "config",
    [
        settings(),
        settings(endpoint_url=None, path_style=False, region="us-east-1"),
        settings(endpoint_url="https://s3.example.org:8443", region="us-west-2"),
    ],
    ids=["path-style endpoint", "aws virtual-hosted", "https endpoint"],
)
def test_requests_are_those_of_a_client_with_the_whole_data(
    monkeypatch: pytest.MonkeyPatch, config: S3Settings
) -> None:
    moment = datetime.datetime(2026, 12, 5, 8, 0, 0)
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: moment)
    expected = sent_requests(whole_data_client(monkeypatch, config))
    got = sent_requests(S3Driver(config)._s3)
    assert len(got) == len(CALLS) + 1
    for g, e in zip(got, expected, strict=True):
        assert g == e


def test_endpoints_keep_the_partitions_and_s3_only() -> None:
    loader = botocore.loaders.create_loader()
    whole = loader.load_data("endpoints")
    cut = S3DataLoader().load_file(loader.load_data_with_path("endpoints")[1])
    assert [p["partition"] for p in cut["partitions"]] == [
        p["partition"] for p in whole["partitions"]
    ]
    for c, w in zip(cut["partitions"], whole["partitions"], strict=True):
        assert c["regions"] == w["regions"]
        assert c["defaults"] == w["defaults"]
        assert set(c["services"]) == ({"s3"} & set(w["services"]))
        assert c["services"].get("s3") == w["services"].get("s3")


def test_an_operation_the_model_lacks_is_refused_by_name() -> None:
    model = {"operations": {"GetObject": {"name": "GetObject"}}, "shapes": {}}
    with pytest.raises(ValueError, match="PutObject"):
        s3_data.s3_service_model(model, frozenset({"GetObject", "PutObject"}))


def test_shapes_reached_follows_members_lists_and_maps() -> None:
    shapes = {
        "In": {"type": "structure", "members": {"A": {"shape": "L"}, "B": {"shape": "M"}}},
        "L": {"type": "list", "member": {"shape": "S"}},
        "M": {"type": "map", "key": {"shape": "S"}, "value": {"shape": "In"}},
        "S": {"type": "string"},
        "Unused": {"type": "string"},
    }
    assert s3_data.shapes_reached(shapes, ["In"]) == {"In", "L", "M", "S"}
