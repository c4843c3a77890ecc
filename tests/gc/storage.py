"""Looking at a test server's storage from the test: through a store over the driver
its config opens (``with_store``), and, where a test needs what no store method shows,
through the driver itself: snapshots of every stored file (a dry run changes none), and
an independent account of what is reachable (for the stress test), written from the
layout documented in docs/gc.md and store/layout.py rather than with the store's or the
collector's code, so that a bug there cannot hide itself."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from registry.config import Config, load_config
from registry.store import RegistryStore, open_store
from storage_backends import Driver, PathNotFoundError
from storage_backends.factory import open_driver
from tests.server import RegistryServer

T = TypeVar("T")

Snapshot = dict[str, tuple[int, float]]


def server_config(server: RegistryServer, settings: Mapping[str, str] | None = None) -> Config:
    """``server``'s configuration, with REGISTRY_* ``settings`` on top."""
    environ = {"REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY": str(server.data_dir)}
    return load_config(server.config_file, environ={**environ, **(settings or {})})


def with_store(server: RegistryServer, fn: Callable[[RegistryStore], Awaitable[T]]) -> T:
    """Run ``fn`` with a store on ``server``'s storage (as another process would)."""

    async def run() -> T:
        store = open_store(server_config(server))
        try:
            return await fn(store)
        finally:
            await store.close()

    return asyncio.run(run())


def with_storage(server: RegistryServer, fn: Callable[[Driver], Awaitable[T]]) -> T:
    """Run ``fn`` with a driver on ``server``'s storage."""
    config = server_config(server)

    async def run() -> T:
        driver = open_driver(config.storage)
        try:
            return await fn(driver)
        finally:
            await driver.close()

    return asyncio.run(run())


async def snapshot(driver: Driver) -> Snapshot:
    """Every stored file with its size and modification time."""
    out: Snapshot = {}
    for path in await driver.list("", recursive=True):
        try:
            info = await driver.stat(path)
        except PathNotFoundError:
            continue
        out[path] = (info.size, info.modified)
    return out


async def exists(driver: Driver, path: str) -> bool:
    try:
        await driver.stat(path)
    except PathNotFoundError:
        return False
    return True


def _digest(listed: str) -> str:
    return listed.replace("/", ":", 1)


@dataclass
class Account:
    """What the storage holds beyond what its tags reach, and what tags reach but is gone."""

    unreachable: list[str] = field(default_factory=list)
    broken: list[str] = field(default_factory=list)
    tags: dict[str, str] = field(default_factory=dict)  # "repo:tag" -> digest


async def account(driver: Driver) -> Account:
    """Mark from tags (index children, config and layers, referrers of kept manifests)
    and list everything else that is stored: revisions, links, blob data, tombstones
    and upload sessions. ``broken`` lists what a kept manifest needs but is missing."""
    result = Account()
    markers = await driver.list("catalog", recursive=True)
    repos = [m.removesuffix("!") for m in markers if m.endswith("!")]
    used_blobs: set[str] = set()
    for repo in repos:
        base = f"repositories/{repo}"
        revision_paths = await driver.list(f"{base}/_manifests/revisions", recursive=True)
        revisions = {_digest(p) for p in revision_paths}
        links = {_digest(p) for p in await driver.list(f"{base}/_layers", recursive=True)}
        referrers: dict[str, set[str]] = {}
        for entry in await driver.list(f"{base}/_referrers", recursive=True):
            subject, _, key = entry.rpartition("/")
            referrers.setdefault(_digest(subject), set()).add(key.replace("-", ":", 1))
        kept: set[str] = set()
        kept_blobs: set[str] = set()
        todo: list[str] = []
        for tag in await driver.list(f"{base}/_manifests/tags"):
            try:
                target = (await driver.get(f"{base}/_manifests/tags/{tag}")).decode()
            except PathNotFoundError:
                continue
            result.tags[f"{repo}:{tag}"] = target
            todo.append(target)
        while todo:
            digest = todo.pop()
            if digest in kept:
                continue
            kept.add(digest)
            if digest not in revisions:
                result.broken.append(f"{repo}: revision {digest}")
                continue
            alg, hexa = digest.split(":")
            try:
                doc = json.loads(await driver.get(f"blobs/{alg}/{hexa[:2]}/{hexa}/data"))
            except PathNotFoundError:
                result.broken.append(f"{repo}: manifest content {digest}")
                continue
            todo += [c["digest"] for c in doc.get("manifests", [])]
            todo += sorted(referrers.get(digest, set()))
            if "config" in doc:
                for blob in [doc["config"], *doc.get("layers", [])]:
                    if not blob.get("urls"):
                        kept_blobs.add(blob["digest"])
        for blob in sorted(kept_blobs):
            alg, hexa = blob.split(":")
            if blob not in links:
                result.broken.append(f"{repo}: link {blob}")
            if not await exists(driver, f"blobs/{alg}/{hexa[:2]}/{hexa}/data"):
                result.broken.append(f"{repo}: blob {blob}")
        result.unreachable += [f"{repo}: revision {d}" for d in sorted(revisions - kept)]
        result.unreachable += [f"{repo}: link {d}" for d in sorted(links - kept_blobs)]
        result.unreachable += [f"{repo}: upload {u}" for u in await driver.list(f"{base}/_uploads")]
        used_blobs |= kept | kept_blobs
    uploading = await driver.list("uploading", recursive=True)
    for repo in sorted({m.removesuffix("!") for m in uploading} - set(repos)):
        sessions = await driver.list(f"repositories/{repo}/_uploads")
        result.unreachable += [f"{repo}: upload {u}" for u in sessions]
    for alg in await driver.list("blobs"):
        for relative in await driver.list(f"blobs/{alg}", recursive=True):
            parts = relative.split("/")  # <hex[:2]>/<hex>/<file>
            if len(parts) != 3:
                result.unreachable.append(f"blobs: stray {relative}")
                continue
            digest = f"{alg}:{parts[1]}"
            if parts[2] == "collecting":
                result.unreachable.append(f"blob {digest}: tombstone")
            elif digest not in used_blobs:
                result.unreachable.append(f"blob {digest}: {parts[2]}")
    return result


@dataclass
class Recount:
    """Usage as counted from the storage alone (``recount``)."""

    repositories: dict[str, tuple[int, int, int, int]]  # held, unique, manifests, tags
    groups: dict[str, int]
    total_bytes: int
    reclaimable_bytes: int


async def recount(
    driver: Driver, groups: Mapping[str, Callable[[str], bool]] | None = None
) -> Recount:
    """Count usage from the layout, with nothing of the store's or the collector's code:
    right after a collection (with no push racing it), every revision left is kept --
    firmly when a tag reaches it (with index children and referrers), else held back
    by the grace period -- and keeps its content and what it references. A blob's size
    is its data's; a manifest's, its content's."""
    markers = await driver.list("catalog", recursive=True)
    repos = sorted(m.removesuffix("!") for m in markers if m.endswith("!"))
    sizes: dict[str, int] = {}

    async def size_of(digest: str) -> int:
        if digest not in sizes:
            alg, hexa = digest.split(":")
            try:
                sizes[digest] = (await driver.stat(f"blobs/{alg}/{hexa[:2]}/{hexa}/data")).size
            except PathNotFoundError:
                sizes[digest] = 0
        return sizes[digest]

    held: dict[str, set[str]] = {}
    firm: dict[str, set[str]] = {}
    tag_counts: dict[str, int] = {}
    manifest_counts: dict[str, int] = {}
    for repo in repos:
        base = f"repositories/{repo}"
        listed = await driver.list(f"{base}/_manifests/revisions", recursive=True)
        revisions = {_digest(p) for p in listed}
        referrers: dict[str, set[str]] = {}
        for entry in await driver.list(f"{base}/_referrers", recursive=True):
            subject, _, key = entry.rpartition("/")
            referrers.setdefault(_digest(subject), set()).add(key.replace("-", ":", 1))
        tags = await driver.list(f"{base}/_manifests/tags")
        targets = [(await driver.get(f"{base}/_manifests/tags/{t}")).decode() for t in tags]

        async def closure(starts: list[str], referrers: dict[str, set[str]]) -> set[str]:
            kept: set[str] = set()
            todo = list(starts)
            while todo:
                digest = todo.pop()
                if digest in kept:
                    continue
                kept.add(digest)
                alg, hexa = digest.split(":")
                doc = json.loads(await driver.get(f"blobs/{alg}/{hexa[:2]}/{hexa}/data"))
                todo += [c["digest"] for c in doc.get("manifests", [])]
                todo += sorted(referrers.get(digest, set()))
                if "config" in doc:
                    blobs = [doc["config"], *doc["layers"]]
                    kept |= {b["digest"] for b in blobs if not b.get("urls")}
            return kept

        firm[repo] = await closure(targets, referrers)
        held[repo] = firm[repo] | await closure(sorted(revisions), referrers)
        tag_counts[repo] = len(tags)
        manifest_counts[repo] = len(revisions)
    holders: dict[str, set[str]] = {}
    for repo, digests in held.items():
        for d in digests:
            holders.setdefault(d, set()).add(repo)
    stored: list[str] = []
    for alg in await driver.list("blobs"):
        for relative in await driver.list(f"blobs/{alg}", recursive=True):
            parts = relative.split("/")
            if len(parts) == 3 and parts[2] == "data":
                stored.append(f"{alg}:{parts[1]}")
    total = sum([await size_of(d) for d in stored])
    firmly = set().union(*firm.values()) if firm else set()
    usage = {}
    for repo in repos:
        held_bytes = sum([await size_of(d) for d in held[repo]])
        unique = sum([await size_of(d) for d in held[repo] if holders[d] == {repo}])
        usage[repo] = (held_bytes, unique, manifest_counts[repo], tag_counts[repo])
    group_bytes = {}
    for group, member in (groups or {}).items():
        blobs = {d for repo in repos if member(repo) for d in held[repo]}
        group_bytes[group] = sum([await size_of(d) for d in blobs])
    reclaimable = total - sum([await size_of(d) for d in set(stored) & firmly])
    return Recount(usage, group_bytes, total, reclaimable)
