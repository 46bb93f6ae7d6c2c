"""make_plan: a snapshot (and rules) in, a checked plan out.

Objectives:

* ``consolidate``: fewest active hosts, then least memory migrated (lexicographic). The host
  count comes from FFD-sum when it meets the per-dimension lower bound (a proof), else from
  a MILP warm-started with it; the memory stage is a candidate-restricted MILP warm-started
  with the best heuristic. Above ``group_size`` hosts the cluster is split into groups
  solved one after the other (:func:`vmtools.planner.groups.host_groups` keeps every rule
  solvable per group).
* ``balance``: end hotspots (CPU above ``cpu_threshold``) with the fewest migrations, then
  the lowest worst CPU utilisation; only guests of hot hosts move, only to the coolest hosts.
* ``repair``: satisfy the rules and end overloads with the least memory moved.
* ``auto`` (the cron policy, :mod:`vmtools.planner.policy`): repair, relieve persistent
  hotspots, then empty whole hosts, within the run's budget (:mod:`vmtools.planner.budget`).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from typing import Callable

from vmtools.errors import DataError, InternalError, OperationFailed, TemporaryFailure
from vmtools.model import Plan, Snapshot
from vmtools.planner import heuristics as H
from vmtools.planner import mend as M
from vmtools.planner.deadline import Deadline
from vmtools.planner.instance import Instance, build_instance
from vmtools.rules.load import FRACTION_EPS
from vmtools.planner.options import Options
from vmtools.sources.knowledge import Knowledge, assess, plural
from vmtools.planner.schedule import estimate_seconds, order_moves
from vmtools.planner.search import Outcome, balance_after_repair, consolidate_grouped, repair
from vmtools.rules.check import check_plan
from vmtools.rules.constraints import Constraints
from vmtools.xen import DOM0_NAMES

log = logging.getLogger("vmtools.planner")

# auto never moves a guest back to a host it was seen to leave this recently (no ping-pong)
NO_RETURN_MINUTES = 60.0

# --------------------------------------------------------------------------- the plan

def make_plan(snap: Snapshot, cons: Constraints, opts: Options) -> Plan:
    """Plan for ``snap`` under ``cons``; the plan passes :func:`check_plan` or this raises."""
    from vmtools.planner.solve import check_solver
    objective = OBJECTIVE_KINDS.get(opts.objective)
    if objective is None:
        raise DataError(f"unknown objective {opts.objective!r}")
    started = time.monotonic()
    # --time-limit bounds the whole run: the search ends early enough to leave ordering, the
    # replay checker and PuLP's I/O their share.
    deadline = Deadline.for_run(opts.time_limit, len(snap.vms), opts.facts.started)
    know = precheck(snap, opts)
    bad_hosts = set(know.frozen)
    fixed = _fixed_guests(snap, cons, opts, know)
    check_solver(opts.solver)
    inst, opts = _instance(snap, cons, opts, objective, fixed, bad_hosts)
    out, auto = objective.search(inst, opts, deadline, snap)
    _require_optimal(out, opts)
    reasons = _move_reasons(inst, out.placement, out.repaired, opts, auto, know)
    t0 = time.monotonic()
    target, actions, pivots = _ordered_moves(snap, cons, inst, out, auto, reasons, bad_hosts,
                                             opts)
    order_seconds = time.monotonic() - t0
    summary = _summary(snap, inst, out, auto, know, target, actions, pivots, opts)
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
        explain.update(auto.explain_left() if auto is not None else M.explain(out.repair_left))
    plan = Plan(origin=snap, placement=target, actions=actions, objective=opts.objective,
                constraints=cons.to_list(), solver=solver, summary=summary, explain=explain)
    try:
        if opts.check:          # a partition's plan is checked once merged (planner/split)
            check_plan(plan, cons)
    except DataError as exc:    # the planner's own plan, not the user's input: a bug
        raise InternalError(f"the plan failed vm-plan's own safety check and is not printed "
                            f"(a bug, please report it with the snapshot): {exc}") from None
    return plan


def precheck(snap: Snapshot, opts: Options) -> Knowledge:
    """Refuse an incoherent snapshot, problems under --refuse-problems, broken monitoring
    (judged on the whole snapshot); else what is known of it."""
    incoherent(snap)
    know = assess(snap)
    if snap.problems and opts.refuse_problems:
        named = ", ".join(sorted(know.unknown_vms) or sorted(know.frozen)) or \
            snap.problems[0].message
        raise DataError(f"the snapshot is incoherent ({plural(len(snap.problems), 'problem')}: "
                        f"{named}); {{refuse_problems}} refuses to plan around them",
                        "snapshot.problems", settings=("refuse_problems",))
    broken_monitoring(snap, know, opts.max_frozen)
    return know


def lower_bound_of(snap: Snapshot, cons: Constraints, opts: Options, seconds: float) -> int:
    """The fewest hosts any plan of ``snap`` needs, on make_plan's instance, in ``seconds``."""
    from vmtools.planner.bounds import host_lower_bound
    know = assess(snap)
    inst, _ = _instance(snap, cons, opts, OBJECTIVE_KINDS[opts.objective],
                        _fixed_guests(snap, cons, opts, know), set(know.frozen))
    return host_lower_bound(inst, time.monotonic() + seconds)[0]


def _fixed_guests(snap: Snapshot, cons: Constraints, opts: Options, know: Knowledge
                  ) -> set[str]:
    """The guests the plan may not move: unknown ones, those on offline hosts, Domain-0s,
    and those cooling down (unless a hard rule makes them move)."""
    offline = {h.name for h in snap.hosts if h.state != "online"}
    fixed = {v.name for v in snap.vms if v.name in know.unknown_vms}
    fixed |= {v.name for v in snap.vms if v.host in offline}
    fixed |= {v.name for v in snap.vms if v.name in DOM0_NAMES}
    for v in opts.facts.fixed_vms:            # cooldown, unless a hard rule makes it move
        vm = next((x for x in snap.vms if x.name == v), None)
        if vm is not None and cons.allowed(v, vm.host):
            fixed.add(v)
    return fixed


def _instance(snap: Snapshot, cons: Constraints, opts: Options, objective: "Objective",
              fixed: set[str], bad_hosts: set[str]) -> tuple[Instance, Options]:
    """The objective's instance (its limits, the planning demand) and the options with the
    memory target the objective implies."""
    cpu_limit, mem_limit = objective.cpu_limit(opts), objective.mem_limit(opts)
    if opts.mem_target is None and objective.mem_target is not None:
        opts = replace(opts, mem_target=objective.mem_target)
    plan_snap = snap
    if opts.facts.cpu_estimate is not None and opts.cpu_demand == "usage":
        estimate = opts.facts.cpu_estimate
        plan_snap = replace(snap, vms=[replace(v, cpu=estimate.get(v.name, v.cpu))
                                       for v in snap.vms])
    # auto and balance relieve a frozen host its known guests alone make a hotspot, as any
    # other (the relief goes to hosts whose figures are known); the others only end overloads.
    frozen_hot = {"cpu": opts.cpu_threshold, "mem": opts.mem_threshold} \
        if objective.relieves_frozen else None
    inst = build_instance(plan_snap, cons, cpu_limit=cpu_limit, cpu_demand=opts.cpu_demand,
                          fixed_vms=fixed, frozen_hosts=bad_hosts, mem_limit=mem_limit,
                          frozen_hot=frozen_hot)
    unsatisfiable_gather(inst)
    return inst, opts


def _require_optimal(out: Outcome, opts: Options) -> None:
    """``--require-optimal``: refuse (exit 75) a heuristic or unproven outcome."""
    if out.status == "heuristic" and opts.require_optimal:
        raise TemporaryFailure("the solver found nothing within --time-limit and "
                               "--require-optimal refuses the heuristic plan (give it more time)")
    if out.status == "feasible" and opts.require_optimal:
        raise TemporaryFailure(f"the solver did not prove its plan optimal within --time-limit "
                               f"(gap {out.gap if out.gap is not None else 'unknown'}); "
                               "--require-optimal refuses it (give it more time)")


def _move_reasons(inst: Instance, placement: list[int], repaired, opts: Options, auto,
                  know: Knowledge) -> dict[str, str]:
    """Why each guest moves: the objective's (or auto's) reason, then repairs and the guests
    leaving a frozen host."""
    reasons = _reasons(inst, placement, opts) if auto is None else auto.reasons()
    for v in repaired:
        reasons[inst.vms[v]] = (f"repair: {inst.hosts[inst.cur[v]]} is over its limits or "
                                "breaks a rule")
    for v, why in inst.leaving.items():
        if placement[v] != inst.cur[v]:
            h = inst.hosts[inst.cur[v]]
            kind = "relieve" if "hotspot" in why else "overload"
            reasons[inst.vms[v]] = (f"{kind}: {h} is frozen ({', '.join(know.frozen[h].kinds)})"
                                    f" and {why}")
    return reasons


def _ordered_moves(snap: Snapshot, cons: Constraints, inst: Instance, out: Outcome, auto,
                   reasons: dict[str, str], bad_hosts: set[str], opts: Options):
    """The target placement and its migrations in order (with the pivots); auto trims its
    steps until the estimate fits its time budget (``out.placement`` follows)."""
    target = dict(zip(inst.vms, map(inst.hosts.__getitem__, out.placement)))
    priority = auto.priorities() if auto is not None else {}
    actions, pivots = order_moves(snap, cons, target, reasons, bad_hosts, priority)
    while auto is not None and auto.budget.max_seconds is not None and \
            estimate_seconds(actions, opts.bandwidth, opts.parallel) > auto.budget.max_seconds \
            and auto.trim():
        out.placement = auto.placement()
        target = dict(zip(inst.vms, map(inst.hosts.__getitem__, out.placement)))
        actions, pivots = order_moves(snap, cons, target, auto.reasons(), bad_hosts,
                                      auto.priorities())
    return target, actions, pivots


def _summary(snap: Snapshot, inst: Instance, out: Outcome, auto, know: Knowledge,
             target: dict[str, str], actions, pivots, opts: Options) -> dict:
    """The plan's ``summary``: hosts before and after, the migrations and their estimate,
    the worst utilisations, auto's budget, the frozen hosts and the demand used."""
    (cpu_before, mem_before) = before = H.utilisations(inst, inst.cur)
    cpu_after, mem_after = before if out.placement == inst.cur else \
        H.utilisations(inst, out.placement)
    summary = {
        "hosts_before": len({v.host for v in snap.vms}),
        "hosts_after": len(set(target.values())),
        "hosts_lower_bound": out.lower_bound if out.lower_bound is not None
        else H.lower_bound(inst),
        "migrations": len(actions),
        "migrated_mib": sum(a.mem_mib for a in actions),
        "pivots": pivots,
        "estimated_seconds": estimate_seconds(actions, opts.bandwidth, opts.parallel),
        "estimate_assumes": {"bandwidth_mbit_s": opts.bandwidth, "parallel": opts.parallel},
        "worst_cpu_before": round(max(cpu_before, default=0.0), 3),
        "worst_cpu_after": round(max(cpu_after, default=0.0), 3),
        "worst_mem_before": round(max(mem_before, default=0.0), 3),
        "worst_mem_after": round(max(mem_after, default=0.0), 3),
    }
    summary.update(auto.summary() if auto is not None else M.summary_of(out.repair_left))
    summary["frozen"] = frozen_summary(snap, know, inst, out.placement, opts.facts.known_sizes
                                       ) if know.frozen else []   # (two passes over the guests)
    if opts.facts.cpu_estimate is not None:
        summary["demand"] = f"{opts.demand} over {opts.demand_window:g} min" + (
            f" (consolidation {opts.history_window:g} min)" if opts.objective == "auto"
            and opts.history_window > opts.demand_window else "") + (
            f", forecast {opts.forecast:g}" if opts.forecast else "")
    return summary


def _search_auto(inst: Instance, opts: Options, deadline: Deadline, snap: Snapshot):
    """auto (:mod:`vmtools.planner.policy`): its outcome and its run (reasons, budget)."""
    from vmtools.planner.policy import run_auto
    last = {v.name: v.cpu for v in snap.vms}
    series = None
    if opts.facts.cpu_history and opts.cpu_demand == "usage":
        k = len(next(iter(opts.facts.cpu_history.values())))
        series = [opts.facts.cpu_history.get(n) or [last[n]] * k for n in inst.vms]
    auto = run_auto(inst, [last[n] for n in inst.vms], opts, deadline, series)
    out = Outcome(placement=auto.placement(), status="heuristic", how="auto: " + ", ".join(
        f"{len([s for s in auto.choice.taken if s.kind == k])} {k}"
        for k in ("repair", "relieve", "consolidate")), lower_bound=None, gap=None)
    out.solve_seconds = auto.auto.solve_seconds
    out.how += f" (repair: {how})" if (how := auto.auto.repair_how).startswith("greedy") else ""
    out.solver = opts.solver if auto.auto.repair_how not in ("", "greedy") else "none"
    return out, auto


@dataclass(frozen=True)
class Objective:
    """One objective of ``--objective``: its search (instance, options, deadline, snapshot ->
    outcome and, for auto, its run), the fractions of each host its target may use, the
    memory target it implies when none is given, and whether it relieves a frozen host its
    known guests alone make a hotspot (the others only end overloads)."""

    name: str
    search: Callable
    cpu_limit: Callable[[Options], float] = lambda opts: 1.0
    mem_limit: Callable[[Options], float] = lambda opts: 1.0
    mem_target: float | None = None
    relieves_frozen: bool = False


# The objectives, by name (planner/options.OBJECTIVES lists the same names, for the settings
# table; tests/test_front_door.py holds them equal). A new objective is its search function
# and one entry here (ARCHITECTURE.md, "An objective").
OBJECTIVE_KINDS: dict[str, Objective] = {o.name: o for o in (
    Objective("auto", _search_auto, mem_target=0.9, relieves_frozen=True),
    Objective("consolidate", lambda inst, opts, d, snap: (consolidate_grouped(inst, opts, d),
                                                          None),
              cpu_limit=lambda opts: opts.cpu_target,
              mem_limit=lambda opts: opts.mem_target or 1.0),
    Objective("balance", lambda inst, opts, d, snap: (balance_after_repair(inst, opts, d),
                                                      None), relieves_frozen=True),
    Objective("repair", lambda inst, opts, d, snap: (repair(inst, opts, d), None)),
)}


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
    for unit in H.gather_units(inst):
        # a host in every guest's set, the smallest set walked (no copy of 20,000 hosts)
        first, *rest = sorted((inst.allowed_set(v) for v in unit), key=len)
        if any(all(h in a for a in rest) for h in first):
            continue
        stuck = [v for v in unit if inst.fixed[v]]
        why = (f"{inst.vms[stuck[0]]} must stay on {inst.hosts[inst.cur[stuck[0]]]} "
               f"(offline, frozen or pinned), where the others may not go" if stuck else
               "the rules leave no host that may take all of them")
        raise OperationFailed(f"the gather rule of {', '.join(inst.vms[v] for v in unit)} "
                              f"cannot hold: {why}")


def broken_monitoring(snap: Snapshot, know: Knowledge, max_frozen: float) -> None:
    """Exit 75 (temporary) when more than ``max_frozen`` of the hosts are frozen by problems
    of their own, or of the guests are not known (stale or unknown, :meth:`Knowledge.vm`):
    monitoring is broken rather than partial, and nothing is planned. A host frozen only for
    a guest's missing figures counts on the guests' side: with 2 % of the guests' metrics lost,
    a third of a dense cluster's active hosts hold one, and its runs were all refused."""
    names = {h.name for h in snap.hosts if h.state != "standby"}
    hosts = names | set(know.frozen)
    frozen_hosts = {h for h, f in know.frozen.items() if any(p.vm is None for p in f.problems)}
    guests = {v.name for v in snap.vms} | set(know.unknown_vms)
    # A guest counts when what is known of it is not (its own problem, or its host's own):
    # the other guests of a host frozen for one guest's missing metrics are known.
    frozen_guests = {v.name for v in snap.vms if (v.name in know.unknown_vms or v.host in
                     know.frozen) and know.vm(v.name, v.host) != "known"} | set(know.unknown_vms)
    for what, part, whole in (("hosts are frozen by problems of their own", frozen_hosts,
                               hosts),
                              ("guests are stale or unknown", frozen_guests, guests)):
        if whole and len(part) > max_frozen * len(whole) + FRACTION_EPS:
            shown = ", ".join(f"{h} ({', '.join(know.frozen[h].kinds)})"
                              for h in sorted(know.frozen)[:5])
            more = len(know.frozen) - 5
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


def _with_last_known(snap: Snapshot, state, unknown) -> Snapshot:
    """``snap`` with the guests its problems name and it lacks, on the host a problem names
    (else where they were last seen) at their last CPU sample and size from the state: only to
    tell hot hosts, never to plan on."""
    from vmtools.model import VM
    hosts = {h.name for h in snap.hosts}
    listed = {v.name for v in snap.vms}
    extra = []
    for name, problems in unknown.items():
        host = next((p.host for p in problems if p.host), None) or state.placement.get(name)
        rows = state.samples.get(name)
        size = state.sizes.get(name)
        if name in listed or host not in hosts or not rows or size is None:
            continue
        extra.append(VM(name=name, host=host, cpu=float(rows[-1][1]), mem_mib=int(size[0])))
    return replace(snap, vms=list(snap.vms) + extra) if extra else snap


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
                     window: tuple[int, int] = (3, 5), power=None, make=None) -> Plan:
    """make_plan with the memory of earlier cron runs (``state``, a
    :class:`vmtools.state.State`, updated in place; None: no memory): hotspots must persist
    (``window``, ``opts.hold``), recently moved guests cool down (``opts.cooldown``) and
    settle (``opts.settle``), each guest's CPU samples of the last ``opts.demand_window``
    minutes give its planning demand (``opts.demand``), hosts and guests that vanished since
    the last run are problems. With ``power`` (:class:`vmtools.planner.power.PowerOptions`)
    hosts are also switched off and on; ``make`` plans (default :func:`make_plan`; vm-plan's
    :func:`vmtools.planner.split.plan_parts` plans in parts). No file is read or written."""
    from vmtools.planner import demand as dm
    from vmtools.planner import state as st
    from vmtools.state import PowerState

    def plan_it(snap: Snapshot, opts: Options) -> Plan:
        if power is None:
            return (make or make_plan)(snap, cons, opts)
        from vmtools.planner.power import make_power_plan
        return make_power_plan(snap, cons, opts, power,
                               state.power if state is not None else PowerState(),
                               st.snapshot_time(snap), make or make_plan)

    if state is None:
        if snap.samples:      # the source's own history: the demand window from the first run
            samples: dict[str, list] = {}
            now = st.snapshot_time(snap)
            dm.merge(samples, snap.samples)
            dm.record(samples, snap, now, opts.history_window)
            facts = dm.run_facts(samples, snap, now, opts)
            opts = replace(opts, facts=replace(opts.facts, **facts))
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
    # Whether a host is hot counts an unknown guest at its last known figures: a host whose
    # guest's metrics were lost for one run must not look cool and lose its hotspot's history.
    inst = build_instance(_with_last_known(snap, memory, unknown), cons, cpu_limit=1.0,
                          cpu_demand=opts.cpu_demand)
    hot = [inst.hosts[h] for h in H.hotspots(inst, inst.cur, opts.cpu_threshold,
                                                opts.mem_threshold)]
    st.observe(memory, now, hot)
    st.observe_moves(memory, snap, now)
    memory.placement.update(keep)
    dm.merge(memory.samples, snap.samples)
    dm.record(memory.samples, snap, now, opts.history_window)
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
        recent_left=st.recently_left(memory, now, NO_RETURN_MINUTES), known_sizes=known_sizes,
        **dm.run_facts(memory.samples, snap, now, opts))
    return plan_it(snap, replace(opts, facts=facts))
