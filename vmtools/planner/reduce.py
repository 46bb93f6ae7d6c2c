"""Close one more host by a tabu search over swaps with a pool of unplaced guests.

After the constructions of :mod:`vmtools.planner.packing`, the least-loaded open hosts are
emptied into a *pool* (three of them; after a failure one, then two); the search succeeds
when the pool fits on one host fewer than it came from. Each step first puts pool guests on open hosts where they fit, then swaps: one or two
guests of an open host go to the pool and one or two pool guests take their place, when they
fit there. The step chosen shrinks the pool's volume (the sum of its guests' normalised
demands) the most: large guests go into hosts and small ones come out, and small ones are
easy to place. When no step shrinks it, the best step that is not *tabu* is taken anyway (a
guest that just left a host may not go back to it for a few steps), and when the pool has
not shrunk for a while a few guests go to it at random; so the search walks out of local
optima. After a success the next hosts are emptied; after a number of steps without success
the search starts again from the best placement; it ends at the deadline, at the lower
bound, or after a few failures in a row.

This is the consistent-neighbourhood search of Buljubašić and Vasquez (2016, bin packing and
two-dimensional vector packing), reduced to its swap moves. It finds the exact fills the
one-pass heuristics miss (hosts of two or three guests, where the optimum is a matching).

Every step keeps every rule: the capacity check comes first, and when rules apply
(:attr:`_Ctx.plain` is false) the move is tried on a
:class:`~vmtools.planner.heuristics.Packing`, which checks allowed hosts, spread groups and
guest-count caps. Fixed guests never move and their hosts are never emptied.
"""

from __future__ import annotations

import itertools
import logging
import random
import time

from vmtools.rules.capacity import EPS

log = logging.getLogger("vmtools.planner.reduce")

MAX_UNITS = 5000            # one step scans every host: O(hosts x swaps)
PAIRS_UP_TO = 8             # guests on a host (or in the pool) up to which pairs are swapped
TENURE = 7
# Steps without closing a host after which the search starts again from the best placement
# with another number of hosts emptied and the random choices going on differently; it gives
# up after ROUNDS failures of each (small clusters would otherwise spend their whole share
# where the bound is below the optimum). Which start succeeds is a matter of luck more than
# of length: 121 guests of bench/vectorpack's class 9 (instance 7) close their last host in
# 1.5 s from two seeds of three and not in 8 s from the third.
IDLE_STEPS_PER_GUEST = 40
ROUNDS = 4
# How many hosts are emptied into the pool (it must fit on one less), in turn: three finds
# the exact fills of triplets, one the host that a few swaps free.
CLOSE = (3, 1, 2)


def reduce_hosts(ctx, placement: list[int], deadline: float,
                 lower: int, seed: int = 0) -> list[int]:
    """A placement with fewer hosts than ``placement`` when the search finds one before
    ``deadline`` (or reaches ``lower``), else ``placement`` itself. ``ctx`` is the packing
    portfolio's view of the instance (:class:`vmtools.planner.packing._Ctx`: units, their
    demands, the rules' checks)."""
    if len(ctx.rest) > MAX_UNITS or not ctx.rest:
        return placement
    rng = random.Random(seed)
    search = _Search(ctx, placement, rng)
    best = placement
    n_open = len(set(placement))
    failed = 0
    turn = 0
    while n_open > lower and failed < ROUNDS * len(CLOSE) and time.monotonic() < deadline:
        spare = search.close(CLOSE[turn % len(CLOSE)])
        if not spare:
            break
        if search.run(deadline, spare, search.steps + IDLE_STEPS_PER_GUEST * len(ctx.rest)):
            best = search.placement()
            n_open = len(set(best))
            failed = 0
            log.debug("tabu: %d hosts after %d steps", n_open, search.steps)
        else:       # back to the best placement, and empty another number of hosts
            failed += 1
            turn += 1
            steps = search.steps
            search = _Search(ctx, best, rng)
            search.steps = steps
    return best


class _Search:
    def __init__(self, ctx, placement: list[int], rng: random.Random):
        self.ctx = ctx
        self.rng = rng
        self.dims = ctx.dims
        self.nd = len(ctx.dims)
        scale = [ctx.scale[d] for d in ctx.dims]
        self.units = list(ctx.rest)
        self.dem = [ctx.dem[id(u)] for u in self.units]
        self.vol = [sum(x / s for x, s in zip(dem, scale)) for dem in self.dem]
        self.pack = ctx.start()
        self.bins: dict[int, list[int]] = {}
        for i, u in enumerate(self.units):
            h = placement[u[0]]
            self.pack.put(u, h)
            self.bins.setdefault(h, []).append(i)
        self.pool: list[int] = []
        self.tabu: dict[tuple[int, int], int] = {}
        self.steps = 0

    # ------------------------------------------------------------------ state
    def free(self, h: int) -> list[float]:
        return [self.pack.free[d][h] for d in self.dims]

    def placement(self) -> list[int]:
        return list(self.pack.placement)

    def close(self, k: int) -> list[int]:
        """Move the guests of the ``k`` least-loaded closable hosts to the pool; the hosts."""
        candidates = sorted((h for h in self.bins if h not in self.ctx.forced),
                            key=lambda h: (sum(self.vol[i] for i in self.bins[h]),
                                           len(self.bins[h]), h))[:k]
        for h in candidates:
            for i in self.bins.pop(h):
                self.pack.remove(self.units[i], h)
                self.pool.append(i)
        return candidates

    def _into_spare(self, spare: list[int]) -> bool:
        """Put the whole pool on the closed hosts but one (first-fit decreasing, two sort
        keys); False, and nothing changed, when it does not fit."""
        scale = [self.ctx.scale[d] for d in self.dims]
        hosts = sorted(spare, key=lambda h: -sum(
            min(self.ctx.inst.cap[d][h], 1e18) / c for d, c in zip(self.dims, scale)))[:-1]
        if not hosts and self.pool:
            return False
        for d_i, d in enumerate(self.dims):
            if sum(self.dem[i][d_i] for i in self.pool) > \
                    sum(self.pack.free[d][h] for h in hosts) + EPS:
                return False
        keys = (lambda i: -self.vol[i], lambda i: -max(self.dem[i]))
        for key in keys:
            done = []
            for i in sorted(self.pool, key=key):
                h = next((h for h in hosts if self.ctx.fits(self.pack, self.units[i], h)), None)
                if h is None:
                    break
                self.pack.put(self.units[i], h)
                done.append((i, h))
            if len(done) == len(self.pool):
                for i, h in done:
                    self.bins.setdefault(h, []).append(i)
                self.pool = []
                return True
            for i, h in done:
                self.pack.remove(self.units[i], h)
        return False

    # ------------------------------------------------------------------ moves
    def _fits_vec(self, need: list[float], room: list[float]) -> bool:
        for a, b in zip(need, room):
            if a > b + EPS:
                return False
        return True

    def _legal(self, h: int, out: tuple[int, ...], into: tuple[int, ...]) -> bool:
        """Whether ``into`` (pool guests) fit on ``h`` once ``out`` (its guests) left, with
        every rule; the state is unchanged afterwards."""
        ctx, pack, units = self.ctx, self.pack, self.units
        for i in out:
            pack.remove(units[i], h)
        done = []
        ok = True
        for i in into:
            if ctx.fits(pack, units[i], h):
                pack.put(units[i], h)
                done.append(i)
            else:
                ok = False
                break
        for i in reversed(done):
            pack.remove(units[i], h)
        for i in out:
            pack.put(units[i], h)
        return ok

    def _subsets(self, items: list[int], up_to_pairs: bool) -> list[tuple[tuple[int, ...],
                                                                           list[float], float]]:
        dem, vol, nd = self.dem, self.vol, self.nd
        out = [((i,), list(dem[i]), vol[i]) for i in items]
        if up_to_pairs and len(items) <= PAIRS_UP_TO:
            for i, j in itertools.combinations(items, 2):
                out.append(((i, j), [dem[i][k] + dem[j][k] for k in range(nd)],
                            vol[i] + vol[j]))
        return out

    def _insert(self) -> bool:
        """Put pool guests where they fit (largest first, onto the host they fill most)."""
        placed = False
        for i in sorted(self.pool, key=lambda i: -self.vol[i]):
            best_h, best_room = -1, None
            for h in self.bins:
                room = self.free(h)
                if not self._fits_vec(self.dem[i], room):
                    continue
                if not self.ctx.plain and not self._legal(h, (), (i,)):
                    continue
                left = sum(r - a for r, a in zip(room, self.dem[i]))
                if best_room is None or left < best_room:
                    best_h, best_room = h, left
            if best_h >= 0:
                self.pool.remove(i)
                self.pack.put(self.units[i], best_h)
                self.bins[best_h].append(i)
                placed = True
        return placed

    def _kick(self, n: int = 2) -> None:
        hosts = [h for h in self.bins if self.bins[h]]
        for h in self.rng.sample(hosts, min(n, len(hosts))):
            i = self.rng.choice(self.bins[h])
            self.pack.remove(self.units[i], h)
            self.bins[h].remove(i)
            self.pool.append(i)
            self.tabu[(i, h)] = self.steps + TENURE + len(self.pool)

    def run(self, deadline: float, spare: list[int], last_step: int) -> bool:
        """Steps until the pool fits on one host less than ``spare`` (the hosts it came
        from): True; or the deadline or step ``last_step``: False."""
        best_pool = float("inf")
        stale = 0
        patience = 100 + 5 * len(self.bins)
        nd = self.nd
        while True:
            self._insert()
            if not self.pool or self._into_spare(spare):
                self.tabu.clear()
                return True
            pool_vol = sum(self.vol[i] for i in self.pool)
            if pool_vol < best_pool - EPS:
                best_pool, stale = pool_vol, 0
            else:
                stale += 1
                if stale > patience:        # stuck: a few guests to the pool at random
                    self._kick()
                    best_pool, stale = float("inf"), 0
                    continue
            if time.monotonic() > deadline or self.steps >= last_step:
                return False
            self.steps += 1
            step = self.steps
            ins = self._subsets(self.pool, True)
            best_key, best_move = None, None
            for h, items in self.bins.items():
                room = self.free(h)
                for out, out_dem, out_vol in self._subsets(items, True):
                    avail = [room[k] + out_dem[k] for k in range(nd)]
                    for into, in_dem, in_vol in ins:
                        gain = in_vol - out_vol     # pool volume shrinks by this much
                        if best_key is not None and gain < best_key[0] - EPS:
                            continue
                        if not self._fits_vec(in_dem, avail):
                            continue
                        tabu = any(self.tabu.get((i, h), 0) > step for i in into)
                        if tabu and pool_vol - gain >= best_pool - EPS:
                            continue            # tabu, unless it beats the best pool
                        if len(into) == len(out) == 1 and abs(gain) < EPS:
                            continue            # a swap of equals changes nothing
                        key = (gain, self.rng.random())
                        if best_key is not None and key <= best_key:
                            continue
                        if not self.ctx.plain and not self._legal(h, out, into):
                            continue
                        best_key, best_move = key, (h, out, into)
            if best_move is None:           # every step is tabu or none fits
                self._kick()
                best_pool, stale = float("inf"), 0
                continue
            h, out, into = best_move
            units = self.units
            for i in out:
                self.pack.remove(units[i], h)
                self.bins[h].remove(i)
                self.pool.append(i)
                self.tabu[(i, h)] = step + TENURE + self.rng.randrange(len(self.pool) + 1)
            for i in into:
                self.pool.remove(i)
                self.pack.put(units[i], h)
                self.bins[h].append(i)
