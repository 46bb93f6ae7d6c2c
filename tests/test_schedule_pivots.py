"""Ordering the moves of a plan in a cluster with no room to spare: the pivots."""

from __future__ import annotations

from vmtools.model import VM, Host, Snapshot
from vmtools.planner.schedule import order_moves
from vmtools.rules.constraints import Constraints


def test_a_full_cluster_needs_the_pivot_that_lets_a_waiting_move_in():
    # Three hosts full to the last MiB, one empty. Moving aside the smallest guest first
    # (v4, 1 GiB) leads nowhere: nothing waits for its room. Moving aside a guest whose
    # leaving lets another in does.
    gib = 1024
    sizes = [6, 4, 4, 5, 1, 5, 5]
    now = ["h0", "h2", "h0", "h1", "h2", "h1", "h2"]
    then = ["h2", "h0", "h1", "h1", "h0", "h3", "h0"]
    snap = Snapshot(hosts=[Host(name=f"h{i}", cpu=64, mem_mib=10 * gib) for i in range(4)],
                    vms=[VM(name=f"v{i}", host=h, cpu=0.1, mem_mib=s * gib)
                         for i, (s, h) in enumerate(zip(sizes, now))])
    target = {f"v{i}": h for i, h in enumerate(then)}
    actions, pivots = order_moves(snap, Constraints([]), target)
    assert pivots >= 1
    # Replayed in order (ids are topological), memory is held on both ends while a guest
    # moves, and no host ever holds more than it has.
    where = dict(zip((f"v{i}" for i in range(7)), now))
    mem = {v: s * gib for v, s in zip(where, sizes)}
    used = {f"h{i}": sum(mem[v] for v in where if where[v] == f"h{i}") for i in range(4)}
    for a in sorted(actions, key=lambda a: a.id):
        assert all(p < a.id for p in a.after)
        assert where[a.vm] == a.src
        used[a.dst] += mem[a.vm]
        assert used[a.dst] <= 10 * gib, a
        used[a.src] -= mem[a.vm]
        where[a.vm] = a.dst
    assert where == target
