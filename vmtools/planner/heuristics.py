"""Heuristics and bounds: the per-dimension lower bound on hosts, first-fit decreasing with
the "sum of normalised demands" key (FFD-sum), relabelling of its bins onto physical hosts,
a keep-what-stays repack, and Sandpiper's greedy hotspot relief (the balance baseline). The
packing portfolio built on them is :mod:`vmtools.planner.packing`.

All work on an :class:`~vmtools.planner.instance.Instance` and return placements as a list
of host indices (one per guest), or None when they fail.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Callable, Iterable

from vmtools.planner.deadline import Deadline
from vmtools.planner.instance import Instance
from vmtools.rules.capacity import EPS
from vmtools.rules.load import fraction, hot_dims

# guests x hosts up to which FFD is tried with the max key too when the sum key misses the
# lower bound (a pass costs about 0.2 s at 2,000 guests, 4 s at 10,000).
MAX_KEY_PAIRS = 2_000_000

log = logging.getLogger("vmtools.planner.heuristics")



class Disjoint:
    """Union-find over ``0..n-1``."""

    def __init__(self, n: int):
        self.parent = list(range(n))

    def find(self, x: int) -> int:
        parent = self.parent
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    def union(self, a: int, b: int) -> None:
        self.parent[self.find(a)] = self.find(b)


def units(inst: Instance) -> list[list[int]]:
    """Guests that must travel together: gather groups (merged when they overlap) and singles."""
    if not inst.gather:
        return [[v] for v in range(inst.n_vms)]
    first = {u[0]: u for u in gather_units(inst)}     # each unit by its first guest
    gathered = {v for u in first.values() for v in u}
    # in order of each unit's first guest, as before
    return [first.get(v, [v]) for v in range(inst.n_vms) if v in first or v not in gathered]


def gather_units(inst: Instance) -> list[list[int]]:
    """The units of :func:`units` of more than one guest, in the same order, from the
    gathered guests alone (no pass over every guest)."""
    if not inst.gather:
        return []
    sets = Disjoint(inst.n_vms)
    for group in inst.gather:
        for v in group[1:]:
            sets.union(v, group[0])
    out: dict[int, list[int]] = {}
    for v in sorted({v for group in inst.gather for v in group}):
        out.setdefault(sets.find(v), []).append(v)
    return [u for u in out.values() if len(u) > 1]


class UnitOf(dict):
    """Each guest's unit (:func:`units`) by guest: the gathered guests' stored, any other
    guest a unit of its own, made when asked (no list and entry for each of 150,000)."""

    def __missing__(self, v: int) -> list[int]:
        return [v]


def unit_of(inst: Instance) -> UnitOf:
    return UnitOf({v: u for u in gather_units(inst) for v in u})


class Packing:
    """Free capacity of every host while guests are placed one unit at a time."""

    def __init__(self, inst: Instance):
        self.inst = inst
        self.free = {d: list(inst.cap[d]) for d in inst.dims}
        self.count = [0] * inst.n_hosts
        self.spread_of: dict[int, list[int]] = {}
        for gi, group in enumerate(inst.spread):
            for v in group:
                self.spread_of.setdefault(v, []).append(gi)
        self.spread_on: list[set[int]] = [set() for _ in range(inst.n_hosts)]
        self.placement = [-1] * inst.n_vms

    def fits(self, unit: list[int], h: int) -> bool:
        inst = self.inst
        if self.count[h] + len(unit) > inst.count_cap[h]:
            return False
        for d in inst.dims:
            if sum(inst.dem[d][v] for v in unit) > self.free[d][h] + EPS:
                return False
        for v in unit:
            for g in self.spread_of.get(v, ()):
                if g in self.spread_on[h]:
                    return False
        return True

    def put(self, unit: list[int], h: int) -> None:
        for v in unit:
            for d in self.inst.dims:
                self.free[d][h] -= self.inst.dem[d][v]
            self.count[h] += 1
            self.spread_on[h].update(self.spread_of.get(v, ()))
            self.placement[v] = h


    def remove(self, unit: list[int], h: int) -> None:
        for v in unit:
            for d in self.inst.dims:
                self.free[d][h] += self.inst.dem[d][v]
            self.count[h] -= 1
            self.spread_on[h].difference_update(self.spread_of.get(v, ()))
            self.placement[v] = -1


def drain(inst: Instance, placement: list[int], deadline: Deadline | float) -> list[int]:
    """Empty open hosts, least-used first, while all their guests fit on the other open hosts
    (best fit, every rule kept); returns the placement with fewer hosts, or the same one.
    Used after solving groups apart, each of which rounds its host count up."""
    deadline = Deadline.of(deadline)
    pack = Packing(inst)
    on: dict[int, list[list[int]]] = {}
    for unit in units(inst):
        h = placement[unit[0]]
        pack.put(unit, h)
        on.setdefault(h, []).append(unit)
    fixed_hosts = {inst.cur[v] for v in range(inst.n_vms) if inst.fixed[v]}
    open_hosts = set(on)
    for h in sorted(open_hosts - fixed_hosts,
                    key=lambda h: (-pack.free["mem"][h], inst.hosts[h])):
        if deadline.passed():
            break
        moving = sorted(on[h], key=lambda u: (-size_key(inst, u), min(u)))
        for unit in moving:
            pack.remove(unit, h)
        others = sorted(open_hosts - {h}, key=lambda x: (pack.free["mem"][x], inst.hosts[x]))
        placed: list[tuple[list[int], int]] = []
        for unit in moving:
            allowed = _allowed(inst, unit)
            dst = next((x for x in others if x in allowed and pack.fits(unit, x)), None)
            if dst is None:
                break
            pack.put(unit, dst)
            placed.append((unit, dst))
        if len(placed) < len(moving):           # undo: h stays open
            for unit, dst in placed:
                pack.remove(unit, dst)
            for unit in moving:
                pack.put(unit, h)
            continue
        open_hosts.discard(h)
        del on[h]
        for unit, dst in placed:
            on[dst].append(unit)
    return list(pack.placement)


def _allowed(inst: Instance, unit: list[int]) -> set[int]:
    """The hosts every guest of ``unit`` may use (read only: a single guest's is the
    instance's shared set)."""
    if len(unit) == 1:
        return inst.allowed_set(unit[0])
    allowed = set(inst.allowed[unit[0]])
    for v in unit[1:]:
        allowed &= inst.allowed_set(v)
    return allowed


def size_key(inst: Instance, unit: Iterable[int]) -> float:
    scale = inst.scale
    return sum(sum(inst.dem[d][v] for v in unit) / scale[d] for d in inst.dims)


def lower_bound(inst: Instance) -> int:
    """Fewest hosts any placement needs: hosts holding fixed guests, plus enough of the
    largest others to hold each dimension's total demand; at least the largest spread group."""
    forced = {inst.cur[v] for v in range(inst.n_vms) if inst.fixed[v]}
    usable = sorted(inst.usable_hosts() - forced)
    best = len(forced)
    for d in inst.dims:
        need = sum(inst.dem[d]) - sum(inst.cap[d][h] for h in forced)
        k = len(forced)
        for c in sorted((inst.cap[d][h] for h in usable), reverse=True):
            if need <= EPS:
                break
            need -= c
            k += 1
        best = max(best, k)
    if any(math.isfinite(c) for c in inst.count_cap):
        need = inst.n_vms - sum(min(inst.count_cap[h], inst.n_vms) for h in forced)
        k = len(forced)
        for c in sorted((min(inst.count_cap[h], inst.n_vms) for h in usable), reverse=True):
            if need <= 0:
                break
            need -= c
            k += 1
        best = max(best, k)
    for group in inst.spread:
        best = max(best, len(group))
    return max(best, 1 if inst.n_vms else 0)


def _host_order(inst: Instance) -> list[int]:
    """Hosts that stay open anyway (they hold guests that do not move) first, then the
    largest first: filling a pinned guest's host costs no extra host."""
    scale = inst.scale
    forced = {inst.cur[v] for v in range(inst.n_vms) if inst.fixed[v]}
    return sorted(range(inst.n_hosts),
                  key=lambda h: (h not in forced,
                                 -sum(min(inst.cap[d][h], 1e18) / scale[d] for d in inst.dims),
                                 inst.hosts[h]))


def max_key(inst: Instance, unit: Iterable[int]) -> float:
    """The largest normalised demand of a unit (FFD's other classic sort key)."""
    scale = inst.scale
    return max(sum(inst.dem[d][v] for v in unit) / scale[d] for d in inst.dims)


def ffd_sum(inst: Instance, host_order: list[int] | None = None,
            key: Callable[[Instance, Iterable[int]], float] | None = None) -> list[int] | None:
    """First-fit decreasing by the sum of normalised demands (or ``key``), largest hosts
    first. Fixed guests stay where they are. None when some guest fits nowhere."""
    pack = Packing(inst)
    all_units = units(inst)
    rest = []
    for unit in all_units:
        fixed = [v for v in unit if inst.fixed[v]]
        if fixed:
            pack.put(unit, inst.cur[fixed[0]])
        else:
            rest.append(unit)
    key = key or size_key
    rest.sort(key=lambda u: (-key(inst, u), min(u)))
    order = host_order or _host_order(inst)
    open_hosts = list(order)
    min_mem = min((sum(inst.dem["mem"][v] for v in u) for u in rest), default=0.0)
    free_mem, count, count_cap = pack.free["mem"], pack.count, inst.count_cap
    for unit in rest:
        allowed = _allowed(inst, unit)
        placed = False
        full = []
        # a single guest without spread partners: its demand once, not once per host
        quick = len(unit) == 1 and unit[0] not in pack.spread_of
        need = [(pack.free[d], inst.dem[d][unit[0]] - EPS) for d in inst.dims]
        for i, h in enumerate(open_hosts):
            if free_mem[h] < min_mem - EPS or count[h] >= count_cap[h]:
                full.append(i)
                continue
            if h in allowed and (all(f[h] >= n for f, n in need) if quick
                                 else pack.fits(unit, h)):
                pack.put(unit, h)
                placed = True
                break
        for i in reversed(full):
            del open_hosts[i]
        if not placed:
            return None
    return pack.placement


def relabel(inst: Instance, placement: list[int]) -> list[int]:
    """Map the bins of a packing onto interchangeable physical hosts so as to keep as much
    memory in place as possible (greedy assignment within each class of identical hosts)."""
    everywhere = max((len(a) for a in inst.allowed), default=0)
    restricted = [v for v in range(inst.n_vms)
                  if len(inst.allowed[v]) != everywhere or inst.fixed[v]]
    # The hosts an unrestricted guest may use: hosts outside it (maintenance, offline) are
    # never interchangeable with hosts inside it, whatever their capacity.
    common = next((inst.allowed_set(v) for v in range(inst.n_vms)
                   if len(inst.allowed[v]) == everywhere and not inst.fixed[v]), set())
    has_fixed = {inst.cur[v] for v in range(inst.n_vms) if inst.fixed[v]}
    classes: dict[tuple, list[int]] = {}
    for h in range(inst.n_hosts):
        if h in has_fixed:
            continue
        sig = (tuple(inst.cap[d][h] for d in inst.dims), inst.count_cap[h],
               h in inst.frozen_hosts, h in common,
               frozenset(v for v in restricted if h not in inst.allowed_set(v)))
        classes.setdefault(sig, []).append(h)
    mapping = list(range(inst.n_hosts))
    members: dict[int, list[int]] = {}
    for v, h in enumerate(placement):
        members.setdefault(h, []).append(v)
    for hosts in classes.values():
        if len(hosts) < 2:
            continue
        bins = [h for h in hosts if h in members]
        weight: list[tuple[float, int, int]] = []
        for b in bins:
            kept: dict[int, float] = {}
            for v in members[b]:
                if inst.cur[v] in hosts:
                    kept[inst.cur[v]] = kept.get(inst.cur[v], 0.0) + inst.dem["mem"][v]
            weight.extend((w, b, h) for h, w in kept.items())
        weight.sort(key=lambda t: (-t[0], t[1], t[2]))
        used_b: set[int] = set()
        used_h: set[int] = set()
        for w, b, h in weight:
            if b not in used_b and h not in used_h:
                mapping[b] = h
                used_b.add(b)
                used_h.add(h)
        free_hosts = [h for h in hosts if h not in used_h]
        for b in bins:
            if b not in used_b:
                h = free_hosts.pop(0)
                mapping[b] = h
                used_h.add(h)
                used_b.add(b)
        # Hosts not used as a bin's destination end up empty: that is fine.
    return [mapping[h] for h in placement]


def keep_open(inst: Instance, open_hosts: set[int],
              deadline: float | None = None) -> list[int] | None:
    """Keep every guest of an open host where it is (evicting the largest while the host is
    over its target), and pack the others best-fit decreasing into the open hosts; None when
    they do not fit, or when ``deadline`` (a ``time.monotonic()`` value) passes first (each
    guest placed looks at every open host: 10,000 guests on 1,300 hosts took 25 s)."""
    pack = Packing(inst)
    evicted: list[list[int]] = []
    all_units = units(inst)
    by_host: dict[int, list[list[int]]] = {}
    for unit in all_units:
        fixed = [v for v in unit if inst.fixed[v]]
        if fixed:
            pack.put(unit, inst.cur[fixed[0]])
            continue
        hosts = {inst.cur[v] for v in unit}
        h = inst.cur[unit[0]]
        if len(hosts) == 1 and h in open_hosts and h in _allowed(inst, unit):
            by_host.setdefault(h, []).append(unit)
        else:
            evicted.append(unit)
    for h, us in by_host.items():
        us.sort(key=lambda u: size_key(inst, u))   # smallest stay first
        for u in us:
            if pack.fits(u, h):
                pack.put(u, h)
            else:
                evicted.append(u)
    # The most constrained first (spread peers, gathered groups, guests banned from or
    # fenced to some hosts), while most open hosts still have room; then the largest first.
    everywhere = max((len(a) for a in inst.allowed), default=0)

    def constrained(unit: list[int]) -> bool:
        return len(unit) > 1 or any(v in pack.spread_of or len(inst.allowed[v]) < everywhere
                                    for v in unit)

    evicted.sort(key=lambda u: (not constrained(u), -size_key(inst, u), min(u)))
    scale = inst.scale
    for i, unit in enumerate(evicted):
        if deadline is not None and i % 64 == 0 and time.monotonic() > deadline:
            return None
        best, best_room = -1, math.inf
        for h in _allowed(inst, unit) & open_hosts:
            if pack.fits(unit, h):
                room = sum(pack.free[d][h] / scale[d] for d in inst.dims
                           if math.isfinite(pack.free[d][h]))
                if room < best_room:
                    best, best_room = h, room
        if best < 0:
            return None
        pack.put(unit, best)
    return pack.placement


def migrated_mib(inst: Instance, placement: list[int]) -> float:
    return sum(inst.dem["mem"][v] for v in range(inst.n_vms) if placement[v] != inst.cur[v])


def hosts_used(placement: list[int]) -> int:
    return len(set(placement))


# --------------------------------------------------------------------------- balance

def utilisation(inst: Instance, placement: list[int], hard: bool = True) -> list[float]:
    """CPU use of each host over its capacity (times any capacity rule)."""
    caps = inst.hard_cap["cpu"] if hard else inst.cap["cpu"]
    use = [0.0] * inst.n_hosts
    for v, h in enumerate(placement):
        use[h] += inst.dem["cpu"][v]
    return [fraction(u, c) for u, c in zip(use, caps)]


def mem_utilisation(inst: Instance, placement: list[int]) -> list[float]:
    use = [0.0] * inst.n_hosts
    for v, h in enumerate(placement):
        use[h] += inst.dem["mem"][v]
    return [fraction(u, c) for u, c in zip(use, inst.hard_cap["mem"])]


def utilisations(inst: Instance, placement: list[int]) -> tuple[list[float], list[float]]:
    """:func:`utilisation` and :func:`mem_utilisation` of ``placement``."""
    return utilisation(inst, placement), mem_utilisation(inst, placement)


def hotspots(inst: Instance, placement: list[int], cpu_threshold: float,
             mem_threshold: float) -> list[int]:
    """The hosts over a threshold in ``placement`` (:func:`vmtools.rules.load.hot_dims`)."""
    cpu = utilisation(inst, placement)
    mem = mem_utilisation(inst, placement)
    return [h for h in range(inst.n_hosts)
            if hot_dims(cpu[h], mem[h], cpu_threshold, mem_threshold)]


def sandpiper(inst: Instance, cpu_threshold: float, mem_threshold: float,
              hot: list[int] | None = None) -> list[int]:
    """Sandpiper's greedy: hottest host (by volume) first, its guests by decreasing
    volume-to-size ratio, each to the least loaded host that can take it, until the host
    is no longer hot. No swaps."""
    place = list(inst.cur)
    cpu_cap, mem_cap = inst.hard_cap["cpu"], inst.hard_cap["mem"]
    cpu = [0.0] * inst.n_hosts
    mem = [0.0] * inst.n_hosts
    count = [0] * inst.n_hosts
    for v, h in enumerate(place):
        cpu[h] += inst.dem["cpu"][v]
        mem[h] += inst.dem["mem"][v]
        count[h] += 1

    def vol(c: float, m: float) -> float:
        return 1.0 / max(1e-3, 1 - min(c, 0.999)) / max(1e-3, 1 - min(m, 0.999))

    def host_vol(h: int) -> float:
        return vol(cpu[h] / cpu_cap[h] if cpu_cap[h] else 1, mem[h] / mem_cap[h] if mem_cap[h] else 1)

    def is_hot(h: int) -> bool:
        return cpu[h] > cpu_threshold * cpu_cap[h] + EPS or mem[h] > mem_threshold * mem_cap[h] + EPS

    spread_of: dict[int, list[int]] = {}
    for gi, g in enumerate(inst.spread):
        for v in g:
            spread_of.setdefault(v, []).append(gi)
    hot_hosts = sorted(hot if hot is not None else [h for h in range(inst.n_hosts) if is_hot(h)],
                       key=lambda h: -host_vol(h))
    gathered = {v for g in inst.gather for v in g}
    for h in hot_hosts:
        guests = [v for v in range(inst.n_vms) if place[v] == h and not inst.fixed[v]
                  and v not in gathered]
        guests.sort(key=lambda v: -vol(inst.dem["cpu"][v] / cpu_cap[h],
                                       inst.dem["mem"][v] / mem_cap[h]) / max(inst.dem["mem"][v], 1))
        for v in guests:
            if not is_hot(h):
                break
            best, best_vol = -1, math.inf
            for t in inst.allowed[v]:
                if t == h or count[t] + 1 > inst.count_cap[t]:
                    continue
                if cpu[t] + inst.dem["cpu"][v] > cpu_threshold * cpu_cap[t] + EPS:
                    continue
                if mem[t] + inst.dem["mem"][v] > min(mem_threshold * mem_cap[t],
                                                     inst.cap["mem"][t]) + EPS:
                    continue
                if any(place[u] == t for g in spread_of.get(v, ()) for u in inst.spread[g]):
                    continue
                tv = host_vol(t)
                if tv < best_vol:
                    best, best_vol = t, tv
            if best < 0:
                continue
            place[v] = best
            for arr, amount in ((cpu, inst.dem["cpu"][v]), (mem, inst.dem["mem"][v])):
                arr[h] -= amount
                arr[best] += amount
            count[h] -= 1
            count[best] += 1
    return place
