"""vm-snapshot against a REAL gmond and gmetad on loopback, fed by the real gmetric."""

from __future__ import annotations

import json
import time

import pytest

from tests.conftest import run
from tests.ganglia_lab import GangliaLab, binaries_missing

pytestmark = [pytest.mark.ganglia, pytest.mark.slow,
              pytest.mark.skipif(bool(binaries_missing()),
                                 reason="needs gmond, gmetad and gmetric "
                                        "(apt-get install ganglia-monitor gmetad)")]

GIB_KB = 1024 * 1024
HOSTS = {"xen-1": ("10.77.0.1", 8, {"web1": {"cpu": 85.0, "mem": GIB_KB, "vcpus": 2,
                                             "net": 250000}}),
         "xen-2": ("10.77.0.2", 4, {"db1": {"cpu": 150.0, "mem": 4 * GIB_KB, "vcpus": 2},
                                    "db2": {"cpu": 5.0, "mem": 512 * 1024, "vcpus": 1}}),
         "xen-3": ("10.77.0.3", 16, {})}


@pytest.fixture(scope="module")
def lab():
    with GangliaLab(cluster="xen-it", grid="it-grid") as lab:
        for name, (ip, cpus, vms) in HOSTS.items():
            lab.publish_container(ip, name, cpus=cpus, mem_kb=cpus * 2 * GIB_KB, vms=vms)
        lab.wait_for_metric("xen-3", "container.type")
        lab.wait_for_metric("xen-2", "container.vm.db2.vcpus")
        lab.wait_for_metric("xen-1", "container.vm.web1.net")
        yield lab


def check(doc):
    assert [h["name"] for h in doc["hosts"]] == ["xen-1", "xen-2", "xen-3"]
    assert {h["cluster"] for h in doc["hosts"]} == {"xen-it"}
    assert [(h["cpu"], h["mem_mib"]) for h in doc["hosts"]] == [(8, 16384), (4, 8192),
                                                                (16, 32768)]
    assert [(v["name"], v["host"], v["cpu"], v["mem_mib"], v["vcpus"]) for v in doc["vms"]] == [
        ("db1", "xen-2", 1.5, 4096, 2), ("db2", "xen-2", 0.05, 512, 1),
        ("web1", "xen-1", 0.85, 1024, 2)]
    assert doc["vms"][2]["net_mbps"] == 2.0
    assert doc["problems"] == []


def test_by_gmetad_xml_port(lab):
    proc = run("vm-snapshot", "--gmetad", lab.gmetad_address)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["source"] == f"gmetad://{lab.gmetad_address}"
    check(doc)


def test_vm_status_live_from_gmetad(lab):
    proc = run("vm-status", "--gmetad", lab.gmetad_address, "--runs", "")
    assert proc.returncode == 0, proc.stderr
    rows = {line.split()[0]: line.split() for line in proc.stdout.splitlines()
            if line.startswith("xen-")}
    assert rows["xen-2"][:5] == ["xen-2", "online", "39%", "56%", "2"]
    assert rows["xen-3"][:5] == ["xen-3", "online", "0%", "0%", "0"]
    assert max(map(len, proc.stdout.splitlines())) <= 80


def test_by_cluster_on_the_interactive_port(lab):
    proc = run("vm-snapshot", "--gmetad", lab.interactive_address, "--cluster", "xen-it")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["source"] == f"gmetad://{lab.interactive_address}/xen-it"
    check(doc)


def test_unknown_cluster_is_named(lab):
    proc = run("vm-snapshot", "--gmetad", lab.interactive_address, "--cluster", "nosuch")
    assert proc.returncode == 65 and proc.stdout == ""
    assert "no cluster named 'nosuch'" in proc.stderr and "'xen-it'" in proc.stderr


def test_by_gmond_port(lab):
    proc = run("vm-snapshot", "--gmond", lab.gmond_address)
    assert proc.returncode == 0, proc.stderr
    check(json.loads(proc.stdout))


def test_two_gmetads_hosts_seen_twice_are_problems(lab):
    proc = run("vm-snapshot", "--gmetad", lab.gmetad_address, "--gmetad",
               f"localhost:{lab.xml_port}")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert len(doc["hosts"]) == 3
    dup = [p for p in doc["problems"] if p["kind"] == "duplicate-host"]
    assert sorted(p["host"] for p in dup) == ["xen-1", "xen-2", "xen-3"]
    assert all(f"localhost:{lab.xml_port}" in p["message"] for p in dup)


def test_a_guest_moving_shows_up_listed_twice(lab):
    lab.publish("10.77.0.3", "xen-3", "container.vms", "web1", "string")
    lab.publish("10.77.0.3", "xen-3", "container.vm.web1.cpu", 80.0, "float")
    lab.publish("10.77.0.3", "xen-3", "container.vm.web1.mem", GIB_KB, "uint32")
    # gmetad may serve part of a publishing cycle: wait for all three, not the list alone (a
    # CI run once saw web1 listed on xen-3 without its figures, a guest without data there)
    lab.wait_for_metrics("xen-3", ["container.vm.web1.cpu", "container.vm.web1.mem"])
    lab.wait_for_metric("xen-3", "container.vms", "web1")
    try:
        doc = json.loads(run("vm-snapshot", "--gmetad", lab.gmetad_address).stdout)
        dup = [p for p in doc["problems"] if p["kind"] == "duplicate-guest"]
        assert len(dup) == 1 and dup[0]["vm"] == "web1" and "xen-1" in dup[0]["message"], \
            doc["problems"]
    finally:
        lab.publish("10.77.0.3", "xen-3", "container.vms", "", "string")
        lab.wait_for_metric("xen-3", "container.vms", "")


def test_killing_gmond_gives_a_stale_cluster():
    with GangliaLab(cluster="xen-stale", grid="it-grid") as lab:
        lab.publish_container("10.78.0.1", "xen-s", cpus=2, mem_kb=GIB_KB,
                              vms={"s1": {"cpu": 1.0, "mem": 1024, "vcpus": 1}})
        lab.wait_for_metric("xen-s", "container.vm.s1.vcpus")
        fresh = json.loads(run("vm-snapshot", "--gmetad", lab.gmetad_address,
                               "--stale-after", "2").stdout)
        assert fresh["problems"] == []
        lab.kill_gmond()
        time.sleep(4)
        proc = run("vm-snapshot", "--gmetad", lab.gmetad_address, "--stale-after", "2")
        assert proc.returncode == 0
        doc = json.loads(proc.stdout)
        stale = [p for p in doc["problems"] if p["kind"] == "stale-cluster"]
        assert len(stale) == 1 and '"xen-stale"' in stale[0]["message"]
        assert [h["name"] for h in doc["hosts"]] == ["xen-s"]   # last data still served
        assert "problem" in proc.stderr
