"""Lower bounds on the number of active hosts, for proving a packing optimal.

* the per-dimension bound of :func:`~vmtools.planner.heuristics.lower_bound` (L1: total demand
  over the largest capacities, fixed guests' hosts, count caps, spread groups);
* Martello and Toth's L2 per dimension, where every host a guest may end on has the same
  capacity in that dimension (guests larger than half a host cannot share one; those above
  ``C - K`` cannot take any guest of size ``K`` or more);
* a vector bound: a set of guests of which no two can share a host (in some dimension their
  sum exceeds a host, or a spread rule parts them) needs that many hosts, and the demand of
  the other guests beyond the room those hosts leave needs more (identical hosts only).

Each bound is a relaxation of the rules, so it holds under any rules. The MILP's own bound,
when a model is solved, is combined with these in :mod:`vmtools.planner.plan`.
"""

from __future__ import annotations

import math
import time

from vmtools.rules.capacity import EPS
from vmtools.planner import heuristics as H
from vmtools.planner.instance import Instance



def _hosts_reachable(inst: Instance) -> list[int]:
    """Every host a guest can end on: allowed hosts and fixed guests' own hosts."""
    out = inst.usable_hosts()
    out |= {inst.cur[v] for v in range(inst.n_vms) if inst.fixed[v]}
    return sorted(out)


def uniform_capacity(inst: Instance) -> dict[str, float] | None:
    """The capacity of each dimension when every reachable host has the same (finite in at
    least one dimension), else None."""
    hosts = _hosts_reachable(inst)
    if not hosts:
        return None
    out = {}
    for d in inst.dims:
        caps = {inst.cap[d][h] for h in hosts}
        if len(caps) != 1:
            return None
        out[d] = caps.pop()
    if not any(math.isfinite(c) and c > 0 for c in out.values()):
        return None
    return out


def l2(sizes: list[float], cap: float) -> int:
    """Martello-Toth L2 for one dimension with bins of capacity ``cap``."""
    if not math.isfinite(cap) or cap <= 0:
        return 0
    sizes = sorted((s for s in sizes if s > EPS), reverse=True)
    if not sizes:
        return 0
    best = math.ceil(sum(sizes) / cap - EPS)
    half = cap / 2
    ks = sorted({s for s in sizes if s <= half + EPS} | {0.0})
    for k in ks:
        n1 = sum(1 for s in sizes if s > cap - k + EPS)
        j2 = [s for s in sizes if half + EPS < s <= cap - k + EPS]
        j3 = sum(s for s in sizes if k - EPS <= s <= half + EPS)
        room = len(j2) * cap - sum(j2)
        bound = n1 + len(j2) + max(0, math.ceil((j3 - room) / cap - EPS))
        best = max(best, bound)
    return best


def _conflict_bound(inst: Instance, cap: dict[str, float], deadline: float) -> int:
    dims = [d for d in inst.dims if math.isfinite(cap[d]) and cap[d] > 0]
    spread_of: dict[int, set[int]] = {}
    for gi, group in enumerate(inst.spread):
        for v in group:
            spread_of.setdefault(v, set()).add(gi)
    vec = [tuple(inst.dem[d][v] / cap[d] for d in dims) for v in range(inst.n_vms)]
    total = [sum(x[i] for x in vec) for i in range(len(dims))]
    keys = [lambda v, i=i: vec[v][i] for i in range(len(dims))] + [lambda v: max(vec[v])]
    best = 0
    for key in keys:
        if time.monotonic() > deadline:
            break
        order = sorted(range(inst.n_vms), key=lambda v: -key(v))
        clique: list[int] = []
        for v in order:
            a, mine = vec[v], spread_of.get(v, set())
            if all(any(x + y > 1 + EPS for x, y in zip(a, vec[u]))
                   or (mine and mine & spread_of.get(u, set())) for u in clique):
                clique.append(v)
        # The others' demand beyond the room the clique's hosts leave needs more hosts.
        extra = 0
        for i in range(len(dims)):
            rest = total[i] - sum(vec[u][i] for u in clique)
            room = sum(1 - vec[u][i] for u in clique)
            extra = max(extra, math.ceil(rest - room - EPS))
        best = max(best, len(clique) + max(0, extra))
    return best


MAX_SIZES = 12             # distinct guest sizes the configuration bound handles
MAX_CONFIGURATIONS = 20000


def _configurations(sizes: list[float], counts: list[int], cap: float,
                    limit: int, deadline: float) -> list[tuple[int, ...]] | None:
    """Every maximal way to fill one host of capacity ``cap`` with guests of these sizes
    (at most ``counts`` of each); None past ``limit`` of them, 50 times as many steps of
    the search, or ``deadline``."""
    out: list[tuple[int, ...]] = []
    n = len(sizes)
    smallest = min(sizes)
    take = [0] * n
    steps = [50 * limit]

    def rec(i: int, room: float) -> bool:
        steps[0] -= 1
        if steps[0] < 0 or (steps[0] % 4096 == 0 and time.monotonic() > deadline):
            return False
        if i == n:
            # maximal: no size with guests left fits in what remains
            if all(take[k] >= counts[k] or sizes[k] > room + EPS for k in range(n)):
                out.append(tuple(take))
            return len(out) <= limit
        most = min(counts[i], int((room + EPS) // sizes[i]))
        for c in range(most, -1, -1):
            take[i] = c
            if not rec(i + 1, room - c * sizes[i]):
                return False
        take[i] = 0
        return True

    if smallest <= 0 or not rec(0, cap):
        return None
    return out


def configuration_bound(inst: Instance, d: str, deadline: float) -> int:
    """The LP relaxation of the configuration (Gilmore-Gomory) model in dimension ``d``
    alone: guests grouped by size, hosts by capacity, each host one maximal filling. Only
    where guests come in a few sizes (flavours), as they do in clusters: 613, 870 and
    1,740 MB guests on 4,096 MB hosts cannot fill most hosts, which the volume bound
    ignores (PlanetLab in CloudSim's set-up: 329 hosts where the volume says 319)."""
    import pulp     # the planner's modelling layer; only here in this module
    sizes: dict[float, int] = {}
    for x in inst.dem[d]:
        if x > EPS:
            sizes[x] = sizes.get(x, 0) + 1
    if not sizes or len(sizes) > MAX_SIZES:
        return 0
    hosts: dict[float, int] = {}
    for h in _hosts_reachable(inst):
        c = inst.cap[d][h]
        if not math.isfinite(c):
            return 0
        hosts[c] = hosts.get(c, 0) + 1
    order = sorted(sizes, reverse=True)
    counts = [sizes[x] for x in order]
    prob = pulp.LpProblem("configurations", pulp.LpMinimize)
    use: list[tuple[pulp.LpVariable, tuple[int, ...]]] = []
    per_type: dict[float, list[pulp.LpVariable]] = {}
    budget = MAX_CONFIGURATIONS
    for k, (cap, _n) in enumerate(sorted(hosts.items())):
        if time.monotonic() > deadline:
            return 0
        confs = _configurations(order, counts, cap, budget, deadline)
        if confs is None:
            return 0
        budget -= len(confs)
        for c_i, conf in enumerate(confs):
            if any(conf):
                var = pulp.LpVariable(f"c_{k}_{c_i}", lowBound=0)
                use.append((var, conf))
                per_type.setdefault(cap, []).append(var)
    if not use:
        return 0
    prob.setObjective(pulp.lpSum(v for v, _ in use))
    for cap, vs in per_type.items():
        prob.addConstraint(pulp.lpSum(vs) <= hosts[cap], f"hosts_{len(prob.constraints)}")
    for t in range(len(order)):
        prob.addConstraint(pulp.lpSum(conf[t] * v for v, conf in use if conf[t]) >= counts[t],
                           f"size_{t}")
    from vmtools.errors import Unavailable
    from vmtools.planner.solve import solve
    try:
        res = solve(prob, "cbc", max(1.0, deadline - time.monotonic()))
    except Unavailable:
        return 0
    if res.status != "optimal" or res.objective is None:
        return 0
    return math.ceil(res.objective - 1e-6)


def host_lower_bound(inst: Instance, deadline: float | None = None) -> tuple[int, str]:
    """The best lower bound on active hosts these bounds give, and which one gave it."""
    deadline = deadline if deadline is not None else time.monotonic() + 2.0
    best, how = H.lower_bound(inst), "per-dimension demand"
    for d in inst.dims:
        if time.monotonic() > deadline:
            break
        b = configuration_bound(inst, d, deadline)
        if b > best:
            best, how = b, f"configuration LP ({d})"
    cap = uniform_capacity(inst)
    if cap is None or not inst.n_vms:
        return best, how
    for d in inst.dims:
        b = l2(inst.dem[d], cap[d])
        if b > best:
            best, how = b, f"Martello-Toth L2 ({d})"
    if inst.n_vms <= 5000:
        b = _conflict_bound(inst, cap, deadline)
        if b > best:
            best, how = b, "guests that cannot share a host"
    return best, how
