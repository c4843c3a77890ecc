"""The storage layout: the one place that turns registry objects into driver paths.

::

    blobs/<alg>/<hex[:2]>/<hex>/data                      each blob once, content-addressed
    repositories/<name>/_layers/<alg>/<hex>               blob linked into a repository
    repositories/<name>/_manifests/revisions/<alg>/<hex>  manifest in a repository (JSON:
                                                          mediaType, size, subject)
    repositories/<name>/_manifests/tags/<tag>             tag -> manifest digest
    repositories/<name>/_referrers/<alg>/<hex>/<alg>-<h>  descriptor of a referrer of <hex>
    repositories/<name>/_uploads/<id>/data                upload session bytes
    repositories/<name>/_uploads/<id>/state               upload session state (JSON)
    catalog/<name>!                                       one marker per repository

Repository name components cannot start with ``_`` (grammar), so ``_layers`` and the
rest never clash with a nested repository. The catalog marker ends in ``!``, which
sorts below every character a name may hold, so byte order of the markers is the
lexical order of the names, prefixes first (``a`` < ``a-b`` < ``a/b``): one flat,
paginated listing answers ``/v2/_catalog`` on every driver.

Every argument must already be validated by ``registry.reference``.
"""

from __future__ import annotations

from registry.reference import Digest

BLOBS = "blobs"
REPOSITORIES = "repositories"
CATALOG = "catalog"
CATALOG_SUFFIX = "!"


def blob_data(digest: Digest) -> str:
    return f"{BLOBS}/{digest.algorithm}/{digest.hex[:2]}/{digest.hex}/data"


def blob_dir(digest: Digest) -> str:
    return f"{BLOBS}/{digest.algorithm}/{digest.hex[:2]}/{digest.hex}"


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


def uploads(name: str) -> str:
    return f"{REPOSITORIES}/{name}/_uploads"


def upload_dir(name: str, upload_id: str) -> str:
    return f"{REPOSITORIES}/{name}/_uploads/{upload_id}"


def upload_data(name: str, upload_id: str) -> str:
    return f"{REPOSITORIES}/{name}/_uploads/{upload_id}/data"


def upload_state(name: str, upload_id: str) -> str:
    return f"{REPOSITORIES}/{name}/_uploads/{upload_id}/state"


def catalog_marker(name: str) -> str:
    return f"{CATALOG}/{name}{CATALOG_SUFFIX}"


def catalog_name(marker: str) -> str:
    """The repository name of a marker path relative to ``catalog/``."""
    return marker.removesuffix(CATALOG_SUFFIX)
