"""The reachability graph, as pure functions: what a set of manifests keeps, which
deletion candidates must be decided together, and the order their revisions go in.

A node is a manifest in a repository. Its edges are its index children and its
referrers (signatures, SBOMs) in that repository; it also keeps the blobs (config,
layers) it references. Content addressing rules out cycles among index children;
referrers may close one (a signature of a signature of ...), which the walk tolerates.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from registry.reference import Digest

Node = tuple[str, Digest]  # (repository, manifest)


@dataclass(frozen=True)
class References:
    """What a manifest references: blobs with the sizes its descriptors give, and
    index children; and its own size."""

    blobs: Mapping[Digest, int]
    children: frozenset[Digest]
    size: int = 0


@dataclass
class Kept:
    """What a repository keeps: manifests, and the blobs they reference."""

    manifests: set[Digest] = field(default_factory=set)
    blobs: set[Digest] = field(default_factory=set)


@dataclass
class Expansion:
    """What one ``expand`` added, and where it stopped."""

    manifests: set[Digest] = field(default_factory=set)
    blobs: dict[Digest, int] = field(default_factory=dict)  # with their descriptors' sizes
    missing: set[Digest] = field(default_factory=set)


def expand(
    kept: Kept,
    starts: Iterable[Digest],
    references: Mapping[Digest, References | None],
    referrers: Mapping[Digest, set[Digest]],
) -> Expansion:
    """Add to ``kept`` the manifests ``starts`` reach and the blobs those reference.

    ``references`` says what each manifest references (None: its content is gone or
    unreadable, so it references nothing known). The walk stops at manifests missing
    from it and returns them as ``missing``, not yet kept: read their references and
    call again with them as ``starts``."""
    added = Expansion()
    frontier = [d for d in dict.fromkeys(starts) if d not in kept.manifests]
    while frontier:
        following: set[Digest] = set()
        for digest in frontier:
            if digest not in references:
                added.missing.add(digest)
                continue
            kept.manifests.add(digest)
            added.manifests.add(digest)
            following |= referrers.get(digest, set())
            refs = references[digest]
            if refs is not None:
                for blob, size in refs.blobs.items():
                    if blob not in kept.blobs:
                        kept.blobs.add(blob)
                        added.blobs[blob] = size
                following |= refs.children
        frontier = sorted(following - kept.manifests - added.missing)
    return added


def decided_together(
    nodes: Sequence[Node], edges: Mapping[Node, Iterable[Digest]]
) -> list[list[Node]]:
    """``nodes`` (deletion candidates) grouped so that each group can be decided on its
    own: a node with every candidate of its repository it has an edge to (one rescued
    keeps what it reaches), and the candidates of one digest in every repository (one
    digest has one tombstone). Groups in the order of their first node, nodes in the
    order given."""
    parent: dict[Node, Node] = {node: node for node in nodes}

    def root(node: Node) -> Node:
        while parent[node] != node:
            parent[node] = parent[parent[node]]
            node = parent[node]
        return node

    def union(a: Node, b: Node) -> None:
        parent[root(a)] = root(b)

    first_of_digest: dict[Digest, Node] = {}
    for node in nodes:
        name, digest = node
        for linked in edges.get(node, ()):
            if (name, linked) in parent:
                union(node, (name, linked))
        if digest in first_of_digest:
            union(node, first_of_digest[digest])
        else:
            first_of_digest[digest] = node
    groups: dict[Node, list[Node]] = {}
    for node in nodes:
        groups.setdefault(root(node), []).append(node)
    return list(groups.values())


def parents_first(nodes: Iterable[Node], children: Mapping[Node, set[Digest]]) -> list[list[Node]]:
    """``nodes`` in levels, each index in a level before the children it lists, so that
    no served index lacks a child. No node lists another of its own level, so a level
    may be deleted at once. Nodes on a cycle (which content addressing rules out) come
    last, in one level."""
    pending = {node: 0 for node in nodes}
    for name, digest in pending:
        for child in children.get((name, digest), set()):
            if (name, child) in pending:
                pending[(name, child)] += 1
    level = sorted(node for node, n in pending.items() if n == 0)
    levels: list[list[Node]] = []
    seen: set[Node] = set()
    while level:
        levels.append(level)
        seen.update(level)
        following: list[Node] = []
        for name, digest in level:
            for child in children.get((name, digest), set()):
                node = (name, child)
                if node in pending:
                    pending[node] -= 1
                    if pending[node] == 0:
                        following.append(node)
        level = sorted(following)
    rest = sorted(node for node in pending if node not in seen)
    return [*levels, rest] if rest else levels
