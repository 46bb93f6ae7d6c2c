"""The migration domains in a plan: what a run did in each.

A snapshot's hosts carry their migration domain (vmtools-formats(5), ``domain``); vm-plan
keeps every guest in its own (:func:`vmtools.rules.constraints.fence_domains`) unless told
the platform moves guests across (the ``cross_domain`` setting). When a snapshot has several
domains, the plan's summary says per domain what was done: its hosts and guests, the hosts
frozen by problems, the sources that did not answer, the migrations, and the hosts in use
before and after.
"""

from __future__ import annotations

from collections import Counter

from vmtools.model import Plan
from vmtools.sources.knowledge import assess


def note_domains(plan: Plan, cross_domain: bool) -> Plan:
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
    before = {v.name: v.host for v in origin.vms}
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
    plan.summary["domains"] = out
    return plan


__all__ = ["note_domains"]
