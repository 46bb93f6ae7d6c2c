"""Helpers for the vm-apply tests: the hand-made clusters of :mod:`vmtools.lab.handmade`, and
what a test asserts about a cluster after a run."""

from __future__ import annotations

from vmtools.lab.cluster import ClusterState, placement
from vmtools.lab.handmade import hostmap_text, make_cluster, plan_of, snapshot_of, start_xends


def cluster_placement(state: ClusterState) -> dict[str, str]:
    return placement(state.read())


def assert_consistent(state: ClusterState, report: dict, guests: list[str]) -> None:
    """Report and simulated cluster agree; no guest lost or duplicated."""
    st = state.read()
    for vm in guests:
        on = [h for h, spec in st["hosts"].items() if vm in spec["domains"]]
        incoming = [h for h, spec in st["hosts"].items() if vm + "--incoming" in spec["domains"]]
        assert not incoming, f"{vm} still in flight on {incoming}"
        up = [h for h in on if st["hosts"][h].get("up", True)]
        assert len(up) == 1, f"{vm} is on {on} (lost or duplicated)"
        if vm in report["placement"]:
            assert report["placement"][vm] == up[0], (vm, report["placement"][vm], up[0])
    for a in report["actions"]:
        if a["outcome"] == "done":
            assert a["where"] == a["dst"]


__all__ = ["make_cluster", "snapshot_of", "plan_of", "start_xends", "hostmap_text",
           "cluster_placement", "assert_consistent", "GUESTS", "four_hosts"]


GUESTS = ["a", "b", "c", "d"]


def four_hosts(tmp_path):
    """The lab of the vm-apply tests: 4 hosts (n1-n4), guests a-d, a simulated xend per host on
    loopback; 1 GiB migrates in 0.25 s."""
    state = make_cluster(tmp_path, {
        "n1": {"domains": {"a": {"mem_mib": 1024}, "b": {"mem_mib": 512}}},
        "n2": {"domains": {"c": {"mem_mib": 1024}}},
        "n3": {"domains": {"d": {"mem_mib": 512}}},
        "n4": {}}, mib_per_s=4096)
    labs = start_xends(state)
    hosts = tmp_path / "hosts.csv"
    hosts.write_text(hostmap_text(labs, "xen"))
    yield {"state": state, "labs": labs, "hosts": hosts, "dir": tmp_path,
           "state_dir": tmp_path / "vmstate", "locks": tmp_path / "locks"}
    for x in labs.values():
        x.stop()
