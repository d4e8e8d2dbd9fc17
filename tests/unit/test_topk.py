from __future__ import annotations

import random

import pytest

from streamgrid.core.models import FrameRecord
from streamgrid.core.topk import TopK, best


def rec(seq: int, brightness: float) -> FrameRecord:
    return FrameRecord(seq, brightness, 1000.0 + seq)


def test_keeps_the_k_brightest_in_rank_order() -> None:
    top: TopK = TopK(3)
    for i, b in enumerate([10, 50, 30, 70, 20, 60]):
        top.offer(rec(i, b))
    assert [r.brightness for r in top.records()] == [70, 60, 50]


def test_offer_reports_entry_and_eviction() -> None:
    top: TopK = TopK(2)
    assert top.offer(rec(0, 10)) == (True, None)
    assert top.offer(rec(1, 20)) == (True, None)
    assert top.offer(rec(2, 5)) == (False, None)
    assert top.offer(rec(3, 15)) == (True, rec(0, 10))


def test_ties_go_to_the_earlier_frame() -> None:
    top: TopK = TopK(2)
    top.offer(rec(0, 50))
    top.offer(rec(1, 40))
    entered, evicted = top.offer(rec(2, 40))  # same score as seq 1, but later
    assert (entered, evicted) == (False, None)
    assert [r.seq for r in top.records()] == [0, 1]
    top.offer(rec(3, 50))  # beats 40, ties 50 with seq 0: ranks after it
    assert [r.seq for r in top.records()] == [0, 3]


def test_would_enter_agrees_with_offer() -> None:
    top: TopK = TopK(2)
    top.offer(rec(0, 10))
    top.offer(rec(1, 20))
    assert not top.would_enter(10)
    assert top.would_enter(10.001)


def test_memory_is_bounded_by_k() -> None:
    top: TopK = TopK(9)
    for i in range(10_000):
        top.offer(rec(i, float(i % 251)))

    assert len(top) == 9


@pytest.mark.parametrize("seed", range(20))
def test_matches_a_full_sort(seed: int) -> None:
    rng = random.Random(seed)
    k = rng.randint(1, 12)
    records = [rec(i, float(rng.randint(0, 20))) for i in range(rng.randint(0, 60))]
    top: TopK = TopK(k)
    for r in records:
        top.offer(r)
    assert top.records() == best(records, k)


def test_k_must_be_positive() -> None:
    with pytest.raises(ValueError):
        TopK(0)
