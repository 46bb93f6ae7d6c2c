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
           "cluster_placement", "assert_consistent"]
