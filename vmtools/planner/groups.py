"""Host groups: a large cluster consolidated group by group
(:func:`vmtools.planner.search.consolidate_grouped`): which hosts form each group so that
every rule stays solvable in its group (:func:`host_groups`), and a group's own instance
(:func:`sub_instance`).
"""

from __future__ import annotations

import math

from vmtools.planner import heuristics as H
from vmtools.planner.instance import Instance


def sub_allowed(inst: Instance, vms: list[int], hmap: dict[int, int]) -> list[list[int]]:
    """The group's allowed lists, each distinct list mapped once and shared again (as
    build_instance shares them: one list per guest was 15 s at 100,000 guests)."""
    mapped: dict[int, list[int]] = {}
    out = []
    for v in vms:
        a = inst.allowed[v]
        local = mapped.get(id(a))
        if local is None:
            local = mapped[id(a)] = [hmap[h] for h in a if h in hmap]
        out.append(local)
    return out


def sub_instance(inst: Instance, hosts: list[int]) -> tuple[Instance, list[int]]:
    hs = set(hosts)
    vms = [v for v in range(inst.n_vms) if inst.cur[v] in hs]
    hmap = {h: i for i, h in enumerate(hosts)}
    sub = Instance(
        snapshot=inst.snapshot, constraints=inst.constraints,
        hosts=[inst.hosts[h] for h in hosts], vms=[inst.vms[v] for v in vms], dims=inst.dims,
        cap={d: [inst.cap[d][h] for h in hosts] for d in inst.dims},
        dem={d: [inst.dem[d][v] for v in vms] for d in inst.dims},
        count_cap=[inst.count_cap[h] for h in hosts], cur=[hmap[inst.cur[v]] for v in vms],
        allowed=sub_allowed(inst, vms, hmap),
        fixed=[inst.fixed[v] for v in vms],
        frozen_hosts={hmap[h] for h in inst.frozen_hosts if h in hs},
        hard_cap={d: [inst.hard_cap[d][h] for h in hosts] for d in inst.hard_cap})
    # Rules among the group's own guests; a spread peer in another group is on another host
    # whatever happens, and the groups keep every gather group whole (see host_groups).
    vpos = {v: j for j, v in enumerate(vms)}
    for rules, into in ((inst.spread, sub.spread), (inst.gather, sub.gather)):
        for group in rules:
            local = [vpos[v] for v in group if v in vpos]
            if len(local) > 1:
                into.append(local)
    return sub, vms


def host_groups(inst: Instance, size: int) -> list[list[int]] | None:
    """Hosts split into groups of about ``size`` that can be consolidated apart: a mix of
    host types in each (hosts dealt out in order of capacity), the current hosts of a gather
    group's guests together, a guest fenced to a few hosts together with them. None when
    some guest that may move would have no allowed host in its group."""
    sets = H.Disjoint(inst.n_hosts)
    find, union = sets.find, sets.union
    for group in inst.gather:
        for v in group[1:]:
            union(inst.cur[v], inst.cur[group[0]])
    everywhere = max((len(a) for a in inst.allowed), default=0)
    for v in range(inst.n_vms):
        if not inst.fixed[v] and len(inst.allowed[v]) < everywhere \
                and len(inst.allowed[v]) <= size // 4:
            for h in inst.allowed[v]:
                union(h, inst.cur[v])
    order = sorted(range(inst.n_hosts),
                   key=lambda h: (tuple(inst.cap[d][h] for d in inst.dims), inst.hosts[h]))
    members: dict[int, list[int]] = {}
    for h in order:
        members.setdefault(find(h), []).append(h)
    n_groups = math.ceil(inst.n_hosts / size)
    groups: list[list[int]] = [[] for _ in range(n_groups)]
    for i, hosts in enumerate(members[find(h)] for h in order if members[find(h)][0] == h):
        k = i % n_groups
        if len(groups[k]) + len(hosts) > size * 3 // 2:
            k = min(range(n_groups), key=lambda j: len(groups[j]))
        groups[k].extend(hosts)
    group_of = [0] * inst.n_hosts
    for k, hosts in enumerate(groups):
        for h in hosts:
            group_of[h] = k
    reachable: dict[tuple[int, int], bool] = {}     # (allowed list, group): shared lists once
    for v in range(inst.n_vms):
        if inst.fixed[v]:
            continue
        key = (id(inst.allowed[v]), group_of[inst.cur[v]])
        if key not in reachable:
            reachable[key] = any(group_of[h] == key[1] for h in inst.allowed[v])
        if not reachable[key]:
            return None
    return [g for g in groups if g]


__all__ = ["host_groups", "sub_instance", "sub_allowed"]
