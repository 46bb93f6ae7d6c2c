"""The packing portfolio: several vector-packing heuristics for the fewest active hosts, and
a local search that empties hosts.

Heuristics (after Panigrahy et al. 2011 and the study of Mommessin et al. 2024, which ranks
bin-centric dot-product and norm-based choices first):

* first-fit decreasing with four sort keys (sum, max, Euclidean norm of the normalised
  demands; the sum key is :func:`~vmtools.planner.heuristics.ffd_sum`);
* bin-centric: open one host, then repeatedly add the guest that best matches what is left
  of it (largest dot product of the guest's and the host's remaining normalised capacity, or
  smallest norm of the capacity left after it), until none fits; then the next host;
* item-centric best fit: guests largest first, each to the open host it matches best
  (dot product), a new host only when none can take it;
* bin-centric pairs: the same with a one-guest look-ahead, and first a guest that one other
  guest left completes to fill the host exactly (triplets, pairs);
* :func:`empty_hosts`: take the least-loaded host, move its guests onto the other open hosts
  (directly, or after moving one guest of the destination elsewhere), keep the result when
  the host ends empty;
* :func:`~vmtools.planner.reduce.reduce_hosts`: a tabu search over swaps between open hosts
  and a pool of guests, which closes hosts the others cannot.

Every one of them places whole gather units, keeps fixed guests on their hosts and checks
each placement with :class:`~vmtools.planner.heuristics.Packing` and the guest's allowed
hosts, so they obey exactly the rules first-fit decreasing obeys. A result that
:meth:`Instance.valid` refuses is dropped.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Callable

from vmtools.rules.capacity import EPS
from vmtools.planner import heuristics as H
from vmtools.planner.deadline import Deadline
from vmtools.planner.instance import Instance
from vmtools.planner.reduce import reduce_hosts

log = logging.getLogger("vmtools.planner.packing")

BIN_CENTRIC_UNITS = 2000        # bin-centric choices scan every guest left: O(n^2)
EMPTY_HOSTS_UNITS = 20000


class _Ctx:
    """What every heuristic needs: units, their demand vectors, allowed hosts, host order."""

    def __init__(self, inst: Instance):
        self.inst = inst
        self.dims = inst.dims
        self.scale = inst.scale
        self.units = H.units(inst)
        self.fixed: list[tuple[list[int], int]] = []
        self.rest: list[list[int]] = []
        for unit in self.units:
            fixed = [v for v in unit if inst.fixed[v]]
            if fixed:
                self.fixed.append((unit, inst.cur[fixed[0]]))
            else:
                self.rest.append(unit)
        self.dem = {id(u): tuple(sum(inst.dem[d][v] for v in u) for d in self.dims)
                    for u in self.units}
        self.order = H._host_order(inst)
        self.forced = {h for _, h in self.fixed}
        everywhere = max((len(a) for a in inst.allowed), default=0)
        self._allowed: dict[int, set[int]] = {}
        self.free_everywhere = {id(u) for u in self.rest
                                if len(u) == 1 and len(inst.allowed[u[0]]) == everywhere}
        self.common = (inst.allowed_set(next(iter(self.rest))[0])
                       if self.rest and len(self.free_everywhere) == len(self.rest) else None)
        # No spread rule, no guest-count cap, every guest alone and free to go to every
        # usable host: capacity is the only check.
        self.plain = (self.common is not None and not inst.spread
                      and not any(math.isfinite(c) for c in inst.count_cap))
        # normalised capacity per host (finite dimensions only)
        self.norm = [[(1.0 / inst.cap[d][h]) if math.isfinite(inst.cap[d][h])
                      and inst.cap[d][h] > 0 else 0.0 for d in self.dims]
                     for h in range(inst.n_hosts)]

    def allowed(self, unit: list[int]) -> set[int]:
        a = self._allowed.get(id(unit))
        if a is None:
            a = self._allowed[id(unit)] = H._allowed(self.inst, unit)
        return a

    def start(self) -> H.Packing:
        pack = H.Packing(self.inst)
        for unit, h in self.fixed:
            pack.put(unit, h)
        return pack

    def fits(self, pack: H.Packing, unit: list[int], h: int) -> bool:
        dem = self.dem[id(unit)]
        for i, d in enumerate(self.dims):
            if dem[i] > pack.free[d][h] + EPS:
                return False
        if self.plain:
            return h in self.common
        return h in self.allowed(unit) and pack.fits(unit, h)


def _norm_key(ctx: _Ctx) -> Callable[[list[int]], float]:
    s = [ctx.scale[d] for d in ctx.dims]
    return lambda u: math.sqrt(sum((x / c) ** 2 for x, c in zip(ctx.dem[id(u)], s)))


def _key(ctx: _Ctx, name: str) -> Callable[[list[int]], float]:
    s = [ctx.scale[d] for d in ctx.dims]
    if name == "sum":
        return lambda u: sum(x / c for x, c in zip(ctx.dem[id(u)], s))
    if name == "max":
        return lambda u: max(x / c for x, c in zip(ctx.dem[id(u)], s))
    return _norm_key(ctx)


def first_fit(ctx: _Ctx, key: str) -> list[int] | None:
    """First-fit decreasing with the sort key ``key`` (sum, max, norm)."""
    pack = ctx.start()
    k = _key(ctx, key)
    for unit in sorted(ctx.rest, key=lambda u: (-k(u), min(u))):
        h = next((h for h in ctx.order if ctx.fits(pack, unit, h)), None)
        if h is None:
            return None
        pack.put(unit, h)
    return pack.placement


def _score_fn(ctx: _Ctx, how: str):
    """score(pack, unit, h): higher is better."""
    dims = ctx.dims

    if how == "dot":
        def score(pack, unit, h):
            n = ctx.norm[h]
            dem = ctx.dem[id(unit)]
            return sum(dem[i] * n[i] * pack.free[d][h] * n[i] for i, d in enumerate(dims))
    else:   # norm: smallest remaining capacity after the guest, in the Euclidean sense
        def score(pack, unit, h):
            n = ctx.norm[h]
            dem = ctx.dem[id(unit)]
            return -sum(((pack.free[d][h] - dem[i]) * n[i]) ** 2 for i, d in enumerate(dims))
    return score


def bin_centric(ctx: _Ctx, how: str, deadline: float) -> list[int] | None:
    """Fill one host at a time with the best-matching guest left (``how``: dot or norm)."""
    pack = ctx.start()
    score = _score_fn(ctx, how)
    left = sorted(ctx.rest, key=lambda u: (-_key(ctx, "sum")(u), min(u)))
    for h in ctx.order:
        if not left:
            break
        if time.monotonic() > deadline:
            return None
        while left:
            best, best_i = -math.inf, -1
            for i, unit in enumerate(left):
                if ctx.fits(pack, unit, h):
                    s = score(pack, unit, h)
                    if s > best + 1e-12:
                        best, best_i = s, i
            if best_i < 0:
                break
            pack.put(left.pop(best_i), h)
    return pack.placement if not left else None


def bin_centric_pairs(ctx: _Ctx, deadline: float, width: int = 12) -> list[int] | None:
    """Bin-centric with a one-guest look-ahead (a pairing heuristic): open a host with the
    largest guest left, then add, of the ``width`` guests that match it best (dot product),
    the one that together with the best guest to follow it fills the host most; repeat until
    none fits. Finds the complementary pairs and triplets a greedy choice misses."""
    pack = ctx.start()
    dims = ctx.dims
    size = _key(ctx, "sum")
    left = sorted(ctx.rest, key=lambda u: (-size(u), min(u)))
    # Guests by their exact demand, to find the guest that fills a host exactly.
    finite = [i for i, d in enumerate(dims) if all(math.isfinite(c) for c in ctx.inst.cap[d])]
    by_demand: dict[tuple, list] = {}
    for u in left:
        by_demand.setdefault(_exact(ctx.dem[id(u)], finite), []).append(u)
    for h in ctx.order:
        if not left:
            break
        if time.monotonic() > deadline:
            return None
        n = ctx.norm[h]
        while left:
            free = [pack.free[d][h] for d in dims]
            fit = [u for u in left if ctx.fits(pack, u, h)]
            if not fit:
                break
            choice = _completing(ctx, pack, h, fit, free, finite, by_demand) \
                if finite and len(fit) > 1 else None
            if choice is not None:
                pass
            elif len(fit) == 1:
                choice = fit[0]
            else:
                choice = _look_ahead(ctx, fit, free, n, width)
            pack.put(choice, h)
            left.remove(choice)
            by_demand[_exact(ctx.dem[id(choice)], finite)].remove(choice)
    return pack.placement if not left else None


def _look_ahead(ctx: _Ctx, fit: list, free: list[float], n: list[float], width: int):
    """Of the ``width`` guests of ``fit`` that match the room ``free`` best (dot product),
    the one that with the largest guest to fit after it fills the most (normalised by ``n``)."""
    nd = len(n)
    live = [i for i in range(nd) if n[i] > 0]
    dem = ctx.dem
    vol = {id(u): sum(dem[id(u)][i] * n[i] for i in live) for u in fit}
    top = sorted(fit, key=lambda u: -sum(dem[id(u)][i] * n[i] * free[i] * n[i]
                                         for i in live))[:width]
    by_vol = sorted(fit, key=lambda u: -vol[id(u)])
    best, choice = -1.0, top[0]
    for u in top:
        du = dem[id(u)]
        vu = vol[id(u)]
        room = [free[i] - du[i] for i in range(nd)]
        for w in by_vol:         # largest first: the first that fits is the best follower
            if vu + vol[id(w)] <= best + 1e-12:
                break
            if w is u:
                continue
            dw = dem[id(w)]
            if all(dw[i] <= room[i] + EPS for i in range(nd)):
                best, choice = vu + vol[id(w)], u
                break
        if vu > best + 1e-12:    # nothing follows it: alone it may still fill the most
            best, choice = vu, u
    return choice


def _exact(dem: tuple, finite: list[int]) -> tuple:
    return tuple(round(dem[i], 6) for i in finite)


def _completing(ctx: _Ctx, pack: H.Packing, h: int, fit: list, free: list[float],
                finite: list[int], by_demand: dict) -> list[int] | None:
    """A guest ``u`` of ``fit`` that, with one other guest left, fills host ``h`` exactly
    in every finite dimension (triplets and pairs that were cut to fit), or None."""
    for u in fit:
        du = ctx.dem[id(u)]
        rest = tuple(round(free[i] - du[i], 6) for i in finite)
        if any(r < 0 for r in rest):
            continue
        if all(r == 0 for r in rest):
            return u
        for w in by_demand.get(rest, ()):
            if w is not u and ctx.fits(pack, w, h):
                if ctx.plain:
                    return u
                pack.put(u, h)
                ok = ctx.fits(pack, w, h)
                pack.remove(u, h)
                if ok:
                    return u
    return None


def best_fit(ctx: _Ctx, key: str, how: str) -> list[int] | None:
    """Item-centric: guests by decreasing ``key``, each to the open host it matches best
    (``how``: dot or norm); the next host in order when no open host can take it."""
    pack = ctx.start()
    score = _score_fn(ctx, how)
    k = _key(ctx, key)
    opened = list(ctx.forced)
    is_open = set(opened)
    for unit in sorted(ctx.rest, key=lambda u: (-k(u), min(u))):
        best, best_h = -math.inf, -1
        for h in opened:
            if ctx.fits(pack, unit, h):
                s = score(pack, unit, h)
                if s > best + 1e-12:
                    best, best_h = s, h
        if best_h < 0:
            best_h = next((h for h in ctx.order if h not in is_open
                           and ctx.fits(pack, unit, h)), -1)
            if best_h < 0:
                return None
            opened.append(best_h)
            is_open.add(best_h)
        pack.put(unit, best_h)
    return pack.placement


def empty_hosts(inst: Instance, placement: list[int], deadline: float,
                ctx: _Ctx | None = None) -> list[int]:
    """Close hosts while their guests fit on the other open hosts, directly or after one
    guest of the destination moves on to a third host. Returns a placement with as many
    hosts or fewer; every step keeps every rule."""
    ctx = ctx or _Ctx(inst)
    pack = ctx.start()
    on: dict[int, list[list[int]]] = {}
    for unit in ctx.rest:
        h = placement[unit[0]]
        pack.put(unit, h)
        on.setdefault(h, []).append(unit)
    for _, h in ctx.fixed:
        on.setdefault(h, [])
    n = [ctx.norm[h] for h in range(inst.n_hosts)]

    def load(h: int) -> float:
        return sum(1 - pack.free[d][h] * n[h][i] for i, d in enumerate(ctx.dims)
                   if n[h][i] > 0)

    def room_after(unit, h) -> float:
        dem = ctx.dem[id(unit)]
        return sum(((pack.free[d][h] - dem[i]) * n[h][i]) ** 2 for i, d in enumerate(ctx.dims))

    failed: set[int] = set()
    improved = True
    while improved and time.monotonic() < deadline:
        improved = False
        candidates = sorted((h for h in on if h not in ctx.forced and h not in failed),
                            key=lambda h: (len(on[h]), load(h)))
        for b in candidates:
            if time.monotonic() > deadline:
                break
            log_moves: list[tuple[list[int], int, int]] = []

            def move(unit, src, dst):
                pack.remove(unit, src)
                pack.put(unit, dst)
                on[src].remove(unit)
                on[dst].append(unit)
                log_moves.append((unit, src, dst))

            others = [h for h in on if h != b]
            ok = True
            for unit in sorted(on[b], key=lambda u: -sum(x for x in ctx.dem[id(u)])):
                fit = [h for h in others if ctx.fits(pack, unit, h)]
                if fit:
                    move(unit, b, min(fit, key=lambda h: room_after(unit, h)))
                    continue
                done = False
                for c in ctx.allowed(unit) & set(others):
                    for w in list(on[c]):
                        pack.remove(w, c)
                        if ctx.fits(pack, unit, c):
                            e = next((e for e in others if e != c and ctx.fits(pack, w, e)),
                                     None)
                            if e is not None:
                                pack.put(w, c)
                                move(w, c, e)
                                move(unit, b, c)
                                done = True
                                break
                        pack.put(w, c)
                    if done:
                        break
                if not done:
                    ok = False
                    break
            if ok:
                del on[b]
                improved = True
                failed.clear()
                break
            for unit, src, dst in reversed(log_moves):
                pack.remove(unit, dst)
                pack.put(unit, src)
                on[dst].remove(unit)
                on[src].append(unit)
            failed.add(b)
    return list(pack.placement)


def best_packing(inst: Instance, lower: int, deadline: float) -> tuple[list[int] | None, str]:
    """The fewest hosts the portfolio finds before ``deadline`` (stops at ``lower``), and the
    name of the heuristic that found it."""
    ctx = _Ctx(inst)
    best, label = H.ffd_sum(inst), "ffd-sum"
    if best is None:
        return None, ""
    n_units = len(ctx.rest)
    tries: list[tuple[str, Callable[[], list[int] | None]]] = [
        ("ffd-max", lambda: first_fit(ctx, "max")),
        ("ffd-norm", lambda: first_fit(ctx, "norm")),
    ]
    if n_units <= BIN_CENTRIC_UNITS:
        tries += [("bin-centric dot", lambda: bin_centric(ctx, "dot", build_by)),
                  ("bin-centric norm", lambda: bin_centric(ctx, "norm", build_by)),
                  ("best-fit dot", lambda: best_fit(ctx, "sum", "dot")),
                  ("best-fit norm", lambda: best_fit(ctx, "sum", "norm"))]
        # Wider look-ahead finds more complementary guests and costs more (250 guests:
        # 0.4 s at width 12, 4 s at 100); each width only while the budget lasts.
        tries += [(f"bin-centric pairs ({w})",
                   lambda w=w: bin_centric_pairs(ctx, build_by, w)) for w in (12, 40, 120)]
    # FFD-sum takes about 0.5 s per 10,000 guests x 1,000 hosts; the others are similar or
    # slower: try them only while the budget allows.
    # The local searches get what the constructions leave, and at least half.
    build_by = Deadline.of(deadline).part(0.5, floor=0).at
    for name, fn in tries:
        if H.hosts_used(best) <= lower or time.monotonic() > build_by:
            break
        started = time.monotonic()
        place = fn()
        log.debug("%s: %s hosts in %.2f s", name, place and H.hosts_used(place),
                  time.monotonic() - started)
        if place is not None and H.hosts_used(place) < H.hosts_used(best) and inst.valid(place):
            best, label = place, name
    if H.hosts_used(best) > lower and n_units <= EMPTY_HOSTS_UNITS \
            and time.monotonic() < deadline:
        place = empty_hosts(inst, best, deadline, ctx)
        if H.hosts_used(place) < H.hosts_used(best) and inst.valid(place):
            label += f", {H.hosts_used(best) - H.hosts_used(place)} hosts emptied"
            best = place
    if H.hosts_used(best) > lower and time.monotonic() < deadline:
        place = reduce_hosts(ctx, best, deadline, lower)
        if H.hosts_used(place) < H.hosts_used(best) and inst.valid(place):
            label += f", {H.hosts_used(best) - H.hosts_used(place)} closed by tabu search"
            best = place
    return best, label


def consolidate_heuristic(inst: Instance, deadline: float | None = None,
                          lower: int | None = None, finish: float | None = None
                          ) -> tuple[list[int] | None, str]:
    """The best heuristic target for 'fewest hosts, then least memory moved': the packing
    portfolio (:func:`best_packing`) until ``deadline`` or the
    bound ``lower``, relabelled onto the physical hosts, or kept in place where it can (only
    until ``finish``, when given: the keeping is skipped past it)."""
    if deadline is None:
        # FFD-sum, and the other sort keys while a pass is cheap (about 0.2 s at 2,000
        # guests, 4 s at 10,000).
        cheap = inst.n_vms * inst.n_hosts <= H.MAX_KEY_PAIRS
        deadline = time.monotonic() + (5.0 if cheap else 0.0)
        if finish is not None:
            deadline = min(deadline, finish)
    ffd, label = best_packing(inst, H.lower_bound(inst) if lower is None else lower, deadline)
    if ffd is None:
        return None, ""
    best, how = H.relabel(inst, ffd), f"{label}+relabel"
    if not inst.valid(best):        # relabelling must keep every rule; never risk it
        log.warning("relabelled packing breaks a rule; using the packing as it is")
        best, how = ffd, label
    kept = H.keep_open(inst, set(best), finish)
    if kept is not None and H.hosts_used(kept) <= H.hosts_used(best) \
            and H.migrated_mib(inst, kept) < H.migrated_mib(inst, best):
        best, how = kept, f"{label}+keep"
    return best, how
