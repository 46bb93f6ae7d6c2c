"""make_plan: a snapshot (and rules) in, a checked plan out.

Objectives:

* ``consolidate``: fewest active hosts, then least memory migrated (lexicographic). The host
  count comes from FFD-sum when it meets the per-dimension lower bound (a proof), else from
  a MILP warm-started with it; the memory stage is a candidate-restricted MILP warm-started
  with the best heuristic. Above ``group_size`` hosts the cluster is split into groups
  solved one after the other (:func:`_host_groups` keeps every rule solvable per group).
* ``balance``: end hotspots (CPU above ``cpu_threshold``) with the fewest migrations, then
  the lowest worst CPU utilisation; only guests of hot hosts move, only to the coolest hosts.
* ``repair``: satisfy the rules and end overloads with the least memory moved.
* ``auto`` (the cron policy, :mod:`vmtools.planner.policy`): repair, relieve persistent
  hotspots, then empty whole hosts, within the run's budget (:mod:`vmtools.planner.budget`).
"""

from __future__ import annotations

import logging
import math
import random
import time
from dataclasses import dataclass, field, replace

from vmtools.errors import (DataError, InternalError, OperationFailed, TemporaryFailure,
                            Unavailable)
from vmtools.model import Plan, Snapshot
from vmtools.planner import heuristics as H
from vmtools.planner import packing
from vmtools.planner.deadline import Deadline
from vmtools.planner.instance import Instance, build_instance, diagnose, gib, violations
from vmtools.rules.load import FRACTION_EPS
from vmtools.planner.options import OBJECTIVES, Options, RunFacts
from vmtools.sources.knowledge import Knowledge, assess, plural
from vmtools.planner.schedule import estimate_seconds, order_moves
from vmtools.rules.capacity import EPS
from vmtools.rules.check import check_plan
from vmtools.rules.constraints import Constraints
from vmtools.xen import DOM0_NAMES

log = logging.getLogger("vmtools.planner")

# auto never moves a guest back to a host it was seen to leave this recently (no ping-pong)
NO_RETURN_MINUTES = 60.0

@dataclass
class Outcome:
    placement: list[int]
    status: str = "optimal"           # optimal, feasible, heuristic
    solver: str = "none"
    gap: float | None = 0.0
    how: str = ""
    build_seconds: float = 0.0
    solve_seconds: float = 0.0
    lower_bound: int | None = None
    repaired: set[int] = field(default_factory=set)   # guests moved to repair a broken rule
    hosts_how: str = ""               # what found the host count
    bound_how: str = ""               # what gave the lower bound
    hosts_proven: bool = False


# --------------------------------------------------------------------------- candidates

def _candidates(inst: Instance, warm: list[int], pool: list[int], k: int,
                rng: random.Random, movable: set[int] | None = None) -> list[list[int]]:
    """Current host, warm-start host and ``k`` random hosts of ``pool`` per guest; all of
    ``pool`` when it is small. Gather groups share one candidate list."""
    cands: list[list[int]] = []
    for v in range(inst.n_vms):
        if inst.fixed[v] or (movable is not None and v not in movable):
            cands.append([inst.cur[v]] if inst.cur[v] in inst.allowed_set(v) or inst.fixed[v]
                         else [warm[v]])
            continue
        allowed = inst.allowed_set(v)
        mine = {warm[v]} if warm[v] in allowed else set()
        if inst.cur[v] in allowed:
            mine.add(inst.cur[v])
        opts = [h for h in pool if h in allowed]
        if len(opts) <= k + 4:
            mine.update(opts)
        else:
            mine.update(rng.sample(opts, k))
        cands.append(sorted(mine))
    for group in inst.gather:
        common = set(cands[group[0]])
        for v in group[1:]:
            common |= set(cands[v])
        for v in group:
            common &= inst.allowed_set(v)
        for v in group:
            cands[v] = sorted(common)
    return cands


# What PuLP builds, writes and CBC reads per second, in candidate (guest, host) pairs: measured
# about 12,000 per second of CPU at 100,000 guests (the model in PuLP, its MPS file, CBC's
# root); a model that would take more than half the time left is not built at all.
MILP_PAIRS_PER_SECOND = 10_000


def affordable(pairs: int, seconds_left: float) -> bool:
    """True when a model of ``pairs`` candidate pairs can be built and solved in time."""
    ok = pairs <= MILP_PAIRS_PER_SECOND * max(0.0, seconds_left) / 2
    if not ok:
        log.info("a model of %d candidate pairs does not fit the %.0f s left: skipped", pairs,
                 seconds_left)
    return ok


# --------------------------------------------------------------------------- consolidate

def consolidate(inst: Instance, opts: Options, deadline: Deadline | float) -> Outcome:
    """Fewest hosts, then least memory moved. The status is ``optimal`` only when both are
    proven: the host count meets a lower bound (or a MILP over every host proved it) and the
    memory stage solved a model in which every guest may go to every allowed host."""
    from vmtools.planner.solve import solve_model
    from vmtools.planner import bounds, milp
    rng = random.Random(opts.seed)
    deadline = Deadline.of(deadline)
    # the bounds and the packing heuristics stop at any moment: no floor
    lb, lb_how = bounds.host_lower_bound(inst, deadline.part(0.05, floor=0).at)
    # Where no MILP will search the host count (_fewest_hosts), the packing heuristics get
    # half the time instead of a quarter: fewer hosts come first.
    heur, how = packing.consolidate_heuristic(
        inst, deadline.part(0.25 if _host_milp_runs(inst, opts) else 0.5, floor=0).at, lb)
    out = Outcome(placement=list(inst.cur), lower_bound=lb, how=how, status="heuristic",
                  hosts_how=how.split("+")[0], bound_how=lb_how)
    best = heur
    log.info("heuristic (%s): %s, at least %d hosts needed", how,
             f"{H.hosts_used(heur)} hosts" if heur is not None else "no placement", lb)
    cur_ok = inst.valid(inst.cur)
    if cur_ok and (best is None or H.hosts_used(inst.cur) <= H.hosts_used(best)):
        best, out.how, out.hosts_how = list(inst.cur), "current placement", "current placement"
    solved = False          # a solver returned a placement or a bound
    if best is None or H.hosts_used(best) > out.lower_bound:
        solved = _fewest_hosts(inst, opts, deadline, best, out, rng)
        best = out.placement if out.placement is not None and out.hosts_how.startswith("milp") \
            else best
        log.info("stage 1 of 2, fewest hosts: best so far %s hosts, bound %s",
                 H.hosts_used(best) if best is not None else "-", out.lower_bound)
    if best is None:
        raise OperationFailed(diagnose(inst))
    n_hosts = H.hosts_used(best)
    out.hosts_proven = n_hosts <= (out.lower_bound or 0)

    def host_gap() -> float:
        return round((n_hosts - (out.lower_bound or 0)) / max(1, n_hosts), 4)

    if cur_ok and H.hosts_used(inst.cur) <= n_hosts:
        # Nothing to gain: no move is the least memory moved for that many hosts.
        out.placement, out.how = list(inst.cur), "current placement"
        if out.hosts_proven:
            out.status, out.gap = "optimal", 0.0
        else:
            out.status, out.gap = ("feasible" if solved else "heuristic"), host_gap()
        return out
    # Stage 2: least memory moved with that many hosts.
    pool = sorted(set(best))
    everywhere = sorted(inst.usable_hosts())
    if inst.n_vms * len(everywhere) <= opts.full_model_pairs:
        pool = everywhere        # small: every host may be chosen, the optimum is global
    cands = _candidates(inst, best, pool, opts.candidates if pool is not everywhere
                        else len(pool), rng)
    log.info("stage 2 of 2, least memory moved on %d hosts: best so far %s to move",
             n_hosts, gib(H.migrated_mib(inst, best)))
    if not affordable(sum(len(c) for c in cands), deadline.left()):
        out.placement = best
        out.status = "feasible" if solved else "heuristic"
        out.gap = None if out.hosts_proven else host_gap()
        out.how += " (the migration model is too large for the time left)"
        return out
    t0 = time.monotonic()
    model = milp.build_moves(inst, cands, max_hosts=n_hosts)
    out.build_seconds += time.monotonic() - t0
    place, res = solve_model(model, inst, opts, deadline.share(), best)
    out.solve_seconds += res.seconds
    out.solver = opts.solver
    moves_proven = False
    if place is not None and H.hosts_used(place) <= n_hosts and \
            H.migrated_mib(inst, place) <= H.migrated_mib(inst, best):
        best = place
        out.how = f"milp ({sum(len(c) for c in cands) / max(1, inst.n_vms):.0f} candidate " \
                  "hosts per guest)"
        solved = True
        moves_proven = res.status == "optimal" and pool is everywhere
    elif res.status in ("optimal", "feasible"):
        solved = True
    if out.hosts_proven and moves_proven:
        out.status, out.gap = "optimal", 0.0
    elif not out.hosts_proven:
        out.status, out.gap = ("feasible" if solved else "heuristic"), host_gap()
    else:       # the host count is proven, the memory moved is not
        out.status = "feasible" if solved else "heuristic"
        out.gap = res.gap if pool is everywhere else None
    out.placement = best
    return out


def _sub_allowed(inst: Instance, vms: list[int], hmap: dict[int, int]) -> list[list[int]]:
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


def _host_milp_runs(inst: Instance, opts: Options) -> bool:
    """Whether :func:`_fewest_hosts` solves a model once a heuristic packing is in hand."""
    from vmtools.planner import exact
    return exact.applies(inst) or \
        inst.n_vms * len(inst.usable_hosts()) <= opts.all_hosts_pairs


def _fewest_hosts(inst: Instance, opts: Options, deadline: Deadline, best: list[int] | None,
                  out: Outcome, rng: random.Random) -> bool:
    """Stage 1, when no heuristic met the lower bound: a MILP for the host count,
    warm-started with the best heuristic packing. Where it finds fewer hosts it sets
    ``out.placement`` and ``out.hosts_how``; a proof or a bound raises ``out.lower_bound``.
    True when the solver returned a solution or a bound."""
    from vmtools.planner import exact, milp
    from vmtools.planner.solve import solve, solve_model
    out.placement = None
    if exact.applies(inst):
        # Identical hosts, no rules: the model without host symmetry.
        t0 = time.monotonic()
        prob, order, x = exact.build(inst, out.lower_bound or 0, best)
        out.build_seconds += time.monotonic() - t0
        try:
            # At least 2 s: PuLP's bundled CBC 2.10.3 crashes (SIGSEGV) on this model with
            # a start and -sec 1 (class1_40_3_5 of bench/vectorpack).
            res = solve(prob, opts.solver, max(2.0, deadline.share(0.5)),
                        warm_start=best is not None, threads=opts.threads)
        except Unavailable as exc:      # the solver was there a moment ago: it crashed
            if best is None:
                raise
            log.warning("the host-count MILP failed (%s); keeping the heuristic packing", exc)
            return False
        out.solve_seconds += res.seconds
        out.solver = opts.solver
        place = exact.placement(inst, order, x) if res.status in ("optimal",
                                                                   "feasible") else None
        if place is not None and (best is None or H.hosts_used(place) < H.hosts_used(best)):
            relabelled = H.relabel(inst, place)
            out.placement = relabelled if inst.valid(relabelled) else place
            out.hosts_how = "milp (identical hosts)"
        found = out.placement or best
        if res.status == "optimal" and res.objective is not None and found is not None \
                and round(res.objective) <= H.hosts_used(found):
            # The model's optimum (never the count of a mapped placement: a bound above a
            # placement in hand would be a bug, and is refused here).
            out.lower_bound = max(out.lower_bound or 0, round(res.objective))
            out.bound_how = "milp (identical hosts)"
        elif res.bound is not None and found is not None and \
                (out.lower_bound or 0) < math.ceil(res.bound - EPS) <= H.hosts_used(found):
            out.lower_bound = math.ceil(res.bound - EPS)
            out.bound_how = "milp bound (identical hosts)"
        return res.status in ("optimal", "feasible") or res.bound is not None
    pool = sorted(inst.usable_hosts())
    # Above opts.all_hosts_pairs the host count is the heuristic's and the status says it is
    # not proven (CBC cannot be interrupted in the root of that model).
    full = inst.n_vms * len(pool) <= opts.all_hosts_pairs
    if best is not None and not full:
        return False
    warm = best if best is not None else list(inst.cur)
    cands = ([sorted(set(inst.allowed[v])) for v in range(inst.n_vms)] if full
             else _candidates(inst, warm, pool, opts.candidates, rng))
    t0 = time.monotonic()
    model = milp.build_hosts(inst, cands)
    out.build_seconds += time.monotonic() - t0
    place, res = solve_model(model, inst, opts, deadline.share(0.4), best)
    out.solve_seconds += res.seconds
    out.solver = opts.solver
    if place is not None and (best is None or H.hosts_used(place) < H.hosts_used(best)):
        out.placement, out.hosts_how = place, "milp (hosts)"
    if res.status == "infeasible" and full:
        raise OperationFailed(diagnose(inst))
    found = out.placement or best
    if res.status == "optimal" and full and found is not None and res.objective is not None \
            and round(res.objective) <= H.hosts_used(found):
        out.lower_bound = max(out.lower_bound or 0, round(res.objective))
        out.bound_how = "milp (hosts)"
    elif res.bound is not None and found is not None and \
            (out.lower_bound or 0) < math.ceil(res.bound - EPS) <= H.hosts_used(found):
        out.lower_bound = math.ceil(res.bound - EPS)
        out.bound_how = "milp bound (hosts)"
    return res.status in ("optimal", "feasible") or res.bound is not None


def _sub_instance(inst: Instance, hosts: list[int]) -> tuple[Instance, list[int]]:
    hs = set(hosts)
    vms = [v for v in range(inst.n_vms) if inst.cur[v] in hs]
    hmap = {h: i for i, h in enumerate(hosts)}
    sub = Instance(
        snapshot=inst.snapshot, constraints=inst.constraints,
        hosts=[inst.hosts[h] for h in hosts], vms=[inst.vms[v] for v in vms], dims=inst.dims,
        cap={d: [inst.cap[d][h] for h in hosts] for d in inst.dims},
        dem={d: [inst.dem[d][v] for v in vms] for d in inst.dims},
        count_cap=[inst.count_cap[h] for h in hosts], cur=[hmap[inst.cur[v]] for v in vms],
        allowed=_sub_allowed(inst, vms, hmap),
        fixed=[inst.fixed[v] for v in vms],
        frozen_hosts={hmap[h] for h in inst.frozen_hosts if h in hs},
        hard_cap={d: [inst.hard_cap[d][h] for h in hosts] for d in inst.hard_cap})
    # Rules among the group's own guests; a spread peer in another group is on another host
    # whatever happens, and the groups keep every gather group whole (see _host_groups).
    vpos = {v: j for j, v in enumerate(vms)}
    for rules, into in ((inst.spread, sub.spread), (inst.gather, sub.gather)):
        for group in rules:
            local = [vpos[v] for v in group if v in vpos]
            if len(local) > 1:
                into.append(local)
    return sub, vms


def _host_groups(inst: Instance, size: int) -> list[list[int]] | None:
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


def consolidate_grouped(inst: Instance, opts: Options, deadline: Deadline | float) -> Outcome:
    """Split the hosts into groups of about ``group_size`` (:func:`_host_groups`) and
    consolidate each group on its own; the whole cluster at once when it is small, when no
    split keeps every guest able to stay in its group, or when a group alone cannot be
    consolidated (its guests need room elsewhere)."""
    deadline = Deadline.of(deadline)
    size = opts.group_size
    if inst.n_vms > opts.group_guests and inst.n_hosts * opts.group_guests < size * inst.n_vms:
        # Many small guests (100,000 on 1,000 hosts): a group's heuristic and model grow with
        # its guests times its hosts, so groups hold about group_guests guests each.
        size = max(50, inst.n_hosts * opts.group_guests // inst.n_vms)
    groups = _host_groups(inst, size) if inst.n_hosts > size else None
    if groups is None or len(groups) < 2:
        return consolidate(inst, opts, deadline)
    n_groups = len(groups)
    # Groups each round their host count up; where a whole-cluster heuristic is affordable
    # (about 6 s at 1,000 hosts / 10,000 guests), it guards against that.
    whole = None
    if inst.n_vms * inst.n_hosts <= opts.whole_heuristic_pairs:
        whole, whole_how = packing.consolidate_heuristic(inst)
    placement = list(inst.cur)
    from vmtools.planner import bounds
    lower, lower_how = bounds.host_lower_bound(inst, min(time.monotonic() + 2.0,
                                                         deadline.part(0.05, floor=0).at))
    total = Outcome(placement=placement, lower_bound=lower, status="optimal",
                    how=f"{n_groups} groups", bound_how=lower_how)
    rank = {"optimal": 0, "feasible": 1, "heuristic": 2}
    groups_done = deadline.part(0.95)            # the rest: emptying hosts across groups
    late = 0
    for i, group in enumerate(groups):
        sub, vms = _sub_instance(inst, group)
        if i and groups_done.passed() and sub.valid(sub.cur, hard=True):
            # Out of time: a group whose placement already keeps every limit stays as it is
            # (the plan consolidates less) rather than running its heuristic past the
            # deadline; a group that breaks one is still repaired.
            late += 1
            continue
        sub, vms = _sub_instance(inst, group)
        try:
            res = consolidate(sub, opts, groups_done.part(1 / (n_groups - i)))
        except OperationFailed as exc:
            log.info("group %d of %d cannot be consolidated alone (%s): the whole cluster "
                     "at once", i + 1, n_groups, exc)
            return consolidate(inst, opts, deadline)
        for j, v in enumerate(vms):
            placement[v] = group[res.placement[j]]
        total.build_seconds += res.build_seconds
        total.solve_seconds += res.solve_seconds
        total.solver = res.solver
        if rank[res.status] > rank[total.status]:
            total.status = res.status
        if res.gap is not None and (total.gap is None or res.gap > total.gap):
            total.gap = res.gap
    if late:
        log.info("out of time: %d of %d groups left as they are", late, n_groups)
        total.how += f" ({late} left as they are: out of time)"
        total.status = "heuristic"
    if not inst.valid(placement, hard=bool(late)):    # the groups' rules do not add up
        log.warning("the groups' placements together break a rule: the whole cluster at once")
        return consolidate(inst, opts, deadline)
    if H.hosts_used(placement) > (total.lower_bound or 0):
        drained = H.drain(inst, placement, deadline)
        if inst.valid(drained) and H.hosts_used(drained) < H.hosts_used(placement):
            log.info("%d hosts emptied across groups", H.hosts_used(placement) -
                     H.hosts_used(drained))
            placement[:] = drained
            total.how += ", then hosts emptied across groups"
            if total.status == "optimal":
                total.status = "feasible"
    total.hosts_how = f"{n_groups} groups"
    if whole is not None and inst.valid(whole) and \
            (H.hosts_used(whole), H.migrated_mib(inst, whole)) < \
            (H.hosts_used(placement), H.migrated_mib(inst, placement)):
        log.info("the whole-cluster heuristic beats the groups: %d hosts against %d",
                 H.hosts_used(whole), H.hosts_used(placement))
        total.placement, total.how, total.status = whole, whole_how, "heuristic"
        total.hosts_how = whole_how.split("+")[0]
    # Each group may be optimal, the whole is not: guests never move between groups, and
    # the groups' host counts add up to more than the cluster's bound.
    n_hosts = H.hosts_used(total.placement)
    total.hosts_proven = n_hosts <= (total.lower_bound or 0)
    if total.status == "optimal":
        total.status = "feasible"
    total.gap = None if total.hosts_proven else \
        round((n_hosts - (total.lower_bound or 0)) / max(1, n_hosts), 4)
    return total


# --------------------------------------------------------------------------- balance

def balance(inst: Instance, opts: Options, deadline: Deadline | float) -> Outcome:
    from vmtools.planner.solve import solve_model
    deadline = Deadline.of(deadline)
    from vmtools.planner import milp
    cur = list(inst.cur)
    hot = H.hotspots(inst, cur, opts.cpu_threshold, opts.mem_threshold)
    if opts.facts.hot_filter is not None:
        hot = [h for h in hot if inst.hosts[h] in opts.facts.hot_filter]
    out = Outcome(placement=cur, how="no hotspot")
    if not hot:
        return out
    util = [max(c, m) for c, m in zip(H.utilisation(inst, cur), H.mem_utilisation(inst, cur))]
    greedy = H.sandpiper(inst, opts.cpu_threshold, opts.mem_threshold, hot)
    # Hot-host restriction: guests of the hot hosts may move, to the coolest hosts.
    cool = sorted(range(inst.n_hosts), key=lambda h: (util[h], inst.hosts[h]))
    movable = {v for v in range(inst.n_vms) if cur[v] in set(hot) and not inst.fixed[v]}
    pool = sorted(set(cool[:opts.cool_hosts]) | set(greedy[v] for v in movable))
    rng = random.Random(opts.seed)
    cands = _candidates(inst, greedy, pool, len(pool), rng, movable)
    if not affordable(sum(len(c) for c in cands), deadline.left()):
        # too large to build in time (100,000 guests): Sandpiper's greedy, checked as below
        out.status, out.gap = "heuristic", None
        gain = _worst(inst, cur) - _worst(inst, greedy)
        if gain < opts.min_gain - FRACTION_EPS:
            out.how = f"gain {gain:.2f} below --min-gain {opts.min_gain:.2f}"
            return out
        out.placement, out.how = greedy, "sandpiper greedy (the model is too large for the " \
            "time left)"
        return out
    t0 = time.monotonic()
    model = milp.build_balance(inst, cands, hot, opts.cpu_threshold,
                               mem_threshold=opts.mem_threshold)
    out.build_seconds = time.monotonic() - t0
    place, res = solve_model(model, inst, opts, deadline.share(0.5), greedy)
    out.solve_seconds += res.seconds
    out.solver = opts.solver
    out.status = res.status if res.status in ("optimal", "feasible") else "heuristic"
    out.gap = res.gap
    best = greedy if place is None else place

    def moves(p):
        return sum(1 for v in range(inst.n_vms) if p[v] != cur[v])

    def excess(p):
        u = H.utilisation(inst, p)
        m = H.mem_utilisation(inst, p)
        return sum(max(0.0, x - opts.cpu_threshold) for x in u) + \
            sum(max(0.0, x - opts.mem_threshold) for x in m)

    if place is not None and (excess(greedy) + EPS < excess(place) or
                              (abs(excess(greedy) - excess(place)) <= EPS
                               and moves(greedy) < moves(place))):
        best = greedy
    if place is not None:
        # Stage 2: same number of moves and excess, lowest worst utilisation.
        t0 = time.monotonic()
        m2 = milp.build_balance(inst, cands, hot, opts.cpu_threshold,
                                max_moves=moves(best), max_excess=excess(best),
                                mem_threshold=opts.mem_threshold)
        out.build_seconds += time.monotonic() - t0
        place2, res2 = solve_model(m2, inst, opts, deadline.share(), best)
        out.solve_seconds += res2.seconds
        if place2 is not None and max(H.utilisation(inst, place2)) < \
                max(H.utilisation(inst, best)) - FRACTION_EPS and moves(place2) <= moves(best):
            best = place2
        if res2.status not in ("optimal",):
            out.status = "feasible" if out.status == "optimal" else out.status
    out.how = "milp (hot hosts to the coolest)" if best is not greedy else "sandpiper greedy"
    # On the worst dimension, so relieving a memory hotspot counts as a gain.
    gain = _worst(inst, cur) - _worst(inst, best)
    if gain < opts.min_gain - FRACTION_EPS:
        out.placement, out.how = cur, f"gain {gain:.2f} below --min-gain {opts.min_gain:.2f}"
        return out
    out.placement = best
    return out


def broken_rules(inst: Instance, placement: list[int]) -> list[str]:
    """What ``placement`` breaks that balancing alone would leave broken: a guest on a host
    a rule forbids, spread or gather groups, guest-count limits, memory over capacity. (CPU
    over capacity is a hotspot: balancing is about exactly that.)"""
    return violations(inst, placement, dims=("mem",))[1]


def balance_after_repair(inst: Instance, opts: Options, deadline: Deadline | float) -> Outcome:
    """``balance`` that first repairs what already breaks a hard rule or a capacity (a guest
    on a banned host, a host in maintenance, spread guests together...), wherever it is: the
    hot-host search alone never touches a cool host, and a plan may not leave a rule broken.
    If nothing can repair it, :func:`repair` refuses with the reason (exit 1)."""
    why = broken_rules(inst, inst.cur)
    if not why:
        return balance(inst, opts, deadline)
    log.info("balance: the current placement breaks rules (%s); repairing first",
             "; ".join(why[:3]))
    deadline = Deadline.of(deadline)
    fixed = repair(inst, opts, deadline.part(0.5))
    after = balance(replace(inst, cur=list(fixed.placement)), opts, deadline)
    after.repaired = {v for v in range(inst.n_vms) if fixed.placement[v] != inst.cur[v]}
    after.how = f"repair ({fixed.how}), then {after.how}"
    after.build_seconds += fixed.build_seconds
    after.solve_seconds += fixed.solve_seconds
    if after.solver == "none":
        after.solver = fixed.solver
    if fixed.status != "optimal" and after.status == "optimal":
        after.status, after.gap = fixed.status, fixed.gap
    return after


def _worst(inst: Instance, placement: list[int]) -> float:
    """The highest utilisation of any host in CPU or memory."""
    return max(H.utilisation(inst, placement) + H.mem_utilisation(inst, placement),
               default=0.0)


# --------------------------------------------------------------------------- repair

def repair(inst: Instance, opts: Options, deadline: Deadline | float) -> Outcome:
    from vmtools.planner.solve import solve_model
    deadline = Deadline.of(deadline)
    from vmtools.planner import milp
    cur = list(inst.cur)
    movable, _ = violations(inst, cur)
    out = Outcome(placement=cur, how="nothing to repair")
    if not movable and inst.valid(cur):
        return out
    rng = random.Random(opts.seed)
    pool = sorted(inst.usable_hosts())
    for widen in (False, True):
        mv = movable if not widen else {v for v in range(inst.n_vms) if not inst.fixed[v]}
        k = len(pool) if inst.n_vms * len(pool) <= opts.all_hosts_pairs else opts.candidates
        warm = list(cur)
        cands = _candidates(inst, warm, pool, k, rng, mv)
        cands = [c if c else [inst.cur[v]] for v, c in enumerate(cands)]
        if widen and not affordable(sum(len(c) for c in cands), deadline.left()):
            break
        t0 = time.monotonic()
        model = milp.build_moves(inst, cands)
        out.build_seconds += time.monotonic() - t0
        place, res = solve_model(model, inst, opts, deadline.share(1 / (2 - widen)), None)
        out.solve_seconds += res.seconds
        out.solver = opts.solver
        if place is not None:
            out.placement = place
            out.status = res.status if res.status == "optimal" and k == len(pool) and widen \
                else ("optimal" if res.status == "optimal" and not widen and k == len(pool)
                      else "feasible")
            out.gap = res.gap
            out.how = "milp (least memory moved)"
            return out
    raise OperationFailed(diagnose(inst))


# --------------------------------------------------------------------------- the plan

def make_plan(snap: Snapshot, cons: Constraints, opts: Options) -> Plan:
    """Plan for ``snap`` under ``cons``; the plan passes :func:`check_plan` or this raises."""
    from vmtools.planner.solve import check_solver
    if opts.objective not in OBJECTIVES:
        raise DataError(f"unknown objective {opts.objective!r}")
    started = time.monotonic()
    incoherent(snap)
    # --time-limit bounds the whole run: the search ends early enough to leave ordering, the
    # replay checker and PuLP's I/O their share.
    deadline = Deadline.for_run(opts.time_limit, len(snap.vms), opts.facts.started)
    know = assess(snap)
    if snap.problems and opts.refuse_problems:
        named = ", ".join(sorted(know.unknown_vms) or sorted(know.frozen)) or \
            snap.problems[0].message
        raise DataError(f"the snapshot is incoherent ({plural(len(snap.problems), 'problem')}: "
                        f"{named}); {{refuse_problems}} refuses to plan around them",
                        "snapshot.problems", settings=("refuse_problems",))
    broken_monitoring(snap, know, opts.max_frozen)
    bad_hosts = set(know.frozen)
    bad_vms = {v.name for v in snap.vms if v.name in know.unknown_vms}
    offline = {h.name for h in snap.hosts if h.state != "online"}
    fixed = set(bad_vms) | {v.name for v in snap.vms if v.host in offline}
    fixed |= {v.name for v in snap.vms if v.name in DOM0_NAMES}
    for v in opts.facts.fixed_vms:            # cooldown, unless a hard rule makes it move
        vm = next((x for x in snap.vms if x.name == v), None)
        if vm is not None and cons.allowed(v, vm.host):
            fixed.add(v)
    check_solver(opts.solver)
    cpu_limit = {"consolidate": opts.cpu_target, "balance": 1.0, "repair": 1.0,
                 "auto": 1.0}[opts.objective]
    mem_limit = (opts.mem_target or 1.0) if opts.objective == "consolidate" else 1.0
    if opts.objective == "auto" and opts.mem_target is None:
        opts = replace(opts, mem_target=0.9)
    plan_snap = snap
    if opts.facts.cpu_estimate is not None and opts.cpu_demand == "usage":
        estimate = opts.facts.cpu_estimate
        plan_snap = replace(snap, vms=[replace(v, cpu=estimate.get(v.name, v.cpu))
                                       for v in snap.vms])
    # auto and balance relieve a frozen host its known guests alone make a hotspot, as any
    # other (the relief goes to hosts whose figures are known); the others only end overloads.
    frozen_hot = {"cpu": opts.cpu_threshold, "mem": opts.mem_threshold} \
        if opts.objective in ("auto", "balance") else None
    inst = build_instance(plan_snap, cons, cpu_limit=cpu_limit, cpu_demand=opts.cpu_demand,
                          fixed_vms=fixed, frozen_hosts=bad_hosts, mem_limit=mem_limit,
                          frozen_hot=frozen_hot)
    unsatisfiable_gather(inst)
    auto = None
    if opts.objective == "auto":
        from vmtools.planner.policy import run_auto
        last = {v.name: v.cpu for v in snap.vms}
        series = None
        if opts.facts.cpu_history and opts.cpu_demand == "usage":
            k = len(next(iter(opts.facts.cpu_history.values())))
            series = [opts.facts.cpu_history.get(n) or [last[n]] * k for n in inst.vms]
        auto = run_auto(inst, [last[n] for n in inst.vms], opts, deadline, series)
        out = Outcome(placement=auto.placement(), status="heuristic", how="auto: " + ", ".join(
            f"{len([s for s in auto.choice.taken if s.kind == k])} {k}"
            for k in ("repair", "relieve", "consolidate")), lower_bound=None)
        out.solve_seconds = auto.auto.solve_seconds
        out.solver = opts.solver if auto.auto.repair_how else "none"
        out.gap = None
    elif opts.objective == "consolidate":
        out = consolidate_grouped(inst, opts, deadline)
    elif opts.objective == "balance":
        out = balance_after_repair(inst, opts, deadline)
    else:
        out = repair(inst, opts, deadline)
    if out.status == "heuristic" and opts.require_optimal:
        raise TemporaryFailure("the solver found nothing within --time-limit and "
                               "--require-optimal refuses the heuristic plan (give it more time)")
    if out.status == "feasible" and opts.require_optimal:
        raise TemporaryFailure(f"the solver did not prove its plan optimal within --time-limit "
                               f"(gap {out.gap if out.gap is not None else 'unknown'}); "
                               "--require-optimal refuses it (give it more time)")
    target = {inst.vms[v]: inst.hosts[h] for v, h in enumerate(out.placement)}
    reasons = _reasons(inst, out.placement, opts) if auto is None else auto.reasons()
    for v in out.repaired:
        reasons[inst.vms[v]] = (f"repair: {inst.hosts[inst.cur[v]]} is over its limits or "
                                "breaks a rule")
    for v, why in inst.leaving.items():
        if out.placement[v] != inst.cur[v]:
            h = inst.hosts[inst.cur[v]]
            kind = "relieve" if "hotspot" in why else "overload"
            reasons[inst.vms[v]] = (f"{kind}: {h} is frozen ({', '.join(know.frozen[h].kinds)})"
                                    f" and {why}")
    t0 = time.monotonic()
    priority = auto.priorities() if auto is not None else {}
    actions, pivots = order_moves(snap, cons, target, reasons, bad_hosts, priority)
    while auto is not None and auto.budget.max_seconds is not None and \
            estimate_seconds(actions, opts.bandwidth, opts.parallel) > auto.budget.max_seconds \
            and auto.trim():
        out.placement = auto.placement()
        target = {inst.vms[v]: inst.hosts[h] for v, h in enumerate(out.placement)}
        actions, pivots = order_moves(snap, cons, target, auto.reasons(), bad_hosts,
                                      auto.priorities())
    order_seconds = time.monotonic() - t0
    active_before = len({v.host for v in snap.vms})
    summary = {
        "hosts_before": active_before,
        "hosts_after": len(set(target.values())),
        "hosts_lower_bound": out.lower_bound if out.lower_bound is not None
        else H.lower_bound(inst),
        "migrations": len(actions),
        "migrated_mib": sum(a.mem_mib for a in actions),
        "pivots": pivots,
        "estimated_seconds": estimate_seconds(actions, opts.bandwidth, opts.parallel),
        "estimate_assumes": {"bandwidth_mbit_s": opts.bandwidth, "parallel": opts.parallel},
        "worst_cpu_before": round(max(H.utilisation(inst, inst.cur), default=0.0), 3),
        "worst_cpu_after": round(max(H.utilisation(inst, out.placement), default=0.0), 3),
        "worst_mem_before": round(max(H.mem_utilisation(inst, inst.cur), default=0.0), 3),
        "worst_mem_after": round(max(H.mem_utilisation(inst, out.placement), default=0.0), 3),
    }
    if auto is not None:
        summary.update(auto.summary())
    summary["frozen"] = frozen_summary(snap, know, inst, out.placement, opts.facts.known_sizes)
    if opts.facts.cpu_estimate is not None:
        summary["demand"] = f"{opts.demand} over {opts.demand_window:g} min"
    solver = {"name": out.solver, "status": out.status,
              "seconds": round(time.monotonic() - started, 2),
              "build_seconds": round(out.build_seconds, 2),
              "solve_seconds": round(out.solve_seconds, 2),
              "order_seconds": round(order_seconds, 3),
              "gap": None if out.gap is None else round(out.gap, 4),
              "hosts_lower_bound": summary["hosts_lower_bound"], "method": out.how}
    if opts.objective == "consolidate":
        solver.update(hosts_method=out.hosts_how, hosts_proven=out.hosts_proven,
                      bound_method=out.bound_how)
    explain = None
    if opts.explain:
        explain = {a.vm: a.reason for a in actions}
        for entry in summary["frozen"]:
            explain[f"frozen {entry['host']}"] = entry["why"]
        if auto is not None:
            explain.update(auto.explain_left())
    plan = Plan(origin=snap, placement=target, actions=actions, objective=opts.objective,
                constraints=cons.to_list(), solver=solver, summary=summary, explain=explain)
    try:
        check_plan(plan, cons)
    except DataError as exc:    # the planner's own plan, not the user's input: a bug
        raise InternalError(f"the plan failed vm-plan's own safety check and is not printed "
                            f"(a bug, please report it with the snapshot): {exc}") from None
    return plan


def incoherent(snap: Snapshot) -> None:
    """Refuse a snapshot that contradicts itself before planning (exit 65): a guest listed on
    a standby host (switched off: it holds nothing). The plan's own checker would refuse
    whatever came out, as a bug."""
    standby = {h.name for h in snap.hosts if h.state == "standby"}
    for i, v in enumerate(snap.vms):
        if v.host in standby:
            raise DataError(f"guest {v.name} is listed on host {v.host}, which is in standby "
                            "(switched off, it holds no guest): the snapshot contradicts "
                            "itself", f"snapshot.vms[{i}].host")


def unsatisfiable_gather(inst: Instance) -> None:
    """A gather group no host may hold whole (a guest that must stay on an offline host, the
    others not allowed there) cannot hold in any plan: exit 1 naming the group, before the
    search hands the checker a plan it must refuse."""
    for unit in H.units(inst):
        if len(unit) < 2:
            continue
        common = set(inst.allowed[unit[0]])
        for v in unit[1:]:
            common &= set(inst.allowed[v])
        if common:
            continue
        stuck = [v for v in unit if inst.fixed[v]]
        why = (f"{inst.vms[stuck[0]]} must stay on {inst.hosts[inst.cur[stuck[0]]]} "
               f"(offline, frozen or pinned), where the others may not go" if stuck else
               "the rules leave no host that may take all of them")
        raise OperationFailed(f"the gather rule of {', '.join(inst.vms[v] for v in unit)} "
                              f"cannot hold: {why}")


def broken_monitoring(snap: Snapshot, know: Knowledge, max_frozen: float) -> None:
    """Exit 75 (temporary) when more than ``max_frozen`` of the hosts are frozen, or of the
    guests are not known (stale or unknown, :meth:`Knowledge.vm`): monitoring is broken rather
    than partial, and nothing is planned."""
    names = {h.name for h in snap.hosts if h.state != "standby"}
    hosts = names | set(know.frozen)
    frozen_hosts = set(know.frozen)
    guests = {v.name for v in snap.vms} | set(know.unknown_vms)
    # A guest counts when what is known of it is not (its own problem, or its host's own):
    # the other guests of a host frozen for one guest's missing metrics are known.
    frozen_guests = {v.name for v in snap.vms if know.vm(v.name, v.host) != "known"} | \
        set(know.unknown_vms)
    for what, part, whole in (("hosts are frozen", frozen_hosts, hosts),
                              ("guests are stale or unknown", frozen_guests, guests)):
        if whole and len(part) > max_frozen * len(whole) + FRACTION_EPS:
            shown = ", ".join(f"{h} ({', '.join(know.frozen[h].kinds)})"
                              for h in sorted(frozen_hosts)[:5])
            more = len(frozen_hosts) - 5
            raise TemporaryFailure(
                f"monitoring is broken, not partial: {len(part)} of {len(whole)} {what} "
                f"(more than {{max_frozen}} {max_frozen:g}); nothing is planned this run "
                f"(frozen: {shown}{f' and {more} more' if more > 0 else ''})",
                settings=("max_frozen",))


def frozen_summary(snap: Snapshot, know: Knowledge, inst: Instance, placement: list[int],
                   known_sizes: dict[str, int]) -> list[dict]:
    """The plan's ``summary.frozen``: each frozen host, why, its guests, the unknown ones
    and what they count for (their last known size, or the whole host)."""
    out = []
    listed = {v.name for v in snap.vms}
    on: dict[str, list[str]] = {}
    for v in snap.vms:
        on.setdefault(v.host, []).append(v.name)
    for h in sorted(know.frozen):
        f = know.frozen[h]
        unknown = sorted({p.vm for p in f.problems if p.vm and p.vm not in listed})
        sizes = {v: known_sizes.get(v) for v in unknown}
        full = any(m is None for m in sizes.values()) or "partial-container" in f.kinds \
            or "incomplete-host" in f.kinds
        leaving = sorted(inst.vms[v] for v in inst.leaving
                         if inst.hosts[inst.cur[v]] == h and placement[v] != inst.cur[v])
        out.append({"host": h, "knowledge": f.knowledge, "kinds": f.kinds, "why": f.why(),
                    "guests": len(on.get(h, [])),
                    "unknown_guests": [{"vm": v, "mem_mib": sizes[v]} for v in unknown],
                    "counted_as": "full" if full else "its known guests" +
                    (" and the unknown ones at their last known size" if unknown else ""),
                    "leaving": leaving})
    return out


def _reasons(inst: Instance, placement: list[int], opts: Options) -> dict[str, str]:
    cons = inst.constraints
    new_hosts = set(placement)
    util = H.utilisation(inst, inst.cur)
    out = {}
    for v, h in enumerate(placement):
        if h == inst.cur[v]:
            continue
        src = inst.hosts[inst.cur[v]]
        name = inst.vms[v]
        bad = cons.forbidden_by(name, src)
        if bad is not None:
            out[name] = f"{opts.objective}: {bad.label} forbids {name} on {src}"
        elif opts.objective == "consolidate" and inst.cur[v] not in new_hosts:
            out[name] = f"consolidate: empty {src}"
        elif opts.objective == "consolidate":
            out[name] = f"consolidate: make room on {inst.hosts[h]} / repack {src}"
        elif opts.objective == "balance":
            out[name] = f"balance: {src} at {util[inst.cur[v]]:.0%} CPU is a hotspot"
        else:
            out[name] = f"repair: {src} is over its limits or breaks a rule"
    return out


def with_placement(snap: Snapshot, placement: dict[str, str]) -> Snapshot:
    """The snapshot as it will be once a plan's placement is reached (for tests, --state)."""
    return replace(snap, vms=[replace(v, host=placement.get(v.name, v.host)) for v in snap.vms],
                   problems=[])


def plan_with_state(snap: Snapshot, cons: Constraints, opts: Options, state_dir: str | None,
                    window: tuple[int, int] = (3, 5), hold: float = 0.0,
                    cooldown: float = 30.0, power=None, settle: float | None = None) -> Plan:
    """:func:`plan_with_memory` with the state read from ``state_dir`` (None: none) and
    written back, even when planning fails (what was observed stays observed)."""
    from vmtools.state import read_state, write_state
    state = read_state(state_dir) if state_dir is not None else None
    try:
        return plan_with_memory(snap, cons, replace(opts, hold=hold, cooldown=cooldown,
                                                    settle=opts.settle if settle is None
                                                    else settle),
                                state, window, power)
    finally:
        if state_dir is not None and state is not None:
            write_state(state_dir, state)


def plan_with_memory(snap: Snapshot, cons: Constraints, opts: Options, state,
                     window: tuple[int, int] = (3, 5), power=None) -> Plan:
    """make_plan with the memory of earlier cron runs (``state``, a
    :class:`vmtools.state.State`, updated in place; None: no memory): hotspots must persist
    (``window``, ``opts.hold``), recently moved guests cool down (``opts.cooldown``) and
    settle (``opts.settle``), each guest's CPU samples of the last ``opts.demand_window``
    minutes give its planning demand (``opts.demand``), hosts and guests that vanished since
    the last run are problems. With ``power`` (:class:`vmtools.planner.power.PowerOptions`)
    hosts are also switched off and on. No file is read or written."""
    from vmtools.planner import demand as dm
    from vmtools.planner import state as st
    from vmtools.state import PowerState

    def plan_it(snap: Snapshot, opts: Options) -> Plan:
        if power is None:
            return make_plan(snap, cons, opts)
        from vmtools.planner.power import make_power_plan
        return make_power_plan(snap, cons, opts, power,
                               state.power if state is not None else PowerState(),
                               st.snapshot_time(snap), make_plan)

    if state is None:
        if snap.samples:      # the source's own history: the demand window from the first run
            samples: dict[str, list] = {}
            now = st.snapshot_time(snap)
            dm.merge(samples, snap.samples)
            dm.record(samples, snap, now, opts.demand_window)
            opts = replace(opts, facts=replace(
                opts.facts, cpu_estimate=dm.estimates(samples, snap, opts.demand),
                cpu_history=dm.history(samples, snap)))
        return plan_it(snap, opts)
    memory, pstate = state.plan, state.power
    now = st.snapshot_time(snap)
    switched_off = set(pstate.standby) | set(pstate.waking) | set(pstate.boot_failed)
    if power is not None:           # its state reports the hosts it knows itself
        switched_off |= set(pstate.known)
    gone, keep = st.vanished(memory, snap, now, switched_off, set(assess(snap).frozen))
    if gone:
        snap = replace(snap, problems=list(snap.problems) + gone)
    unknown = assess(snap).unknown_vms
    known_sizes = {v: int(x[0]) for v, x in memory.sizes.items() if v in unknown}
    inst = build_instance(snap, cons, cpu_limit=1.0, cpu_demand=opts.cpu_demand)
    hot = [inst.hosts[h] for h in H.hotspots(inst, inst.cur, opts.cpu_threshold,
                                                opts.mem_threshold)]
    st.observe(memory, now, hot)
    st.observe_moves(memory, snap, now)
    memory.placement.update(keep)
    dm.merge(memory.samples, snap.samples)
    dm.record(memory.samples, snap, now, opts.demand_window)
    persistent = st.persistent_hotspots(memory, now, window, opts.hold)
    if opts.objective == "auto":
        # CPU demand over capacity now goes unserved: auto relieves it at once (and --power
        # wakes a host for it when no online host has the room).
        util = H.utilisation(inst, inst.cur)
        persistent |= {inst.hosts[h] for h in range(inst.n_hosts) if util[h] > 1.0 + FRACTION_EPS}
    cooldown, settle = opts.cooldown, opts.settle
    facts = replace(
        opts.facts, hot_filter=persistent,
        fixed_vms=set(opts.facts.fixed_vms) | st.cooling(memory, now, cooldown),
        settling_vms=st.cooling(memory, now, settle),
        moved_ago={v: (now - t) / 60 for v, t in memory.moved.items()
                   if now - t < max(cooldown, settle) * 60},
        cpu_estimate=dm.estimates(memory.samples, snap, opts.demand),
        cpu_history=dm.history(memory.samples, snap),
        recent_left=st.recently_left(memory, now, NO_RETURN_MINUTES), known_sizes=known_sizes)
    return plan_it(snap, replace(opts, facts=facts))
