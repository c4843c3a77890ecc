"""The reachability graph's pure functions, against naive definitions, with hypothesis:
what a set of manifests keeps, the groups of candidates decided together, and the
parents-first order of deletion."""

from __future__ import annotations

from collections.abc import Mapping

from hypothesis import given
from hypothesis import strategies as st

from registry.gc.graph import Kept, Node, References, decided_together, expand, parents_first
from registry.reference import Digest

MANIFESTS = [Digest("sha256", f"{i:064x}") for i in range(12)]
BLOBS = [Digest("sha256", f"{i:064x}") for i in range(100, 110)]


@st.composite
def graphs(draw: st.DrawFn) -> tuple[dict[Digest, References | None], dict[Digest, set[Digest]]]:
    """References of every manifest (index children only towards later ones: content
    addressing allows no cycle; None: unreadable) and referrers (cycles allowed)."""
    references: dict[Digest, References | None] = {}
    for i, digest in enumerate(MANIFESTS):
        if draw(st.booleans()) and draw(st.booleans()) and draw(st.booleans()):
            references[digest] = None
            continue
        children = (
            draw(st.sets(st.sampled_from(MANIFESTS[i + 1 :]), max_size=3)) if i < 11 else set()
        )
        blobs = draw(st.dictionaries(st.sampled_from(BLOBS), st.integers(0, 10**6), max_size=3))
        references[digest] = References(blobs, frozenset(children))
    referrers = draw(
        st.dictionaries(
            st.sampled_from(MANIFESTS), st.sets(st.sampled_from(MANIFESTS), max_size=2), max_size=4
        )
    )
    return references, referrers


def closure(
    starts: set[Digest],
    references: Mapping[Digest, References | None],
    referrers: Mapping[Digest, set[Digest]],
) -> tuple[set[Digest], set[Digest]]:
    """The naive fixpoint: manifests reached, and the blobs they reference."""
    manifests = set(starts)
    while True:
        following = set(manifests)
        for digest in manifests:
            following |= referrers.get(digest, set())
            refs = references[digest]
            if refs is not None:
                following |= refs.children
        if following == manifests:
            break
        manifests = following
    blobs: set[Digest] = set()
    for digest in manifests:
        refs = references[digest]
        if refs is not None:
            blobs |= set(refs.blobs)
    return manifests, blobs


@given(graphs(), st.sets(st.sampled_from(MANIFESTS), max_size=3))
def test_expand_keeps_exactly_what_the_starts_reach(
    graph: tuple[dict[Digest, References | None], dict[Digest, set[Digest]]],
    starts: set[Digest],
) -> None:
    references, referrers = graph
    kept = Kept()
    added = expand(kept, sorted(starts), references, referrers)
    assert added.missing == set()
    assert (kept.manifests, kept.blobs) == closure(starts, references, referrers)
    assert added.manifests == kept.manifests and set(added.blobs) == kept.blobs


@given(
    graphs(),
    st.sets(st.sampled_from(MANIFESTS), max_size=3),
    st.sets(st.sampled_from(MANIFESTS)),
)
def test_expanding_while_references_are_read_keeps_the_same(
    graph: tuple[dict[Digest, References | None], dict[Digest, set[Digest]]],
    starts: set[Digest],
    known_at_first: set[Digest],
) -> None:
    """The collector reads references as the walk finds it needs them."""
    references, referrers = graph
    known = {d: r for d, r in references.items() if d in known_at_first}
    kept = Kept()
    pending = sorted(starts)
    while True:
        step = expand(kept, pending, known, referrers)
        assert not step.missing & kept.manifests
        if not step.missing:
            break
        known.update({d: references[d] for d in step.missing})
        pending = sorted(step.missing)
    assert (kept.manifests, kept.blobs) == closure(starts, references, referrers)


@given(
    graphs(),
    st.sets(st.sampled_from(MANIFESTS), max_size=3),
    st.sets(st.sampled_from(MANIFESTS), max_size=3),
)
def test_a_second_expansion_adds_only_what_the_first_did_not_keep(
    graph: tuple[dict[Digest, References | None], dict[Digest, set[Digest]]],
    first: set[Digest],
    second: set[Digest],
) -> None:
    references, referrers = graph
    kept = Kept()
    expand(kept, sorted(first), references, referrers)
    before = (set(kept.manifests), set(kept.blobs))
    added = expand(kept, sorted(second), references, referrers)
    assert added.manifests == kept.manifests - before[0]
    assert set(added.blobs) == kept.blobs - before[1]
    assert (kept.manifests, kept.blobs) == closure(first | second, references, referrers)


@st.composite
def candidates(draw: st.DrawFn) -> tuple[list[Node], dict[Node, set[Digest]]]:
    nodes = draw(
        st.lists(
            st.tuples(st.sampled_from(["a", "b", "c/d"]), st.sampled_from(MANIFESTS)),
            unique=True,
            max_size=14,
        )
    )
    edges = {node: draw(st.sets(st.sampled_from(MANIFESTS), max_size=3)) for node in nodes}
    return nodes, edges


def related(a: Node, b: Node, edges: Mapping[Node, set[Digest]]) -> bool:
    """Decided together by definition: an edge within a repository, or one digest."""
    return a[1] == b[1] or (
        a[0] == b[0] and (b[1] in edges.get(a, set()) or a[1] in edges.get(b, set()))
    )


@given(candidates())
def test_groups_decided_together_are_the_connected_components(
    case: tuple[list[Node], dict[Node, set[Digest]]],
) -> None:
    nodes, edges = case
    groups = decided_together(nodes, edges)
    # A partition of the nodes, each group in the order given, groups by first node.
    assert sorted(n for g in groups for n in g) == sorted(nodes)
    assert [g[0] for g in groups] == [n for n in nodes if any(g[0] == n for g in groups)]
    for g in groups:
        assert g == [n for n in nodes if n in g]
    group_of = {n: i for i, g in enumerate(groups) for n in g}
    # Related nodes share a group ...
    for a in nodes:
        for b in nodes:
            if related(a, b, edges):
                assert group_of[a] == group_of[b], (a, b)
    # ... and a group holds only what relations connect.
    for g in groups:
        reached, todo = {g[0]}, [g[0]]
        while todo:
            a = todo.pop()
            for b in g:
                if b not in reached and related(a, b, edges):
                    reached.add(b)
                    todo.append(b)
        assert reached == set(g)


@st.composite
def index_trees(draw: st.DrawFn) -> tuple[list[Node], dict[Node, set[Digest]]]:
    """Manifests of a few repositories with index children (acyclic: towards later
    digests only), some of them not among the nodes."""
    nodes = draw(
        st.lists(
            st.tuples(st.sampled_from(["a", "b"]), st.sampled_from(MANIFESTS)),
            unique=True,
            max_size=14,
        )
    )
    children = {
        (name, d): draw(
            st.sets(st.sampled_from(MANIFESTS[MANIFESTS.index(d) + 1 :] or [d]), max_size=3)
        )
        - {d}
        for name, d in nodes
    }
    return nodes, children


@given(index_trees())
def test_parents_go_first_and_no_level_holds_a_parent_of_its_own(
    case: tuple[list[Node], dict[Node, set[Digest]]],
) -> None:
    nodes, children = case
    levels = parents_first(nodes, children)
    assert sorted(n for level in levels for n in level) == sorted(nodes)
    level_of = {n: i for i, level in enumerate(levels) for n in level}
    for name, d in nodes:
        for child in children[(name, d)]:
            if (name, child) in level_of:
                assert level_of[(name, d)] < level_of[(name, child)]
    assert all(levels)


def test_a_cycle_which_content_addressing_rules_out_still_ends() -> None:
    a, b = MANIFESTS[0], MANIFESTS[1]
    levels = parents_first([("r", a), ("r", b)], {("r", a): {b}, ("r", b): {a}})
    assert levels == [[("r", a), ("r", b)]]
