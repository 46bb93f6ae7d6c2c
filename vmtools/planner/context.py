"""The cluster-wide context switch (vm-plan --context-switch, objective auto): when the guests
want more CPU than every host of the cluster could give, even those in standby, migrating cannot
help; suspend the fewest lowest-priority guests that end the overload, and resume them, most
important first, as soon as room returns.

Hysteresis, so that a guest is not suspended and resumed every run:

- suspend only when the running guests' CPU demand exceeds ``suspend_above`` (default 1.0)
  times the CPUs of every host of the cluster (online and standby, ``capacity`` rules
  applied), and then down to ``resume_below`` (default 0.8) times that: the guests suspended
  are the lowest-priority ones (``priority`` rules; 0 without one), on overloaded hosts first,
  the hungriest first, so the fewest end it; never a guest a ``never_suspend`` rule or a pin
  names, nor one a snapshot problem names or on a frozen host;
- resume a suspended guest (vm-apply's ledger) only once it has been suspended at least
  ``resume_after`` minutes and the demand with it stays within ``resume_below`` times the
  cluster's CPUs; most important first (priority, then the longest suspended); each on a host
  with room for it within ``cpu_target`` (the host it left if it can, else the fullest that
  fits, as provisioning places), waking a standby host if that is what it takes; a guest whose
  image stays on the host that suspended it (libvirt's managed save) only there.

A run that suspends or resumes does nothing else: its plan holds those actions only, checked by
the replay checker; the next run relieves the per-host hotspots that remain, as usual.
"""

from __future__ import annotations

from dataclasses import dataclass

from vmtools.model import Action, Plan, Snapshot, iso_to_epoch
from vmtools.planner.instance import problem_guests
from vmtools.planner.manual import image_path
from vmtools.planner.provision import NewGuest, _Search
from vmtools.rules.capacity import EPS, capacity
from vmtools.rules.check import check_plan, universe
from vmtools.rules.constraints import Constraints, parse_rules


@dataclass
class SwitchSettings:
    image_dir: str
    suspend_above: float = 1.0
    resume_below: float = 0.8
    resume_after: float = 15.0        # minutes
    cpu_target: float = 0.8
    # guests whose image stays on the host that suspended it (libvirt's managed save): they
    # resume there or wait
    saved_here: frozenset[str] = frozenset()


def cluster_cpu(snap: Snapshot, cons: Constraints) -> float:
    """The CPUs of every host that could run guests: online and standby, capacity rules
    applied (offline hosts and hosts in maintenance excluded)."""
    return sum(capacity(h, cons)["cpu"] for h in snap.hosts
               if h.state in ("online", "standby") and h.name not in cons.maintenance)


def context_switch(snap: Snapshot, cons: Constraints, ledger: dict[str, dict],
                   settings: SwitchSettings, now: float) -> Plan | None:
    """A plan that suspends or resumes guests (see the module docstring), or None when the
    cluster needs neither."""
    total = cluster_cpu(snap, cons)
    demand = sum(v.cpu for v in snap.vms)
    if total <= 0:
        return None
    if demand > settings.suspend_above * total + EPS:
        return _suspend(snap, cons, settings, demand, total)
    running = {v.name for v in snap.vms}
    waiting = [e for name, e in ledger.items() if name not in running and
               _minutes_since(e.get("suspended", ""), now) >= settings.resume_after]
    if waiting:
        return _resume(snap, cons, waiting, settings, demand, total)
    return None


def _minutes_since(stamp: str, now: float) -> float:
    try:
        return (now - iso_to_epoch(stamp)) / 60.0
    except (ValueError, TypeError):
        return float("inf")            # no time recorded: long enough


def _suspend(snap: Snapshot, cons: Constraints, settings: SwitchSettings, demand: float,
             total: float) -> Plan | None:
    bad_vms, frozen = problem_guests(snap)
    byname = {h.name: h for h in snap.hosts}
    use = {h.name: 0.0 for h in snap.hosts}
    for v in snap.vms:
        use[v.host] += v.cpu
    hot = {h for h in use if use[h] > capacity(byname[h], cons)["cpu"] + EPS}
    candidates = [v for v in snap.vms
                  if v.name not in cons.never_suspend and v.name not in cons.pinned
                  and v.name not in bad_vms and v.host not in frozen and v.cpu > 0]
    candidates.sort(key=lambda v: (cons.priority_of(v.name), v.host not in hot, -v.cpu, v.name))
    goal = settings.resume_below * total
    chosen = []
    for v in candidates:
        if demand <= goal + EPS:
            break
        chosen.append(v)
        demand -= v.cpu
    if not chosen:
        return None
    actions = [Action(id=i, op="suspend", vm=v.name, src=v.host, dst="", mem_mib=v.mem_mib,
                      image=image_path(settings.image_dir, v.name),
                      reason=f"context switch: the guests want more CPU than the cluster has; "
                             f"{v.name} has priority {cons.priority_of(v.name)}")
               for i, v in enumerate(chosen, 1)]
    gone = {v.name for v in chosen}
    placement = {v.name: v.host for v in snap.vms if v.name not in gone}
    summary = {"context_switch": "suspend", "suspended": sorted(gone),
               "cpu_demand": round(sum(v.cpu for v in snap.vms), 3),
               "cluster_cpu": round(total, 3), "cpu_demand_after": round(demand, 3),
               "migrations": 0, "migrated_mib": 0}
    plan = Plan(origin=snap, placement=placement, actions=actions, objective="auto",
                constraints=cons.to_list(), summary=summary,
                solver={"name": "context-switch", "status": "heuristic",
                        "method": "lowest priority first, hottest hosts first, hungriest "
                                  "first"})
    check_plan(plan, cons)
    return plan


def _resume(snap: Snapshot, cons: Constraints, waiting: list[dict], settings: SwitchSettings,
            demand: float, total: float) -> Plan | None:
    waiting = sorted(waiting, key=lambda e: (-cons.priority_of(e["name"]),
                                             e.get("suspended", ""), e["name"]))
    _, frozen = problem_guests(snap)
    online = [h.name for h in snap.hosts if h.state == "online" and h.name not in frozen
              and h.name not in cons.maintenance]
    standby = sorted((h for h in snap.hosts if h.state == "standby"
                      and h.name not in cons.maintenance),
                     key=lambda h: (-h.cpu, -h.mem_mib, h.name))
    goal = settings.resume_below * total
    awake = list(online)
    woken: list[str] = []
    search = _Search(snap, cons, [], awake, settings.cpu_target, 1.0, False, float("inf"))
    actions: list[Action] = []
    placement = snap.guest_hosts()
    for e in waiting:
        if demand + e["cpu"] > goal + EPS:
            break                         # most important first: no one overtakes
        g = NewGuest(name=e["name"], vcpus=e["vcpus"], mem_mib=e["mem_mib"], cpu=e["cpu"],
                     config="")
        only = e["name"] in settings.saved_here
        host = _room(search, g, e["host"], only)
        if host is None:
            for h in standby:
                if h.name in woken or (only and h.name != e["host"]):
                    continue
                search = _Search(snap, cons, [], awake + [h.name], settings.cpu_target, 1.0,
                                 False, float("inf"))
                _replay(search, actions)
                if _room(search, g, e["host"], only) is not None:
                    awake.append(h.name)
                    woken.append(h.name)
                    actions.append(Action.power(len(actions) + 1, "power-on", h.name,
                                                reason=f"context switch: room to resume "
                                                       f"{g.name}"))
                    host = h.name
                    break
                search = _Search(snap, cons, [], awake, settings.cpu_target, 1.0, False,
                                 float("inf"))
                _replay(search, actions)
            if host is None:
                break
        search._take(g, host, +1)
        after = [a.id for a in actions if a.is_power and a.host == host]
        actions.append(Action(id=len(actions) + 1, op="resume", vm=g.name, src="", dst=host,
                              mem_mib=g.mem_mib, image=e["image"], vcpus=g.vcpus, cpu=g.cpu,
                              after=after,
                              reason=f"context switch: room again; {g.name} has priority "
                                     f"{cons.priority_of(g.name)}"))
        placement[g.name] = host
        demand += g.cpu
    if not any(a.op == "resume" for a in actions):
        return None
    summary = {"context_switch": "resume",
               "resumed": sorted(a.vm for a in actions if a.op == "resume"),
               "hosts_woken": woken, "cpu_demand_after": round(demand, 3),
               "cluster_cpu": round(total, 3), "migrations": 0, "migrated_mib": 0}
    plan = Plan(origin=snap, placement=placement, actions=actions, objective="auto",
                constraints=[], summary=summary,
                solver={"name": "context-switch", "status": "heuristic",
                        "method": "highest priority first, the host it left if it has room, "
                                  "else the fullest that fits"})
    # The plan echoes the rules as they apply to it: those naming guests that stay suspended
    # lose those names (the plan knows only its origin and the guests it resumes).
    plan.constraints = parse_rules(cons.to_list(), universe(plan), strict=False,
                                   skipped=[]).to_list()
    check_plan(plan, cons)
    return plan


def _room(search: _Search, g: NewGuest, left: str, only_left: bool = False) -> str | None:
    """The host it left if it has room, else (unless ``only_left``) the fullest that fits."""
    if left in search.free and search.fits(g, left) is None:
        return left
    if only_left:
        return None
    return next((h for h in search.order(g) if search.fits(g, h) is None), None)


def _replay(search: _Search, actions: list[Action]) -> None:
    for a in actions:
        if a.op == "resume":
            search._take(NewGuest(a.vm, a.vcpus, a.mem_mib, a.cpu, ""), a.dst, +1)


__all__ = ["SwitchSettings", "cluster_cpu", "context_switch"]
