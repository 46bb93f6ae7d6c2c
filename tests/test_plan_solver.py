"""make_plan on tiny clusters with known optima; every plan passes the replay checker."""

from __future__ import annotations

import pytest

from vmtools.errors import DataError, OperationFailed
from vmtools.model import VM, Host, Problem, Snapshot
from vmtools.rules.check import check_plan
from vmtools.planner import heuristics as H
from vmtools.planner import packing
from vmtools.rules.constraints import Constraints, parse_constraints, parse_rules
from vmtools.planner.instance import build_instance
from vmtools.planner.plan import Options, make_plan, with_placement
from vmtools.planner.schedule import order_moves

GIB = 1024


def snap(hosts: dict, vms: dict) -> Snapshot:
    return Snapshot(hosts=[Host(name=n, cpu=c, mem_mib=m * GIB) for n, (c, m) in hosts.items()],
                    vms=[VM(name=n, host=h, cpu=c, mem_mib=m * GIB, vcpus=max(1, round(c)))
                         for n, (h, c, m) in vms.items()])


def plan(s: Snapshot, rules: list | None = None, **kw):
    cons = parse_rules(rules or [], s)
    p = make_plan(s, cons, Options(time_limit=20, **kw))
    check_plan(p)                 # every plan the planner prints passes the checker
    return p


@pytest.fixture
def four():
    # Four 8 GiB hosts, each a quarter to half full: two hosts suffice (lower bound 2).
    return snap({f"h{i}": (8, 8) for i in range(1, 5)},
                {"a": ("h1", 0.5, 4), "b": ("h2", 0.5, 4), "c": ("h3", 0.5, 2),
                 "d": ("h4", 0.5, 2), "e": ("h1", 0.5, 2), "f": ("h2", 0.5, 2)})


def test_consolidate_reaches_the_optimum_moving_the_least(four):
    p = plan(four)
    assert p.summary["hosts_after"] == 2 == p.summary["hosts_lower_bound"]
    # Optimal: keep h1 (a, e = 6) and h2 (b, f = 6), move c and d (2 + 2 GiB).
    assert p.summary["migrated_mib"] == 4 * GIB
    assert {a.vm for a in p.actions} == {"c", "d"}
    assert p.solver["status"] == "optimal" and p.solver["gap"] == 0.0


def test_second_run_on_the_result_plans_nothing(four):
    p = plan(four)
    again = plan(with_placement(four, p.placement))
    assert again.actions == []
    assert again.summary["migrations"] == 0


def test_swap_needs_a_pivot():
    # a must go to h2 and b to h1 (fence), neither fits while the other is there.
    s = snap({"h1": (8, 4), "h2": (8, 4), "h3": (8, 4)}, {"a": ("h1", 0.1, 3), "b": ("h2", 0.1, 3)})
    cons = parse_rules([{"rule": "fence", "vms": ["a"], "hosts": ["h2"]},
                        {"rule": "fence", "vms": ["b"], "hosts": ["h1", "h3"]}], s)
    actions, pivots = order_moves(s, cons, {"a": "h2", "b": "h1"})
    assert pivots == 1 and len(actions) == 3


def test_a_pivot_never_lands_on_a_host_in_maintenance():
    # The emptiest host is in maintenance: the pivot must take the other one, and the plan
    # (consolidation with the maintenance rule) passes the checker.
    s = snap({"h1": (8, 4), "h2": (8, 4), "h3": (8, 4), "m": (8, 64)},
             {"a": ("h1", 0.1, 3), "b": ("h2", 0.1, 3)})
    cons = parse_rules([{"rule": "fence", "vms": ["a"], "hosts": ["h2"]},
                        {"rule": "fence", "vms": ["b"], "hosts": ["h1", "h3", "m"]},
                        {"rule": "maintenance", "hosts": ["m"]}], s)
    actions, pivots = order_moves(s, cons, {"a": "h2", "b": "h1"})
    assert pivots == 1
    assert [(x.vm, x.dst) for x in actions][0] == ("b", "h3")
    assert all(x.dst != "m" for x in actions)


def test_consolidating_never_maps_a_packing_onto_a_host_in_maintenance():
    # First-fit packs a (leaving m) and b onto one host; the relabelling that keeps the most
    # memory in place would have chosen m itself, which is identical but in maintenance.
    s = snap({"h1": (8, 8), "h2": (8, 8), "m": (8, 8)},
             {"a": ("m", 0.5, 4), "b": ("h2", 0.5, 2)})
    p = plan(s, [{"rule": "maintenance", "hosts": ["m"]}])
    assert p.placement == {"a": "h2", "b": "h2"}
    assert [(x.vm, x.dst) for x in p.actions] == [("a", "h2")]


def test_a_swap_no_pivot_can_break_is_an_error():
    s = snap({"h1": (8, 4), "h2": (8, 4), "h3": (8, 4)}, {"a": ("h1", 0.1, 3), "b": ("h2", 0.1, 3)})
    with pytest.raises(OperationFailed) as err:
        plan(s, [{"rule": "fence", "vms": ["a"], "hosts": ["h2"]},
                 {"rule": "fence", "vms": ["b"], "hosts": ["h1"]}], objective="repair")
    assert "cannot be ordered" in str(err.value) and err.value.exit_code == 1


def test_cpu_target_keeps_headroom():
    s = snap({"h1": (4, 16), "h2": (4, 16)}, {"a": ("h1", 2.0, 1), "b": ("h2", 2.0, 1)})
    assert plan(s, cpu_target=0.8).summary["hosts_after"] == 2      # 4 CPUs > 80 % of 4
    assert plan(s, cpu_target=1.0).summary["hosts_after"] == 1


def test_cpu_demand_vcpus_counts_allocated_cpus():
    s = Snapshot(hosts=[Host(name="h1", cpu=4, mem_mib=16 * GIB), Host(name="h2", cpu=4, mem_mib=16 * GIB)],
                 vms=[VM(name="a", host="h1", vcpus=4, cpu=0.1, mem_mib=GIB),
                      VM(name="b", host="h2", vcpus=4, cpu=0.1, mem_mib=GIB)])
    assert plan(s).summary["hosts_after"] == 1
    assert plan(s, cpu_demand="vcpus", cpu_target=1.0).summary["hosts_after"] == 2


def test_each_rule_kind_holds_in_the_plan(four):
    p = plan(four, [{"rule": "ban", "vms": ["c"], "hosts": ["h1", "h2"]},
                    {"rule": "pin", "vms": ["d"]}])
    assert p.placement["c"] not in ("h1", "h2") and p.placement["d"] == "h4"
    p = plan(four, [{"rule": "fence", "vms": ["a", "b"], "hosts": ["h3", "h4"]}])
    assert p.placement["a"] in ("h3", "h4") and p.placement["b"] in ("h3", "h4")
    p = plan(four, [{"rule": "spread", "vms": ["c", "d", "e"]}])
    assert len({p.placement[v] for v in "cde"}) == 3
    p = plan(four, [{"rule": "gather", "vms": ["a", "b"]}])
    assert p.placement["a"] == p.placement["b"]
    p = plan(four, [{"rule": "maintenance", "hosts": ["h1"]}])
    assert "h1" not in p.placement.values()
    p = plan(four, [{"rule": "max_vms", "hosts": ["h1", "h2", "h3", "h4"], "count": 2}])
    assert max(list(p.placement.values()).count(h) for h in ("h1", "h2", "h3", "h4")) <= 2
    p = plan(four, [{"rule": "capacity", "hosts": ["h1", "h2", "h3", "h4"], "mem": 0.5}])
    assert p.summary["hosts_after"] == 4


def test_repair_moves_only_what_breaks_a_rule(four):
    p = plan(four, [{"rule": "maintenance", "hosts": ["h3"]}], objective="repair")
    assert [a.vm for a in p.actions] == ["c"]
    assert "rules[0] (maintenance)" in p.actions[0].reason
    assert plan(four, objective="repair").actions == []


def test_balance_relieves_a_hotspot_with_one_move():
    s = snap({"h1": (4, 16), "h2": (4, 16), "h3": (4, 16)},
             {"a": ("h1", 2.0, 2), "b": ("h1", 1.5, 2), "c": ("h1", 0.5, 1), "d": ("h2", 0.2, 1)})
    p = plan(s, objective="balance", cpu_threshold=0.75)
    assert p.summary["migrations"] == 1
    assert p.summary["worst_cpu_after"] <= 0.75
    # No hotspot: nothing to do; a small gain is not worth a move.
    assert plan(s, objective="balance", cpu_threshold=1.0).actions == []
    assert plan(s, objective="balance", cpu_threshold=0.75, min_gain=0.6).actions == []


def test_infeasible_evacuation_names_the_shortfall():
    s = snap({"node1": (8, 8), "node2": (8, 8), "node3": (8, 64)},
             {"big": ("node3", 1, 48), "x": ("node1", 1, 6), "y": ("node2", 1, 6)})
    with pytest.raises(OperationFailed) as err:
        plan(s, [{"rule": "maintenance", "hosts": ["node3"]}], objective="repair")
    assert "evacuating node3 needs 48 GiB; the other hosts have 4.0 GiB free" in str(err.value)
    assert err.value.exit_code == 1


def test_incoherent_snapshot_is_planned_around_or_refused_on_request(four):
    four.problems = [Problem(kind="duplicate", vm="c", host="h3", message="c listed twice")]
    with pytest.raises(DataError) as err:
        plan(four, refuse_problems=True)
    assert "c" in str(err.value) and "refuse_problems" in str(err.value)
    p = plan(four)
    assert p.placement["c"] == "h3"
    assert not any("h3" in (a.src, a.dst) for a in p.actions)
    assert p.summary["frozen"][0]["host"] == "h3"


def test_constraint_document_errors_name_the_rule(four):
    def bad(rules, *words):
        doc = {"format": "vmtools.constraints", "version": "1.0", "rules": rules}
        with pytest.raises(DataError) as err:
            parse_constraints(doc, four)
        for w in words:
            assert w in str(err.value), str(err.value)

    bad([{"rule": "affinity", "vms": ["a"]}], "rules[0]", "unknown rule")
    bad([{"rule": "ban", "vms": ["a"]}], "rules[0] (ban)", "hosts")
    bad([{"rule": "max_vms", "hosts": ["h1"], "count": -1}], "rules[0] (max_vms)")
    bad([{"rule": "capacity", "hosts": ["h1"], "mem": 1.5}], "rules[0] (capacity)")
    bad([{"rule": "pin", "vms": ["nope"]}], "unknown guest")
    bad([{"rule": "spread", "vms": ["a", "b"]}, {"rule": "gather", "vms": ["a", "b"]}],
        "rules[1] (gather)", "rules[0] (spread)")
    bad([{"rule": "pin", "vms": ["a"]}, {"rule": "maintenance", "hosts": ["h1"]}],
        "pins a on h1", "rules[1] (maintenance)")
    bad([{"rule": "fence", "vms": ["a"], "hosts": ["h1"]},
         {"rule": "ban", "vms": ["a"], "hosts": ["h1"]}], "no online host is left for a")
    ok = parse_constraints({"format": "vmtools.constraints", "version": "1.0",
                            "rules": [{"rule": "pin", "vms": ["a"]}]}, four)
    assert isinstance(ok, Constraints) and ok.to_list() == [{"rule": "pin", "vms": ["a"]}]


def test_first_fit_fills_the_hosts_that_stay_open_first():
    # p is pinned on the small host, which stays open anyway: everything fits there.
    s = snap({"big1": (16, 16), "big2": (16, 16), "small": (8, 8)},
             {"p": ("small", 0.1, 1), "a": ("big1", 0.1, 4), "b": ("big2", 0.1, 3)})
    inst = build_instance(s, parse_rules([{"rule": "pin", "vms": ["p"]}], s))
    best, _ = packing.consolidate_heuristic(inst)
    assert [inst.hosts[h] for h in best] == ["small", "small", "small"]


def test_a_large_cluster_under_rules_is_consolidated_in_groups():
    # 12 hosts in groups of 4; every kind of rule, a gather pair split over two hosts.
    hosts = {f"h{i:02d}": (8, 16) for i in range(12)}
    vms = {f"g{i:02d}": (f"h{i % 12:02d}", 0.5, 2) for i in range(24)}
    s = snap(hosts, vms)
    rules = [{"rule": "spread", "vms": ["g00", "g01", "g02"]},
             {"rule": "gather", "vms": ["g03", "g16"]},
             {"rule": "pin", "vms": ["g05"]},
             {"rule": "ban", "vms": ["g06"], "hosts": ["h00", "h01"]},
             {"rule": "fence", "vms": ["g07"], "hosts": ["h07", "h08"]},
             {"rule": "maintenance", "hosts": ["h09"]}]
    p = plan(s, rules, group_size=4)
    assert p.solver["method"].endswith("groups")
    where = p.placement
    assert len({where[v] for v in ("g00", "g01", "g02")}) == 3
    assert where["g03"] == where["g16"]
    assert where["g05"] == "h05" and where["g06"] not in ("h00", "h01")
    assert where["g07"] in ("h07", "h08")
    assert "h09" not in where.values()
    assert p.summary["hosts_after"] < 12


def test_draining_empties_hosts_whose_guests_fit_elsewhere_and_keeps_the_rules():
    s = snap({"a": (8, 8), "b": (8, 8), "c": (8, 8)},
             {"x": ("a", 0.5, 4), "y": ("b", 0.5, 2), "z": ("c", 0.5, 2)})
    inst = build_instance(s, parse_rules([], s))
    drained = H.drain(inst, list(inst.cur), float("inf"))
    assert [inst.hosts[h] for h in drained] == ["a", "a", "a"]
    inst = build_instance(s, parse_rules([{"rule": "spread", "vms": ["y", "z"]}], s))
    drained = H.drain(inst, list(inst.cur), float("inf"))
    assert H.hosts_used(drained) == 2 and inst.valid(drained)
