"""The hosts each guest may go to in a repair MILP (:func:`vmtools.planner.policy._repair`).

A small instance gives every guest that moves every host it is allowed on, or ``k`` of them
drawn at random (as it always did). A large one would pay a pass over every host for every
guest that moves: 150,000 guests (the widened pass: any guest may move to make room) times
20,000 hosts ran for minutes past ``--time-limit``. There a guest's ``k`` candidates are
drawn among the hosts that could take it alone, in draws proportional to ``k``, and the pass
that makes room widens only to the guests of the hosts the rule breakers may go to.
"""

from __future__ import annotations

import random
from typing import Callable

# Above this many (guest, host) membership tests a pass over every host per guest is too
# slow for a repair within its share of the time limit (about a second of Python).
SCAN_PAIRS = 5_000_000
DRAWS_PER_CANDIDATE = 50


def large(n_movers: int, pool: list[int]) -> bool:
    """Whether candidates are drawn rather than listed (see the module)."""
    return n_movers * len(pool) > SCAN_PAIRS


def draw(pool: list[int], k: int, rng: random.Random, ok: Callable[[int], bool]) -> list[int]:
    """Up to ``k`` distinct hosts of ``pool`` that ``ok`` accepts, drawn at random with at most
    ``DRAWS_PER_CANDIDATE * k`` draws: a host that takes the guest is found in a few draws
    when there are many, and none is wasted time when there are none."""
    picked: set[int] = set()
    n = len(pool)
    for _ in range(DRAWS_PER_CANDIDATE * k):
        h = pool[rng.randrange(n)]
        if h not in picked and ok(h):
            picked.add(h)
            if len(picked) == k:
                break
    return sorted(picked)


def candidates(inst, place: list[int], pool: list[int], movers: set[int], k: int,
               rng: random.Random, fits: Callable[[int, int], bool]) -> list[list[int]]:
    """Each guest's candidate hosts: its own host when it does not move; else its allowed
    hosts of ``pool`` (``k`` of them at random when there are more), its own host kept when
    allowed. ``fits(v, h)``: whether ``h`` could take ``v`` alone (used when drawing)."""
    drawn = large(len(movers), pool)
    out = []
    for v in range(inst.n_vms):
        if v not in movers:
            out.append([place[v]])
            continue
        allowed = inst.allowed_set(v)
        if drawn:
            pick = draw(pool, k, rng, lambda h: h in allowed and fits(v, h))
        else:
            listed = [h for h in pool if h in allowed]
            pick = listed if len(listed) <= k else rng.sample(listed, k)
        mine = set(pick)
        if place[v] in allowed:
            mine.add(place[v])
        out.append(sorted(mine) or [place[v]])
    return out


def room_makers(inst, place: list[int], pool: list[int], movable: set[int], k: int,
                rng: random.Random) -> set[int]:
    """The guests the widened pass may move besides the rule breakers (``movable``): every
    guest not pinned on a small instance; on a large one, the guests of the hosts the
    breakers are allowed on (``k`` drawn per breaker), whose leaving makes room for them."""
    free = {v for v in range(inst.n_vms) if not inst.fixed[v]}
    if not large(len(free), pool):
        return free
    near: set[int] = set()
    for v in movable:
        allowed = inst.allowed_set(v)
        near.update(draw(pool, k, rng, lambda h: h in allowed))
    return movable | {v for v in free if place[v] in near}


__all__ = ["SCAN_PAIRS", "large", "draw", "candidates", "room_makers"]
