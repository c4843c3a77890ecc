"""The pure parts: records survive storage unchanged, which later facts prove an earlier
change, and the retry policy's waits."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from registry.events.consumer import RetryPolicy
from registry.events.model import Event, Record, RequestRecord, Source, State, Target, proves

names = st.text("abcdefghijklmnopqrstuvwxyz0123456789/-", min_size=1, max_size=20)
texts = st.text(max_size=30)


@st.composite
def events(draw: st.DrawFn) -> Event:
    target = Target(
        draw(names),
        media_type=draw(texts),
        digest=draw(texts),
        size=draw(st.integers(0, 2**40)),
        url=draw(texts),
        tag=draw(texts),
        from_repository=draw(texts),
        references=tuple(draw(st.lists(st.dictionaries(texts, texts), max_size=2))),
    )
    return Event(
        draw(texts),
        draw(texts),
        draw(st.sampled_from(["push", "pull", "mount", "delete", "create"])),
        draw(st.sampled_from(["manifest", "blob", "tag", "repository"])),
        target,
        RequestRecord(*draw(st.lists(texts, min_size=5, max_size=5))),
        draw(texts),
        Source(draw(texts), draw(texts)),
        draw(st.sampled_from(["client", "proxy", "replication", "gc"])),
        draw(st.booleans()),
    )


states = st.builds(
    State,
    st.sampled_from(["tag", "revision", "link", "repository"]),
    names,
    texts,
    texts,
    st.booleans(),
)


@given(st.lists(events(), min_size=1, max_size=4), st.data())
def test_a_record_reads_back_as_it_was_written(evs: list[Event], data: st.DataObject) -> None:
    checks = tuple(data.draw(st.none() | states) for _ in evs)
    facts = tuple(data.draw(st.lists(states, max_size=3)))
    to = data.draw(st.none() | st.just("endpoint/hook"))
    record = Record(tuple(evs), checks, facts, to)
    assert Record.load(record.dump()) == record


D1, D2 = "sha256:" + "1" * 64, "sha256:" + "2" * 64


@pytest.mark.parametrize(
    ("fact", "check", "proven"),
    [
        # A tag delete (or a later push) read that the tag named D1: it had been pushed.
        (State("tag", "r", D1, "v1"), State("tag", "r", D1, "v1"), True),
        (State("tag", "r", D2, "v1"), State("tag", "r", D1, "v1"), False),
        (State("tag", "r", D1, "v2"), State("tag", "r", D1, "v1"), False),
        (State("tag", "other", D1, "v1"), State("tag", "r", D1, "v1"), False),
        # A later push read that the tag named nothing, or another digest: deleted.
        (State("tag", "r", "", "v1", False), State("tag", "r", D1, "v1", False), True),
        (State("tag", "r", D2, "v1"), State("tag", "r", D1, "v1", False), True),
        (State("tag", "r", D1, "v1"), State("tag", "r", D1, "v1", False), False),
        # A revision was there if a tag named it or a manifest delete read it.
        (State("tag", "r", D1, "v1"), State("revision", "r", D1), True),
        (State("revision", "r", D1), State("revision", "r", D1), True),
        (State("revision", "r", D2), State("revision", "r", D1), False),
        (State("link", "r", D1), State("link", "r", D1), True),
        (State("link", "r", D1), State("link", "r", D1, present=False), False),
    ],
)
def test_which_later_facts_prove_an_earlier_change(fact: State, check: State, proven: bool) -> None:
    assert proves(fact, check) is proven


@given(
    st.integers(1, 50),
    st.integers(1, 20),
    st.floats(0.01, 10),
    st.floats(10, 600),
    st.integers(0, 2**32),
)
def test_waits_stay_between_half_and_all_of_the_bounded_exponential(
    failures: int, threshold: int, backoff: float, maxbackoff: float, seed: int
) -> None:
    policy = RetryPolicy(threshold=threshold, backoff=backoff, maxbackoff=maxbackoff)
    full = min(maxbackoff, backoff * 2 ** max(0, failures - threshold))
    wait = policy.delay(failures, random.Random(seed))
    assert full / 2 <= wait <= full
