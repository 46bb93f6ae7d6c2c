"""Power management in vm-plan: switch emptied hosts off, wake standby hosts when room is
needed (``--power``; on under ``--objective auto`` when the host map gives hosts a power
method).

What it decides, on top of the placement the objective chose:

* **standby hosts**: a host vmtools switched off is ``standby`` with the capacity it last had.
  vm-plan knows them from its state (``--state DIR``, the ``power`` part of vmtools.state): Ganglia
  first calls such a host offline, then forgets it; vm-plan puts it back in the snapshot as
  ``standby``. A host that goes offline or vanishes *without* vmtools switching it off stays
  a problem (``offline-host``).
* **wake** (``power-on``): when the online hosts cannot take the guests (no feasible
  placement, e.g. a maintenance evacuation), when a persistent hotspot is still hot in the
  target, or when less than ``--reserve`` hosts' worth of free capacity would stay online, the
  fewest standby hosts are woken, most frugal first (``--power-model``; else the largest
  first). Migrations into a woken host run ``after`` its power-on. A host that did not come
  back within ``--boot-timeout`` of its power-on is not chosen again until it reports.
* **switch off** (``power-off``): an online host with no guest in the snapshot and the
  target, empty for ``--standby-after`` minutes (from the state), whose power method is not
  ``none``; never below ``--min-hosts`` online hosts in its cluster, never leaving less than
  ``--reserve`` hosts' worth of free CPU and memory online in its cluster (N+1 with the
  default 1: one host's failure can be absorbed). Hungriest hosts first.
* **frugal hosts** (``--power-model``): after consolidation, the guests of a host that draws
  more than an empty online host would for the same load move there whole, when that saves
  at least ``MIN_SAVING_W`` watts and the host has as much of what binds.

Every decision (and every host kept on by a limit) goes in ``--explain`` with its reason.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, replace

from vmtools.errors import DataError, InternalError, OperationFailed
from vmtools.model import Action, Host, Plan, Snapshot
from vmtools.planner.instance import problem_guests
from vmtools.planner.standby import capacity_record, prepare_snapshot
from vmtools.planner.options import Options
from vmtools.rules.load import FRACTION_EPS, fraction, host_capacity, hot_dims
from vmtools.state import PowerState, read_state

# The action priority of switching off a host that is empty already (vm-apply starts higher
# first): auto's reliefs have 1 and go first (a migration breaks the tie), consolidation's
# migrations 0. On the tuning day's first day it saved 0.7 % of the energy (bench/README.md).
EMPTY_OFF_PRIORITY = 1

log = logging.getLogger("vmtools.planner")

MIN_SAVING_W = 1.0


@dataclass
class PowerOptions:
    methods: dict[str, str] | None = None   # host -> ipmi/wol/none (host map); None: any host
    standby_after: float = 0.0              # minutes a host stays empty before it is switched off
    min_hosts: int = 1                      # online hosts kept per cluster
    reserve: float = 1.0                    # hosts' worth of free capacity kept online
    boot_timeout: float = 600.0             # seconds a woken host has to report
    model: object | None = None             # vmtools.power_model.PowerModel

    def switchable(self, host: str) -> bool:
        return self.methods is None or self.methods.get(host, "none") != "none"


def load_power_state(directory: str | None) -> PowerState:
    """The power part of the vmtools.state document in ``directory`` (tests, tools)."""
    return read_state(directory).power if directory is not None else PowerState()


# --------------------------------------------------------------------------- capacity sums

def _watts(popts: PowerOptions, host: Host, cpu_use: float) -> float | None:
    if popts.model is None:
        return None
    util = cpu_use / host.cpu if host.cpu > 0 else 0.0
    return popts.model.watts(host.name, util)


def _efficiency_key(popts: PowerOptions, host: Host, mean_cpu: float, mean_mem: float,
                    cpu_at: float, weight_cpu: float = 0.5) -> float:
    """Watts per unit of capacity (each dimension weighted by ``weight_cpu`` and its
    complement), drawn at ``cpu_at`` of the host's CPUs: lower is more frugal. Without a power
    model, bigger hosts count as more frugal (fewest hosts)."""
    units = weight_cpu * (host.cpu / mean_cpu if mean_cpu else 0) + \
        (1.0 - weight_cpu) * (host.mem_mib / mean_mem if mean_mem else 0)
    if units <= 0:
        return math.inf
    w = _watts(popts, host, host.cpu * cpu_at)
    return (w if w is not None else 100.0) / units


def _use(snap: Snapshot, placement: dict[str, str], opts: Options) -> dict[str, list[float]]:
    """host -> [CPU demand, MiB, guests] under ``placement`` (the planning demand: vCPUs,
    or the estimate from history when vm-plan has one)."""
    use: dict[str, list[float]] = {h.name: [0.0, 0.0, 0] for h in snap.hosts}
    estimate = opts.facts.cpu_estimate or {}
    for v in snap.vms:
        host = placement.get(v.name, v.host)
        if host in use:
            u = use[host]
            u[0] += float(v.vcpus) if opts.cpu_demand == "vcpus" else \
                estimate.get(v.name, v.cpu)
            u[1] += v.mem_mib
            u[2] += 1
    return use


def _reserve_ok(hosts: list[Host], use: dict, cpu_target: float, reserve: float,
                cons, full: set[str] | frozenset[str] = frozenset()) -> tuple[bool, str]:
    """Free CPU (at the target) and memory on ``hosts`` against ``reserve`` times the
    largest of them. A host in ``full`` (frozen: what it holds is not known) has none free."""
    if not hosts:
        return reserve <= 0, "no host online"
    free_cpu = sum(max(0.0, h.cpu * cons.cpu_factor(h.name) * cpu_target - use[h.name][0])
                   for h in hosts if h.name not in full)
    free_mem = sum(max(0.0, h.mem_mib * cons.mem_factor(h.name) - use[h.name][1])
                   for h in hosts if h.name not in full)
    worth_cpu = max(h.cpu * cpu_target for h in hosts) * reserve
    worth_mem = max(h.mem_mib for h in hosts) * reserve
    text = (f"{free_cpu:.1f} CPUs and {free_mem / 1024:.1f} GiB free against a reserve of "
            f"{worth_cpu:.1f} CPUs and {worth_mem / 1024:.1f} GiB")
    return free_cpu + FRACTION_EPS >= worth_cpu and free_mem + FRACTION_EPS >= worth_mem, text


# --------------------------------------------------------------------------- the plan

def _hot_left(plan: Plan, trial: Snapshot, opts: Options, cons) -> tuple[list[str], float]:
    """Hosts still hot in the target that the objective wanted relieved (the hotspot test of
    :mod:`vmtools.rules.load`, under the rules), and how far above the thresholds they are
    in all (CPUs, plus memory as a fraction of a host's)."""
    use = _use(trial, plan.placement, opts)
    out = []
    excess = 0.0
    for h in trial.hosts:
        if h.state != "online" or h.cpu <= 0:
            continue
        cpu_cap, mem_cap = host_capacity(h, cons)
        cpu, mem = fraction(use[h.name][0], cpu_cap), fraction(use[h.name][1], mem_cap)
        if hot_dims(cpu, mem, opts.cpu_threshold, opts.mem_threshold):
            if opts.facts.hot_filter is None or h.name in opts.facts.hot_filter:
                out.append(h.name)
                excess += max(0.0, use[h.name][0] - opts.cpu_threshold * cpu_cap) + \
                    max(0.0, mem - opts.mem_threshold)
    return sorted(out), excess


def _with_online(snap: Snapshot, names: set[str]) -> Snapshot:
    return replace(snap, hosts=[replace(h, state="online") if h.name in names else h
                                for h in snap.hosts])


def make_power_plan(snap: Snapshot, cons, opts: Options, popts: PowerOptions,
                    state: PowerState, now: float, make_plan) -> Plan:
    """``make_plan`` (the objective's planner) with hosts switched on and off around it;
    ``state`` is updated in place (also when planning fails)."""
    prepared, notes = prepare_snapshot(snap, state, popts.boot_timeout, now)
    return _power_plan(snap, prepared, notes, state, cons, opts, popts, now, make_plan)


def _power_plan(snap: Snapshot, prepared: Snapshot, notes: dict[str, str], state: PowerState,
                cons, opts: Options, popts: PowerOptions, now: float, make_plan) -> Plan:
    """The objective's plan with hosts woken before it (:func:`_wake`), the frugal hosts
    preferred, and emptied hosts switched off after it (:func:`_switch_off`); checked, then
    ``state`` records what was switched."""
    from vmtools.rules.check import check_plan
    hosts = {h.name: h for h in prepared.hosts}
    eff = _frugality(prepared, popts, opts)
    if popts.model is not None and eff.memory_binds:
        # where memory binds, auto empties the hungriest hosts first (hosts hold alike, and
        # which of them stay on is the energy); where CPU binds the least memory first stays:
        # replays of the CPU-bound PlanetLab day with the hungriest first took 1.4 % more
        # energy on the first day and 10 % more migrations on the second (bench/README.md)
        opts = replace(opts, facts=replace(opts.facts, host_cost={
            h.name: eff(h) for h in prepared.hosts if h.state == "online"}))
    plan, trial, woken = _wake(prepared, state, cons, opts, popts, eff, make_plan)
    if popts.model is not None and opts.objective in ("consolidate", "auto"):
        plan = _prefer_frugal(plan, trial, cons, opts, popts, notes, eff.memory_binds)

    # Woken hosts that neither receive a guest nor hold the reserve go back to sleep.
    receiving = {a.dst for a in plan.actions}
    for name in list(woken):
        if name not in receiving and not woken[name].startswith("demand"):
            del woken[name]

    actions: list[Action] = []
    next_id = max((a.id for a in plan.actions), default=0) + 1
    power_on: dict[str, int] = {}
    for name in sorted(woken):
        actions.append(Action.power(next_id, "power-on", name,
                                    reason=f"power-on: {woken[name]}"))
        power_on[name] = next_id
        next_id += 1
    migrations = [replace(a, after=sorted(set(a.after) | ({power_on[a.dst]}
                                                          if a.dst in power_on else set())))
                  for a in plan.actions]

    target = dict(plan.placement)
    use = _use(prepared, target, opts)
    _note_empty_hosts(prepared, hosts, use, state, now)
    off = _switch_off(prepared, use, woken, state, cons, opts, popts, now, notes, eff)
    for name in sorted(off):
        after = sorted(a.id for a in migrations if a.src == name)
        a = Action.power(next_id, "power-off", name, after, off[name])
        # A host empty already saves its idle watts from the minute it is off: vm-apply
        # starts it before consolidation's migrations (priority 0), after any relief's.
        actions.append(a if after else replace(a, priority=EMPTY_OFF_PRIORITY))
        next_id += 1

    result = _with_power_actions(plan, prepared, actions, migrations, woken, off, notes,
                                 target, popts, opts)
    try:
        check_plan(result, cons)
    except DataError as exc:
        raise InternalError(f"the plan with power actions failed vm-plan's own safety check "
                            f"and is not printed (a bug, please report it): {exc}") from None
    for name in woken:
        state.waking[name] = {**state.standby.pop(name, capacity_record(hosts[name])), "since": now}
    for name in off:
        state.standby[name] = {**capacity_record(hosts[name]), "since": now}
        state.empty_since.pop(name, None)
    return result


def _frugality(prepared: Snapshot, popts: PowerOptions, opts: Options):
    """The key that orders hosts most frugal first (:func:`_efficiency_key`, against the
    mean capacity of the hosts that have one). The dimension the guests use more of, for
    the capacity there is, binds: capacity counts by the share of each that is used, and a
    host draws what it draws when the binding dimension is at its target (where memory binds,
    a host full of guests carries little CPU, and the host that idles cheapest is frugal;
    where CPU binds, the one with the most CPU per watt)."""
    live = [h for h in prepared.hosts if h.cpu > 0 and h.mem_mib > 0]
    mean_cpu = sum(h.cpu for h in live) / max(1, len(live))
    mean_mem = sum(h.mem_mib for h in live) / max(1, len(live))
    estimate = opts.facts.cpu_estimate or {}
    used_cpu = sum(estimate.get(v.name, v.cpu) for v in prepared.vms) / max(
        FRACTION_EPS, mean_cpu * len(live))
    used_mem = sum(v.mem_mib for v in prepared.vms) / max(FRACTION_EPS, mean_mem * len(live))
    weight_cpu = used_cpu / (used_cpu + used_mem) if used_cpu + used_mem > 0 else 0.5
    cpu_at = opts.cpu_target * (min(1.0, used_cpu / used_mem) if used_mem > 0 else 1.0)

    def eff(h: Host) -> float:
        return _efficiency_key(popts, h, mean_cpu, mean_mem, cpu_at, weight_cpu)
    eff.memory_binds = used_mem > used_cpu
    return eff


def _wake(prepared: Snapshot, state: PowerState, cons, opts: Options, popts: PowerOptions,
          eff, make_plan) -> tuple[Plan, Snapshot, dict[str, str]]:
    """The objective's plan, with the fewest standby hosts woken (most frugal first) for a
    placement the online hosts cannot take, a persistent hotspot they cannot relieve (kept
    only when the woken host cools it), or the reserve. Returns the plan, the snapshot it
    was made on, and the woken hosts with their reasons."""
    wakeable = sorted((h for h in prepared.hosts if h.state == "standby"
                       and h.name not in state.waking and h.name not in state.boot_failed
                       and popts.switchable(h.name) and h.name not in cons.maintenance),
                      key=lambda h: (eff(h), h.name))
    woken: dict[str, str] = {}
    last: tuple[Plan, Snapshot, float, str] | None = None   # before a wake for a hotspot
    hot_done = False
    while True:
        trial = _with_online(prepared, set(woken))
        try:
            plan = make_plan(trial, cons, opts)
        except OperationFailed as exc:
            if not wakeable:
                raise
            h = wakeable.pop(0)
            woken[h.name] = f"the online hosts cannot take the guests ({exc})"
            continue
        hot, excess = _hot_left(plan, trial, opts, cons)
        if last is not None:
            if excess > last[2] - 0.05:
                # the host woken for the hotspot did not cool it: it stays asleep
                plan, trial, excess, name = last
                del woken[name]
                hot_done = True
            last = None
        if hot and wakeable and not hot_done:
            h = wakeable.pop(0)
            # at most 5 named: with --mem-target 1, 200 full hosts can all be memory hotspots
            named = ", ".join(hot[:5]) + (f" and {len(hot) - 5} more" if len(hot) > 5 else "")
            woken[h.name] = (f"persistent {'hotspots' if len(hot) > 1 else 'hotspot'} {named} "
                             f"{'stay' if len(hot) > 1 else 'stays'} hot: the online hosts "
                             "lack the room to relieve them")
            last = (plan, trial, excess, h.name)
            continue
        online = [h for h in trial.hosts if h.state == "online"]
        ok, text = _reserve_ok(online, _use(trial, plan.placement, opts),
                               opts.cpu_target, popts.reserve, cons, problem_guests(trial)[1])
        if not ok and wakeable:
            h = wakeable.pop(0)
            woken[h.name] = f"demand leaves {text} (--reserve {popts.reserve:g})"
            continue
        return plan, trial, woken


def _note_empty_hosts(prepared: Snapshot, hosts: dict[str, Host], use: dict,
                      state: PowerState, now: float) -> None:
    """``state.empty_since``: since when each online host has been empty (in the snapshot
    and the target); hosts no longer online leave it."""
    for h in prepared.hosts:
        if h.state == "online":
            if use[h.name][2] == 0 and not any(v.host == h.name for v in prepared.vms):
                state.empty_since.setdefault(h.name, now)
            else:
                state.empty_since.pop(h.name, None)
    for name in list(state.empty_since):
        if name not in hosts or hosts[name].state != "online":
            del state.empty_since[name]


def _switch_off(prepared: Snapshot, use: dict, woken: dict[str, str], state: PowerState,
                cons, opts: Options, popts: PowerOptions, now: float,
                notes: dict[str, str], eff) -> dict[str, str]:
    """The hosts to switch off, with their reasons: empty in the target for
    ``--standby-after`` minutes, switchable, hungriest first, never below ``--min-hosts``
    nor the reserve in their cluster (a host kept on for a limit gets a note)."""
    staying = {h.name for h in prepared.hosts if h.state == "online"} | set(woken)
    frozen = problem_guests(prepared)[1]
    candidates = []
    for h in prepared.hosts:
        if h.state != "online" or use[h.name][2] > 0 or h.name in frozen:
            continue
        since = state.empty_since.get(h.name)
        emptied_now = any(v.host == h.name for v in prepared.vms)
        if not popts.switchable(h.name):
            continue
        if emptied_now:
            if popts.standby_after > 0:
                continue
            idle = 0.0
        else:
            idle = (now - since) / 60.0 if since is not None else 0.0
            if idle + FRACTION_EPS < popts.standby_after:
                if notes is not None and popts.standby_after > 0:
                    notes[f"keep {h.name} on"] = (f"empty for {idle:.0f} min, less than "
                                                  f"--standby-after {popts.standby_after:g}")
                continue
        candidates.append((h, idle, emptied_now))
    candidates.sort(key=lambda c: (-eff(c[0]), -c[1], c[0].name))
    off: dict[str, str] = {}
    for h, idle, emptied_now in candidates:
        cluster = [x for x in prepared.hosts if x.cluster == h.cluster and x.name in staying]
        if len(cluster) - 1 < popts.min_hosts:
            notes[f"keep {h.name} on"] = (f"--min-hosts {popts.min_hosts}: {len(cluster)} "
                                          f"hosts online in cluster {h.cluster or '(none)'}")
            continue
        rest = [x for x in cluster if x.name != h.name]
        ok, text = _reserve_ok(rest, use, opts.cpu_target, popts.reserve, cons, frozen)
        if not ok:
            notes[f"keep {h.name} on"] = (f"--reserve {popts.reserve:g}: without it {text}")
            continue
        staying.discard(h.name)
        w = _watts(popts, h, 0.0)
        saves = f", saves {w:.0f} W idle" if w is not None else ""
        off[h.name] = (f"power-off: {h.name} " +
                       ("emptied by this plan" if emptied_now else f"empty for {idle:.0f} min")
                       + f" (--standby-after {popts.standby_after:g}){saves}; "
                       f"{len(rest)} hosts stay online in "
                       f"{h.cluster or 'the cluster'}, {text}")
    return off


def _with_power_actions(plan: Plan, prepared: Snapshot, actions: list[Action],
                        migrations: list[Action], woken: dict[str, str], off: dict[str, str],
                        notes: dict[str, str], target: dict[str, str], popts: PowerOptions,
                        opts: Options) -> Plan:
    """``plan`` with the power actions among its migrations, their reasons in ``explain``
    and the hosts switched (and the watts, under a power model) in its summary."""
    all_actions = sorted(actions + migrations, key=lambda a: a.id)
    explain = dict(plan.explain) if plan.explain is not None else None
    if explain is not None:
        for a in actions:
            explain[f"{a.op} {a.host}"] = a.reason
        explain.update(notes)
    summary = dict(plan.summary)
    summary["power_off"] = sorted(off)
    summary["power_on"] = sorted(woken)
    summary["hosts_standby"] = sorted({h.name for h in prepared.hosts if h.state == "standby"}
                                      - set(woken) | set(off))
    if popts.model is not None:
        summary["watts_before"] = round(_total_watts(prepared, prepared.guest_hosts(), popts,
                                                     opts, set()), 1)
        summary["watts_after"] = round(_total_watts(prepared, target, popts, opts,
                                                    set(off)), 1)
    return replace(plan, origin=prepared, actions=all_actions, summary=summary,
                   explain=explain)


def _total_watts(snap: Snapshot, placement: dict[str, str], popts: PowerOptions, opts: Options,
                 off: set[str]) -> float:
    use = _use(snap, placement, opts)
    total = 0.0
    for h in snap.hosts:
        if h.state == "online" and h.name not in off or use[h.name][2] > 0:
            total += _watts(popts, h, use[h.name][0]) or 0.0
    return total


def _prefer_frugal(plan: Plan, trial: Snapshot, cons, opts: Options, popts: PowerOptions,
                   notes: dict[str, str], memory_binds: bool) -> Plan:
    """Move the whole guest set of a hungry host onto an empty online host that would draw
    less for it (same rules, same capacity limits) and has as much of what binds (memory
    or CPU, :func:`_frugality`); re-order the moves.

    A smaller host draws less for the same load, but a cluster that trades its big hosts'
    capacity for that needs more hosts for its guests: where CPU binds, moving a G5's guests
    onto an empty G4 (CloudSim's ML110s) took 3 % more energy on the PlanetLab replay's
    first day and 6 % on the second than not moving them (bench/README.md)."""
    from vmtools.planner.schedule import estimate_seconds, order_moves

    def binding(x: Host) -> float:
        return x.mem_mib * cons.mem_factor(x.name) if memory_binds else \
            x.cpu * cons.cpu_factor(x.name)
    target = dict(plan.placement)
    vms = {v.name: v for v in trial.vms}
    hosts = {h.name: h for h in trial.hosts}
    _, bad_hosts = problem_guests(trial)
    fixed = set(cons.pinned) | set(opts.facts.fixed_vms)
    usable = [h for h in trial.hosts if h.state == "online" and h.name not in cons.maintenance
              and h.name not in bad_hosts and h.cpu > 0]
    on = {}
    for v, h in target.items():
        on.setdefault(h, []).append(v)
    empty = [h for h in usable if h.name not in on]
    swaps: dict[str, tuple[str, float]] = {}
    # under auto a consolidation: the host it fills keeps auto's room to grow
    fill = opts.fill_target if opts.objective == "auto" else opts.cpu_target
    use = _use(trial, target, opts)
    for h in sorted((hosts[n] for n in on if n in hosts), key=lambda x: -(
            _watts(popts, x, use[x.name][0]) or 0.0)):
        guests = on[h.name]
        if h.name in bad_hosts or any(g in fixed or g in opts.facts.settling_vms for g in guests):
            continue            # frozen, cooling down, or settling after a move (--settle)
        cpu, mem = use[h.name][0], use[h.name][1]
        now_w = _watts(popts, h, cpu) or 0.0
        best = None
        # never back to a host one of them left within the hour (no ping-pong)
        recent = opts.facts.recent_left
        left = {recent.get(g) for g in guests} if recent else set()
        for e in empty:
            if e.name in left or binding(e) < binding(h) - FRACTION_EPS:
                continue
            if cpu > e.cpu * cons.cpu_factor(e.name) * fill + FRACTION_EPS or \
                    mem > e.mem_mib * cons.mem_factor(e.name) or \
                    (e.name in cons.max_vms and len(guests) > cons.max_vms[e.name][0]):
                continue
            if not all(cons.allowed(g, e.name) for g in guests):
                continue
            w = _watts(popts, e, cpu) or 0.0
            if w < now_w - MIN_SAVING_W and (best is None or w < best[1]):
                best = (e, w)
        if best is None:
            continue
        e, w = best
        moving = {a.vm for a in plan.actions} | {x for x, hh in target.items()
                                                  if hh != vms[x].host}
        extra = [g for g in guests if g not in moving]
        if opts.objective == "auto" and opts.max_migrations and \
                len(moving) + len(extra) > opts.max_migrations:
            continue            # auto's budget: not this run
        for g in guests:
            target[g] = e.name
        empty = [x for x in empty if x.name != e.name]
        if h.name in {x.name for x in usable}:
            empty.append(h)
        swaps[h.name] = (e.name, now_w - w)
    if not swaps:
        return plan
    reasons = {a.vm: a.reason for a in plan.actions}
    for src, (dst, saved) in swaps.items():
        notes[f"power-model {src}"] = (f"the guests of {src} go to {dst}, which draws "
                                       f"{saved:.0f} W less for the same load "
                                       f"({popts.model.source})")
        for g in on[src]:
            if target[g] != vms[g].host:
                reasons[g] = reasons.get(g) or f"{opts.objective}: frugal host {dst} " \
                    f"replaces {src} ({saved:.0f} W less)"
    actions, pivots = order_moves(trial, cons, target, reasons, bad_hosts,
                                  {a.vm: a.priority for a in plan.actions if a.priority})
    summary = dict(plan.summary)
    summary.update(migrations=len(actions), migrated_mib=sum(a.mem_mib for a in actions),
                   pivots=pivots, estimated_seconds=estimate_seconds(actions, opts.bandwidth,
                                                                     opts.parallel))
    explain = {a.vm: a.reason for a in actions} if plan.explain is not None else None
    return replace(plan, placement=target, actions=actions, summary=summary, explain=explain)
