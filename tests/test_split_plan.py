"""Planning in parts (issue 25): each migration domain planned on its own, in worker
processes with --jobs, and a large domain in partitions that cut no rule; the merged plan is
checked whole, a part that fails or runs out of time is left as it is and said so."""

from __future__ import annotations

import json
import random
import time

import pytest

from tests.conftest import run
from vmtools.errors import OperationFailed
from vmtools.model import VM, Host, Plan, Snapshot
from vmtools.planner import parts as P
from vmtools.planner.front import Documents, plan_run
from vmtools.planner.plan import make_plan
from vmtools.planner.settings import settings_from
from vmtools.planner.split import lanes
from vmtools.rules.check import check_plan
from vmtools.rules.constraints import Constraints, fence_domains, parse_rules


def grid(domains: int = 3, hosts: int = 8, guests: int = 40, seed: int = 1) -> Snapshot:
    """``domains`` domains of ``hosts`` hosts (16 CPUs / 64 GiB), ``guests`` small guests
    each, spread over every host of their domain."""
    rng = random.Random(seed)
    hs, vms = [], []
    for d in range(domains):
        name = f"site{d}" if domains > 1 else ""
        mine = [Host(name=f"s{d}h{i:02d}", cluster=name or "one", cpu=16.0, mem_mib=65536,
                     domain=name) for i in range(hosts)]
        hs += mine
        for j in range(guests):
            vcpus = rng.choice([1, 2, 4])
            vms.append(VM(name=f"s{d}v{j:03d}", host=mine[j % hosts].name, vcpus=vcpus,
                          cpu=round(vcpus * rng.uniform(0.05, 0.5), 3),
                          mem_mib=rng.choice([1024, 2048, 4096])))
    return Snapshot(hosts=hs, vms=vms, source="test")


def plan_of(snap: Snapshot, rules: list | None = None, **settings) -> Plan:
    docs = Documents(snapshot=snap, constraints=None if rules is None else {
        "format": "vmtools.constraints", "version": "1.0", "rules": rules})
    values = {"objective": "consolidate", "time_limit": 6, **settings}
    return plan_run(docs, settings_from(values)).plan


@pytest.mark.slow
def test_each_domain_is_planned_apart_as_well_as_one_model():
    snap = grid()
    split = plan_of(snap, jobs=1)
    cons = fence_domains(Constraints([]), snap)
    one = make_plan(snap, cons, settings_options())
    assert split.solver["parts"] == 3 and "3 migration domains" in split.solver["method"]
    assert split.summary["hosts_after"] == one.summary["hosts_after"]
    assert split.summary["hosts_after"] == split.summary["hosts_lower_bound"]
    domain = {h.name: h.domain for h in snap.hosts}
    for name, d in split.summary["domains"].items():
        assert d["status"] == "planned" and d["migrations"] > 0
        assert d["hosts_used_after"] < d["hosts_used_before"]
    assert all(domain[a.src] == domain[a.dst] for a in split.actions)
    check_plan(Plan.from_dict(split.to_dict()))      # as vm-apply reads it


def settings_options():
    from vmtools.planner.front import options_of
    return options_of(settings_from({"objective": "consolidate", "time_limit": 6}))


def test_jobs_2_uses_processes_and_gives_the_same_plan_as_jobs_1():
    snap = grid(domains=4)
    one, two = plan_of(snap, jobs=1), plan_of(snap, jobs=2)
    assert one.solver["workers"] == 0 and two.solver["workers"] == 2
    assert one.placement == two.placement
    assert [a.to_dict() for a in one.actions] == [a.to_dict() for a in two.actions]
    def timeless(summary):
        out = {k: v for k, v in summary.items() if k != "parts"}
        out["domains"] = {d: {k: v for k, v in e.items() if k != "seconds"}
                          for d, e in summary["domains"].items()}
        return out

    assert timeless(one.summary) == timeless(two.summary)


@pytest.mark.slow
def test_a_domain_that_cannot_be_planned_stays_as_it_is_and_the_others_are_planned():
    snap = grid()
    # site1's guests want more memory than its hosts have: no placement holds them
    for v in snap.vms:
        if v.host.startswith("s1"):
            v.mem_mib = 20000
    plan = plan_of(snap, jobs=2)
    per = plan.summary["domains"]
    assert per["site1"]["status"] == "failed" and per["site1"]["migrations"] == 0
    assert "site1" not in per["site1"]["error"] or per["site1"]["error"]
    assert all(plan.placement[v.name] == v.host for v in snap.vms if v.host.startswith("s1"))
    for name in ("site0", "site2"):
        assert per[name]["status"] == "planned"
        assert per[name]["hosts_used_after"] < per[name]["hosts_used_before"]
    assert plan.solver["status"] == "heuristic" and "1 left as they are" in \
        plan.solver["method"]
    check_plan(Plan.from_dict(plan.to_dict()))


@pytest.mark.slow
def test_without_split_a_domain_that_cannot_be_planned_fails_the_run():
    snap = grid(domains=1)
    for v in snap.vms:
        v.mem_mib = 20000
    with pytest.raises(OperationFailed):
        plan_of(snap)


@pytest.mark.slow
def test_a_part_not_back_in_time_is_left_as_it_is(monkeypatch):
    from vmtools.planner import split
    snap = grid()
    real = split.plan_parts

    def slow_make(sub, cons, opts):
        if sub.hosts[0].domain == "site2":
            time.sleep(60)
        return make_plan(sub, cons, opts)

    monkeypatch.setattr("vmtools.planner.front.plan_parts",
                        lambda s, c, o, jobs, make: real(s, c, o, jobs, slow_make))
    t0 = time.monotonic()
    plan = plan_of(snap, jobs=3, time_limit=4)
    assert time.monotonic() - t0 < 4 + split.GRACE_SECONDS + 3     # the limit, a grace, slack
    per = plan.summary["domains"]
    assert per["site2"]["status"] == "timeout" and per["site2"]["migrations"] == 0
    assert per["site0"]["status"] == per["site1"]["status"] == "planned"
    check_plan(Plan.from_dict(plan.to_dict()))


def test_partitions_cut_no_rule():
    snap = grid(domains=1, hosts=40, guests=200)
    hosts = [h.name for h in snap.hosts]
    on: dict[str, list[str]] = {}
    for v in snap.vms:
        on.setdefault(v.host, []).append(v.name)
    # guests on the first and last hosts: dealt in order, those would go to different groups
    first, last = on[hosts[0]][0], on[hosts[-1]][0]
    middle = on[hosts[20]][0]
    rules = [{"rule": "spread", "vms": [first, last]},
             {"rule": "gather", "vms": [middle, on[hosts[-2]][0]]},
             {"rule": "fence", "vms": [on[hosts[5]][0]], "hosts": [hosts[30], hosts[31]]}]
    cons = parse_rules(rules, snap)
    groups = P.partition(snap, cons, hosts, on, 4)
    group_of = {h: i for i, g in enumerate(groups) for h in g}
    assert sorted(h for g in groups for h in g) == sorted(hosts) and len(groups) == 4
    assert group_of[hosts[0]] == group_of[hosts[-1]]
    assert group_of[hosts[20]] == group_of[hosts[-2]]
    assert group_of[hosts[5]] == group_of[hosts[30]] == group_of[hosts[31]]
    # without the rules the same hosts are dealt apart
    apart = P.partition(snap, Constraints([]), hosts, on, 4)
    where = {h: i for i, g in enumerate(apart) for h in g}
    assert where[hosts[0]] != where[hosts[-1]] or where[hosts[20]] != where[hosts[-2]]


@pytest.mark.slow
def test_a_large_domain_is_consolidated_in_partitions_checked_whole(monkeypatch):
    monkeypatch.setattr(P, "PARTITION_GUESTS", 200)
    monkeypatch.setattr(P, "PARTITION_FROM", 300)
    snap = grid(domains=1, hosts=40, guests=400, seed=3)
    names = [v.name for v in snap.vms]
    rules = [{"rule": "spread", "vms": names[i:i + 3]} for i in range(0, 60, 3)] + \
        [{"rule": "gather", "vms": [names[100], names[301]]}]
    plan = plan_of(snap, rules, jobs=2)
    parts = plan.summary["parts"]
    assert len(parts) == 2 and all(p["status"] == "planned" for p in parts)
    assert sum(p["guests"] for p in parts) == 400
    assert plan.summary["hosts_lower_bound"] <= plan.summary["hosts_after"]
    assert plan.placement[names[100]] == plan.placement[names[301]]
    for i in range(0, 60, 3):
        assert len({plan.placement[v] for v in names[i:i + 3]}) == 3
    check_plan(Plan.from_dict(plan.to_dict()))
    # the same cluster without partitions: at most one host fewer (each partition rounds its
    # host count up)
    monkeypatch.setattr(P, "PARTITION_FROM", 10**9)
    whole = plan_of(snap, rules, jobs=2)
    assert "parts" not in whole.summary
    assert plan.summary["hosts_after"] <= whole.summary["hosts_after"] + 1


def test_lanes_deal_the_largest_parts_first_to_the_emptiest_lane():
    parts = [P.Part(str(i), str(i), [], g) for i, g in enumerate([10, 50, 30, 20])]
    assert lanes(parts, 2) == [[1, 0], [2, 3]]
    assert lanes(parts, 1) == [[1, 2, 3, 0]]
    assert lanes(parts, 8) == [[1], [2], [3], [0]]


@pytest.mark.slow
def test_vm_plan_jobs_is_a_setting_with_its_flag_and_variable(tmp_path):
    snap = grid(domains=2)
    path = tmp_path / "snap.json"
    path.write_text(json.dumps(snap.to_dict()))
    proc = run("vm-plan", "--objective", "consolidate", "--jobs", "2", str(path))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["solver"]["jobs"] == 2
    bad = run("vm-plan", "--jobs", "-1", str(path))
    assert bad.returncode == 2 and "--jobs" in bad.stderr
    env = run("vm-plan", "--objective", "consolidate", str(path),
              env={"VMTOOLS_PLAN_JOBS": "1"})
    assert env.returncode == 0 and json.loads(env.stdout)["solver"]["jobs"] == 1


def test_the_whole_cluster_fallback_keeps_the_deadline():
    """Once the deadline has passed, the fallback to the whole cluster (a group that cannot
    be consolidated alone, groups whose rules do not add up) keeps the placement as it is
    instead of searching 150,000 guests past it; keep_open stops at its deadline."""
    from vmtools.planner import heuristics as H
    from vmtools.planner.deadline import Deadline
    from vmtools.planner.instance import build_instance
    from vmtools.planner.search import _whole_cluster
    snap = grid(domains=1, hosts=20, guests=100)
    inst = build_instance(snap, Constraints([]))
    t0 = time.monotonic()
    out = _whole_cluster(inst, settings_options(), Deadline(time.monotonic() - 1))
    assert out.placement == inst.cur and out.status == "heuristic"
    assert "out of time" in out.how and time.monotonic() - t0 < 1
    half = set(range(inst.n_hosts // 2))          # the others' guests must be placed
    assert H.keep_open(inst, half, time.monotonic() - 1) is None
    assert H.keep_open(inst, half) is not None
    live = _whole_cluster(inst, settings_options(), Deadline.after(5))
    assert H.hosts_used(live.placement) < H.hosts_used(inst.cur)
