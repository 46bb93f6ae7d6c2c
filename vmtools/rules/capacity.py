"""Host capacity as the planner and the checker both count it: one computation, one EPS.

A host's limit in each dimension is its capacity (times any ``capacity`` rule; ``max_vms``
for the guest count; no limit on a dimension the host does not publish), or its initial use
when that is already higher: a plan never makes an existing overload worse. A migrating
guest counts on both its source and its destination until it lands.
"""

from __future__ import annotations

import math

from vmtools.model import VM, Host, Snapshot
from vmtools.rules.constraints import Constraints

# Tolerance for float resources (CPU in physical CPUs, network in Mbit/s).
EPS = 1e-6
# The dimensions a host is limited in: memory (MiB), CPU (physical CPUs), network (Mbit/s)
# and the number of guests (only under a max_vms rule).
DIMS = ("mem", "cpu", "net", "count")


def demand(v: VM) -> dict[str, float]:
    """What guest ``v`` needs of a host, per dimension."""
    return {"mem": float(v.mem_mib), "cpu": v.cpu, "net": v.net_mbps or 0.0, "count": 1.0}


def initial_use(snap: Snapshot) -> dict[str, dict[str, float]]:
    """Per host and dimension, what its guests use in ``snap``."""
    use = {h.name: {d: 0.0 for d in DIMS} for h in snap.hosts}
    for v in snap.vms:
        u = use[v.host]
        u["mem"] += v.mem_mib
        u["cpu"] += v.cpu
        u["net"] += v.net_mbps or 0.0
        u["count"] += 1
    return use


def capacity(h: Host, cons: Constraints) -> dict[str, float]:
    """Host ``h``'s capacity per dimension under the rules (``inf``: no limit)."""
    return {"mem": h.mem_mib * cons.mem_factor(h.name), "cpu": h.cpu * cons.cpu_factor(h.name),
            "net": h.net_mbps if h.net_mbps else math.inf,
            "count": float(cons.max_vms[h.name][0]) if h.name in cons.max_vms else math.inf}


def host_limits(snap: Snapshot, cons: Constraints) -> tuple[dict, dict]:
    """(initial use, limit) per host and dimension; the limit never falls below the use."""
    use = initial_use(snap)
    limit = {}
    for h in snap.hosts:
        cap = capacity(h, cons)
        limit[h.name] = {d: max(cap[d], use[h.name][d]) for d in DIMS}
    return use, limit
