"""Which upstream a request goes to, and under which local repository (pure, no I/O).

Two ways in, one outcome: a local repository name under an upstream's namespace.

* By prefix: ``dockerhub/library/alpine`` is ``library/alpine`` at the upstream whose
  namespace is ``dockerhub``; with ``library`` on (Docker Hub), ``dockerhub/alpine`` is
  ``library/alpine`` there. The local repository is the name the client used, so that
  grants apply to exactly what was asked.
* By ``ns`` (containerd, CRI-O as mirror clients): ``/v2/library/alpine/...?ns=docker.io``
  names the upstream by its host; the request is rewritten to the prefix form
  (``/v2/dockerhub/library/alpine/...``) before routing, so authorization, the routes
  and the store see only local names. An ``ns`` no upstream is configured for is
  refused before anything is contacted: the cache is not an open proxy.

Every name is checked against the repository grammar before it is used, and the remote
name is the local name less its namespace (plus ``library/``), so no name reaches an
upstream it does not belong to or a path outside ``/v2/<name>/``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import parse_qsl

from registry import errors
from registry.config import ProxyConfig, ProxyUpstreamConfig
from registry.errors import RegistryError
from registry.reference import is_valid_name

# The requests a mirror client sends with ``ns`` (and Docker's registry-mirrors without).
MIRROR_PATH = re.compile(
    r"^/v2/(?P<name>.+?)/(?P<rest>(?:manifests|blobs|referrers)/[^/]+|tags/list)$"
)


@dataclass(frozen=True)
class Upstream:
    """One configured upstream, as the cache uses it."""

    config: ProxyUpstreamConfig

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def namespace(self) -> str:
        return self.config.local_namespace

    def remote_name(self, rest: str) -> str:
        """The upstream's repository for ``<namespace>/<rest>``."""
        if self.config.library_prefix and "/" not in rest:
            return f"library/{rest}"
        return rest


@dataclass(frozen=True)
class Route:
    upstream: Upstream
    local: str  # the repository here: <namespace>/<rest>
    remote: str  # the repository upstream


@dataclass(frozen=True)
class Rewrite:
    """What to do with a request before routing: serve ``path`` instead (None: as it
    is), or refuse it."""

    path: str | None = None
    refusal: RegistryError | None = None


KEEP = Rewrite()


class Routes:
    def __init__(self, upstreams: Iterable[ProxyUpstreamConfig]) -> None:
        self.upstreams = tuple(Upstream(u) for u in upstreams)
        self._by_host = {h: u for u in self.upstreams for h in u.config.ns_hosts}
        self.default = next((u for u in self.upstreams if u.config.default), None)

    @classmethod
    def from_config(cls, config: ProxyConfig) -> Routes:
        return cls(config.upstreams)

    def __bool__(self) -> bool:
        return bool(self.upstreams)

    def for_name(self, name: str) -> Route | None:
        """The route of a local repository name under a namespace, or None."""
        for upstream in self.upstreams:
            prefix = upstream.namespace + "/"
            if name.startswith(prefix) and len(name) > len(prefix):
                rest = name[len(prefix) :]
                remote = upstream.remote_name(rest)
                if not is_valid_name(name) or not is_valid_name(remote):
                    return None
                return Route(upstream, name, remote)
        return None

    def namespace_of(self, name: str) -> Upstream | None:
        """The upstream whose namespace is ``name`` or holds it."""
        for upstream in self.upstreams:
            ns = upstream.namespace
            if name == ns or name.startswith(ns + "/"):
                return upstream
        return None

    def for_ns(self, ns: str) -> Upstream | None:
        return self._by_host.get(ns.lower())

    def rewrite(self, method: str, path: str, query: str) -> Rewrite:
        """Map a mirror request (``ns`` in the query) onto the local namespace of its
        upstream; refuse an ``ns`` no upstream has and a crafted one."""
        values = [v for k, v in parse_qsl(query, keep_blank_values=True) if k == "ns"]
        if not values or not path.startswith("/v2/") or path == "/v2/":
            return KEEP
        if len(values) > 1:
            return _refuse(errors.REQUEST_UNSUPPORTED, "more than one ns parameter")
        upstream = self.for_ns(values[0])
        if upstream is None:
            return _refuse(
                errors.NAME_UNKNOWN, f"this registry mirrors no registry at {values[0][:100]!r}"
            )
        m = MIRROR_PATH.match(path)
        if m is None or method not in ("GET", "HEAD"):
            return _refuse(errors.ENDPOINT_UNKNOWN, "not a request a mirror serves")
        name = m.group("name")
        local = f"{upstream.namespace}/{name}"
        if not is_valid_name(name) or self.for_name(local) is None:
            return _refuse(errors.NAME_INVALID, f"invalid repository name: {name[:200]!r}")
        return Rewrite(path=f"/v2/{local}/{m.group('rest')}")

    def default_candidate(self, method: str, path: str) -> str | None:
        """For Docker's registry-mirrors (no ``ns``): the name a request asks for, when a
        default upstream could serve it -- a pull of a name outside every namespace.
        Whether the name is stored here is for the caller to check."""
        if self.default is None or method not in ("GET", "HEAD"):
            return None
        m = MIRROR_PATH.match(path)
        if m is None or m.group("rest").startswith("blobs/uploads"):
            return None
        name = m.group("name")
        if not is_valid_name(name) or self.namespace_of(name) is not None:
            return None
        local = f"{self.default.namespace}/{name}"
        return name if self.for_name(local) is not None else None

    def default_path(self, path: str) -> str:
        """``path`` of a ``default_candidate`` request under the default namespace."""
        assert self.default is not None
        return f"/v2/{self.default.namespace}/{path[len('/v2/') :]}"


def cached_namespaces(config: ProxyConfig) -> tuple[str, ...]:
    """The repositories the cache serves, as patterns (registry/patterns.py; a namespace
    is a repository name, so literal): for the garbage collector, which leaves their
    untagged manifests to eviction (``Collector(cached=...)``)."""
    return tuple(f"{u.local_namespace}/**" for u in config.upstreams)


def _refuse(code: errors.ErrorCode, message: str) -> Rewrite:
    return Rewrite(refusal=RegistryError(code, message))
