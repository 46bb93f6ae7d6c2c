"""The objectives' searches: consolidate (fewest hosts, then least memory moved; in host
groups above a size), balance (end hotspots with the fewest migrations) and repair (satisfy
the rules with the least memory moved), each from an instance to an :class:`Outcome` within a
deadline. :func:`vmtools.planner.plan.make_plan` picks one through its table of objectives.

Over 500 lines because the consolidation's stages (candidates, the fewest-hosts MILP, host
groups and their rules) belong together: each reads the others' limits and warm starts.
"""

from __future__ import annotations

import logging
import math
import random
import time
from dataclasses import dataclass, field, replace

from vmtools.errors import OperationFailed, Unavailable
from vmtools.planner import heuristics as H
from vmtools.planner import packing
from vmtools.planner.deadline import Deadline
from vmtools.planner.groups import host_groups, sub_instance
from vmtools.planner.instance import Instance, diagnose, gib, violations
from vmtools.rules.load import FRACTION_EPS
from vmtools.planner.options import Options
from vmtools.rules.capacity import EPS

log = logging.getLogger("vmtools.planner")


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
    repair_left: list[dict] | None = None    # a greedy repair's overloads left (planner/mend)


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
    heur, how = packing.consolidate_heuristic(inst, deadline.part(
        0.25 if _host_milp_runs(inst, opts) else 0.5, floor=0).at, lb, finish=deadline.at)
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
    _settle(out, moves_proven, solved, host_gap(), res.gap if pool is everywhere else None)
    out.placement = best
    return out


def _settle(out: Outcome, moves_proven: bool, solved: bool, host_gap: float,
            moves_gap: float | None) -> None:
    """Consolidate's status and gap once both stages ran: optimal only when the host count
    and the memory moved are both proven."""
    if out.hosts_proven and moves_proven:
        out.status, out.gap = "optimal", 0.0
    elif not out.hosts_proven:
        out.status, out.gap = ("feasible" if solved else "heuristic"), host_gap
    else:       # the host count is proven, the memory moved is not
        out.status, out.gap = ("feasible" if solved else "heuristic"), moves_gap



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




def _whole_cluster(inst: Instance, opts: Options, deadline: Deadline) -> Outcome:
    """The whole cluster at once, when the groups cannot do (a group cannot be consolidated
    alone, their placements together break a rule), within what is left of ``deadline``:
    once it has passed, the current placement when it keeps every host's real capacity and
    every rule (a plan that does nothing rather than a search past the deadline: at 150,000
    guests one pass of the heuristics alone takes minutes)."""
    if deadline.passed() and inst.valid(inst.cur, hard=True):
        log.info("out of time for the whole cluster at once: left as it is")
        return Outcome(placement=list(inst.cur), status="heuristic", gap=None,
                       how="out of time: the current placement", lower_bound=None)
    return consolidate(inst, opts, deadline)


def consolidate_grouped(inst: Instance, opts: Options, deadline: Deadline | float) -> Outcome:
    """Split the hosts into groups of about ``group_size`` (:func:`~vmtools.planner.groups.host_groups`) and
    consolidate each group on its own; the whole cluster at once when it is small, when no
    split keeps every guest able to stay in its group, or when a group alone cannot be
    consolidated (its guests need room elsewhere)."""
    deadline = Deadline.of(deadline)
    size = opts.group_size
    if inst.n_vms > opts.group_guests and inst.n_hosts * opts.group_guests < size * inst.n_vms:
        # Many small guests (100,000 on 1,000 hosts): a group's heuristic and model grow with
        # its guests times its hosts, so groups hold about group_guests guests each.
        size = max(50, inst.n_hosts * opts.group_guests // inst.n_vms)
    groups = host_groups(inst, size) if inst.n_hosts > size else None
    if groups is None or len(groups) < 2:
        return consolidate(inst, opts, deadline)
    n_groups = len(groups)
    # Groups each round their host count up; where a whole-cluster heuristic is affordable
    # (about 6 s at 1,000 hosts / 10,000 guests), it guards against that.
    whole = None
    if inst.n_vms * inst.n_hosts <= opts.whole_heuristic_pairs:
        whole, whole_how = packing.consolidate_heuristic(inst, finish=deadline.part(0.2).at)
    placement = list(inst.cur)
    from vmtools.planner import bounds
    lower, lower_how = bounds.host_lower_bound(inst, min(time.monotonic() + 2.0,
                                                         deadline.part(0.05, floor=0).at))
    total = Outcome(placement=placement, lower_bound=lower, status="optimal",
                    how=f"{n_groups} groups", bound_how=lower_how)
    groups_done = deadline.part(0.95)            # the rest: emptying hosts across groups
    late = 0
    for i, group in enumerate(groups):
        sub, vms = sub_instance(inst, group)
        if i and groups_done.passed() and sub.valid(sub.cur, hard=True):
            # Out of time: a group whose placement already keeps every limit stays as it is
            # (the plan consolidates less) rather than running its heuristic past the
            # deadline; a group that breaks one is still repaired.
            late += 1
            continue
        try:
            res = consolidate(sub, opts, groups_done.part(1 / (n_groups - i)))
        except OperationFailed as exc:
            log.info("group %d of %d cannot be consolidated alone (%s): the whole cluster "
                     "at once", i + 1, n_groups, exc)
            return _whole_cluster(inst, opts, deadline)
        for j, v in enumerate(vms):
            placement[v] = group[res.placement[j]]
        _add_group(total, res)
    if late:
        log.info("out of time: %d of %d groups left as they are", late, n_groups)
        total.how += f" ({late} left as they are: out of time)"
        total.status = "heuristic"
    if not inst.valid(placement, hard=bool(late)):    # the groups' rules do not add up
        log.warning("the groups' placements together break a rule: the whole cluster at once")
        return _whole_cluster(inst, opts, deadline)
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


def _add_group(total: Outcome, res: Outcome) -> None:
    """A group's outcome into the whole's: times, solver, the weakest status, the widest gap."""
    rank = {"optimal": 0, "feasible": 1, "heuristic": 2}
    total.build_seconds += res.build_seconds
    total.solve_seconds += res.solve_seconds
    total.solver = res.solver
    if rank[res.status] > rank[total.status]:
        total.status = res.status
    if res.gap is not None and (total.gap is None or res.gap > total.gap):
        total.gap = res.gap


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
            out.how = f"gain {gain:.3f} below --min-gain {opts.min_gain:g}"
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
        if place2 is not None and _worst(inst, place2) < _worst(inst, best) - FRACTION_EPS \
                and moves(place2) <= moves(best):
            best = place2
        if res2.status not in ("optimal",):
            out.status = "feasible" if out.status == "optimal" else out.status
    out.how = "milp (hot hosts to the coolest)" if best is not greedy else "sandpiper greedy"
    # On the worst dimension, so relieving a memory hotspot counts as a gain.
    gain = _worst(inst, cur) - _worst(inst, best)
    if gain < opts.min_gain - FRACTION_EPS:
        out.placement, out.how = cur, f"gain {gain:.3f} below --min-gain {opts.min_gain:g}"
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
    after.repair_left = fixed.repair_left
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
    greedy_first = inst.n_vms * len(pool) > opts.greedy_repair_pairs
    if greedy_first and (done := _greedy(inst, opts, deadline, "greedy")) is not None:
        return done
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
    if not greedy_first and (done := _greedy(inst, opts, deadline, "greedy after the MILP "
                                             "found nothing")) is not None:
        done.solver, done.build_seconds, done.solve_seconds = \
            out.solver, out.build_seconds, out.solve_seconds
        return done
    raise OperationFailed(diagnose(inst))


def _greedy(inst: Instance, opts: Options, deadline: Deadline, how: str) -> Outcome | None:
    """:func:`repair` without a solver (:func:`vmtools.planner.policy.repair_greedily`):
    None when a broken rule cannot be repaired so."""
    from vmtools.planner.policy import repair_greedily
    done = repair_greedily(inst, opts, deadline)
    if done is None:
        return None
    place, left = done
    return Outcome(placement=place, status="heuristic", how=how, gap=None, repair_left=left)
