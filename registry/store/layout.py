"""The storage layout: the one place that turns registry objects into driver paths.

::

    blobs/<alg>/<hex[:2]>/<hex>/data                      each blob once, content-addressed
    blobs/<alg>/<hex[:2]>/<hex>/claimed                   empty; modified = the last time a
                                                          push relied on the digest (GC)
    blobs/<alg>/<hex[:2]>/<hex>/collecting                tombstone: the garbage collector
                                                          is deleting what holds the digest
    repositories/<name>/_layers/<alg>/<hex>               blob linked into a repository
    repositories/<name>/_manifests/revisions/<alg>/<hex>  manifest in a repository (JSON:
                                                          mediaType, size, subject)
    repositories/<name>/_manifests/tags/<tag>             tag -> manifest digest
    repositories/<name>/_referrers/<alg>/<hex>/<alg>-<h>  descriptor of a referrer of <hex>
    repositories/<name>/_uploads/<id>/data                upload session bytes
    repositories/<name>/_uploads/<id>/state               upload session: when it started
                                                          (JSON)
    repositories/<name>/_uploads/<id>/sha256-<offset>     SHA-256 (hex) of the session's
                                                          first <offset> bytes; empty when
                                                          not known (one per request: a new
                                                          file, never a replaced one)
    catalog/<name>!                                       one marker per repository
    uploading/<name>!                                     marker: <name> has had upload
                                                          sessions (the collector purges
                                                          expired ones; never removed)
    gc/lease                                              the lease named "gc": who collects
                                                          garbage now (JSON)
    gc/clock                                              written to read the storage's time
    leases/<name>                                         every other named lease (JSON)
    clocks/<name>                                         the clock probe of every other name
    maintenance/readonly                                  read-only maintenance flag (JSON)
    gc/usage                                              what the last collection counted (JSON)
    login-attempts/<epoch>/<subject>/<ms>-<random>        one empty object per login attempt
                                                          (store/login_attempts.py)

The gc lease and clock keep the paths they had before leases had names, so that during a
rolling upgrade an old and a new process still exclude each other.

Repository name components cannot start with ``_`` (grammar), so ``_layers`` and the
rest never clash with a nested repository. The catalog marker ends in ``!``, which
sorts below every character a name may hold, so byte order of the markers is the
lexical order of the names, prefixes first (``a`` < ``a-b`` < ``a/b``): one flat,
paginated listing answers ``/v2/_catalog`` on every driver.

Every argument must already be validated by ``registry.reference``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from registry.errors import RegistryError
from registry.reference import Digest, parse_digest
from registry.store.objects import (
    BlobClaim,
    BlobData,
    Link,
    ReferrerEntry,
    Revision,
    StoredObject,
    Tag,
)

BLOBS = "blobs"
REPOSITORIES = "repositories"
CATALOG = "catalog"
CATALOG_SUFFIX = "!"
UPLOADING = "uploading"
# The files of a blob's folder.
DATA = "data"
CLAIMED = "claimed"
COLLECTING = "collecting"  # sorts before DATA: a listing reads it first
GC = "gc"
LOGIN_ATTEMPTS = "login-attempts"
LEASES = "leases"
CLOCKS = "clocks"
# Names of leases and clocks: one path component, as the features that hold them are named.
_LEASE_NAME = re.compile(r"^[a-z][a-z0-9-]{0,62}$")


def blob_data(digest: Digest) -> str:
    return f"{BLOBS}/{digest.algorithm}/{digest.hex[:2]}/{digest.hex}/{DATA}"


def blob_dir(digest: Digest) -> str:
    return f"{BLOBS}/{digest.algorithm}/{digest.hex[:2]}/{digest.hex}"


def blob_claimed(digest: Digest) -> str:
    return f"{blob_dir(digest)}/{CLAIMED}"


def blob_collecting(digest: Digest) -> str:
    return f"{blob_dir(digest)}/{COLLECTING}"


def blob_shards(algorithm: str) -> str:
    """The folder of the ``<hex[:2]>`` shards of one algorithm."""
    return f"{BLOBS}/{algorithm}"


def blob_shard(algorithm: str, shard: str) -> str:
    return f"{BLOBS}/{algorithm}/{shard}"


def blob_shard_id(shard: str) -> tuple[str, str] | None:
    """``(algorithm, shard folder)`` of a shard id ``<alg>/<hex[:2]>``; None for anything else."""
    algorithm, _, folder = shard.partition("/")
    return (algorithm, folder) if algorithm and folder and "/" not in folder else None


def blob_file_in_shard(relative: str) -> tuple[str, str] | None:
    """``(hex, file name)`` of a path listed recursively below a shard, e.g.
    ``abcd.../claimed``; None for anything else."""
    parts = relative.split("/")
    return (parts[0], parts[1]) if len(parts) == 2 else None


def repository(name: str) -> str:
    return f"{REPOSITORIES}/{name}"


def layer_link(name: str, digest: Digest) -> str:
    return f"{REPOSITORIES}/{name}/_layers/{digest.algorithm}/{digest.hex}"


def layers(name: str) -> str:
    return f"{REPOSITORIES}/{name}/_layers"


def revision(name: str, digest: Digest) -> str:
    return f"{REPOSITORIES}/{name}/_manifests/revisions/{digest.algorithm}/{digest.hex}"


def revisions(name: str) -> str:
    return f"{REPOSITORIES}/{name}/_manifests/revisions"


def tags(name: str) -> str:
    return f"{REPOSITORIES}/{name}/_manifests/tags"


def tag(name: str, tag: str) -> str:
    return f"{REPOSITORIES}/{name}/_manifests/tags/{tag}"


def referrers(name: str, subject: Digest) -> str:
    return f"{REPOSITORIES}/{name}/_referrers/{subject.algorithm}/{subject.hex}"


def referrer(name: str, subject: Digest, referrer: Digest) -> str:
    return f"{referrers(name, subject)}/{referrer.algorithm}-{referrer.hex}"


def referrer_entry(name: str, subject: Digest, key: str) -> str:
    """A subject's entry by the key its listing gave (``<alg>-<hex>``)."""
    return f"{referrers(name, subject)}/{key}"


def referrers_index(name: str) -> str:
    """The referrer entries of every subject in ``name``."""
    return f"{REPOSITORIES}/{name}/_referrers"


def listed_digest(relative: str) -> Digest | None:
    """The digest of a path listed recursively below ``_layers``, ``revisions``
    (``<alg>/<hex>``) or a subject's referrers (``<alg>-<hex>``); None for anything else."""
    text = relative.replace("/", ":", 1) if "/" in relative else relative.replace("-", ":", 1)
    try:
        return parse_digest(text)
    except RegistryError:
        return None


def listed_digests(listing: Iterable[str]) -> set[Digest]:
    return {d for d in map(listed_digest, listing) if d is not None}


def uploads(name: str) -> str:
    return f"{REPOSITORIES}/{name}/_uploads"


def upload_dir(name: str, upload_id: str) -> str:
    return f"{REPOSITORIES}/{name}/_uploads/{upload_id}"


def upload_data(name: str, upload_id: str) -> str:
    return f"{REPOSITORIES}/{name}/_uploads/{upload_id}/data"


def upload_state(name: str, upload_id: str) -> str:
    return f"{REPOSITORIES}/{name}/_uploads/{upload_id}/state"


UPLOAD_PROGRESS = "sha256-"


def upload_progress(name: str, upload_id: str, offset: int) -> str:
    return f"{REPOSITORIES}/{name}/_uploads/{upload_id}/{UPLOAD_PROGRESS}{offset}"


def catalog_marker(name: str) -> str:
    return f"{CATALOG}/{name}{CATALOG_SUFFIX}"


def readonly_flag() -> str:
    return "maintenance/readonly"


def usage_snapshot() -> str:
    """What the collector's last mark counted (store/usage.py)."""
    return f"{GC}/usage"


def login_attempts(epoch: int, subject_key: str) -> str:
    """The attempts of one subject (a hashed user name and address) in one epoch."""
    return f"{LOGIN_ATTEMPTS}/{epoch}/{subject_key}"


def check_lease_name(name: str) -> str:
    """``name`` if it may name a lease or a clock, else ValueError."""
    if not _LEASE_NAME.match(name):
        raise ValueError(f"invalid lease or clock name: {name!r}")
    return name


def lease(name: str) -> str:
    return f"{GC}/lease" if name == GC else f"{LEASES}/{check_lease_name(name)}"


def clock_probe(name: str) -> str:
    return f"{GC}/clock" if name == GC else f"{CLOCKS}/{check_lease_name(name)}"


def uploading_marker(name: str) -> str:
    return f"{UPLOADING}/{name}{CATALOG_SUFFIX}"


def catalog_name(marker: str) -> str:
    """The repository name of a marker path relative to ``catalog/``."""
    return marker.removesuffix(CATALOG_SUFFIX)


def path_of(obj: StoredObject) -> str:
    """Where a stored object lives."""
    match obj:
        case Tag(repository=repo, name=t):
            return tag(repo, t)
        case Revision(repository=repo, digest=d):
            return revision(repo, d)
        case Link(repository=repo, digest=d):
            return layer_link(repo, d)
        case ReferrerEntry(repository=repo, subject=subject, referrer=r):
            return referrer(repo, subject, r)
        case BlobData(digest=d):
            return blob_data(d)
        case BlobClaim(digest=d):
            return blob_claimed(d)
