"""The policies' plans on their own (no Redis): how a worker's free slots are shared."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from leaseq import Priority, Weighted


def test_priority_offers_every_slot_to_each_queue_in_order() -> None:
    assert Priority().plan(5, ["a", "b"]) == [("a", 5), ("b", 5)]


def test_one_free_slot_at_a_time_follows_the_weights_slot_by_slot() -> None:
    """Smooth weighted round robin: 3:1 gives a, a, b, a in every four single slots."""
    policy = Weighted({"a": 3, "b": 1})
    firsts = [policy.plan(1, ["a", "b"])[0] for _ in range(8)]
    assert firsts == [("a", 1), ("a", 1), ("b", 1), ("a", 1)] * 2


def test_free_slots_go_out_in_chunks_so_a_claim_takes_a_batch() -> None:
    """Ten equal queues and ten free slots: two claims (8 and 2), not ten claims of one
    job each; every queue is still offered all the slots after them."""
    names = [f"q{i}" for i in range(10)]
    plan = Weighted(dict.fromkeys(names, 1)).plan(10, names)
    assert sorted(n for _, n in plan[:-10]) == [2, 8]
    assert sorted(plan[-10:]) == [(name, 10) for name in names]


@given(st.dictionaries(st.sampled_from("abcdef"), st.integers(1, 20), min_size=1),
       st.lists(st.integers(1, 200), min_size=1, max_size=60))
def test_shares_sum_to_the_free_slots_and_follow_the_weights_over_time(
    weights: dict[str, int], frees: list[int],
) -> None:
    """Each plan shares exactly the free slots, then offers every queue all of them; over
    any run of plans each queue's slots stay within a chunk's worth per queue of its
    weight's part (smooth round robin charged by the slot)."""
    names = sorted(weights)
    policy = Weighted(weights)
    given_to = dict.fromkeys(names, 0)
    total = sum(weights.values())
    for free in frees:
        plan = policy.plan(free, names)
        shares, offers = plan[:-len(names)], plan[-len(names):]
        assert sum(n for _, n in shares) == free and all(n > 0 for _, n in shares)
        assert sorted(offers) == [(name, free) for name in names]
        for name, n in shares:
            given_to[name] += n
        slots = sum(given_to.values())
        for name in names:
            assert abs(given_to[name] - slots * weights[name] / total) <= 8 * len(names)
