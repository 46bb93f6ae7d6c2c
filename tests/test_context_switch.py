"""The priority rule kind and vm-plan's context switch: under an overload beyond the cluster
the fewest lowest-priority guests are suspended, never a never_suspend one; they come back,
most important first, once room returns, with hysteresis."""

from __future__ import annotations

import json
import time

import pytest

from tests.conftest import run
from vmtools.errors import DataError, OperationFailed
from vmtools.model import VM, Action, Host, Plan, Snapshot, dumps, epoch_to_iso
from vmtools.planner import manual
from vmtools.planner.context import SwitchSettings, context_switch
from vmtools.rules.check import check_plan
from vmtools.rules.constraints import Constraints, parse_rules

GIB = 1024
NOW = time.time()


def cluster(loads: dict[str, float], standby: bool = False) -> Snapshot:
    """Two online hosts of 4 CPUs (and a standby one of 4): a, b on h1; c, d on h2."""
    hosts = [Host(name="h1", cpu=4, mem_mib=16 * GIB), Host(name="h2", cpu=4, mem_mib=16 * GIB)]
    if standby:
        hosts.append(Host(name="h3", cpu=4, mem_mib=16 * GIB, state="standby"))
    where = {"a": "h1", "b": "h1", "c": "h2", "d": "h2"}
    return Snapshot(hosts=hosts, vms=[VM(name=n, host=where[n], vcpus=4, cpu=loads[n],
                                         mem_mib=2 * GIB) for n in sorted(loads)])


RULES = [{"rule": "priority", "vms": ["a"], "priority": 9, "never_suspend": True},
         {"rule": "priority", "vms": ["b", "c"], "priority": 5},
         {"rule": "priority", "vms": ["d"], "priority": 1}]
SETTINGS = SwitchSettings(image_dir="/srv/img", resume_after=10)


def test_the_priority_rule_is_validated_and_never_suspend_is_enforced_by_the_checker():
    s = cluster({"a": 1, "b": 1, "c": 1, "d": 1})
    cons = parse_rules(RULES, s)
    assert cons.priority_of("a") == 9 and cons.priority_of("d") == 1 and cons.priority_of("x") == 0
    assert set(cons.never_suspend) == {"a"}
    assert cons.to_list()[0] == RULES[0]
    with pytest.raises(DataError, match=r"rules\[0\] \(priority\).*<= 9"):
        parse_rules([{"rule": "priority", "vms": ["a"], "priority": 10}], s)
    with pytest.raises(DataError, match="unknown guest 'zz'"):
        parse_rules([{"rule": "priority", "vms": ["zz"], "priority": 1}], s)
    with pytest.raises(OperationFailed, match=r"suspends a, which rules\[0\] \(priority\) "
                       "never suspends"):
        manual.suspend_plan(s, cons, "a", "/srv/img")
    check_plan(manual.suspend_plan(s, cons, "b", "/srv/img"), cons)


def test_no_switch_while_migrations_can_help():
    s = cluster({"a": 3.5, "b": 3.5, "c": 0.2, "d": 0.2})       # h1 hot, the cluster is not
    assert context_switch(s, parse_rules(RULES, s), {}, SETTINGS, NOW) is None


def test_an_overload_beyond_the_cluster_suspends_the_fewest_lowest_priority_guests():
    s = cluster({"a": 3.0, "b": 2.0, "c": 2.5, "d": 2.0})      # 9.5 CPUs wanted of 8
    cons = parse_rules(RULES, s)
    plan = context_switch(s, cons, {}, SETTINGS, NOW)
    # down to 0.8 x 8 = 6.4: d (priority 1) first, then the hungriest of priority 5 (c)
    assert [(a.op, a.vm, a.image) for a in plan.actions] == [
        ("suspend", "d", "/srv/img/d.save"), ("suspend", "c", "/srv/img/c.save")]
    assert plan.summary["suspended"] == ["c", "d"] and "c" not in plan.placement
    check_plan(Plan.from_dict(json.loads(dumps(plan.to_dict()))))
    # a standby host counts: 12 CPUs, no overload beyond the cluster
    s = cluster({"a": 3.0, "b": 2.0, "c": 2.5, "d": 2.0}, standby=True)
    assert context_switch(s, parse_rules(RULES, s), {}, SETTINGS, NOW) is None


def ledger(*entries) -> dict:
    return {e[0]: {"name": e[0], "host": e[1], "image": f"/srv/img/{e[0]}.save",
                   "mem_mib": 2 * GIB, "vcpus": 4, "cpu": e[2],
                   "suspended": epoch_to_iso(NOW - e[3] * 60)} for e in entries}


def test_resume_most_important_first_with_hysteresis():
    s = cluster({"a": 3.0, "b": 2.0})                          # c and d suspended
    universe = Snapshot(hosts=s.hosts, vms=s.vms + [
        VM(name="c", host="h2", cpu=1.0, mem_mib=2 * GIB),
        VM(name="d", host="h2", cpu=1.0, mem_mib=2 * GIB)])
    cons = parse_rules(RULES, universe)
    # demand 5.0; c (prio 5) fits under 6.4 with 1.0, then d would make 7.0: only c
    plan = context_switch(s, cons, ledger(("c", "h2", 1.0, 30), ("d", "h2", 1.0, 60)),
                          SETTINGS, NOW)
    assert [(a.op, a.vm, a.dst) for a in plan.actions] == [("resume", "c", "h2")]
    check_plan(Plan.from_dict(json.loads(dumps(plan.to_dict()))))
    # suspended too recently: stays suspended (hysteresis in time)
    assert context_switch(s, cons, ledger(("c", "h2", 1.0, 5)), SETTINGS, NOW) is None
    # the demand would go back above --resume-below: nobody overtakes the most important
    s2 = cluster({"a": 3.0, "b": 3.0})
    assert context_switch(s2, cons, ledger(("c", "h2", 1.0, 30), ("d", "h2", 0.1, 30)),
                          SETTINGS, NOW) is None


def test_resume_wakes_a_standby_host_when_the_online_ones_have_no_room():
    s = cluster({"a": 3.0, "b": 0.1, "c": 3.0}, standby=True)    # d suspended; h1, h2 busy
    cons = parse_rules([], s)
    plan = context_switch(s, cons, ledger(("d", "h2", 1.5, 30)),
                          SwitchSettings(image_dir="/srv/img", resume_after=10), NOW)
    assert [(a.op, a.host or a.dst, a.after) for a in plan.actions] == [
        ("power-on", "h3", []), ("resume", "h3", [1])]


def test_a_managed_save_resumes_only_on_the_host_that_made_it():
    # libvirt keeps a suspended guest's image on the host that saved it (virsh managedsave):
    # a plan resuming it elsewhere would only be refused by vm-apply's image check
    from dataclasses import replace as _replace
    from vmtools.planner.front import Documents, context_switch_plan, manual_plan
    from vmtools.planner.settings import settings_from
    s = cluster({"a": 3.0, "b": 0.1, "c": 3.0}, standby=True)    # d suspended on h2
    s = _replace(s, hosts=[_replace(h, migration="libvirt-ssh") for h in s.hosts])
    entries = ledger(("d", "h2", 1.5, 30))
    docs = Documents(snapshot=s, suspended=entries)
    # h2 lacks room (4 CPUs, 3.0 used, 80 % target): d waits rather than go to h3
    assert context_switch_plan(docs, settings_from({"context_switch": True,
                                                    "resume_after": 10}), NOW) is None
    # with room on h2 it goes back there
    roomy = _replace(s, vms=[v for v in s.vms if v.name != "c"])
    plan = context_switch_plan(Documents(snapshot=roomy, suspended=entries),
                               settings_from({"context_switch": True, "resume_after": 10}), NOW)
    assert [(a.op, a.dst) for a in plan.actions] == [("resume", "h2")]
    # by hand: without a host it is h2; another host is refused, saying why
    cons = parse_rules([], roomy)
    plan = manual_plan(("resume", "d", None), Documents(snapshot=roomy, suspended=entries),
                       cons, settings_from({"image_dir": "/srv/img"}))
    assert plan.actions[0].dst == "h2"
    with pytest.raises(DataError, match="resumes on h2 or nowhere, not on h1"):
        manual_plan(("resume", "d", "h1"), Documents(snapshot=roomy, suspended=entries), cons,
                    settings_from({"image_dir": "/srv/img"}))
    # xl over SSH with a shared image directory: any host with room
    shared = cluster({"a": 3.0, "b": 0.1, "c": 3.0}, standby=True)
    plan = context_switch_plan(Documents(snapshot=shared, suspended=entries),
                               settings_from({"context_switch": True, "resume_after": 10}), NOW)
    assert [(a.op, a.host or a.dst) for a in plan.actions] == [("power-on", "h3"),
                                                               ("resume", "h3")]


@pytest.mark.slow          # the installed commands, several runs
def test_the_command_line(tmp_path):
    s = cluster({"a": 3.0, "b": 2.0, "c": 2.5, "d": 2.0})
    snap = tmp_path / "snap.json"
    snap.write_text(dumps(s.to_dict()))
    rules = tmp_path / "rules.json"
    rules.write_text(json.dumps({"format": "vmtools.constraints", "version": "1.0",
                                 "rules": RULES}))
    empty = tmp_path / "suspended.json"
    base = ["--constraints", str(rules), "--suspended", str(empty), "--image-dir", "/srv/img"]
    proc = run("vm-plan", str(snap), "--context-switch", *base, "-q")
    assert proc.returncode == 0, proc.stderr
    plan = json.loads(proc.stdout)
    assert [a["vm"] for a in plan["actions"]] == ["d", "c"]
    assert plan["summary"]["context_switch"] == "suspend"
    # without --context-switch auto does what it always did: no suspend
    proc = run("vm-plan", str(snap), *base, "-q")
    assert proc.returncode == 0 and all(a["op"] == "migrate"
                                        for a in json.loads(proc.stdout)["actions"])
    # a priority naming a guest neither running nor suspended: refused
    rules.write_text(json.dumps({"format": "vmtools.constraints", "version": "1.0",
                                 "rules": RULES + [{"rule": "priority", "vms": ["web99"],
                                                    "priority": 9, "never_suspend": True}]}))
    proc = run("vm-plan", str(snap), "--context-switch", *base)
    assert proc.returncode == 65 and proc.stdout == ""
    assert "names web99, neither running nor suspended" in proc.stderr
    proc = run("vm-plan", str(snap), "--context-switch", "--objective", "balance")
    assert proc.returncode == 2 and "--context-switch works with --objective auto" in proc.stderr


def test_vm_replay_scores_the_context_switch_in_suspended_guest_hours_per_priority(tmp_path):
    from vmtools.cli.vm_replay import vm_plan_setting
    from vmtools.power_model import parse_power_model
    from vmtools.replay.engine import SimOptions, replay
    from vmtools.replay.sources import read_csv_trace
    hosts = tmp_path / "h.csv"
    hosts.write_text("name,cpu,mem_mib\na,2,8192\nb,2,8192\n")
    rows = ["time,guest,cpu,mem_mib,host"]
    # 3 CPUs of 4 until 600 s; 4.4 of 4 from 600 s (beyond the cluster); 0.9 from 1800 s
    for t in range(0, 3600, 600):
        for g, h, hot in (("g1", "a", 2.0), ("g2", "a", 1.2), ("g3", "b", 1.2)):
            load = 1.0 if t < 600 else hot if t < 1800 else 0.3
            rows.append(f"{t},{g},{load},1000,{h if t == 0 else ''}")
    trace_file = tmp_path / "t.csv"
    trace_file.write_text("\n".join(rows) + "\n")
    rules = tmp_path / "rules.json"
    rules.write_text(json.dumps({"format": "vmtools.constraints", "version": "1.0", "rules": [
        {"rule": "priority", "vms": ["g1"], "priority": 9, "never_suspend": True},
        {"rule": "priority", "vms": ["g2"], "priority": 5},
        {"rule": "priority", "vms": ["g3"], "priority": 1}]}))
    trace = read_csv_trace(str(trace_file), str(hosts))
    opts = SimOptions(every_minutes=10, bandwidth=8388.608, cpu_threshold=0.9, lookahead=True,
                      power_model=parse_power_model({"hosts": [{"match": "*", "idle_w": 100,
                                                                "peak_w": 200}]}))
    switched = vm_plan_setting(f"--context-switch --constraints {rules} --resume-after 0 "
                               "--cpu-target 1.0 --resume-below 0.5",
                               0, True, False)
    r = replay(trace, switched, opts)
    f = r.figures
    assert f["failed_ticks"] == 0, r.failures if hasattr(r, "failures") else f
    assert f["suspends"] == 2 and f["resumes"] == 2
    hours = f["suspended_guest_hours"]
    assert set(hours) == {"1", "5"}            # never g1 (priority 9, never_suspend)
    assert hours["1"] > hours["5"] > 0         # the less important stays suspended longer
    plain = vm_plan_setting(f"--constraints {rules}", 0, True, False)
    base = replay(trace, plain, opts)
    assert "suspended_guest_hours" not in base.figures
    # suspending trades overload for unmet demand of the suspended: both are counted
    assert f["overload_hours"] < base.figures["overload_hours"]
    assert f["unmet_cpu_share"] > 0


def test_vm_status_lists_the_suspended_guests(tmp_path):
    from vmtools.render import status_table
    from vmtools.status import build_status
    s = cluster({"a": 1, "b": 1})
    led = ledger(("c", "h2", 1.0, 30))
    doc = build_status(s, None, None, suspended=led)
    assert doc["summary"]["suspended"] == 1
    assert doc["suspended"][0]["name"] == "c" and doc["suspended"][0]["host"] == "h2"
    text = status_table(doc)
    assert "Suspended guests (vm-apply's ledger and the platform's)" in text and "/srv/img/c.save" in text
    assert "Suspended guests" not in status_table(build_status(s, None, None))
