"""vm-plan's manual operations (--migrate, --suspend, --resume, --checkpoint, --evacuate) and
provisioning (--add): checked one-action plans, groups placed all or nothing under the rules,
refusals that say why and print nothing."""

from __future__ import annotations

import json

import pytest

from tests.conftest import run
from vmtools.errors import DataError, OperationFailed
from vmtools.model import VM, Host, Plan, Problem, Snapshot, dumps
from vmtools.planner import manual
from vmtools.planner.provision import NewGuest, add_plan, parse_guests, rules_for
from vmtools.rules.check import check_plan
from vmtools.rules.constraints import Constraints, parse_rules

GIB = 1024


def snap(standby: bool = False) -> Snapshot:
    hosts = [Host(name="h1", cpu=4, mem_mib=8 * GIB), Host(name="h2", cpu=4, mem_mib=8 * GIB),
             Host(name="h3", cpu=4, mem_mib=8 * GIB)]
    if standby:
        hosts.append(Host(name="h4", cpu=8, mem_mib=16 * GIB, state="standby"))
    return Snapshot(hosts=hosts, vms=[
        VM(name="a", host="h1", cpu=1.0, mem_mib=4 * GIB),
        VM(name="b", host="h1", cpu=1.0, mem_mib=2 * GIB),
        VM(name="c", host="h2", cpu=1.0, mem_mib=6 * GIB)])


def rules(s: Snapshot, *items: dict) -> Constraints:
    return parse_rules(list(items), s)


def test_migrate_is_a_checked_one_action_plan():
    s = snap()
    plan = manual.migrate_plan(s, rules(s), "a", "h3")
    assert [(x.op, x.vm, x.src, x.dst) for x in plan.actions] == [("migrate", "a", "h1", "h3")]
    assert plan.placement["a"] == "h3" and plan.objective == "manual"
    check_plan(Plan.from_dict(json.loads(dumps(plan.to_dict()))))
    with pytest.raises(OperationFailed, match="cannot migrate a to h2: host h2: memory use "
                       "would reach 10240 MiB of 8192 MiB$"):
        manual.migrate_plan(s, rules(s), "a", "h2")
    with pytest.raises(OperationFailed, match=r"rules\[0\] \(ban\) forbids a on h3"):
        manual.migrate_plan(s, rules(s, {"rule": "ban", "vms": ["a"], "hosts": ["h3"]}),
                            "a", "h3")
    with pytest.raises(DataError, match="no guest zz"):
        manual.migrate_plan(s, rules(s), "zz", "h3")


def test_a_frozen_host_takes_nothing_and_a_problem_guest_is_not_touched():
    s = snap()
    s.problems = [Problem(kind="no-data", message="no metrics for 300 s", host="h3")]
    with pytest.raises(OperationFailed, match="h3 is frozen"):
        manual.migrate_plan(s, rules(s), "a", "h3")
    s.problems = [Problem(kind="no-data", message="metrics late", host="h1", vm="b")]
    with pytest.raises(OperationFailed, match="problem with b"):
        manual.suspend_plan(s, rules(s), "b", "/srv/img")


def test_suspend_and_checkpoint_name_their_image_in_the_image_directory():
    s = snap()
    plan = manual.suspend_plan(s, rules(s), "c", "/srv/img/")
    (a,) = plan.actions
    assert (a.op, a.vm, a.src, a.image) == ("suspend", "c", "h2", "/srv/img/c.save")
    assert "c" not in plan.placement
    plan = manual.suspend_plan(s, rules(s), "c", "/srv/img", checkpoint=True)
    (a,) = plan.actions
    assert a.op == "checkpoint" and a.image.startswith("/srv/img/c-") and a.image.endswith(".chk")
    assert plan.placement["c"] == "h2"
    with pytest.raises(OperationFailed, match="pinned"):
        manual.suspend_plan(s, rules(s, {"rule": "pin", "vms": ["c"]}), "c", "/srv/img")


def test_resume_goes_back_where_it_ran_when_there_is_room_else_where_the_rules_allow():
    s = snap()
    entry = {"name": "d", "host": "h2", "image": "/srv/img/d.save", "mem_mib": 2 * GIB,
             "vcpus": 1, "cpu": 0.5}
    plan = manual.resume_plan(s, rules(s), entry, None, "/srv/img")
    assert plan.actions[0].dst == "h2" and plan.placement["d"] == "h2"
    entry = dict(entry, mem_mib=4 * GIB)             # h2 has 2 GiB free, h3 is empty
    assert manual.resume_plan(s, rules(s), entry, None, "/srv/img").actions[0].dst == "h3"
    with pytest.raises(OperationFailed, match="h1: host h1: memory use would reach"):
        manual.resume_plan(s, rules(s), entry, "h1", "/srv/img")
    entry = dict(entry, mem_mib=9 * GIB)
    with pytest.raises(OperationFailed, match="cannot resume d: h2: .*; h3: "):
        manual.resume_plan(s, rules(s), entry, None, "/srv/img")
    with pytest.raises(DataError, match="not a file of the image directory /other"):
        manual.resume_plan(s, rules(s), dict(entry, mem_mib=GIB), None, "/other")
    with pytest.raises(DataError, match="a already runs on h1"):
        manual.resume_plan(s, rules(s), dict(entry, name="a"), None, "/srv/img")


def guests(*specs) -> list[NewGuest]:
    return [NewGuest(name=n, vcpus=1, mem_mib=m * GIB, cpu=c, config=f"/etc/xen/{n}.cfg")
            for n, m, c in specs]


def test_a_group_is_placed_all_or_nothing_under_spread():
    s = snap()
    g = guests(("n1", 2, 0.5), ("n2", 2, 0.5), ("n3", 2, 0.5))
    cons = rules_for(g, [{"rule": "spread", "vms": ["n1", "n2", "n3"]}], [], s)
    plan = add_plan(s, cons, g, "consolidate", 0.8, 1.0, 10)
    where = {a.vm: a.dst for a in plan.actions}
    assert sorted(where.values()) == ["h1", "h2", "h3"]
    check_plan(Plan.from_dict(json.loads(dumps(plan.to_dict()))))
    # a fourth spread guest has no fourth host: refused, saying which rule
    g4 = g + guests(("n4", 1, 0.1))
    with pytest.raises(DataError, match="spreads 4 guests over 3 online hosts"):
        rules_for(g4, [{"rule": "spread", "vms": ["n1", "n2", "n3", "n4"]}],
                  [], s)
    # three spread guests of 3 GiB: only h3 has room for one
    g = guests(("n1", 3, 0.5), ("n2", 3, 0.5), ("n3", 3, 0.5))
    cons = rules_for(g, [{"rule": "spread", "vms": ["n1", "n2", "n3"]}], [], s)
    with pytest.raises(OperationFailed, match=r"rules\[0\] \(spread\) needs 3 hosts apart for "
                       r"n1, n2, n3; only 1 can take any of them \(h3\)"):
        add_plan(s, cons, g, "consolidate", 0.8, 1.0, 10)


def test_consolidate_packs_and_balance_spreads():
    s = snap()
    g = guests(("n1", 1, 0.2))
    # h1 has the least CPU left within the target (1.2 of 3.2), h3 the most
    assert add_plan(s, Constraints([]), g, "consolidate", 0.8, 1.0, 10).actions[0].dst == "h1"
    assert add_plan(s, Constraints([]), g, "balance", 0.8, 1.0, 10).actions[0].dst == "h3"


def test_a_standby_host_is_woken_only_when_needed():
    s = snap(standby=True)
    small = guests(("n1", 1, 0.2))
    plan = add_plan(s, Constraints([]), small, "consolidate", 0.8, 1.0, 10)
    assert [a.op for a in plan.actions] == ["create"]
    big = guests(("n1", 12, 1.0))
    plan = add_plan(s, Constraints([]), big, "consolidate", 0.8, 1.0, 10)
    assert [(a.op, a.host or a.dst, a.after) for a in plan.actions] == \
        [("power-on", "h4", []), ("create", "h4", [1])]
    assert plan.summary["hosts_woken"] == ["h4"]
    with pytest.raises(OperationFailed, match="n1 .* fits on no host"):
        add_plan(s, Constraints([]), big, "consolidate", 0.8, 1.0, 10, wakeable=set())


def test_refusals_say_why():
    s = snap()
    with pytest.raises(OperationFailed, match="they need 20.0 GiB of memory; the hosts have "
                       "12.0 GiB free"):
        add_plan(s, Constraints([]), guests(("n1", 10, 0.1), ("n2", 10, 0.1)), "consolidate",
                 0.8, 1.0, 10)
    g = guests(("n1", 5, 0.1), ("n2", 5, 0.1))
    cons = rules_for(g, [{"rule": "gather", "vms": ["n1", "n2"]}], [], s)
    with pytest.raises(OperationFailed, match="not all together under the rules"):
        add_plan(s, cons, g, "consolidate", 0.8, 1.0, 10)


def test_the_guests_document_is_checked():
    s = snap()
    doc = {"format": "vmtools.guests", "version": "1.0",
           "guests": [{"name": "web9", "vcpus": 2, "mem_mib": 4096, "cpu": 0.5,
                       "config": "/etc/xen/web9.cfg"}],
           "rules": [{"rule": "spread", "vms": ["web9", "a"]}]}
    g, r = parse_guests(doc, s)
    assert g[0].name == "web9" and r == doc["rules"]
    for change, where, words in (
            ({"name": "a"}, "guests[0].name", "a already runs on h1"),
            ({"name": "Domain-0"}, "guests[0].name", "reserved"),
            ({"config": "/etc/xen/$(reboot).cfg"}, "guests[0].config", "unsafe path"),
            ({"config": "/etc/xen/../shadow"}, "guests[0].config", "unsafe path"),
            ({"mem_mib": 0}, "guests[0].mem_mib", ">= 1")):
        bad = json.loads(json.dumps(doc))
        bad["guests"][0].update(change)
        with pytest.raises(DataError) as err:
            parse_guests(bad, s)
        assert err.value.where == where and words in err.value.message
    with pytest.raises(DataError, match="unknown guest 'zz'"):
        rules_for(g, [{"rule": "spread", "vms": ["web9", "zz"]}], [], s)
    with pytest.raises(DataError, match="cannot be pinned"):
        rules_for(g, [{"rule": "pin", "vms": ["web9"]}], [], s)


@pytest.mark.slow          # the installed commands, several runs
def test_the_command_line(tmp_path):
    s = snap()
    path = tmp_path / "snap.json"
    path.write_text(dumps(s.to_dict()))
    proc = run("vm-plan", str(path), "--migrate", "a:h3", "-q")
    assert proc.returncode == 0, proc.stderr
    assert [(a["vm"], a["dst"]) for a in json.loads(proc.stdout)["actions"]] == [("a", "h3")]
    proc = run("vm-plan", str(path), "--migrate", "a:h2")
    assert proc.returncode == 1 and proc.stdout == "" and "memory use would reach" in proc.stderr
    proc = run("vm-plan", str(path), "--suspend", "a", "--migrate", "b:h3")
    assert proc.returncode == 2 and "one manual operation per plan" in proc.stderr
    proc = run("vm-plan", str(path), "--image-dir", "/srv/../etc", "--suspend", "a")
    assert proc.returncode == 2 and "--image-dir" in proc.stderr
    ledger = tmp_path / "suspended.json"
    ledger.write_text(json.dumps({"format": "vmtools.suspended", "version": "1.0", "guests": [
        {"name": "d", "host": "h3", "image": "/var/lib/xen/save/d.save", "mem_mib": 1024,
         "vcpus": 1, "cpu": 0.1}]}))
    proc = run("vm-plan", str(path), "--resume", "d", "--suspended", str(ledger), "-q")
    assert proc.returncode == 0, proc.stderr
    (a,) = json.loads(proc.stdout)["actions"]
    assert (a["op"], a["vm"], a["dst"], a["image"]) == ("resume", "d", "h3",
                                                        "/var/lib/xen/save/d.save")
    proc = run("vm-plan", str(path), "--evacuate", "h2", "-q")
    assert proc.returncode == 0, proc.stderr
    plan = json.loads(proc.stdout)
    assert [(a["vm"], a["src"]) for a in plan["actions"]] == [("c", "h2")]
    assert {"rule": "maintenance", "hosts": ["h2"]} in plan["constraints"]
    proc = run("vm-plan", str(path), "--evacuate", "h3")
    assert proc.returncode == 1 and "runs no guest" in proc.stderr
    # vm-apply runs a manual plan like any other (here: checked offline)
    planned = run("vm-plan", str(path), "--suspend", "a", "-q").stdout
    hosts = tmp_path / "hosts.csv"
    hosts.write_text("h1\nh2\nh3\n")
    proc = run("vm-apply", "--dry-run", "--offline", "--driver", "xl-ssh", "--hosts",
               str(hosts), input=planned)
    assert proc.returncode == 0, proc.stderr
    assert "would suspend a on h1 (/var/lib/xen/save/a.save)" in proc.stderr
    # ... except through a transport that cannot do it (xend's HTTP server has no checkpoint)
    planned = run("vm-plan", str(path), "--checkpoint", "a", "-q").stdout
    proc = run("vm-apply", "--dry-run", "--offline", "--driver", "xen", input=planned)
    assert proc.returncode == 65
    assert "the xen transport of h1 cannot checkpoint guests (xend-xmlrpc, xm-ssh, xl-ssh, " \
        "libvirt-ssh, xapi can)" in proc.stderr


@pytest.mark.slow          # the installed commands, several runs
def test_constraints_may_name_the_guests_to_add_or_resume(tmp_path):
    s = snap()
    path = tmp_path / "snap.json"
    path.write_text(dumps(s.to_dict()))
    rules = tmp_path / "rules.json"
    rules.write_text(json.dumps({"format": "vmtools.constraints", "version": "1.0", "rules": [
        {"rule": "fence", "vms": ["n1"], "hosts": ["h2"]},
        {"rule": "fence", "vms": ["d"], "hosts": ["h2"]}]}))
    group = tmp_path / "group.json"
    group.write_text(json.dumps({"format": "vmtools.guests", "version": "1.0", "guests": [
        {"name": "n1", "vcpus": 1, "mem_mib": 1024, "cpu": 0.1, "config": "/etc/xen/n1.cfg"}]}))
    proc = run("vm-plan", str(path), "--add", str(group), "--constraints", str(rules))
    assert proc.returncode == 0, proc.stderr
    assert [a["dst"] for a in json.loads(proc.stdout)["actions"]] == ["h2"]
    assert "guest n1" not in proc.stderr          # its rule holds: no warning about it
    # nor is it an unknown name under --strict-rules; one that is no guest at all still is
    proc = run("vm-plan", str(path), "--add", str(group), "--constraints", str(rules),
               "--strict-rules", "-q")
    assert proc.returncode == 65 and "unknown guest 'd'" in proc.stderr    # d: not suspended
    rules.write_text(json.dumps({"format": "vmtools.constraints", "version": "1.0", "rules": [
        {"rule": "fence", "vms": ["n1"], "hosts": ["h2"]}]}))
    proc = run("vm-plan", str(path), "--add", str(group), "--constraints", str(rules),
               "--strict-rules", "-q")
    assert proc.returncode == 0, proc.stderr
    rules.write_text(json.dumps({"format": "vmtools.constraints", "version": "1.0", "rules": [
        {"rule": "fence", "vms": ["n1", "d"], "hosts": ["h2"]}]}))
    ledger = tmp_path / "suspended.json"
    ledger.write_text(json.dumps({"format": "vmtools.suspended", "version": "1.0", "guests": [
        {"name": "d", "host": "h3", "image": "/var/lib/xen/save/d.save", "mem_mib": 1024,
         "vcpus": 1, "cpu": 0.1}]}))
    proc = run("vm-plan", str(path), "--resume", "d", "--suspended", str(ledger),
               "--constraints", str(rules), "-q")
    assert proc.returncode == 0, proc.stderr
    assert [a["dst"] for a in json.loads(proc.stdout)["actions"]] == ["h2"]   # not h3


@pytest.mark.slow          # the installed commands, several runs
def test_images_need_a_host_that_can_look_at_the_image_directory(tmp_path):
    s = snap()
    path = tmp_path / "snap.json"
    path.write_text(dumps(s.to_dict()))
    planned = run("vm-plan", str(path), "--suspend", "a", "-q").stdout
    # xend suspends through its own save, but cannot look at files: with only xend hosts
    # nobody could check the image, so the plan is refused before anything runs
    proc = run("vm-apply", "--dry-run", "--offline", "--driver", "xend-xmlrpc", input=planned)
    assert proc.returncode == 65
    assert "no host of the cluster can look at the image directory" in proc.stderr
    s.hosts[2].migration = "xl-ssh"                  # one host reached over SSH is enough
    for h in s.hosts[:2]:
        h.migration = "xend-xmlrpc"
    path.write_text(dumps(s.to_dict()))
    planned = run("vm-plan", str(path), "--suspend", "a", "-q").stdout
    proc = run("vm-apply", "--dry-run", "--offline", input=planned)
    assert proc.returncode == 0, proc.stderr
    assert "would suspend a on h1 (/var/lib/xen/save/a.save) #1 (4.0 GiB) via xend-xmlrpc" \
        in proc.stderr

