"""Auto's destination search (planner/fullest.py): the hosts walked fullest first, blocks
without the room skipped, give the host a pass over every host gives, as guests move."""

from __future__ import annotations

import random

from vmtools.planner import fullest
from vmtools.planner.fullest import FullestFirst


def test_walk_finds_the_least_key_that_fits_while_hosts_change(monkeypatch):
    monkeypatch.setattr(fullest, "BLOCK", 4)        # many blocks, splits and empty blocks
    rng = random.Random(7)
    n = 300
    mem = [rng.choice([0.0, 1.0, 5.0, 20.0, 60.0]) for _ in range(n)]
    cpu = [rng.uniform(0.0, 8.0) for _ in range(n)]
    empty = [rng.random() < 0.3 for _ in range(n)]
    util = [rng.choice([0.5, 0.7, 0.9]) for _ in range(n)]     # ties: the name decides

    def key(h):
        return (empty[h], -util[h], f"node{h:03d}", h)

    order = FullestFirst(n, key, lambda h: (mem[h], cpu[h]))
    for _ in range(400):
        need_mem, need_cpu = rng.choice([0.5, 4.0, 30.0, 100.0]), rng.uniform(0.0, 6.0)
        avoid = set(rng.sample(range(n), 20))

        def fits(h):
            return h not in avoid and mem[h] >= need_mem and cpu[h] >= need_cpu and h % 7 != 3

        for active_only, empty_only in ((False, False), (True, False), (False, True)):
            every = [h for h in range(n) if fits(h) and not (active_only and empty[h])
                     and not (empty_only and not empty[h])]
            want = min(every, key=key, default=-1)
            got = next((h for h in order.walk(need_mem, need_cpu, active_only=active_only,
                                              empty_only=empty_only) if fits(h)), -1)
            assert got == want
        for h in rng.sample(range(n), 5):           # a move changes a few hosts
            mem[h] = max(0.0, mem[h] + rng.choice([-20.0, -5.0, 5.0, 40.0]))
            cpu[h] = rng.uniform(0.0, 8.0)
            empty[h] = rng.random() < 0.3
            util[h] = rng.choice([0.5, 0.7, 0.9, 0.95])
            order.touch(h)


def test_no_bound_walks_every_host_in_key_order():
    keys = {0: (False, -0.5, "b", 0), 1: (True, 0.0, "a", 1), 2: (False, -0.9, "c", 2)}
    order = FullestFirst(3, keys.__getitem__, lambda h: fullest._NONE)
    assert list(order.walk()) == [2, 0, 1]
    assert list(order.walk(active_only=True)) == [2, 0]
    assert list(order.walk(empty_only=True)) == [1]


def test_most_left_is_the_first_of_the_largest_a_pass_over_every_host_finds():
    """MostLeft (auto's consolidation's "the most left is ...") against the pass over every
    host it replaced: ties (the first host wins), hosts out for good, one host skipped this
    time only, figures changing as guests move."""
    from vmtools.planner.fullest import MostLeft
    rng = random.Random(11)
    n = 200
    free = [float(rng.choice([0, 1, 2, 4, 8])) for _ in range(n)]     # many ties
    closed: set[int] = set()
    most = MostLeft(n, lambda h: free[h])
    for _ in range(500):
        skip = rng.randrange(n)

        def gone(h):
            return h in closed or free[h] == 0          # 0: an empty host, say

        want = None
        for h in range(n):
            if h == skip or gone(h):
                continue
            if want is None or free[h] > want[0]:
                want = (free[h], h)
        assert most.best(gone, skip) == want
        if rng.random() < 0.1:
            closed.add(rng.randrange(n))                # only grows, as consolidation's
        for h in rng.sample(range(n), 3):
            free[h] = float(rng.choice([0, 1, 2, 4, 8, 16]))
            most.touch(h)
