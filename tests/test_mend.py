"""auto's greedy repair (planner/mend.py): where the repair MILP cannot finish (20,000 hosts,
bench/grid_bench.py hot) auto still repairs the overloads it can within the budget, under
every rule, says which it left and why, and then relieves and consolidates as usual.

The generated cluster is small enough for a test; ``greedy_repair_pairs`` (an internal
tuning option, no setting) is lowered so it takes the path the 20,000-host bench takes at
the production threshold."""

from __future__ import annotations

import random

import pytest

from vmtools.errors import OperationFailed
from vmtools.model import VM, Host, Problem, Snapshot
from vmtools.planner.plan import Options, make_plan
from vmtools.rules.check import check_plan
from vmtools.rules.constraints import fence_domains, parse_rules

GIB = 1024
GREEDY = {"greedy_repair_pairs": 1000}
UNLIMITED = {"max_migrations": 0, "max_moved_gib": 0, "max_duration_min": 0}


def cluster(seed: int = 7):
    """200 hosts (16 CPUs / 64 GiB and 32 / 128), 100 of them about 90 % full of memory, 10
    of those 3-8 % over it, 2 others over their CPUs; rules on the overloaded hosts' guests;
    a host in maintenance; three frozen hosts (one empty, one half full, one with a guest
    the monitoring lost) and that unknown guest. Returns (snapshot, rules, facts)."""
    rng = random.Random(seed)
    hosts = [Host(name=f"h{i:03d}", cpu=16.0 if i % 2 else 32.0,
                  mem_mib=(64 if i % 2 else 128) * GIB) for i in range(200)]
    vms: list[VM] = []
    on: dict[str, list[VM]] = {}

    def add(h: Host, mem: int, cpu: float, vcpus: int = 4) -> VM:
        vm = VM(name=f"v{len(vms):04d}", host=h.name, cpu=cpu, mem_mib=mem, vcpus=vcpus)
        vms.append(vm)
        on.setdefault(h.name, []).append(vm)
        return vm
    for i, h in enumerate(hosts[:100]):
        fill = 0.6 if i >= 90 else rng.uniform(0.86, 0.9)     # the last ten half full
        while sum(v.mem_mib for v in on.get(h.name, [])) + 8 * GIB <= fill * h.mem_mib:
            add(h, rng.choice([2, 4, 6, 8]) * GIB, round(rng.uniform(0.1, 0.5), 2))
    mem_over = hosts[:10]
    for h in mem_over:                            # one more guest: 3-8 % over its memory
        use = sum(v.mem_mib for v in on[h.name])
        add(h, int(rng.uniform(1.03, 1.08) * h.mem_mib) - use, 0.2)
    cpu_over = hosts[10:12]
    for h in cpu_over:                            # guests wanting 1.2 x the host's CPUs
        for v in on[h.name]:
            v.vcpus = 16
            v.cpu = round(1.2 * h.cpu / len(on[h.name]), 3)
    # rules that bite where the repair moves guests
    rules = []
    for i, h in enumerate(mem_over[:6]):
        a, b = on[h.name][0], on[h.name][1]
        rules.append({"rule": "gather", "vms": [a.name, b.name]})
        far = [on[hosts[20 + 3 * i + k].name][0].name for k in (0, 1)]
        rules.append({"rule": "spread", "vms": [on[h.name][2].name] + far})
        rules.append({"rule": "ban", "vms": [on[h.name][3].name],
                      "hosts": [x.name for x in hosts[100:150]]})
        rules.append({"rule": "pin", "vms": [max(on[h.name], key=lambda v: v.mem_mib).name]})
    fenced = [on[h.name][4].name for h in mem_over[6:]]
    rules.append({"rule": "fence", "vms": fenced,
                  "hosts": sorted({vm.host for vm in vms if vm.name in fenced} |
                                  {x.name for x in hosts[40:60] + hosts[180:200]})})
    rules.append({"rule": "maintenance", "hosts": [hosts[50].name]})
    lost = on[hosts[60].name][0]                  # its figures lost: unknown, its host frozen
    problems = [Problem("stale-host", "no report for 600 s", host=hosts[199].name),
                Problem("stale-host", "no report for 600 s", host=hosts[95].name),
                Problem("no-data", "no memory figure", host=hosts[60].name, vm=lost.name)]
    snap = Snapshot(hosts=hosts, vms=vms, problems=problems)
    facts = {"mem_over": {h.name for h in mem_over}, "cpu_over": {h.name for h in cpu_over},
             "frozen": {hosts[199].name, hosts[95].name, hosts[60].name},
             "unknown": lost.name, "maintenance": hosts[50].name,
             "pinned": {r["vms"][0] for r in rules if r["rule"] == "pin"}}
    return snap, rules, facts


def use_after(snap: Snapshot, placement: dict[str, str]) -> dict[str, list[float]]:
    use = {h.name: [0.0, 0.0] for h in snap.hosts}
    for v in snap.vms:
        u = use[placement[v.name]]
        u[0] += v.cpu
        u[1] += v.mem_mib
    return use


def over(snap: Snapshot, placement: dict[str, str]) -> set[tuple[str, str]]:
    """(host, dimension) over its whole capacity."""
    use = use_after(snap, placement)
    out = set()
    for h in snap.hosts:
        if use[h.name][1] > h.mem_mib:
            out.add((h.name, "mem"))
        if use[h.name][0] > h.cpu + 1e-6:
            out.add((h.name, "cpu"))
    return out


def plan(snap, rules, **kw):
    cons = parse_rules(rules, snap)
    p = make_plan(snap, cons, Options(objective="auto", time_limit=20, explain=True, **kw))
    check_plan(p, cons)              # the whole plan, replayed: capacity at every moment, rules
    return p


def moved(snap: Snapshot, p) -> dict[str, tuple[str, str]]:
    return {v.name: (v.host, p.placement[v.name]) for v in snap.vms
            if p.placement[v.name] != v.host}


def test_the_greedy_repair_clears_every_overload_under_the_rules_with_few_moves():
    snap, rules, facts = cluster()
    assert {h for h, _ in over(snap, {v.name: v.host for v in snap.vms})} == \
        facts["mem_over"] | facts["cpu_over"]
    p = plan(snap, rules, **GREEDY, **UNLIMITED)
    assert "(repair: greedy)" in p.solver["method"] and p.solver["name"] == "none"
    assert over(snap, p.placement) == set()
    assert p.summary["repair"] == {"how": "greedy", "left": []}
    # what may not move stayed; nothing entered or left a frozen host; maintenance emptied
    mv = moved(snap, p)
    assert facts["unknown"] not in mv and not facts["pinned"] & set(mv)
    assert not {h for pair in mv.values() for h in pair} & facts["frozen"]
    assert facts["maintenance"] not in p.placement.values()
    # few moves: the repair takes about one guest per overloaded host, plus the evacuation
    repair = [s for s in p.summary["steps"] if s["kind"] == "repair"]
    evacuees = sum(1 for v in snap.vms if v.host == facts["maintenance"])
    assert len(repair) == 1
    assert repair[0]["migrations"] <= evacuees + 2 * 12
    # then auto relieves the hosts the repair left hot, as usual
    assert any(s["kind"] == "relieve" for s in p.summary["steps"])
    # a move that ends a CPU overload starts before anything else (priority 3), as a relief's
    urgent = {a.src for a in p.actions if a.priority == 3}
    assert urgent == facts["cpu_over"]
    assert all(a.reason.startswith("repair: ") for a in p.actions if a.priority == 3)


def test_a_budget_too_small_repairs_the_worst_first_and_says_what_is_left():
    snap, rules, facts = cluster()
    evacuated = sum(v.mem_mib for v in snap.vms if v.host == facts["maintenance"]) / GIB
    p = plan(snap, rules, **GREEDY, max_moved_gib=evacuated + 24, max_migrations=60,
             max_duration_min=0)
    left = p.summary["repair"]["left"]
    assert left and all(e["reason"] == "budget" for e in left)
    still = over(snap, p.placement)
    # honest: every overload still there is listed, and every one listed is still there
    assert {(e["host"], e["dim"]) for e in left} == still
    # memory first, the worst first: the repaired ones are the worst, the CPU ones wait
    before = use_after(snap, {v.name: v.host for v in snap.vms})
    cap = {h.name: h.mem_mib for h in snap.hosts}
    worst = sorted(facts["mem_over"], key=lambda h: -before[h][1] / cap[h])
    repaired = facts["mem_over"] - {h for h, d in still if d == "mem"}
    assert 0 < len(repaired) < len(worst) and repaired == set(worst[:len(repaired)])
    assert {(h, "cpu") for h in facts["cpu_over"]} <= still
    for e in left:
        assert p.explain[f"overload {e['host']}"].startswith("left over its ")
    # the rules are still repaired whatever the budget: the host in maintenance is empty
    assert facts["maintenance"] not in p.placement.values()
    mv = moved(snap, p)
    assert facts["unknown"] not in mv and not facts["pinned"] & set(mv)
    assert sum(v.mem_mib for v in snap.vms if v.name in mv and v.host != facts["maintenance"]) \
        <= 24 * GIB


def test_below_the_threshold_the_milp_repairs_and_the_plan_is_as_before():
    snap = Snapshot(hosts=[Host(name="a", cpu=8, mem_mib=16 * GIB),
                           Host(name="b", cpu=8, mem_mib=16 * GIB)],
                    vms=[VM(name="x", host="a", cpu=0.5, mem_mib=10 * GIB),
                         VM(name="y", host="a", cpu=0.5, mem_mib=8 * GIB)])
    p = plan(snap, [])
    assert p.solver["method"].startswith("auto: 1 repair") and "greedy" not in \
        p.solver["method"] and "repair" not in p.summary
    assert p.placement == {"x": "a", "y": "b"}           # the least memory moved


def test_when_nothing_can_take_an_overload_auto_says_so_instead_of_failing():
    """The MILP finds nothing (no host has room): auto used to exit 1 with one line and plan
    nothing else; the greedy repair leaves the overload, says why, and auto goes on."""
    snap = Snapshot(hosts=[Host(name="a", cpu=8, mem_mib=16 * GIB),
                           Host(name="b", cpu=8, mem_mib=16 * GIB)],
                    vms=[VM(name="x", host="a", cpu=0.5, mem_mib=9 * GIB),
                         VM(name="y", host="a", cpu=0.5, mem_mib=9 * GIB),
                         VM(name="z", host="b", cpu=0.5, mem_mib=15 * GIB)])
    p = plan(snap, [])
    assert p.actions == []
    assert "(repair: greedy after the MILP found nothing)" in p.solver["method"]
    (left,) = p.summary["repair"]["left"]
    assert left["host"] == "a" and left["dim"] == "mem" and left["reason"] == "no-room"
    assert p.explain["overload a"].startswith("left over its memory capacity (112%) (no-room)")


def test_a_rule_the_greedy_cannot_repair_still_fails_with_why():
    snap = Snapshot(hosts=[Host(name="a", cpu=8, mem_mib=16 * GIB),
                           Host(name="b", cpu=8, mem_mib=16 * GIB)],
                    vms=[VM(name="x", host="a", cpu=0.5, mem_mib=10 * GIB),
                         VM(name="z", host="b", cpu=0.5, mem_mib=10 * GIB)])
    rules = [{"rule": "maintenance", "hosts": ["a"]}]
    with pytest.raises(OperationFailed, match="evacuating a needs 10 GiB"):
        plan(snap, rules, **GREEDY)


def test_broken_rules_are_repaired_greedily_gather_spread_and_bans():
    hosts = [Host(name=f"h{i}", cpu=16, mem_mib=64 * GIB) for i in range(6)]
    vms = [VM(name="g1", host="h0", cpu=0.5, mem_mib=4 * GIB),
           VM(name="g2", host="h1", cpu=0.5, mem_mib=4 * GIB),      # gathered, apart
           VM(name="s1", host="h2", cpu=0.5, mem_mib=4 * GIB),
           VM(name="s2", host="h2", cpu=0.5, mem_mib=6 * GIB),      # spread, together
           VM(name="b1", host="h3", cpu=0.5, mem_mib=4 * GIB),      # banned where it is
           VM(name="f1", host="h4", cpu=0.5, mem_mib=40 * GIB)]
    rules = [{"rule": "gather", "vms": ["g1", "g2"]}, {"rule": "spread", "vms": ["s1", "s2"]},
             {"rule": "ban", "vms": ["b1"], "hosts": ["h3", "h5"]}]
    snap = Snapshot(hosts=hosts, vms=vms)
    p = plan(snap, rules, greedy_repair_pairs=10)
    assert "(repair: greedy)" in p.solver["method"]
    pl = p.placement
    assert pl["g1"] == pl["g2"] and pl["s1"] != pl["s2"] and pl["b1"] not in ("h3", "h5")
    why = {a.vm: a.reason for a in p.actions}
    assert why["s1"].startswith("repair: ")   # the larger stays: the least memory moved
    assert not why.get("s2", "consolidate").startswith("repair")
    repair = p.summary["steps"][0]
    assert repair["kind"] == "repair" and repair["migrations"] == 3   # one guest per rule


def test_vm_plan_says_in_its_table_which_overload_the_repair_left(tmp_path):
    import json

    from typer.testing import CliRunner

    from vmtools.cli.vm_plan import app
    snap = Snapshot(hosts=[Host(name="a", cpu=8, mem_mib=16 * GIB),
                           Host(name="b", cpu=8, mem_mib=16 * GIB)],
                    vms=[VM(name="x", host="a", cpu=0.5, mem_mib=9 * GIB),
                         VM(name="y", host="a", cpu=0.5, mem_mib=9 * GIB),
                         VM(name="z", host="b", cpu=0.5, mem_mib=15 * GIB)])
    f = tmp_path / "s.json"
    f.write_text(json.dumps(snap.to_dict()))
    r = CliRunner().invoke(app, [str(f), "-f", "table"])
    assert r.exit_code == 0, r.output
    assert "Overloads the repair left" in r.stdout and "no-room" in r.stdout
    assert "112%" in r.stdout


def test_objective_repair_repairs_greedily_too_every_overload_without_a_budget():
    snap, rules, facts = cluster()
    cons = parse_rules(rules, snap)
    p = make_plan(snap, cons, Options(objective="repair", time_limit=20, explain=True, **GREEDY))
    check_plan(p, cons)
    assert p.solver["method"] == "greedy" and p.solver["status"] == "heuristic"
    assert p.summary["repair"] == {"how": "greedy", "left": []}
    assert over(snap, p.placement) == set()
    mv = moved(snap, p)
    assert facts["unknown"] not in mv and not facts["pinned"] & set(mv)
    assert not {h for pair in mv.values() for h in pair} & facts["frozen"]
    assert facts["maintenance"] not in p.placement.values()
    evacuees = sum(1 for v in snap.vms if v.host == facts["maintenance"])
    assert len(mv) <= evacuees + 2 * 12           # about one guest per overload


def test_objective_repair_says_what_it_left_when_the_milp_finds_nothing():
    snap = Snapshot(hosts=[Host(name="a", cpu=8, mem_mib=16 * GIB),
                           Host(name="b", cpu=8, mem_mib=16 * GIB)],
                    vms=[VM(name="x", host="a", cpu=0.5, mem_mib=9 * GIB),
                         VM(name="y", host="a", cpu=0.5, mem_mib=9 * GIB),
                         VM(name="z", host="b", cpu=0.5, mem_mib=15 * GIB)])
    cons = parse_rules([], snap)
    p = make_plan(snap, cons, Options(objective="repair", time_limit=20, explain=True))
    assert p.actions == [] and p.solver["method"] == "greedy after the MILP found nothing"
    assert p.solver["name"] == "cbc"
    assert [e["reason"] for e in p.summary["repair"]["left"]] == ["no-room"]
    assert p.explain["overload a"].startswith("left over its memory capacity (112%)")


def test_the_greedy_repair_never_moves_a_guest_to_another_migration_domain():
    """Room in another domain is no room: the overload stays, said (no-room), and the plan
    moves nothing across (the replay checker holds it to that too)."""
    hosts = [Host(name="a1", cpu=8, mem_mib=16 * GIB, domain="paris"),
             Host(name="a2", cpu=8, mem_mib=16 * GIB, domain="paris"),
             Host(name="b1", cpu=32, mem_mib=64 * GIB, domain="lyon"),
             Host(name="b2", cpu=32, mem_mib=64 * GIB, domain="lyon")]
    vms = [VM(name="x", host="a1", cpu=0.5, mem_mib=9 * GIB),
           VM(name="y", host="a1", cpu=0.5, mem_mib=9 * GIB),
           VM(name="z", host="a2", cpu=0.5, mem_mib=15 * GIB),
           VM(name="w", host="b1", cpu=0.5, mem_mib=8 * GIB)]
    snap = Snapshot(hosts=hosts, vms=vms)
    for kw in (GREEDY, {}):                   # greedy first, and after the MILP found nothing
        cons = fence_domains(parse_rules([], snap), snap)     # as vm-plan's front door does
        p = make_plan(snap, cons, Options(objective="auto", time_limit=20, **kw))
        check_plan(p)
        assert p.placement["x"] in ("a1", "a2") and p.placement["y"] in ("a1", "a2")
        assert all((a.src < "b") == (a.dst < "b") for a in p.actions)   # none across
        assert [(e["host"], e["reason"]) for e in p.summary["repair"]["left"]] == \
            [("a1", "no-room")]


def test_out_of_time_the_overloads_are_left_as_time_limit_and_the_rules_still_repaired():
    import time

    from vmtools.planner import heuristics as H
    from vmtools.planner import mend as M
    from vmtools.planner.budget import Budget
    from vmtools.planner.deadline import Deadline
    from vmtools.planner.instance import build_instance
    from vmtools.planner.hostload import Load
    from vmtools.planner.policy import repair_greedily
    snap = Snapshot(hosts=[Host(name=f"h{i}", cpu=8, mem_mib=16 * GIB) for i in range(4)],
                    vms=[VM(name="x", host="h0", cpu=0.5, mem_mib=9 * GIB),
                         VM(name="y", host="h0", cpu=0.5, mem_mib=9 * GIB),
                         VM(name="b", host="h1", cpu=0.5, mem_mib=2 * GIB)])
    cons = parse_rules([{"rule": "ban", "vms": ["b"], "hosts": ["h1"]}], snap)
    inst = build_instance(snap, cons, cpu_limit=1.0)
    gone = Deadline.of(time.monotonic() - 1)
    load = Load(inst, inst.cur, inst.dem["cpu"])
    done = M.mend(inst, load, Budget(None, None, None), lambda u, s, a: 3, H.unit_of(inst),
                  gone)
    assert done.moves == {inst.vms.index("b"): 3}          # the ban: repaired all the same
    assert [(e["host"], e["reason"]) for e in done.left] == [("h0", "time-limit")]
    # with time, the same instance is repaired whole (objective repair's greedy)
    place, left = repair_greedily(inst, Options(), Deadline.of(time.monotonic() + 10))
    assert left == [] and place[inst.vms.index("b")] != 1
    assert sum(inst.dem["mem"][v] for v in range(inst.n_vms) if place[v] == 0) <= 16 * GIB
