"""Turning pages into responses: the Jinja2 templates with their filters, the headers
every UI page carries, and the static assets with their cache headers.

Pages are private (they show what one viewer may see): ``Cache-Control: no-store``,
and a Content-Security-Policy that allows only this origin's own script and styles --
the templates hold no inline script or style. Assets are read once at start; their
URLs carry a hash of their content, so a browser may keep them for a year.
"""

from __future__ import annotations

import hashlib
import math
import mimetypes
import shlex
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from typing import Any
from urllib.parse import quote, urlencode

import jinja2
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}
ASSET_CACHE = "public, max-age=31536000, immutable"  # the URL names the content
ASSET_CACHE_UNVERSIONED = "no-cache"  # a URL without the current hash: revalidate


# ----------------------------------------------------------------------------- filters


def human_bytes(size: int | None) -> str:
    """``12.3 MiB``: powers of 1024, three significant digits."""
    if size is None:
        return "—"
    if size < 1024:
        return f"{size} B"
    exponent = min(int(math.log(size, 1024)), 5)
    value = size / 1024**exponent
    unit = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")[exponent]
    return f"{value:.3g} {unit}" if value < 1000 else f"{value:.0f} {unit}"


def utc(seconds: float | None) -> str:
    if seconds is None:
        return ""
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def iso(seconds: float | None) -> str:
    if seconds is None:
        return ""
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="seconds")


def ago(seconds: float | None, now: float | None = None) -> str:
    """``3 minutes ago``, ``2 days ago``; ``just now`` within a minute."""
    if seconds is None:
        return "—"
    delta = (time.time() if now is None else now) - seconds
    if delta < 60:
        return "just now"
    for unit, length in (
        ("year", 365 * 86400),
        ("month", 30 * 86400),
        ("day", 86400),
        ("hour", 3600),
        ("minute", 60),
    ):
        if delta >= length:
            count = int(delta // length)
            return f"{count} {unit}{'s' if count != 1 else ''} ago"
    return "just now"


def short_digest(digest: object) -> str:
    """``sha256:0123456789ab``: enough to tell manifests apart on a page."""
    text = str(digest)
    algorithm, _, hexpart = text.partition(":")
    return f"{algorithm}:{hexpart[:12]}" if hexpart else text


def command_line(args: list[str] | None) -> str:
    return shlex.join(args) if args else ""


def path_quote(text: object) -> str:
    """A repository name, tag or digest as a path segment (its ``/`` kept)."""
    return quote(str(text), safe="/:")


def media_label(media_type: str | None) -> str:
    """A short name for the common manifest types; the type itself otherwise."""
    return _MEDIA_LABELS.get(media_type or "", media_type or "")


_MEDIA_LABELS = {
    "application/vnd.oci.image.manifest.v1+json": "OCI image",
    "application/vnd.oci.image.index.v1+json": "OCI index",
    "application/vnd.docker.distribution.manifest.v2+json": "Docker image",
    "application/vnd.docker.distribution.manifest.list.v2+json": "Docker list",
    "application/vnd.oci.image.layer.v1.tar+gzip": "tar+gzip",
    "application/vnd.oci.image.layer.v1.tar+zstd": "tar+zstd",
    "application/vnd.oci.image.layer.v1.tar": "tar",
    "application/vnd.docker.image.rootfs.diff.tar.gzip": "tar+gzip",
}


# ----------------------------------------------------------------------------- assets


@dataclass(frozen=True)
class Asset:
    body: bytes
    media_type: str
    version: str  # a hash of the body


def load_assets() -> dict[str, Asset]:
    out: dict[str, Asset] = {}
    for entry in resources.files("registry.ui").joinpath("static").iterdir():
        if not entry.is_file() or entry.name.startswith("."):
            continue
        body = entry.read_bytes()
        media_type = mimetypes.guess_type(entry.name)[0] or "application/octet-stream"
        if media_type.startswith("text/") or media_type.endswith("javascript"):
            media_type += "; charset=utf-8"
        out[entry.name] = Asset(body, media_type, hashlib.sha256(body).hexdigest()[:16])
    return out


def asset_response(asset: Asset, request: Request) -> Response:
    etag = f'"{asset.version}"'
    versioned = request.query_params.get("v") == asset.version
    headers = {
        "ETag": etag,
        "Cache-Control": ASSET_CACHE if versioned else ASSET_CACHE_UNVERSIONED,
        "X-Content-Type-Options": "nosniff",
    }
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    body = b"" if request.method == "HEAD" else asset.body
    headers["Content-Length"] = str(len(asset.body))
    return Response(body, headers=headers, media_type=asset.media_type)


# ----------------------------------------------------------------------------- pages


class Renderer:
    def __init__(self) -> None:
        self.assets = load_assets()
        self.env = jinja2.Environment(
            loader=jinja2.PackageLoader("registry.ui", "templates"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.filters.update(
            bytes=human_bytes,
            utc=utc,
            iso=iso,
            ago=ago,
            short=short_digest,
            command=command_line,
            pq=path_quote,
            media=media_label,
        )
        self.env.globals.update(static=self.static_url, query=query_string)

    def static_url(self, name: str) -> str:
        asset = self.assets[name]
        return f"/ui/static/{name}?v={asset.version}"

    def page(
        self,
        template: str,
        context: Mapping[str, Any],
        status: int = 200,
        headers: Mapping[str, str] | None = None,
    ) -> HTMLResponse:
        html = self.env.get_template(template).render(context)
        return HTMLResponse(html, status_code=status, headers={**PAGE_HEADERS, **(headers or {})})


def query_string(params: Mapping[str, str]) -> str:
    return "?" + urlencode(params) if params else "?"
