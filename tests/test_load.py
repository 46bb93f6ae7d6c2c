"""One home for load (vmtools.rules.load): vm-status and vm-plan agree about which hosts are
hotspots, capacity rules included; the estimate of a migration's time is the same everywhere."""

from __future__ import annotations

import json

import pytest

from tests.conftest import run
from vmtools.model import Action, Host, Snapshot, VM, loads
from vmtools.planner.schedule import estimate_seconds
from vmtools.render import plan_tables
from vmtools.rules.constraints import parse_rules
from vmtools.rules.load import (EPS, fraction, host_capacity, host_loads, hot_dims, hotspots,
                                migration_seconds)

RULES = {"format": "vmtools.constraints", "version": "1.0", "rules": [
    {"rule": "capacity", "hosts": ["node-6"], "mem": 0.6},      # 64 % of its memory: hot
    {"rule": "capacity", "hosts": ["node-5"], "cpu": 0.12}]}    # 11 % of its CPUs: hot


@pytest.fixture(scope="module")
def hot_snapshot(tmp_path_factory):
    path = tmp_path_factory.mktemp("load") / "snap.json"
    path.write_text(run("vm-snapshot", "--example", "hotspot").stdout)
    return path


@pytest.mark.parametrize("rules", [None, RULES], ids=["no rules", "capacity rules"])
def test_vm_status_and_vm_plan_agree_about_hotspots(tmp_path, hot_snapshot, rules):
    args = []
    if rules is not None:
        (tmp_path / "rules.json").write_text(json.dumps(rules))
        args = ["--constraints", str(tmp_path / "rules.json")]
    status = json.loads(run("vm-status", str(hot_snapshot), "--runs", "", "-f", "json",
                            *args).stdout)
    plan = json.loads(run("vm-plan", str(hot_snapshot), "--objective", "auto", *args).stdout)
    by_status = {h["name"]: h["hotspot"] for h in status["hosts"] if h["hotspot"]}
    by_plan = {h["host"]: h["dims"] for h in plan["summary"]["hotspots"]}
    assert by_status == by_plan
    # each host's use and hotspot flag: vm-plan's table of hosts (summary.load) and auto's
    # hotspot entries say what vm-status says (node-6: 107 % of its memory under the rule)
    use = {h["name"]: (h["cpu_use"], h["mem_use"], h["hotspot"]) for h in status["hosts"]}
    assert {e["host"]: (e["cpu_before"], e["mem_before"], e["hot_before"])
            for e in plan["summary"]["load"]} == use
    assert all((e["cpu"], e["mem"]) == use[e["host"]][:2] for e in plan["summary"]["hotspots"])
    table = plan_tables(plan)
    row = next(line for line in table.splitlines() if line.startswith("node-6 "))
    assert ("107%! ->" in row) == (rules is not None) and ("64% ->" in row) == (rules is None)
    assert ("node-5" in by_status and "node-6" in by_status) == (rules is not None)
    snap = Snapshot.from_dict(loads(hot_snapshot.read_text()))
    cons = parse_rules(rules["rules"] if rules else [], snap)
    assert hotspots(snap, cons) == by_status


def test_capacity_rules_set_what_a_host_gives():
    snap = Snapshot(hosts=[Host("h1", cpu=8, mem_mib=1000), Host("h2", cpu=4, mem_mib=3)],
                    vms=[VM("a", "h1", cpu=4.0, mem_mib=500), VM("b", "h2", cpu=0.0, mem_mib=2)])
    cons = parse_rules([{"rule": "capacity", "hosts": ["h1"], "cpu": 0.5, "mem": 0.5}], snap)
    assert host_capacity(snap.hosts[0], cons) == (4.0, 500)
    assert host_capacity(snap.hosts[1], cons, mem_limit=0.1) == (4.0, 1)    # never 0 MiB
    loads_ = host_loads(snap, cons)
    assert (loads_["h1"].cpu, loads_["h1"].mem) == (1.0, 1.0)
    assert hot_dims(1.0, 1.0) == ["cpu", "mem"] and hot_dims(0.9 + EPS / 2, 0.95) == []
    assert fraction(1.0, 0.0) == float("inf") and fraction(0.0, 0.0) == 0.0


def test_one_migration_time_for_the_plan_the_budget_and_the_replay():
    a = Action(id=1, vm="g", src="h1", dst="h2", mem_mib=4096)
    assert estimate_seconds([a], 1000.0, 1) == round(migration_seconds(4096, 1000.0), 1)
    assert migration_seconds(4096, 1000.0) == pytest.approx(1 + 4096 * 8.388608 / 1000)


def test_one_rule_for_what_may_start_in_vm_apply_and_in_the_replay():
    """vmtools.apply.order.may_start: --parallel actions of any kind, --per-host on every host
    an action occupies; a power action counts as a migration does (the replay used to let
    power actions run beyond both)."""
    from collections import Counter
    from vmtools.apply.order import may_start
    off = Action.power(2, "power-off", "h1")
    assert not may_start(off, 1, Counter({"h2": 1, "h3": 1}), parallel=1, per_host=1)
    assert not may_start(off, 1, Counter({"h1": 1}), parallel=2, per_host=1)
    assert may_start(off, 1, Counter({"h2": 1, "h3": 1}), parallel=2, per_host=1)
