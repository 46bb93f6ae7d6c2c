"""Per-domain planning: vm-plan keeps every guest in its migration domain (unless
--cross-domain), says per domain what it did, and the replay checker refuses a move across
that the plan does not allow."""

from __future__ import annotations

import json

import pytest

from tests.conftest import run
from tests.test_grid_snapshot import _cluster_dump
from vmtools.errors import DataError
from vmtools.model import Action, Plan, Snapshot
from vmtools.rules.check import check_plan


@pytest.fixture(scope="module")
def two_clusters(tmp_path_factory) -> str:
    tmp = tmp_path_factory.mktemp("grid")
    a, b = _cluster_dump(tmp, "paris", "pa"), _cluster_dump(tmp, "lyon", "ly")
    proc = run("vm-snapshot", "--input", str(a), "--input", str(b))
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def _plan(snapshot: str, *args: str, objective: str = "consolidate") -> dict:
    proc = run("vm-plan", "--objective", objective, *args, input=snapshot)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_no_guest_leaves_its_domain_and_each_domain_is_reported(two_clusters):
    plan = _plan(two_clusters)
    domain = {h["name"]: h["domain"] for h in plan["origin"]["hosts"]}
    assert plan["actions"], "the lab consolidates: something moves"
    for a in plan["actions"]:
        assert domain[a["src"]] == domain[a["dst"]], a
    for vm in plan["origin"]["vms"]:
        assert domain[plan["placement"][vm["name"]]] == domain[vm["host"]]
    per = plan["summary"]["domains"]
    assert set(per) == {"paris", "lyon"} and "cross_domain" not in plan["summary"]
    for name, d in per.items():
        assert d["hosts"] == 6 and d["guests"] == 24 and d["moved_out"] == 0
        assert d["hosts_used_before"] == 6 and d["hosts_used_after"] == 2   # as one lab alone
        assert d["migrations"] == sum(1 for a in plan["actions"] if domain[a["src"]] == name)
        assert d["frozen_hosts"] == []
    assert plan["summary"]["hosts_after"] == 4


def test_cross_domain_moves_only_when_told_and_the_checker_holds_the_plan_to_it(two_clusters):
    plan = _plan(two_clusters, "--cross-domain")
    domain = {h["name"]: h["domain"] for h in plan["origin"]["hosts"]}
    crossing = [a for a in plan["actions"] if domain[a["src"]] != domain[a["dst"]]]
    assert crossing and plan["summary"]["cross_domain"] is True
    assert plan["summary"]["hosts_after"] < 4           # one pool of 12 packs tighter
    check_plan(Plan.from_dict(plan))                     # vm-apply's check passes
    del plan["summary"]["cross_domain"]
    with pytest.raises(DataError, match="migration domains"):
        check_plan(Plan.from_dict(plan))


def test_a_hand_written_cross_domain_move_is_refused_by_vm_apply(two_clusters, tmp_path):
    snap = Snapshot.from_dict(json.loads(two_clusters))
    vm = next(v for v in snap.vms if v.host == "pa-1")
    placement = {v.name: v.host for v in snap.vms} | {vm.name: "ly-1"}
    plan = Plan(origin=snap, placement=placement, actions=[Action(
        id=1, op="migrate", vm=vm.name, src="pa-1", dst="ly-1", mem_mib=vm.mem_mib)])
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(plan.to_dict()))
    proc = run("vm-apply", "--dry-run", str(path))
    assert proc.returncode == 65 and proc.stdout == ""
    assert "migration domains" in proc.stderr and "ly-1" in proc.stderr


def test_a_gather_over_two_domains_is_refused(two_clusters, tmp_path):
    snap = json.loads(two_clusters)
    pa = next(v["name"] for v in snap["vms"] if v["host"].startswith("pa-"))
    ly = next(v["name"] for v in snap["vms"] if v["host"].startswith("ly-"))
    rules = tmp_path / "rules.json"
    rules.write_text(json.dumps({"format": "vmtools.constraints", "version": "1.0",
                                 "rules": [{"rule": "gather", "vms": [pa, ly]}]}))
    proc = run("vm-plan", "--objective", "consolidate", "--constraints", str(rules),
               input=two_clusters)
    assert proc.returncode == 65 and "different migration domains" in proc.stderr
    assert "--cross-domain" in proc.stderr
    assert run("vm-plan", "--objective", "consolidate", "--constraints", str(rules),
               "--cross-domain", input=two_clusters).returncode == 0


def test_one_domain_plans_as_before():
    snap = run("vm-snapshot", "--example", "lab").stdout
    plan = _plan(snap)
    assert "domains" not in plan["summary"] and "cross_domain" not in plan["summary"]


def test_vm_status_groups_the_hosts_by_domain(two_clusters):
    proc = run("vm-status", "-", "--runs", "", input=two_clusters)
    assert proc.returncode == 0, proc.stderr
    lyon, paris = proc.stdout.index("domain lyon: 6 hosts"), proc.stdout.index("domain paris:")
    assert lyon < paris
    assert all(lyon < proc.stdout.index(f"ly-{i} ") < paris < proc.stdout.index(f"pa-{i} ")
               for i in range(1, 7))
    doc = json.loads(run("vm-status", "-", "--runs", "", "-f", "json",
                         input=two_clusters).stdout)
    assert doc["domains"]["paris"] == {"hosts": 6, "online": 6, "guests": 24, "hotspots": [],
                                       "frozen": []}
    assert [h["domain"] for h in doc["hosts"]] == ["lyon"] * 6 + ["paris"] * 6


def test_a_domain_whose_source_did_not_answer_is_not_vanished(two_clusters, tmp_path):
    """With vm-plan's state (cron), the hosts of a cluster whose gmetad did not answer are out
    of the run, not vanished: the other cluster is planned. Without the unavailable-source
    problem the same absence is half the hosts vanished: monitoring broken (75)."""
    state = tmp_path / "state"
    state.mkdir()
    assert run("vm-plan", "--objective", "consolidate", "--state", str(state),
               input=two_clusters).returncode == 0
    doc = json.loads(two_clusters)
    paris = {h["name"] for h in doc["hosts"] if h["domain"] == "paris"}
    doc["hosts"] = [h for h in doc["hosts"] if h["name"] in paris]
    doc["vms"] = [v for v in doc["vms"] if v["host"] in paris]
    gone = json.dumps(doc)
    broken = run("vm-plan", "--objective", "consolidate", "--state", str(state), input=gone)
    assert broken.returncode == 75 and "vanished-host" in broken.stderr
    doc["problems"] = [{"kind": "unavailable-source", "message": "gmetad://127.0.0.1:1: "
                        "connection refused; its hosts are not in this snapshot"}]
    proc = run("vm-plan", "--objective", "consolidate", "--state", str(state),
               input=json.dumps(doc))
    assert proc.returncode == 0, proc.stderr
    plan = json.loads(proc.stdout)
    assert not [p for p in plan["origin"]["problems"] if p["kind"].startswith("vanished")]
    assert plan["summary"]["hosts_after"] == 2
    saved = json.loads((state / "vmtools.state").read_text())
    assert saved["plan"]["domains"]["ly-1"] == "lyon"      # remembered for its return


def test_a_domain_that_cannot_relieve_its_hotspots_gets_advice(two_clusters):
    doc = json.loads(two_clusters)
    for v in doc["vms"]:
        if v["host"].startswith("pa-"):        # paris: 72 CPUs of demand on 64 CPUs
            v["vcpus"], v["cpu"] = 4, 3.0
    plan = _plan(json.dumps(doc), objective="balance")
    domain = {h["name"]: h["domain"] for h in plan["origin"]["hosts"]}
    assert all(domain[a["src"]] == domain[a["dst"]] for a in plan["actions"])
    advice = plan["summary"]["advice"]
    assert [a["domain"] for a in advice] == ["paris"]
    assert advice[0]["hot_hosts"] and advice[0]["over_cpu"] > 0
    assert advice[0]["room_in"][0]["domain"] == "lyon"
    assert advice[0]["room_in"][0]["cpu"] >= advice[0]["over_cpu"]
    assert "domain lyon has the room" in advice[0]["advice"]
    # allowed across, the plan moves there itself: no advice
    crossed = _plan(json.dumps(doc), "--cross-domain", objective="balance")
    assert "advice" not in crossed["summary"]
    assert any(domain[a["src"]] != domain[a["dst"]] for a in crossed["actions"])
