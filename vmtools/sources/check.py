"""The plausibility rules every source's figures obey, and the merge of several readings.

:func:`check_reading` is the one check of host and guest figures any source calls (and
:func:`merge_readings` calls again on every reading, so no source can hand the planner a
figure it would refuse); every number goes through :func:`vmtools.numbers.problem`, the one
check of finite, bounded numbers. What breaks a rule becomes a problem of vmtools-formats(5) and never
reaches the snapshot:

- a name that is not :func:`~vmtools.model.is_safe_name` (``unsafe-name``) or that Xen gives
  Domain-0 or a guest in flight (``reserved-name``): the host or guest is left out;
- a host's ``cpu`` outside ``HOST_MIN_CPU``..``HOST_MAX_CPU`` or not finite, its ``mem_mib``
  not an integer in ``HOST_MIN_MIB``..``HOST_MAX_MIB``, an unknown ``state`` (``bad-value``): the host and its
  guests are left out (a capacity that cannot be trusted places nothing);
- a host's ``net_mbps`` not finite or outside 0.001..10^7 Mbit/s, a ``hypervisor`` that is not
  a name like ``xen-4.17``, a ``migration`` transport not in
  :mod:`vmtools.drivers.registry`'s table (``bad-value``): that figure is dropped;
- a guest whose ``cpu`` is not finite, negative or more than ``CPU_SLACK`` times its host's
  CPUs, whose ``mem_mib`` is not an integer in 0..``HOST_MAX_MIB + 1`` (``bad-value``), or on
  a host the reading does not have (``no-data``): the guest is left out; a guest listed twice
  is a ``duplicate-guest`` (the first is kept); bad ``vcpus`` become 1, bad ``net_mbps``
  none, an odd ``state`` ``unknown``;
- a CPU sample that is not a finite (time, CPUs) pair, or of a guest the reading does not
  have, is dropped.

Ganglia (:mod:`vmtools.ganglia.interpret`) checks its wire types first (with the metric
names in its sentences), inside these bounds, so for it this check finds nothing.
"""

from __future__ import annotations

import math
import re
from dataclasses import replace
from typing import Collection, Iterable

from vmtools import numbers
from vmtools.model import (HOST_MAX_CPU, HOST_MAX_MIB, HOST_MIN_CPU, HOST_MIN_MIB, HOST_STATES,
                           MAX_DOMAIN_CHARS, VM, Host, Problem, Snapshot, is_reserved_name, is_safe_name)
from vmtools.sources.knowledge import PROBLEM_KINDS as _KINDS
from vmtools.sources.base import Reading

# Problem kinds (documented in vmtools-formats(5)), in the order a snapshot lists them: one
# vocabulary, with what each makes of the host or guest it names, in sources/knowledge.py.
PROBLEM_KINDS = _KINDS
# A guest can use no more CPU than its host has; measurement jitter stays well below this slack.
CPU_SLACK = 1.5
HOST_MIN_NET_MBPS = 1e-3          # 0 would divide by zero
HOST_MAX_NET_MBPS = 1e7           # 10 Tbit/s
GUEST_MAX_NET_MBPS = 2e7          # in plus out
HYPERVISOR_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,63}")
GUEST_STATE = re.compile(r"[a-z][a-z-]{0,31}")


def show(value: object, limit: int = 60) -> str:
    """An untrusted value, quoted and made printable for a problem sentence."""
    text = value if isinstance(value, str) else repr(value)
    shown = "".join(ch if 32 <= ord(ch) < 127 else f"\\x{ord(ch):02x}" for ch in text[:limit])
    return '"' + shown + ('..."' if len(text) > limit else '"')


def _finite(value: object) -> bool:
    return numbers.problem(value) is None and math.isfinite(value)   # type: ignore[arg-type]


def sort_problems(problems: Iterable[Problem]) -> list[Problem]:
    """Sorted by kind (:data:`PROBLEM_KINDS`' order), then host, guest and sentence."""
    rank = {kind: i for i, kind in enumerate(PROBLEM_KINDS)}
    return sorted(problems, key=lambda p: (rank.get(p.kind, len(rank)), p.host or "",
                                           p.vm or "", p.message))


class _Checker:
    def __init__(self, source: str, transports: Collection[str], domain: str | None = None):
        self.source = source
        self.domain = domain if isinstance(domain, str) and domain.isprintable() and \
            len(domain) <= MAX_DOMAIN_CHARS else None
        self.transports = transports
        self.problems: list[Problem] = []

    def problem(self, kind: str, message: str, host: str | None = None,
                vm: str | None = None) -> None:
        self.problems.append(Problem(kind=kind, message=message, host=host, vm=vm))

    def named(self, name: object, what: str, host: str | None = None) -> bool:
        if not is_safe_name(name):
            self.problem("unsafe-name", f"{self.source} reports {what} named {show(name)}: "
                         "names may hold only letters, digits, '.', '_' and '-'; it is left "
                         "out", host=host)
            return False
        if is_reserved_name(name):
            self.problem("reserved-name", f"{self.source} reports {what} named {name}, a "
                         "name Xen gives Domain-0 or a guest in flight; it is left out",
                         host=host)
            return False
        return True

    def host(self, h: Host) -> Host | None:
        if not self.named(h.name, "a host"):
            return None
        bad = None
        if h.state not in HOST_STATES:
            bad = f"state {show(h.state, 20)} (expected {', '.join(HOST_STATES)})"
        else:
            for what, why in (
                    ("CPUs", numbers.problem(h.cpu, lo=HOST_MIN_CPU, hi=HOST_MAX_CPU)),
                    ("MiB of memory", numbers.problem(h.mem_mib, lo=HOST_MIN_MIB,
                                                      hi=HOST_MAX_MIB, integer=True))):
                if why:
                    bad = f"{what}: {why}"
                    break
        if bad:
            self.problem("bad-value", f"host {h.name} from {self.source} has {bad}; the host "
                         "and its guests are left out", host=h.name)
            return None
        changes: dict = {}
        if not h.domain and self.domain:
            changes["domain"] = self.domain
        elif h.domain and not (isinstance(h.domain, str) and h.domain.isprintable() and
                               len(h.domain) <= MAX_DOMAIN_CHARS):
            self.problem("bad-value", f"the migration domain of host {h.name} from "
                         f"{self.source} is {show(h.domain, 40)}, not a name of at most "
                         f"{MAX_DOMAIN_CHARS} printable characters", host=h.name)
            changes["domain"] = ""
        why = None if h.net_mbps is None else \
            numbers.problem(h.net_mbps, lo=HOST_MIN_NET_MBPS, hi=HOST_MAX_NET_MBPS)
        if why:
            self.problem("bad-value", f"the network capacity (Mbit/s) of host {h.name} from "
                         f"{self.source}: {why}; it is not used", host=h.name)
            changes["net_mbps"] = None
        if h.hypervisor and not (isinstance(h.hypervisor, str) and
                                 HYPERVISOR_NAME.fullmatch(h.hypervisor)):
            self.problem("bad-value", f"the hypervisor of host {h.name} from {self.source} is "
                         f"{show(h.hypervisor, 40)}, not a name like xen-4.17", host=h.name)
            changes["hypervisor"] = ""
        if h.migration and h.migration not in self.transports:
            self.problem("bad-value", f"the migration transport of host {h.name} from "
                         f"{self.source} is {show(h.migration, 40)}, not one of "
                         f"{', '.join(self.transports)}", host=h.name)
            changes["migration"] = ""
        return replace(h, **changes) if changes else h

    def guest(self, v: VM, hosts: dict[str, Host], dropped: set[str]) -> VM | None:
        if not self.named(v.name, "a guest", v.host if is_safe_name(v.host) else None):
            return None
        if v.host in dropped:
            return None                 # the host's own problem says so
        host = hosts.get(v.host)
        if host is None:
            self.problem("no-data", f"{self.source} reports guest {v.name} on host "
                         f"{show(v.host)}, which it does not report; the guest is left out",
                         vm=v.name)
            return None
        bad = None
        why = numbers.problem(v.cpu, lo=0, hi=host.cpu * CPU_SLACK)
        if why:
            bad = f"a CPU use (CPUs; its host has {host.cpu:g}): {why}"
        else:
            why = numbers.problem(v.mem_mib, lo=0, hi=HOST_MAX_MIB + 1, integer=True)
            if why:
                bad = f"MiB of memory: {why}"
        if bad:
            self.problem("bad-value", f"guest {v.name} on host {host.name} from {self.source} "
                         f"has {bad}; it is left out", host=host.name, vm=v.name)
            return None
        changes: dict = {}
        if numbers.problem(v.vcpus, lo=1, hi=HOST_MAX_CPU, integer=True):
            self.problem("bad-value", f"guest {v.name} from {self.source} has "
                         f"{show(v.vcpus, 20)} virtual CPUs; 1 is assumed",
                         host=host.name, vm=v.name)
            changes["vcpus"] = 1
        if v.net_mbps is not None and numbers.problem(v.net_mbps, lo=0, hi=GUEST_MAX_NET_MBPS):
            self.problem("bad-value", f"the network use of guest {v.name} from {self.source} "
                         f"is {show(v.net_mbps, 20)} Mbit/s; it is not used",
                         host=host.name, vm=v.name)
            changes["net_mbps"] = None
        if not (isinstance(v.state, str) and GUEST_STATE.fullmatch(v.state)):
            self.problem("bad-value", f"guest {v.name} from {self.source} is in state "
                         f"{show(v.state, 20)}; taken as unknown", host=host.name, vm=v.name)
            changes["state"] = "unknown"
        return replace(v, **changes) if changes else v


def check_reading(reading: Reading, transports: Collection[str]) -> Reading:
    """``reading`` with every figure that breaks the rules above turned into a problem
    (added to the reading's own). ``transports``: the migration transports there are
    (:func:`vmtools.drivers.registry.names`)."""
    c = _Checker(reading.source, transports, reading.migration_domain)
    hosts: dict[str, Host] = {}
    dropped: set[str] = set()
    for h in reading.hosts:
        if isinstance(h.name, str) and h.name in hosts:
            c.problem("duplicate-host", f"host {h.name} appears twice in {reading.source}; "
                      "the first one is kept", host=h.name)
            continue
        checked = c.host(h)
        if checked is None:
            if isinstance(h.name, str):
                dropped.add(h.name)
        else:
            hosts[checked.name] = checked
    vms: dict[str, VM] = {}
    for v in reading.vms:
        if isinstance(v.name, str) and v.name in vms:
            c.problem("duplicate-guest", f"guest {v.name} is reported twice by "
                      f"{reading.source} (on {vms[v.name].host} and {show(v.host)}); it is "
                      f"kept on {vms[v.name].host}", host=vms[v.name].host, vm=v.name)
            continue
        checked_vm = c.guest(v, hosts, dropped)
        if checked_vm is not None:
            vms[checked_vm.name] = checked_vm
    samples = {name: [(t, cpu) for t, cpu in series if _finite(t) and _finite(cpu) and cpu >= 0]
               for name, series in reading.samples.items() if name in vms}
    if not c.problems and len(hosts) == len(reading.hosts) and len(vms) == len(reading.vms) \
            and samples == reading.samples and \
            all(a is b for a, b in zip(hosts.values(), reading.hosts)):
        return reading
    return replace(reading, hosts=list(hosts.values()), vms=list(vms.values()),
                   problems=list(reading.problems) + c.problems, samples=samples)


def merge_readings(readings: Iterable[Reading], transports: Collection[str]) -> Snapshot:
    """One snapshot of several readings, each checked (:func:`check_reading`). A host seen by
    two sources is a ``duplicate-host`` problem and a guest seen by two a
    ``duplicate-guest``: the first source's wins. Hosts and guests sorted by name, problems
    by :func:`sort_problems`."""
    readings = [check_reading(r, transports) for r in readings]
    hosts: dict[str, Host] = {}
    vms: dict[str, VM] = {}
    problems: list[Problem] = []
    for reading in readings:
        problems += reading.problems
        mine: set[str] = set()
        for h in reading.hosts:
            if h.name in hosts:
                problems.append(Problem("duplicate-host", f"host {h.name} appears twice "
                                        f"(again in {reading.source}); the first one is kept",
                                        host=h.name))
                continue
            hosts[h.name] = h
            mine.add(h.name)
        for v in reading.vms:
            if v.host not in mine:
                continue                # on a host another source had first
            if v.name in vms:
                problems.append(Problem("duplicate-guest", f"guest {v.name} is listed by both "
                                        f"{vms[v.name].host} and {v.host} (in "
                                        f"{reading.source}); it is kept on {vms[v.name].host}",
                                        host=v.host, vm=v.name))
                continue
            vms[v.name] = v
    samples = {name: [[t, c] for t, c in series] for r in readings
               for name, series in r.samples.items()
               if name in vms and vms[name].host in {h.name for h in r.hosts}}
    # A platform's rules hold as long as they name only what the snapshot kept (a rule on a
    # guest left out would make vm-plan refuse the whole snapshot; the guest's problem says
    # why it is missing, and vm-plan will not plan blind on it anyway).
    rules = []
    for reading in readings:
        for rule in reading.rules:
            names = [*rule.get("vms", ()), *rule.get("hosts", ())]
            if all(n in vms or n in hosts for n in names):
                rules.append(rule)
    stopped: dict[str, dict] = {}
    for reading in readings:
        for entry in reading.stopped:
            if entry["name"] not in vms and entry["name"] not in stopped:
                stopped[entry["name"]] = dict(entry) if entry.get("host") in hosts else {
                    k: v for k, v in entry.items() if k != "host"}
    version = "1.2" if stopped else "1.1" if rules else None
    return Snapshot(hosts=sorted(hosts.values(), key=lambda h: h.name),
                    vms=sorted(vms.values(), key=lambda v: v.name),
                    problems=sort_problems(problems),
                    source=", ".join(r.source for r in readings),
                    samples=samples if any(r.samples for r in readings) else None,
                    rules=rules, stopped=[stopped[n] for n in sorted(stopped)],
                    **({"version": version} if version else {}))


__all__ = ["check_reading", "merge_readings", "sort_problems", "show", "PROBLEM_KINDS",
           "CPU_SLACK", "HOST_MIN_NET_MBPS", "HOST_MAX_NET_MBPS", "GUEST_MAX_NET_MBPS"]
