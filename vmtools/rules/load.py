"""Load, the one home: what a host uses, what it can give (under ``capacity`` rules), whether
it is a hotspot, the tolerances every comparison uses, and how long a migration takes.

vm-plan (the planner's instance and heuristics), vm-status, vm-replay and vm-lab all ask here,
so they agree about the same host: a host is a CPU (memory) hotspot when its guests use more
than ``cpu_threshold`` (``mem_threshold``) of its CPUs (memory) *as the rules give them* (a
``capacity`` rule of 0.5 halves what the host gives), beyond :data:`EPS`.

- :data:`EPS`: the tolerance of resources and of the fractions compared with thresholds;
  :data:`FRACTION_EPS`: the finer one of the simulation and of auto's budget comparisons.
- :data:`CPU_THRESHOLD`, :data:`MEM_THRESHOLD`: the default hotspot thresholds.
- :func:`host_capacity`: a host's CPU and memory under the rules (and a target fraction).
- :func:`fraction`: use over capacity (``inf`` when a host that gives nothing is used).
- :func:`hot_dims`: which of CPU and memory are over their thresholds.
- :func:`host_loads` and :func:`hotspots`: the same for every host of a snapshot.
- :func:`migration_seconds`: 1 s plus the guest's memory over the bandwidth.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from operator import attrgetter
from typing import NamedTuple

from vmtools.model import Host, Snapshot
from vmtools.rules.capacity import EPS
from vmtools.rules.constraints import Constraints

FRACTION_EPS = 1e-9
CPU_THRESHOLD = 0.9
MEM_THRESHOLD = 0.95
MIGRATION_OVERHEAD_S = 1.0     # a migration's fixed cost (xend's handshake, the last pages)
MIB_TO_MBIT = 8.388608         # 1 MiB in Mbit
_HOST, _CPU, _MEM = attrgetter("host"), attrgetter("cpu"), attrgetter("mem_mib")


def host_capacity(h: Host, cons: Constraints | None = None, cpu_limit: float = 1.0,
                  mem_limit: float = 1.0) -> tuple[float, int]:
    """(CPUs, MiB) host ``h`` gives under the rules, times the target fractions. Memory is
    whole MiB, never rounded down to nothing (a 1 MiB host under a target is not a host of
    0, whose every utilisation would be infinite)."""
    cpu_factor = cons.cpu_factor(h.name) if cons is not None else 1.0
    mem_factor = cons.mem_factor(h.name) if cons is not None else 1.0
    return (h.cpu * cpu_factor * cpu_limit,
            max(1, math.floor(h.mem_mib * mem_factor * mem_limit)))


def fraction(use: float, capacity: float) -> float:
    """``use`` over ``capacity``; a capacity of nothing is infinitely used, or not at all."""
    return use / capacity if capacity > 0 else (math.inf if use > 0 else 0.0)


def hot_dims(cpu: float, mem: float, cpu_threshold: float = CPU_THRESHOLD,
             mem_threshold: float = MEM_THRESHOLD) -> list[str]:
    """The dimensions (``cpu``, ``mem``) whose use fraction is over its threshold."""
    return [d for d, used, limit in (("cpu", cpu, cpu_threshold), ("mem", mem, mem_threshold))
            if used > limit + EPS]


class HostLoad(NamedTuple):     # (a frozen dataclass took 1.2 us each to make)
    cpu_use: float          # physical CPUs the guests use
    mem_use: float          # MiB
    cpu: float              # fractions of what the host gives under the rules
    mem: float
    guests: int


def host_loads(snap: Snapshot, cons: Constraints | None = None) -> dict[str, HostLoad]:
    """Every host's load in ``snap`` under the rules ``cons``."""
    vms = snap.vms          # each guest's figures read in C, not by a generator
    return loads_of(snap.hosts, zip(map(_HOST, vms), map(_CPU, vms), map(_MEM, vms)), cons)


def loads_of(hosts: Iterable[Host], guests: Iterable[tuple[str, float, float]],
             cons: Constraints | None = None) -> dict[str, HostLoad]:
    """Every host's load, ``guests`` given as (host, CPU use, MiB): one pass over them (a
    plan's placement needs no snapshot of its own)."""
    use: dict[str, list] = {h.name: [0.0, 0.0, 0] for h in hosts}
    for host, cpu, mem in guests:
        u = use.get(host)
        if u is not None:
            u[0] += cpu
            u[1] += mem
            u[2] += 1
    out = {}
    for h in hosts:
        cpu_cap, mem_cap = host_capacity(h, cons)
        cpu, mem, count = use[h.name]
        out[h.name] = HostLoad(cpu, mem, fraction(cpu, cpu_cap), fraction(mem, mem_cap), count)
    return out


def hotspots(snap: Snapshot, cons: Constraints | None = None,
             cpu_threshold: float = CPU_THRESHOLD, mem_threshold: float = MEM_THRESHOLD
             ) -> dict[str, list[str]]:
    """The online hosts of ``snap`` that are hotspots, with the dimensions that make them so."""
    loads = host_loads(snap, cons)
    out = {}
    for h in snap.hosts:
        if h.state != "online":
            continue
        dims = hot_dims(loads[h.name].cpu, loads[h.name].mem, cpu_threshold, mem_threshold)
        if dims:
            out[h.name] = dims
    return out


def migration_seconds(mem_mib: float, bandwidth_mbps: float) -> float:
    """How long migrating ``mem_mib`` takes at ``bandwidth_mbps`` (vm-plan's estimate,
    vm-replay's simulation and auto's budget alike)."""
    return MIGRATION_OVERHEAD_S + mem_mib * MIB_TO_MBIT / max(bandwidth_mbps, 1e-3)


__all__ = ["EPS", "FRACTION_EPS", "CPU_THRESHOLD", "MEM_THRESHOLD", "HostLoad",
           "host_capacity", "fraction", "hot_dims", "host_loads", "loads_of", "hotspots",
           "migration_seconds"]
