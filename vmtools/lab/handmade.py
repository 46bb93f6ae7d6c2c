"""Small simulated clusters made by hand, for vm-apply's tests and bench: a cluster state, its
xends on loopback, the snapshot vm-snapshot would make of it, plans written by hand."""

from __future__ import annotations

from pathlib import Path

from vmtools.lab.cluster import ClusterState, new_state
from vmtools.lab.xend import XendLab
from vmtools.model import VM, Action, Host, Plan, Snapshot


def make_cluster(directory: Path, hosts: dict[str, dict], mib_per_s: float = 4096.0,
                 min_seconds: float = 0.05) -> ClusterState:
    """A state file with ``hosts`` ({"n1": {"domains": {"web1": {"mem_mib": 512}}}})."""
    state = ClusterState(Path(directory) / "cluster.json")
    state.write(new_state(hosts, {"mib_per_s": mib_per_s, "min_seconds": min_seconds}))
    return state


def snapshot_of(state: ClusterState, migration: str | dict[str, str] = "xen",
                cluster: str = "lab") -> Snapshot:
    """The snapshot vm-snapshot would make of the simulated cluster now."""
    st = state.read()
    hosts, vms = [], []
    for name, spec in sorted(st["hosts"].items()):
        how = migration if isinstance(migration, str) else migration[name]
        hosts.append(Host(name=name, cluster=cluster, cpu=float(spec["cpus"]),
                          mem_mib=spec["mem_mib"] - spec.get("dom0_mib", 0), migration=how,
                          hypervisor="xen-" + str(spec.get("xen", "4.17"))))
        for vm, d in sorted(spec["domains"].items()):
            vms.append(VM(name=vm, host=name, vcpus=d.get("vcpus", 1), cpu=d.get("load", 0.1),
                          mem_mib=d["mem_mib"]))
    return Snapshot(hosts=hosts, vms=vms, source="lab")


def plan_of(snapshot: Snapshot, moves: list[tuple], **kw) -> Plan:
    """A plan from ``[(vm, dst), (vm, dst, [after ids]), ...]``; ids count from 1."""
    where = snapshot.guest_hosts()
    mem = {v.name: v.mem_mib for v in snapshot.vms}
    actions = []
    for i, move in enumerate(moves, 1):
        vm, dst = move[0], move[1]
        after = list(move[2]) if len(move) > 2 else []
        actions.append(Action(id=i, vm=vm, src=where[vm], dst=dst, mem_mib=mem[vm], after=after,
                              reason="test"))
        where[vm] = dst
    return Plan(origin=snapshot, placement=dict(where), actions=actions, **kw)


def start_xends(state: ClusterState) -> dict[str, XendLab]:
    return {h: XendLab(state, h).start() for h in sorted(state.read()["hosts"])}


def hostmap_text(labs: dict[str, XendLab], transport: str = "xen") -> str:
    lines = ["name,manage,migrate"]
    for h, lab in labs.items():
        port = lab.http_port if transport == "xen" else lab.xmlrpc_port
        lines.append(f"{h},127.0.0.1:{port},{h}")
    return "\n".join(lines) + "\n"


__all__ = ["make_cluster", "snapshot_of", "plan_of", "start_xends", "hostmap_text"]
