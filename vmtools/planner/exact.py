"""Fewest hosts by MILP when every host is alike and no rule applies: the representative
(or "assignment with leaders") bin-packing model, which has no symmetry between hosts.

Guests are sorted largest first; guest ``i`` may lead a host (``x[i,i]`` = 1: it is the
first guest of that host in the order) and guest ``j`` may join the host led by ``i`` only
when ``i < j`` and the two fit together. A host's capacity holds what joins it, and the
objective counts leaders. Interchangeable hosts make the usual host-by-guest model
explore every relabelling of the same packing (measured: 40 guests, 12 s for CBC without a
proof); this model has one solution per packing. The packing is mapped onto physical hosts
afterwards (:func:`~vmtools.planner.heuristics.relabel` and the memory stage).
"""

from __future__ import annotations

import math

import pulp

from vmtools.rules.capacity import EPS
from vmtools.planner import bounds
from vmtools.planner.instance import Instance

MAX_GUESTS = 300        # n^2/2 variables: 45,000 at 300 guests


def applies(inst: Instance) -> bool:
    """Identical hosts, every guest free to go to every usable host, no rules."""
    if not inst.n_vms or inst.n_vms > MAX_GUESTS or inst.spread or inst.gather:
        return False
    if any(inst.fixed) or any(math.isfinite(c) for c in inst.count_cap):
        return False
    first = inst.allowed[0]
    if any(a is not first and a != first for a in inst.allowed) or not first:
        return False
    return bounds.uniform_capacity(inst) is not None


def build(inst: Instance, lower: int, warm: list[int] | None):
    """The model, the guests in model order, and the variables; warm-started from ``warm``
    (a placement) when given."""
    cap = bounds.uniform_capacity(inst)
    assert cap is not None
    dims = [d for d in inst.dims if math.isfinite(cap[d])]
    norm = {d: 1.0 / cap[d] if cap[d] > 0 else 0.0 for d in dims}
    order = sorted(range(inst.n_vms),
                   key=lambda v: (-sum(inst.dem[d][v] * norm[d] for d in dims), v))
    dem = [[inst.dem[d][v] for d in dims] for v in order]
    caps = [cap[d] for d in dims]
    n = len(order)
    prob = pulp.LpProblem("hosts_identical", pulp.LpMinimize)
    x: dict[tuple[int, int], pulp.LpVariable] = {}
    for j in range(n):
        for i in range(j + 1):
            if i == j or all(a + b <= c + EPS for a, b, c in zip(dem[i], dem[j], caps)):
                x[j, i] = pulp.LpVariable(f"x_{j}_{i}", cat=pulp.LpBinary)
    joins: dict[int, list[int]] = {}
    for j, i in x:
        if i != j:
            joins.setdefault(i, []).append(j)
    for j in range(n):
        prob.addConstraint(pulp.LpConstraint(
            pulp.LpAffineExpression([(x[j, i], 1) for i in range(j + 1) if (j, i) in x]),
            pulp.LpConstraintEQ, f"assign_{j}", 1))
    for i in range(n):
        members = joins.get(i, [])
        for k, c in enumerate(caps):
            terms = [(x[j, i], dem[j][k]) for j in members if dem[j][k] > 0]
            if not terms or sum(t for _, t in terms) <= c - dem[i][k] + EPS:
                continue
            terms.append((x[i, i], -(c - dem[i][k])))
            prob.addConstraint(pulp.LpConstraint(pulp.LpAffineExpression(terms),
                                                 pulp.LpConstraintLE, f"cap{k}_{i}", 0))
        if not members:
            continue
        if n <= 150:
            for j in members:            # only a leader's host takes guests (tight form)
                prob.addConstraint(pulp.LpConstraint(
                    pulp.LpAffineExpression([(x[j, i], 1), (x[i, i], -1)]),
                    pulp.LpConstraintLE, f"lead_{j}_{i}", 0))
        else:                            # the same, aggregated (a capacity row may be absent)
            prob.addConstraint(pulp.LpConstraint(
                pulp.LpAffineExpression([(x[j, i], 1) for j in members]
                                        + [(x[i, i], -len(members))]),
                pulp.LpConstraintLE, f"lead_{i}", 0))
    leaders = pulp.LpAffineExpression([(x[i, i], 1) for i in range(n)])
    prob.setObjective(leaders)
    prob.addConstraint(pulp.LpConstraint(leaders, pulp.LpConstraintGE, "bound", lower))
    if warm is not None:
        pos = {v: k for k, v in enumerate(order)}
        lead: dict[int, int] = {}
        for v, h in enumerate(warm):
            lead[h] = min(lead.get(h, n), pos[v])
        for var in x.values():
            var.setInitialValue(0)
        for v, h in enumerate(warm):
            j, i = pos[v], lead[h]
            if (j, i) in x:
                x[j, i].setInitialValue(1)
    return prob, order, x


def placement(inst: Instance, order: list[int], x: dict) -> list[int] | None:
    """Hosts for the solved model's bins: the usable hosts in order, one per leader."""
    hosts = list(inst.allowed[0])
    bins: dict[int, int] = {}
    place = [-1] * inst.n_vms
    for (j, i), var in x.items():
        if (var.varValue or 0) > 0.5:
            if i not in bins:
                if len(bins) >= len(hosts):
                    return None
                bins[i] = hosts[len(bins)]
            place[order[j]] = bins[i]
    if any(h < 0 for h in place) or not inst.valid(place):
        return None
    return place
