"""The store's boundaries: it alone knows the layout, and HTTP stays out of it -- it
raises typed errors (an upload offset error with the stored size) and says where a blob
read should be redirected, and the routes make statuses and headers of them."""

from __future__ import annotations

import ast
import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from registry.config import load_config
from registry.reference import Digest
from registry.store import RegistryStore, UploadOffsetError, open_store
from storage_backends import Driver
from storage_backends.filesystem import FilesystemDriver

pytestmark = pytest.mark.anyio
REGISTRY = Path(__file__).resolve().parents[2] / "registry"


def imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return found


def test_nothing_outside_the_store_imports_the_layout() -> None:
    outside = [p for p in REGISTRY.rglob("*.py") if "store" not in p.relative_to(REGISTRY).parts]
    offenders = [
        str(p.relative_to(REGISTRY))
        for p in outside
        if any(i.startswith("registry.store.layout") for i in imports(p))
    ]
    assert offenders == []


def strings(path: Path) -> list[str]:
    """The string literals of a module, its docstrings left out."""
    tree = ast.parse(path.read_text())
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return [
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
        if id(node) not in docstrings
    ]


def test_the_store_builds_no_http() -> None:
    for path in (REGISTRY / "store").rglob("*.py"):
        assert not [s for s in strings(path) if "/v2/" in s or "Retry-After" in s], path
        keywords = {
            k.arg for k in ast.walk(ast.parse(path.read_text())) if isinstance(k, ast.keyword)
        }
        assert "headers" not in keywords and "status" not in keywords, path
        assert not any(i.startswith(("starlette", "fastapi")) for i in imports(path)), path


async def body(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def test_a_chunk_at_the_wrong_offset_is_a_typed_error_with_the_stored_size(
    tmp_path: Path,
) -> None:
    store = RegistryStore(FilesystemDriver(tmp_path))
    state = await store.uploads.create("a/b")
    assert await store.uploads.append("a/b", state, body(b"x" * 10), start=0) == 10
    with pytest.raises(UploadOffsetError) as refused:
        await store.uploads.append("a/b", state, body(b"y" * 10), start=20)
    assert (refused.value.upload_id, refused.value.start, refused.value.size) == (
        state.upload_id,
        20,
        10,
    )
    assert await store.uploads.append("a/b", state, body(b"z" * 10), start=10) == 20


class UrlDriver(FilesystemDriver):
    """A filesystem driver that can serve URLs, as S3 does."""

    async def url_for(self, path: str, expires_in: int = 1200) -> str | None:
        return f"https://storage.example/{path}?expires={expires_in}"


async def stored_blob(
    driver: Driver, redirect_expiry: float | None
) -> tuple[RegistryStore, Digest]:
    store = RegistryStore(driver, redirect_expiry=redirect_expiry)
    data = b"blob"
    digest = Digest("sha256", hashlib.sha256(data).hexdigest())
    await store.blobs.put_small(digest, data)
    return store, digest


async def test_the_store_says_where_a_blob_read_is_redirected(tmp_path: Path) -> None:
    store, digest = await stored_blob(UrlDriver(tmp_path), 300)
    url = await store.blobs.redirect_url(digest)
    assert url is not None and url.endswith(f"/{digest.hex}/data?expires=300")
    # Off by configuration: served by the registry.
    store, digest = await stored_blob(UrlDriver(tmp_path), None)
    assert await store.blobs.redirect_url(digest) is None
    # On, over a driver that cannot serve URLs: served by the registry too.
    store, digest = await stored_blob(FilesystemDriver(tmp_path), 300)
    assert await store.blobs.redirect_url(digest) is None


def test_redirects_follow_the_configuration(tmp_path: Path) -> None:
    env = {"REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY": str(tmp_path)}
    on = {
        **env,
        "REGISTRY_STORAGE_S3_REDIRECT": "true",
        "REGISTRY_STORAGE_S3_REDIRECT_EXPIRY": "5m",
    }
    assert open_store(load_config(None, environ=on)).blobs.redirect_expiry == 300
    assert open_store(load_config(None, environ=env)).blobs.redirect_expiry is None
