"""The pull-through cache: one registry that mirrors many upstreams, fetches each blob
once, and keeps serving when they are down. docs/proxy.md is the operator's guide; the
argument for each choice is here and in the module named.

* **Routing** (``routing.py``, ``mirror.py``): ``proxy.upstreams`` each serve a local
  namespace. A cached repository is an ordinary repository of the store, named
  ``<namespace>/<upstream repository>``, so RBAC, the catalog, GC and the store's
  listeners treat it like any other. containerd's ``?ns=<host>`` is rewritten onto that
  name before routing (so authorization sees the local name); an unknown ``ns`` is a
  404 before anything is contacted; names are checked by the grammar before they reach
  a path or an upstream. Pushes into a cached namespace are refused unless it is
  ``writable`` (``handlers.refuse_writes_to_caches``).
* **Manifests** (``manifests.py``): by digest cached for good; by tag for ``tag_ttl``,
  then a HEAD, and a GET only when the digest moved. Stale copies within ``max_stale``
  stand in for a failing upstream, with a ``Warning``; otherwise the spec error with
  the upstream's reason (``failures.py``), never a 500, never longer than the upstream
  timeouts (registry/remote/settings.py).
* **Blobs** (``blobs.py``, ``fills.py``, ``spool.py``): one upstream GET per blob, run
  by a task of its own that spools the bytes for every client (first byte as soon as
  the upstream sends it, memory flat, a client that leaves does not stop it) and writes
  an upload session of the store, committed only after the digest and size verified.
  A failed fetch leaves no cache entry and cuts every client's connection. Across
  processes a claim in storage names the spool: workers of one host follow it, other
  hosts relay with one GET of their own (best effort).
* **Who wrote it**: every store write of a fill or an eviction runs under
  ``acting_as(RequestContext(origin="proxy"))``, so that the store's change listeners
  (events, quotas, immutable tags) tell cache fills from client pushes.
* **Referrers** (``referrers.py``): the upstream's list, kept for ``tag_ttl``.
* **Eviction** (``eviction.py``, ``pulls.py``): manifests not pulled for
  ``evict_after`` or, least recently pulled first, beyond ``max_size``; deleting the
  manifests is enough, the collector then sweeps what nothing references (a blob
  shared with a local or another cached image stays). Last-pulled times are written at
  most once per ``pulled_resolution`` per manifest and process. Eviction alone decides
  when a cached manifest goes: the collector is given the cached namespaces
  (``cached_namespaces``) and keeps their untagged manifests (digest pulls).
* **Metrics** (``metrics.py``): hits, misses, coalesced waits, upstream requests by
  upstream and status, bytes from upstream and served, stale serves, evictions, Docker
  Hub's ratelimit-remaining.
"""

from registry.proxy.cache import PullThroughCache, open_cache
from registry.proxy.mirror import MirrorRouting
from registry.proxy.routing import Route, Routes, Upstream, cached_namespaces

__all__ = [
    "MirrorRouting",
    "PullThroughCache",
    "Route",
    "Routes",
    "Upstream",
    "cached_namespaces",
    "open_cache",
]
