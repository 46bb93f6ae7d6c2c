"""The candidate hosts of a repair MILP: listed on a small instance as before, drawn among the
hosts that could take the guest on a large one, and the pass that makes room widened only to
the guests near the rule breakers (150,000 guests x 20,000 hosts listed guest by guest ran for
minutes past --time-limit)."""

from __future__ import annotations

import random
from types import SimpleNamespace

from vmtools.planner import candidates as C


def _inst(n_hosts: int, per_host: int, banned: dict[int, set[int]] | None = None):
    hosts = set(range(n_hosts))
    allowed = {v: hosts - (banned or {}).get(v, set()) for v in range(n_hosts * per_host)}
    return SimpleNamespace(n_vms=n_hosts * per_host, allowed_set=lambda v: allowed[v],
                           fixed=[False] * (n_hosts * per_host)), \
        [v // per_host for v in range(n_hosts * per_host)]


def test_small_instances_list_every_allowed_host_as_before():
    inst, place = _inst(20, 2, banned={0: {5, 6}})
    pool = list(range(20))
    cands = C.candidates(inst, place, pool, {0, 7}, 20, random.Random(1), lambda v, h: True)
    assert cands[0] == [h for h in pool if h not in (5, 6)]
    assert cands[7] == pool and cands[1] == [place[1]]
    assert C.room_makers(inst, place, pool, {0}, 20, random.Random(1)) == set(range(40))


def test_large_instances_draw_a_few_hosts_that_fit_and_widen_only_near_the_breakers(
        monkeypatch):
    monkeypatch.setattr(C, "SCAN_PAIRS", 100)
    inst, place = _inst(400, 5, banned={3: set(range(0, 400, 2))})
    pool = list(range(400))
    roomy = set(range(0, 400, 3))                     # the hosts that could take a guest
    cands = C.candidates(inst, place, pool, {3, 50}, 10, random.Random(2),
                         lambda v, h: h in roomy)
    for v in (3, 50):
        drawn = set(cands[v]) - {place[v]}
        assert 0 < len(drawn) <= 10 and drawn <= roomy
    assert place[50] in cands[50]                             # staying is a candidate
    assert all(h % 2 for h in cands[3])       # never a banned host, not even its own
    near = C.room_makers(inst, place, pool, {3, 50}, 10, random.Random(2))
    assert {3, 50} <= near and len(near) <= 2 + 2 * 10 * 5
    assert {place[v] for v in near} - {place[3], place[50]}   # some hosts' guests make room


def test_a_draw_among_hosts_none_of_which_fits_ends_empty_and_bounded():
    calls = []
    got = C.draw(list(range(20000)), 10, random.Random(3), lambda h: calls.append(h) or False)
    assert got == [] and len(calls) == C.DRAWS_PER_CANDIDATE * 10
