"""vm-replay --rrd against RRD files written by a REAL gmetad (fed by the real gmetric), read
with Debian's rrdtool."""

from __future__ import annotations

import json
import shutil
import time

import pytest

from tests.conftest import run
from tests.ganglia_lab import GangliaLab, binaries_missing
from vmtools.errors import UsageError
from vmtools.replay.rrd import read_rrd

pytestmark = [pytest.mark.ganglia, pytest.mark.slow,
              pytest.mark.skipif(bool(binaries_missing()) or not shutil.which("rrdtool"),
                                 reason="needs gmond, gmetad, gmetric and rrdtool "
                                        "(apt-get install ganglia-monitor gmetad rrdtool)")]

GIB_KB = 1024 * 1024


def wait_rrd(lab: GangliaLab, host: str, metric: str, timeout: float = 20.0) -> None:
    path = lab.dir / "rrds" / lab.cluster / host / f"{metric}.rrd"
    lab.wait_until(path.exists, timeout, f"{path}")


@pytest.fixture(scope="module")
def history(tmp_path_factory):
    """Two Domain-0s for ~20 s: g1 busier half-way, then g1 migrates from xen-1 to xen-2
    (xen-1's stale g1 metrics stay in gmond, as they do until their DMAX)."""
    workdir = tmp_path_factory.mktemp("ganglia")
    with GangliaLab(cluster="xen-rrd", grid="rrd-grid", workdir=workdir) as lab:
        t0 = time.time()
        g1 = {"cpu": 50.0, "mem": GIB_KB, "vcpus": 1}
        g2 = {"cpu": 150.0, "mem": 2 * GIB_KB, "vcpus": 2}
        lab.publish_container("10.78.0.1", "xen-1", cpus=4, mem_kb=8 * GIB_KB, vms={"g1": g1})
        lab.publish_container("10.78.0.2", "xen-2", cpus=4, mem_kb=8 * GIB_KB, vms={"g2": g2})
        wait_rrd(lab, "xen-1", "container.vm.g1.cpu")
        wait_rrd(lab, "xen-2", "container.vm.g2.cpu")
        time.sleep(7)
        lab.publish("10.78.0.1", "xen-1", "container.vm.g1.cpu", 100.0, "float")
        time.sleep(7)
        lab.publish_container("10.78.0.2", "xen-2", cpus=4, mem_kb=8 * GIB_KB,
                              vms={"g1": dict(g1, cpu=100.0), "g2": g2})
        wait_rrd(lab, "xen-2", "container.vm.g1.cpu")
        time.sleep(7)
        t1 = time.time()
        yield lab, t0, t1


def test_rrd_gives_hosts_guests_demand_and_the_migration(history):
    lab, t0, t1 = history
    trace = read_rrd(str(lab.dir / "rrds"), t0, t1, 2)
    assert [(h.name, h.cpu, h.mem_mib) for h in trace.hosts] == [("xen-1", 4.0, 8192),
                                                                  ("xen-2", 4.0, 8192)]
    assert trace.placement == {"g1": "xen-1", "g2": "xen-2"}
    assert trace.step == 2
    g1 = [s.vms["g1"].cpu for s in trace.samples]
    assert g1[0] == pytest.approx(0.5) and max(g1) == pytest.approx(1.0)
    assert all(s.vms["g2"].cpu == pytest.approx(1.5) for s in trace.samples)
    assert {s.vms["g2"].mem_mib for s in trace.samples} == {2048}
    # g1 is on both hosts at the end (xen-1's copy is stale): it is where it arrived last
    assert trace.samples[-1].seen_on["g1"] == "xen-2"
    assert trace.samples[0].seen_on["g1"] == "xen-1"


def test_vm_replay_reads_the_rrds(history):
    lab, t0, t1 = history
    r = run("vm-replay", "--rrd", str(lab.dir / "rrds"), "--from", str(int(t0)), "--until",
            str(int(t1)), "--step", "2", "--every", "0.1", "--baseline", "none",
            "--plan", "--objective consolidate")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["source"].startswith("rrd://") and doc["hosts"] == 2 and doc["guests"] == 2
    none, plan = doc["runs"][1], doc["runs"][0]
    assert none["figures"]["migrations"] == 0 and none["series"]["active_hosts"][0] == 2
    assert plan["figures"]["migrations"] >= 1 and plan["figures"]["failed_ticks"] == 0


def test_rrd_bad_arguments(history, tmp_path):
    lab, t0, t1 = history
    with pytest.raises(UsageError, match="cluster nowhere: not in") as exc:
        read_rrd(str(lab.dir / "rrds"), t0, t1, 2, "nowhere")
    assert exc.value.on_command_line().startswith("--cluster nowhere: not in")
    r = run("vm-replay", "--rrd", str(lab.dir / "rrds"), "--step", "2")
    assert r.returncode == 2 and "--rrd needs --from and --until" in r.stderr
    r = run("vm-replay", "--rrd", str(tmp_path), "--from", "0", "--until", "10")
    assert r.returncode == 2 and "holds 0 clusters" in r.stderr
    assert "(none): choose one with --cluster\n" in r.stderr
