"""The MILP models, built and never solved here (solve.py does that).

Every model places each guest on one of its candidate hosts (``x_<v>_<h>`` binaries, only
for the pairs in ``cands``: a guest's current host, its warm-start host and a few others),
with named constraints so an LP dump can be read:

* ``assign_<v>``: each guest on exactly one host;
* ``<dim>_<h>``: the demand of a host's guests within its capacity (times ``open_<h>``
  when the model counts active hosts); ``count_<h>`` for max_vms;
* ``spread<g>_<h>``: at most one guest of a spread group per host;
* ``gather<g>_<v>_<h>``: the guests of a gather group on the same host.

Models: :func:`build_hosts` (fewest active hosts), :func:`build_moves` (least memory moved,
at most ``max_hosts`` active; also repair), :func:`build_balance` (fewest migrations to end
hotspots, then the lowest worst CPU utilisation).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pulp

from vmtools.planner.instance import Instance
from vmtools.rules.capacity import EPS


@dataclass
class Model:
    prob: pulp.LpProblem
    x: dict[tuple[int, int], pulp.LpVariable]
    y: dict[int, pulp.LpVariable] = field(default_factory=dict)
    extra: dict[str, pulp.LpVariable] = field(default_factory=dict)

    def placement(self, inst: Instance) -> list[int]:
        place = list(inst.cur)
        best: dict[int, float] = {}
        for (v, h), var in self.x.items():
            val = var.varValue or 0.0
            if val > best.get(v, 0.5):
                best[v] = val
                place[v] = h
        return place

    def warm_start(self, inst: Instance, placement: list[int]) -> None:
        for (v, h), var in self.x.items():
            var.setInitialValue(1 if placement[v] == h else 0)
        used = set(placement)
        for h, var in self.y.items():
            var.setInitialValue(1 if h in used else 0)


def _add(prob: pulp.LpProblem, terms: list, sense: int, rhs: float, name: str) -> None:
    expr = pulp.LpAffineExpression(terms)
    prob.addConstraint(pulp.LpConstraint(expr, sense, name, rhs))


def _placement_core(inst: Instance, cands: list[list[int]], prob: pulp.LpProblem,
                    y: dict[int, pulp.LpVariable] | None,
                    cpu_cap: list[float] | None = None) -> dict[tuple[int, int], pulp.LpVariable]:
    x: dict[tuple[int, int], pulp.LpVariable] = {}
    by_host: dict[int, list[int]] = {}
    for v, hs in enumerate(cands):
        for h in hs:
            x[v, h] = pulp.LpVariable(f"x_{v}_{h}", cat=pulp.LpBinary)
            by_host.setdefault(h, []).append(v)
        _add(prob, [(x[v, h], 1) for h in hs], pulp.LpConstraintEQ, 1, f"assign_{v}")
    for h, vs in by_host.items():
        for d in inst.dims:
            cap = cpu_cap[h] if (d == "cpu" and cpu_cap is not None) else inst.cap[d][h]
            if not math.isfinite(cap):
                continue
            terms = [(x[v, h], inst.dem[d][v]) for v in vs if inst.dem[d][v]]
            if not terms:
                continue
            if y is not None and sum(c for _, c in terms) > 0:
                terms.append((y[h], -cap))
                _add(prob, terms, pulp.LpConstraintLE, 0, f"{d}_{h}")
            elif sum(c for _, c in terms) > cap:
                _add(prob, terms, pulp.LpConstraintLE, cap, f"{d}_{h}")
        if math.isfinite(inst.count_cap[h]) and len(vs) > inst.count_cap[h]:
            _add(prob, [(x[v, h], 1) for v in vs], pulp.LpConstraintLE, inst.count_cap[h],
                 f"count_{h}")
    for g, group in enumerate(inst.spread):
        hosts = {h for v in group for h in cands[v]}
        for h in hosts:
            terms = [(x[v, h], 1) for v in group if (v, h) in x]
            if len(terms) > 1:
                _add(prob, terms, pulp.LpConstraintLE, 1, f"spread{g}_{h}")
    for g, group in enumerate(inst.gather):
        first = group[0]
        for v in group[1:]:
            for h in set(cands[first]) | set(cands[v]):
                terms = []
                if (first, h) in x:
                    terms.append((x[first, h], 1))
                if (v, h) in x:
                    terms.append((x[v, h], -1))
                _add(prob, terms, pulp.LpConstraintEQ, 0, f"gather{g}_{v}_{h}")
    return x


def build_hosts(inst: Instance, cands: list[list[int]]) -> Model:
    """Fewest active hosts."""
    prob = pulp.LpProblem("hosts", pulp.LpMinimize)
    hosts = sorted({h for hs in cands for h in hs})
    y = {h: pulp.LpVariable(f"open_{h}", cat=pulp.LpBinary) for h in hosts}
    x = _placement_core(inst, cands, prob, y)
    for (v, h), var in x.items():          # tightens the LP relaxation
        _add(prob, [(var, 1), (y[h], -1)], pulp.LpConstraintLE, 0, f"link_{v}_{h}")
    forced = {inst.cur[v] for v in range(inst.n_vms) if inst.fixed[v]}
    for h in forced & set(y):
        y[h].lowBound = 1
    prob.setObjective(pulp.LpAffineExpression([(y[h], 1) for h in hosts]))
    return Model(prob, x, y)


def moved_terms(inst: Instance, x: dict) -> list:
    return [(var, inst.dem["mem"][v]) for (v, h), var in x.items()
            if h != inst.cur[v] and inst.dem["mem"][v]]


def build_moves(inst: Instance, cands: list[list[int]], max_hosts: int | None = None) -> Model:
    """Least memory migrated; with ``max_hosts``, at most that many active hosts."""
    prob = pulp.LpProblem("moves", pulp.LpMinimize)
    y = None
    if max_hosts is not None:
        hosts = sorted({h for hs in cands for h in hs})
        y = {h: pulp.LpVariable(f"open_{h}", cat=pulp.LpBinary) for h in hosts}
    x = _placement_core(inst, cands, prob, y)
    if y is not None:
        _add(prob, [(var, 1) for var in y.values()], pulp.LpConstraintLE, max_hosts, "max_hosts")
    terms = moved_terms(inst, x)
    if not terms:  # nothing can move: any constant objective will do
        terms = [(next(iter(x.values())), 0)] if x else []
    prob.setObjective(pulp.LpAffineExpression(terms))
    return Model(prob, x, y or {})


def build_balance(inst: Instance, cands: list[list[int]], hot: list[int], threshold: float,
                  max_moves: int | None = None, max_excess: float | None = None,
                  mem_threshold: float = 1.0) -> Model:
    """Stage 1 (``max_moves`` None): fewest migrations that bring every host under
    ``threshold`` of its CPU (the excess over it is allowed but costs far more than a
    migration). Stage 2: with at most ``max_moves`` migrations and no more total excess,
    the lowest worst utilisation ``u`` of any candidate host, CPU or memory (the measure
    ``--min-gain`` judges: on CPU alone a memory hotspot was relieved just to its threshold,
    a gain always under 0.05 at the default 0.95)."""
    prob = pulp.LpProblem("balance", pulp.LpMinimize)
    hard = inst.hard_cap["cpu"]
    hosts = sorted({h for hs in cands for h in hs})
    x = _placement_core(inst, cands, prob, None, cpu_cap=[math.inf] * inst.n_hosts)
    by_host: dict[int, list[tuple[pulp.LpVariable, float]]] = {}
    for (v, h), var in x.items():
        by_host.setdefault(h, []).append((var, inst.dem["cpu"][v]))
    fixed_cpu = [0.0] * inst.n_hosts
    movable = {v for v, hs in enumerate(cands)}
    for v in range(inst.n_vms):
        if v not in movable:
            fixed_cpu[inst.cur[v]] += inst.dem["cpu"][v]
    excess = {h: pulp.LpVariable(f"excess_{h}", lowBound=0) for h in hosts}
    mem_excess = {h: pulp.LpVariable(f"mexcess_{h}", lowBound=0) for h in hosts}
    u = pulp.LpVariable("worst", lowBound=0)
    mem_by_host: dict[int, list] = {}
    for (v, h), var in x.items():
        mem_by_host.setdefault(h, []).append((var, inst.dem["mem"][v] / 1024.0))
    mem_hard = inst.hard_cap["mem"]
    for h in hosts:
        terms = list(by_host.get(h, [])) + [(excess[h], -hard[h])]
        _add(prob, terms, pulp.LpConstraintLE, threshold * hard[h] - fixed_cpu[h], f"cpu_{h}")
        terms = list(mem_by_host.get(h, [])) + [(mem_excess[h], -mem_hard[h] / 1024.0)]
        _add(prob, terms, pulp.LpConstraintLE, mem_threshold * mem_hard[h] / 1024.0,
             f"memhot_{h}")
        _add(prob, list(by_host.get(h, [])) + [(u, -hard[h])], pulp.LpConstraintLE,
             -fixed_cpu[h], f"worst_{h}")
        if mem_hard[h] > 0:
            _add(prob, list(mem_by_host.get(h, [])) + [(u, -mem_hard[h] / 1024.0)],
                 pulp.LpConstraintLE, 0.0, f"worstmem_{h}")
    moves = [(var, 1) for (v, h), var in x.items() if h != inst.cur[v]]
    if max_moves is None:
        big = float(len(cands) + 1)
        prob.setObjective(pulp.LpAffineExpression(
            [(e, 100.0 * big) for e in list(excess.values()) + list(mem_excess.values())]
            + moves + [(u, 0.01)]))
    else:
        _add(prob, moves, pulp.LpConstraintLE, max_moves, "max_moves")
        _add(prob, [(e, 1) for e in list(excess.values()) + list(mem_excess.values())],
             pulp.LpConstraintLE,
             (max_excess or 0.0) + EPS, "max_excess")
        prob.setObjective(pulp.LpAffineExpression([(u, 1.0)]))
    return Model(prob, x, {}, {"worst": u, **{f"excess_{h}": e for h, e in excess.items()}})
