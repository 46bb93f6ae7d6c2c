"""The migration domains in a plan: what a run did in each.

A snapshot's hosts carry their migration domain (vmtools-formats(5), ``domain``); vm-plan
keeps every guest in its own (:func:`vmtools.rules.constraints.fence_domains`) unless told
the platform moves guests across (the ``cross_domain`` setting). When a snapshot has several
domains, the plan's summary says per domain what was done: its hosts and guests, the hosts
frozen by problems, the sources that did not answer, the migrations, and the hosts in use
before and after. When a domain is left with hotspots the plan cannot relieve inside it
(moves across are not allowed), a second, small plan over the domains' summaries proposes
where capacity exists: ``summary.advice``, one entry per such domain (its hot hosts, the
CPUs and memory they need to shed, the other domains with that much room).
"""

from __future__ import annotations

from collections import Counter

from vmtools.model import Plan
from vmtools.rules.constraints import Constraints
from vmtools.rules.load import CPU_THRESHOLD, MEM_THRESHOLD, host_capacity, loads_of
from vmtools.sources.knowledge import assess


def note_domains(plan: Plan, cross_domain: bool, cons: Constraints | None = None,
                 cpu_threshold: float = CPU_THRESHOLD,
                 mem_threshold: float = MEM_THRESHOLD) -> Plan:
    """``plan.summary["domains"]`` (per domain, by name) when the origin has several, and
    ``plan.summary["cross_domain"]`` when moves between them were allowed."""
    origin = plan.origin
    domain = {h.name: h.domain for h in origin.hosts}
    lost = Counter(p.domain for p in origin.problems
                   if p.kind == "unavailable-source" and p.domain is not None)
    names = set(domain.values()) | set(lost)
    if len(names) < 2:
        return plan
    if cross_domain:
        plan.summary["cross_domain"] = True
    frozen = assess(origin).frozen
    before = origin.guest_hosts()
    out: dict[str, dict] = {}
    for name in sorted(names):
        hosts = [h for h, d in domain.items() if d == name]
        mine = set(hosts)
        guests = [v for v, h in before.items() if h in mine]
        moves = [a for a in plan.actions if a.op == "migrate" and domain.get(a.src) == name]
        out[name] = {
            "hosts": len(hosts),
            "guests": len(guests),
            "frozen_hosts": sorted(h for h in hosts if h in frozen),
            "migrations": len(moves),
            "moved_out": sum(1 for a in moves if domain.get(a.dst) != name),
            "hosts_used_before": len({before[v] for v in guests}),
            "hosts_used_after": len({plan.placement[v] for v in guests
                                     if plan.placement.get(v) in mine}),
        }
        if lost.get(name):
            out[name]["unavailable_sources"] = lost[name]
        out[name].update(_parts_of(plan, name))
    plan.summary["domains"] = out
    if not cross_domain:
        advice = advise(plan, cons, frozen, cpu_threshold, mem_threshold)
        if advice:
            plan.summary["advice"] = advice
    return plan


def _parts_of(plan: Plan, name: str) -> dict:
    """What the domain's part(s) did when the plan was made in parts
    (:mod:`vmtools.planner.split`): planned, failed or timeout (then its guests stay where
    they are, and ``error`` says why), partly (some of its partitions were not planned), the
    seconds it took, and its partitions when it was cut into several."""
    mine = [p for p in plan.summary.get("parts", []) if p.get("domain") == name]
    if not mine:
        return {}
    states = {p["status"] for p in mine}
    out: dict = {"status": states.pop() if len(states) == 1 else "partly",
                 "seconds": max(p["seconds"] for p in mine)}
    if len(mine) > 1:
        out["partitions"] = len(mine)
    errors = [p["error"] for p in mine if p.get("error")]
    if errors:
        out["error"] = errors[0]
    return out


def advise(plan: Plan, cons: Constraints | None, frozen: dict, cpu_threshold: float,
           mem_threshold: float) -> list[dict]:
    """Per domain with hosts still over a threshold once the plan has run, what they must
    shed (CPUs and MiB over the thresholds) and the other domains whose known, online hosts
    have that much room under the thresholds (most room first)."""
    origin = plan.origin
    loads = loads_of(origin.hosts, ((plan.placement[v.name], v.cpu, v.mem_mib)
                                    for v in origin.vms if plan.placement.get(v.name)), cons)
    need: dict[str, list] = {}
    room: dict[str, list[float]] = {}
    for h in origin.hosts:
        if h.state != "online":
            continue
        cpu_cap, mem_cap = host_capacity(h, cons)
        load = loads[h.name]
        over_cpu = load.cpu_use - cpu_threshold * cpu_cap
        over_mem = load.mem_use - mem_threshold * mem_cap
        if over_cpu > 1e-9 or over_mem > 1e-9:
            entry = need.setdefault(h.domain, [[], 0.0, 0.0])
            entry[0].append(h.name)
            entry[1] += max(0.0, over_cpu)
            entry[2] += max(0.0, over_mem)
        elif h.name not in frozen:
            r = room.setdefault(h.domain, [0.0, 0.0])
            r[0] += -over_cpu
            r[1] += -over_mem
    out = []
    for name, (hot, cpu, mem) in sorted(need.items()):
        where = sorted(((d, c, m) for d, (c, m) in room.items()
                        if d != name and c >= cpu and m >= mem), key=lambda x: (-x[1], x[0]))
        text = (f"domain {name or '(none)'}: {len(hot)} host(s) stay above the thresholds "
                f"({cpu:.2f} CPUs, {mem:.0f} MiB over) and no move inside it relieves them; ")
        text += (f"domain {where[0][0] or '(none)'} has the room ({where[0][1]:.2f} CPUs, "
                 f"{where[0][2]:.0f} MiB under its thresholds): place new guests there, or move "
                 "guests there where the platform migrates across (vm-plan --cross-domain)"
                 if where else "no other domain has that much room: add capacity")
        out.append({"domain": name, "hot_hosts": sorted(hot), "over_cpu": round(cpu, 3),
                    "over_mem_mib": round(mem), "room_in": [
                        {"domain": d, "cpu": round(c, 3), "mem_mib": round(m)}
                        for d, c, m in where], "advice": text})
    return out


__all__ = ["note_domains"]
