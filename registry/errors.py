"""OCI error codes as one table; every failure is raised as a RegistryError and rendered
in one place (``error_response``) as the spec's JSON body.

The codes and statuses follow distribution-spec ("Error Codes") and, where the spec is
silent, CNCF distribution's ``registry/api/errcode``. Each entry fixes its HTTP status:
where one OCI code answers with two statuses, it has two entries (``BLOB_UPLOAD_INVALID``
is 400, ``BLOB_UPLOAD_RANGE_INVALID`` the same code with 416), and no call site
overrides a status.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from starlette.responses import Response


@dataclass(frozen=True)
class ErrorCode:
    code: str
    status: int
    message: str


BLOB_UNKNOWN = ErrorCode("BLOB_UNKNOWN", 404, "blob unknown to registry")
BLOB_UPLOAD_INVALID = ErrorCode("BLOB_UPLOAD_INVALID", 400, "blob upload invalid")
# A chunk's Content-Range is malformed or does not start where the upload ends.
BLOB_UPLOAD_RANGE_INVALID = ErrorCode("BLOB_UPLOAD_INVALID", 416, "blob upload range invalid")
BLOB_UPLOAD_UNKNOWN = ErrorCode("BLOB_UPLOAD_UNKNOWN", 404, "blob upload unknown to registry")
DIGEST_INVALID = ErrorCode("DIGEST_INVALID", 400, "provided digest did not match uploaded content")
MANIFEST_BLOB_UNKNOWN = ErrorCode(
    "MANIFEST_BLOB_UNKNOWN", 400, "manifest references a manifest or blob unknown to registry"
)
MANIFEST_INVALID = ErrorCode("MANIFEST_INVALID", 400, "manifest invalid")
MANIFEST_UNKNOWN = ErrorCode("MANIFEST_UNKNOWN", 404, "manifest unknown to registry")
NAME_INVALID = ErrorCode("NAME_INVALID", 400, "invalid repository name")
NAME_UNKNOWN = ErrorCode("NAME_UNKNOWN", 404, "repository name not known to registry")
SIZE_INVALID = ErrorCode("SIZE_INVALID", 400, "provided length did not match content length")
MANIFEST_TOO_LARGE = ErrorCode("SIZE_INVALID", 413, "manifest too large")
TAG_INVALID = ErrorCode("TAG_INVALID", 400, "manifest tag did not match URI")
RANGE_INVALID = ErrorCode("RANGE_INVALID", 416, "requested range not satisfiable")
PAGINATION_NUMBER_INVALID = ErrorCode(
    "PAGINATION_NUMBER_INVALID", 400, "invalid number of results requested"
)
UNAUTHORIZED = ErrorCode("UNAUTHORIZED", 401, "authentication required")
DENIED = ErrorCode("DENIED", 403, "requested access to the resource is denied")
UNSUPPORTED = ErrorCode("UNSUPPORTED", 405, "the operation is unsupported")
# No route for the path (routing answers it, for every method).
ENDPOINT_UNKNOWN = ErrorCode("UNSUPPORTED", 404, "unknown endpoint")
# A request the token endpoint cannot use (a malformed scope, a missing parameter).
REQUEST_UNSUPPORTED = ErrorCode("UNSUPPORTED", 400, "the request is unsupported")
TOOMANYREQUESTS = ErrorCode("TOOMANYREQUESTS", 429, "too many requests")
UNAVAILABLE = ErrorCode("UNAVAILABLE", 503, "service unavailable")
UNKNOWN = ErrorCode("UNKNOWN", 500, "unknown error")


class RegistryError(Exception):
    """An OCI error: raise it anywhere below the routes; ``error_response`` renders it."""

    def __init__(
        self,
        code: ErrorCode,
        message: str | None = None,
        *,
        detail: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message or code.message)
        self.code = code
        self.message = message or code.message
        self.detail = detail
        self.headers = headers or {}

    @property
    def status(self) -> int:
        return self.code.status


def error_body(code: ErrorCode, message: str, detail: Any = None) -> bytes:
    entry: dict[str, Any] = {"code": code.code, "message": message}
    if detail is not None:
        entry["detail"] = detail
    return json.dumps({"errors": [entry]}).encode()


def error_response(exc: RegistryError, head: bool = False) -> Response:
    body = error_body(exc.code, exc.message, exc.detail)
    headers = dict(exc.headers)
    if head:
        # A HEAD answer carries no body, but says how long the GET body would be.
        headers["Content-Length"] = str(len(body))
        return Response(b"", status_code=exc.status, headers=headers, media_type="application/json")
    return Response(body, status_code=exc.status, headers=headers, media_type="application/json")
