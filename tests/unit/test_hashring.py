"""Rendezvous ordering: stable, balanced, minimal movement."""

from __future__ import annotations

import collections

from shared.policy.hashing import rendezvous_order

PARENTS = ["http://r1", "http://r2", "http://r3"]


def test_rendezvous_order_is_stable_and_complete():
    """The same key always gets the same order, a permutation of the parents."""
    order = rendezvous_order(PARENTS, "/title/seg-1.m4s")
    assert sorted(order) == sorted(PARENTS)
    assert order == rendezvous_order(list(reversed(PARENTS)), "/title/seg-1.m4s")


def test_rendezvous_spreads_keys_over_parents():
    """Each parent owns roughly a third of many keys."""
    owners = collections.Counter(rendezvous_order(PARENTS, f"/k{i}")[0] for i in range(3000))
    assert all(800 < n < 1200 for n in owners.values())


def test_rendezvous_removing_a_parent_moves_only_its_keys():
    """Keys owned by the surviving parents keep their owner."""
    keys = [f"/k{i}" for i in range(1000)]
    before = {k: rendezvous_order(PARENTS, k)[0] for k in keys}
    after = {k: rendezvous_order(PARENTS[:2], k)[0] for k in keys}
    assert all(after[k] == before[k] for k in keys if before[k] != "http://r3")


def test_rendezvous_single_parent():
    assert rendezvous_order(["http://only"], "k") == ["http://only"]
    assert rendezvous_order([], "k") == []
