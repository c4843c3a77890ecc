"""botocore's data files, cut to what the S3 driver's client uses.

A botocore client keeps the data it was built from for its life: the S3 service model
(every operation and shape of S3 with its documentation, about 3 MiB as botocore loads
it), the endpoint rules, and, through a handler its session registered, endpoints.json
(every service of every partition). The driver calls a dozen operations; the model is
cut to them and the shapes they reach, so that each of them is described exactly as in
the whole model (tests/unit/test_s3_data.py compares them and the requests they make).
Everything is parsed into plain dicts rather than botocore's OrderedDicts (half the
size, same order) and what is kept is copied out of the parse, so that the memory of
what was dropped goes back to the system rather than staying pinned by a few survivors.
"""

from __future__ import annotations

import gzip
import json
import os
from collections.abc import Iterable, Iterator
from typing import Any

# The S3 operations the driver calls (storage_backends/s3.py), as the model names them:
# generate_presigned_url signs a GetObject. The client has no method for any other
# (AttributeError): tests/unit/test_s3_data.py checks that the driver calls no other.
OPERATIONS = frozenset(
    {
        "AbortMultipartUpload",
        "CompleteMultipartUpload",
        "CopyObject",
        "CreateMultipartUpload",
        "DeleteObjects",
        "GetObject",
        "HeadObject",
        "ListMultipartUploads",
        "ListObjectsV2",
        "PutObject",
        "UploadPart",
        "UploadPartCopy",
    }
)

# What botocore reads as documentation only (docstrings, help()).
_DOCS = frozenset({"documentation", "documentationUrl"})

_EXTENSIONS = (".json", ".json.gz")  # as botocore looks for them, in this order


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        raw = f.read()
    return gzip.decompress(raw) if path.endswith(".gz") else raw


def shapes_reached(shapes: dict[str, Any], roots: Iterable[str]) -> set[str]:
    """The names of the shapes ``roots`` name and every shape those refer to."""
    seen: set[str] = set()
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        shape = shapes[name]
        refs = [shape.get(k) for k in ("member", "key", "value")]
        refs += shape.get("members", {}).values()
        todo += (ref["shape"] for ref in refs if ref is not None)
    return seen


def _undocumented(node: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in node.items() if k not in _DOCS}


def _operation_roots(operation: dict[str, Any]) -> Iterator[str]:
    for key in ("input", "output"):
        if key in operation:
            yield operation[key]["shape"]
    for error in operation.get("errors", ()):
        yield error["shape"]


def _shape(shape: dict[str, Any]) -> dict[str, Any]:
    out = _undocumented(shape)
    if "members" in out:
        out["members"] = {name: _undocumented(m) for name, m in out["members"].items()}
    return out


def s3_service_model(model: dict[str, Any], operations: frozenset[str]) -> dict[str, Any]:
    """The S3 service model with only ``operations``, the shapes they reach, and no
    documentation."""
    ops = model["operations"]
    kept = {name: _undocumented(op) for name, op in ops.items() if name in operations}
    missing = operations - kept.keys()
    if missing:
        raise ValueError(f"the S3 model has no operation {', '.join(sorted(missing))}")
    reached = shapes_reached(
        model["shapes"], (root for op in kept.values() for root in _operation_roots(op))
    )
    return _undocumented(model) | {
        "operations": kept,
        "shapes": {name: _shape(s) for name, s in model["shapes"].items() if name in reached},
    }


def s3_endpoints(data: dict[str, Any]) -> dict[str, Any]:
    """endpoints.json with only the S3 entries of each partition. The partitions, their
    regions and defaults stay, so an S3 client resolves exactly as with the whole file."""
    for partition in data.get("partitions", ()):
        services = partition.get("services", {})
        partition["services"] = {"s3": services["s3"]} if "s3" in services else {}
    return data


def _compact(data: Any) -> Any:
    """``data`` copied into fresh objects, side by side in memory."""
    return json.loads(json.dumps(data))


class S3DataLoader:
    """A botocore file loader (``session.get_component("data_loader").file_loader``)
    that gives the S3 client's files as described above, and any other file as it is,
    in plain dicts."""

    def exists(self, file_path: str) -> bool:
        return any(os.path.isfile(file_path + ext) for ext in _EXTENSIONS)

    def load_file(self, file_path: str) -> Any:
        for ext in _EXTENSIONS:
            if os.path.isfile(file_path + ext):
                return self._cut(file_path, json.loads(_read(file_path + ext)))
        return None

    def _cut(self, file_path: str, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        parts = file_path.split(os.sep)
        if parts[-1] == "endpoints":
            return _compact(s3_endpoints(data))
        if parts[-1] == "service-2" and parts[-3:-2] == ["s3"]:
            return _compact(s3_service_model(data, OPERATIONS))
        return data
