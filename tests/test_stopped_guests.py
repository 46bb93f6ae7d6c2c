"""A snapshot's ``stopped`` list (version 1.2): the guests a platform keeps but does not run
(a XAPI pool's Suspended and Halted VMs) are read, written, shown by vm-status, resumable by
vm-plan --resume, and never placed; an older snapshot without the key stays readable."""

from __future__ import annotations

import json

from tests.conftest import run
from vmtools.model import Snapshot, loads

BASE = {"format": "vmtools.snapshot", "version": "1.2", "created": "2026-12-07T05:00:00Z",
        "source": "xapi https://master",
        "hosts": [{"name": f"n{i}", "cluster": "pool", "state": "online", "cpu": 8,
                   "mem_mib": 8192, "migration": "xapi", "hypervisor": "xen-4.17",
                   "reported": "2026-12-07T05:00:00Z"} for i in (1, 2)],
        "vms": [{"name": "web1", "host": "n1", "state": "running", "vcpus": 2, "cpu": 0.5,
                 "mem_mib": 2048}],
        "problems": [],
        "stopped": [{"name": "db1", "state": "suspended", "host": "n2", "vcpus": 2,
                     "mem_mib": 4096},
                    {"name": "old1", "state": "halted", "vcpus": 1, "mem_mib": 1024}]}


def test_read_written_and_old_snapshots_still_read():
    snap = Snapshot.from_dict(loads(json.dumps(BASE)))
    assert [e["name"] for e in snap.stopped] == ["db1", "old1"]
    assert snap.to_dict()["stopped"] == BASE["stopped"]
    old = dict(BASE, version="1.0")
    del old["stopped"]
    assert Snapshot.from_dict(old).stopped == [] and "stopped" not in \
        Snapshot.from_dict(old).to_dict()


def test_bad_entries_are_input_errors_naming_the_place(tmp_path):
    for stopped, where in (([{"name": "x", "state": "asleep", "vcpus": 1, "mem_mib": 1}],
                            "stopped[0].state"),
                           ([{"name": "web1", "state": "halted", "vcpus": 1, "mem_mib": 1}],
                            "stopped[0].name"),
                           ([{"name": "a;rm", "state": "halted", "vcpus": 1, "mem_mib": 1}],
                            "stopped[0].name")):
        path = tmp_path / "snap.json"
        path.write_text(json.dumps(dict(BASE, stopped=stopped)))
        proc = run("vm-plan", str(path))
        assert proc.returncode == 65 and proc.stdout == ""
        assert where in proc.stderr and "Traceback" not in proc.stderr


def test_never_placed_shown_by_vm_status_and_resumable(tmp_path):
    path = tmp_path / "snap.json"
    path.write_text(json.dumps(BASE))
    plan = run("vm-plan", str(path), "--objective", "balance")
    assert plan.returncode == 0, plan.stderr
    assert set(json.loads(plan.stdout)["placement"]) == {"web1"}
    status = run("vm-status", "--suspended", "", "--format", "json", str(path))
    assert status.returncode == 0, status.stderr
    doc = json.loads(status.stdout)
    assert doc["suspended"] == [{"name": "db1", "host": "n2", "mem_mib": 4096, "vcpus": 2,
                                 "cpu": None, "image": None, "suspended": None,
                                 "seen": "platform"}]
    assert doc["halted"] == [{"name": "old1", "host": None, "mem_mib": 1024, "vcpus": 1}]
    assert doc["summary"]["suspended"] == 1 and doc["summary"]["halted"] == 1
    table = run("vm-status", "--suspended", "", str(path)).stdout
    assert "(kept by the platform)" in table and "Halted guests" in table and "old1" in table
    # suspended outside vmtools: not in the ledger, resumed from what the snapshot says
    resume = run("vm-plan", str(path), "--resume", "db1", "--suspended",
                 str(tmp_path / "none.json"))
    assert resume.returncode == 0, resume.stderr
    [action] = json.loads(resume.stdout)["actions"]
    assert (action["op"], action["vm"], action["dst"], action["mem_mib"]) == \
        ("resume", "db1", "n2", 4096)
    halted = run("vm-plan", str(path), "--resume", "old1", "--suspended",
                 str(tmp_path / "none.json"))
    assert halted.returncode == 65 and "nor suspended in the snapshot" in halted.stderr
