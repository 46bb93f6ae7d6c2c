"""Which sub-problems a run is split into, and each one's snapshot and rules.

A snapshot of several migration domains, with moves across them not allowed, is several
independent problems: one part per domain (its hosts, the guests on them, the rules that
concern them). A domain too large to consolidate as one model in the time given
(:data:`PARTITION_GUESTS` guests and more) is cut further into partitions of about
:data:`PARTITION_GUESTS` guests each, so that no rule is cut: the hosts of the guests one
spread or gather rule names stay in one partition (union-find over the rules' members), and
so do the hosts a fence names when they are few (a quarter of a partition at most) with its
guests' hosts; a fence over more hosts is narrowed to those in each guest's partition
(stricter, never broken), as each guest of a fence or ban is bound to hosts, not to the
rule's other guests. A partition is consolidated as one model (no host groups inside it). Each
partition gets a mix of the host types (hosts dealt out in order of capacity, as the host
groups of :func:`vmtools.planner.search.consolidate_grouped`).

:mod:`vmtools.planner.split` plans the parts and checks the merged plan whole.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from vmtools.model import Snapshot
from vmtools.rules.constraints import Constraints, fence_domains, parse_rules

# Guests per partition of one large domain under consolidate: the size a group of
# consolidate_grouped has (about 10,000 guests), measured to consolidate in a few seconds.
PARTITION_GUESTS = 10_000
# A domain is partitioned from this many guests on (below, one model: the plan is as before).
PARTITION_FROM = 3 * PARTITION_GUESTS


# Rule kinds that bind guests to each other: their guests' hosts stay in one partition. A
# fence, a ban or a pin binds each guest to hosts on its own: cut across partitions, each of
# its guests keeps its own hosts (those in its partition: stricter, never broken), and the
# hosts of a fence naming few stay with its guests (a ban needs none of its hosts: unioning
# them made one partition of a third of a 20,000-host cluster).
LINKING = ("spread", "gather")


@dataclass
class Part:
    """One sub-problem: its name (the domain's, ``domain/2`` for a partition of a domain),
    the migration domain it belongs to, its hosts and how many guests they hold."""

    name: str
    domain: str
    hosts: list[str]
    guests: int


def split_parts(snap: Snapshot, cons: Constraints, objective: str) -> list[Part]:
    """The parts of a run: one per migration domain when the rules keep guests in their
    domain (``cons.vm_domain``), each cut into partitions when it is large and the objective
    is consolidate; a single part (the whole snapshot) when there is nothing to split."""
    by_domain: dict[str, list[str]] = {}
    if cons.vm_domain:
        for h in snap.hosts:
            by_domain.setdefault(cons.host_domain.get(h.name, h.domain), []).append(h.name)
    else:
        by_domain[""] = [h.name for h in snap.hosts]
    on: dict[str, list[str]] = {}
    for v in snap.vms:
        on.setdefault(v.host, []).append(v.name)
    parts = []
    for domain, hosts in sorted(by_domain.items()):
        guests = sum(len(on.get(h, ())) for h in hosts)
        if objective == "consolidate" and guests >= PARTITION_FROM:
            k = math.ceil(guests / PARTITION_GUESTS)
            for i, group in enumerate(partition(snap, cons, hosts, on, k)):
                parts.append(Part(f"{domain}/{i + 1}" if domain else str(i + 1), domain,
                                  group, sum(len(on.get(h, ())) for h in group)))
        else:
            parts.append(Part(domain, domain, hosts, guests))
    return parts


def partition(snap: Snapshot, cons: Constraints, hosts: list[str], on: dict[str, list[str]],
              k: int) -> list[list[str]]:
    """``hosts`` (one domain) in ``k`` groups that cut no rule: the current hosts of the guests
    of each multi-guest rule together, and a fence's hosts with its guests' when they are few
    (at most a quarter of a group)."""
    index = {h: i for i, h in enumerate(hosts)}
    parent = list(range(len(hosts)))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    def union(a: int, b: int) -> None:
        parent[find(a)] = find(b)

    where = {v.name: index[v.host] for v in snap.vms if v.host in index}
    room = max(1, len(hosts) // k // 4)
    for rule in cons.rules:
        mine = [where[v] for v in rule.vms if v in where]
        if rule.rule in LINKING:
            for h in mine[1:]:
                union(h, mine[0])
        if rule.rule == "fence" and mine and len(rule.hosts) <= room:
            for h in rule.hosts:
                if h in index:
                    for g in mine:
                        union(index[h], g)
    byname = {h.name: h for h in snap.hosts}
    order = sorted(range(len(hosts)), key=lambda i: (byname[hosts[i]].cpu,
                                                      byname[hosts[i]].mem_mib, hosts[i]))
    members: dict[int, list[int]] = {}
    for i in order:
        members.setdefault(find(i), []).append(i)
    size = math.ceil(len(hosts) / k)
    groups: list[list[int]] = [[] for _ in range(k)]
    n = 0
    for i in order:
        comp = members[find(i)]
        if comp[0] != i:
            continue
        g = n % k
        n += 1
        if len(groups[g]) + len(comp) > size * 3 // 2:
            g = min(range(k), key=lambda j: (len(groups[j]), j))
        groups[g].extend(comp)
    return [sorted(hosts[h] for h in g) for g in groups if g]


def sub_snapshot(snap: Snapshot, hosts: list[str]) -> Snapshot:
    """The part of ``snap`` on ``hosts``: those hosts, their guests, the problems naming
    them (or their domain), their samples and stopped guests. The platform's rules are not
    carried: they are in the constraints (:func:`sub_constraints`)."""
    mine = set(hosts)
    vms = [v for v in snap.vms if v.host in mine]
    names = {v.name for v in vms}
    domains = {h.domain for h in snap.hosts if h.name in mine}
    listed = {v.name for v in snap.vms}

    def concerns(p) -> bool:
        if p.host is not None:
            return p.host in mine
        if p.vm is not None and p.vm in listed:
            return p.vm in names
        return p.domain is None or p.domain in domains

    problems = [p for p in snap.problems if concerns(p)]
    samples = None if snap.samples is None else \
        {v: s for v, s in snap.samples.items() if v in names}
    return replace(snap, hosts=[h for h in snap.hosts if h.name in mine], vms=vms,
                   problems=problems, rules=[], samples=samples,
                   stopped=[e for e in snap.stopped if e.get("host") in mine])


def sub_constraints(cons: Constraints, sub: Snapshot) -> Constraints:
    """The rules of ``cons`` that concern ``sub``: each narrowed to its guests and hosts
    (vmtools.rules.kinds' pruning: a spread or gather with one guest left goes, a fence with
    no host left in the part pins its guests)."""
    out = parse_rules(cons.to_list(), sub, strict=False, skipped=[])
    return fence_domains(out, sub, False)


__all__ = ["Part", "split_parts", "partition", "sub_snapshot", "sub_constraints",
           "PARTITION_GUESTS", "PARTITION_FROM"]
