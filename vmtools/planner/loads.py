"""Each host's use in a plan, before and after, as vm-status computes it.

``plan.summary["load"]``: one entry per host of the origin, its CPU and memory use as
fractions of what it gives under the rules (``capacity`` rules included) before the plan and
after it, and the dimensions over the hotspot thresholds before and after
(:mod:`vmtools.rules.load`, the one home for load, which vm-status asks too). vm-plan's
table of hosts shows these. Auto's hotspot entries (``summary.hotspots``) show the same
figures for a host, where they used to show auto's own (its CPU demand, on the placement
left after its repair): ``dims`` still says what auto found and acted on.
"""

from __future__ import annotations

from dataclasses import replace
from operator import attrgetter

from vmtools.model import VM, Plan
from vmtools.rules.constraints import Constraints
from vmtools.rules.load import (CPU_THRESHOLD, EPS, MEM_THRESHOLD, host_loads, hot_dims,
                                loads_of)

_NAME, _HOST = attrgetter("name"), attrgetter("host")


def after_plan(plan: Plan):
    """The origin snapshot with every guest where the plan's placement puts it; guests the
    plan stops are gone, guests it starts (resume, create) are there."""
    origin = plan.origin
    known = {v.name: v for v in origin.vms}
    started = {a.vm: a for a in plan.actions if a.op in ("resume", "create") and a.vm}
    vms = []
    for name, host in plan.placement.items():
        if name in known:
            vms.append(replace(known[name], host=host))
        elif name in started:
            a = started[name]
            vms.append(VM(name=name, host=host, vcpus=a.vcpus or 1, cpu=a.cpu,
                          mem_mib=a.mem_mib))
    return replace(origin, vms=vms)


def placed_guests(plan: Plan):
    """(host, CPU use, MiB) of every guest where the plan's placement puts it, as
    :func:`after_plan` has them, without a copy of each guest."""
    origin = plan.origin
    known = {v.name: v for v in origin.vms}
    started = {a.vm: a for a in plan.actions if a.op in ("resume", "create") and a.vm}
    for name, host in plan.placement.items():
        v = known.get(name)
        if v is not None:
            yield host, v.cpu, v.mem_mib
        elif name in started:
            a = started[name]
            yield host, a.cpu, a.mem_mib


def _unchanged(plan: Plan) -> bool:
    """Whether the plan leaves every guest where it is and starts none (the idle cron run):
    then the loads after are the loads before, not summed again."""
    placement, vms = plan.placement, plan.origin.vms
    return len(placement) == len(vms) and \
        list(map(placement.get, map(_NAME, vms))) == list(map(_HOST, vms))      # in C


def note_loads(plan: Plan, cons: Constraints | None = None,
               cpu_threshold: float = CPU_THRESHOLD,
               mem_threshold: float = MEM_THRESHOLD) -> Plan:
    """Add ``summary.load`` and give auto's hotspot entries the same figures (one pass over
    the guests for each side: 150,000 guests copied into a snapshot of the plan's took 5 s)."""
    origin = plan.origin
    before = host_loads(origin, cons)
    after = before if _unchanged(plan) else loads_of(origin.hosts, placed_guests(plan), cons)
    cpu_hot, mem_hot = cpu_threshold + EPS, mem_threshold + EPS
    entries = []
    for h in origin.hosts:
        b, a = before[h.name], after[h.name]
        online = h.state == "online"
        entries.append({
            "host": h.name,
            "cpu_before": round(b.cpu, 3), "mem_before": round(b.mem, 3),
            "cpu_after": round(a.cpu, 3), "mem_after": round(a.mem, 3),
            "hot_before": hot_dims(b.cpu, b.mem, cpu_threshold, mem_threshold)
            if online and (b.cpu > cpu_hot or b.mem > mem_hot) else [],
            "hot_after": hot_dims(a.cpu, a.mem, cpu_threshold, mem_threshold)
            if online and (a.cpu > cpu_hot or a.mem > mem_hot) else []})
    plan.summary["load"] = entries
    for entry in plan.summary.get("hotspots") or []:
        if entry.get("host") in before:
            entry["cpu"] = round(before[entry["host"]].cpu, 3)
            entry["mem"] = round(before[entry["host"]].mem, 3)
    return plan
