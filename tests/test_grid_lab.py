"""Two clusters, two real gmetads (each over its own gmond, on loopback): one snapshot of
both, each host in its cluster's migration domain, a plan that keeps every guest in its
cluster, and a gmetad that stops answering leaves its cluster out, not the run."""

from __future__ import annotations

import json

import pytest

from tests.conftest import run
from tests.ganglia_lab import GangliaLab, binaries_missing

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(bool(binaries_missing()), reason="Ganglia not installed")]

GIB_KB = 1024 * 1024
# two small clusters, each with guests spread thin enough to consolidate onto one host
CLUSTERS = {
    "paris": {"pa-1": ("10.81.0.1", {"paweb1": 20.0, "paweb2": 10.0}),
              "pa-2": ("10.81.0.2", {"padb1": 30.0}),
              "pa-3": ("10.81.0.3", {})},
    "lyon": {"ly-1": ("10.82.0.1", {"lyweb1": 15.0}),
             "ly-2": ("10.82.0.2", {"lydb1": 25.0, "lydb2": 5.0})},
}


@pytest.fixture(scope="module")
def labs():
    with GangliaLab(cluster="paris", grid="grid-paris") as paris, \
            GangliaLab(cluster="lyon", grid="grid-lyon") as lyon:
        for lab, hosts in ((paris, CLUSTERS["paris"]), (lyon, CLUSTERS["lyon"])):
            for name, (ip, vms) in hosts.items():
                lab.publish_container(ip, name, cpus=8, mem_kb=16 * GIB_KB, vms={
                    vm: {"cpu": cpu, "mem": 2 * GIB_KB, "vcpus": 1} for vm, cpu in vms.items()})
            for name, (_, vms) in hosts.items():
                lab.wait_for_metric(name, "container.type")
                for vm in vms:
                    lab.wait_for_metric(name, f"container.vm.{vm}.vcpus")
        yield paris, lyon


def test_two_gmetads_one_snapshot_two_domains_planned_apart(labs):
    paris, lyon = labs
    snap = run("vm-snapshot", "--gmetad", paris.gmetad_address, "--gmetad",
               lyon.gmetad_address, "--deadline", "20")
    assert snap.returncode == 0, snap.stderr
    doc = json.loads(snap.stdout)
    assert doc["problems"] == []
    domain = {h["name"]: h["domain"] for h in doc["hosts"]}
    assert domain == {n: c for c, hosts in CLUSTERS.items() for n in hosts}
    plan = run("vm-plan", "--objective", "consolidate", input=snap.stdout)
    assert plan.returncode == 0, plan.stderr
    p = json.loads(plan.stdout)
    assert p["actions"]
    assert all(domain[a["src"]] == domain[a["dst"]] for a in p["actions"])
    assert {d: (s["hosts_used_before"], s["hosts_used_after"])
            for d, s in p["summary"]["domains"].items()} == {"paris": (2, 1), "lyon": (2, 1)}


def test_a_gmetad_that_stops_answering_leaves_its_cluster_out(labs):
    paris, lyon = labs
    address = lyon.gmetad_address
    lyon._stop(lyon.gmetad)                 # the lyon gmetad is down; paris's answers
    snap = run("vm-snapshot", "--gmetad", paris.gmetad_address, "--gmetad", address,
               "--deadline", "10", "--timeout", "2")
    assert snap.returncode == 0, snap.stderr
    doc = json.loads(snap.stdout)
    assert {h["domain"] for h in doc["hosts"]} == {"paris"}
    lost = [p for p in doc["problems"] if p["kind"] == "unavailable-source"]
    assert len(lost) == 1 and f"gmetad://{address}" in lost[0]["message"]
    plan = run("vm-plan", "--objective", "consolidate", input=snap.stdout)
    assert plan.returncode == 0, plan.stderr          # paris is still planned
    assert json.loads(plan.stdout)["summary"]["hosts_after"] == 1
