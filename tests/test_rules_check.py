"""The replay checker against hand-written plans: each kind of unsafe plan is refused."""

from __future__ import annotations

import pytest

from vmtools.errors import DataError
from vmtools.model import VM, Action, Host, Plan, Snapshot
from vmtools.rules.check import check_plan, placement_after, runnable, stale_guests

GIB = 1024


def snap(hosts: dict[str, tuple[float, int]], vms: dict[str, tuple[str, float, int]],
         offline: tuple[str, ...] = ()) -> Snapshot:
    """hosts: name -> (cpus, mem GiB); vms: name -> (host, cpu, mem GiB)."""
    return Snapshot(
        hosts=[Host(name=n, cpu=c, mem_mib=m * GIB, state="offline" if n in offline else "online")
               for n, (c, m) in hosts.items()],
        vms=[VM(name=n, host=h, cpu=c, mem_mib=m * GIB) for n, (h, c, m) in vms.items()])


def plan(s: Snapshot, moves: list[tuple[int, str, str, str, list[int]]],
         constraints: list[dict] | None = None, placement: dict | None = None) -> Plan:
    mem = {v.name: v.mem_mib for v in s.vms}
    actions = [Action(id=i, vm=vm, src=src, dst=dst, mem_mib=mem.get(vm, 0), after=after)
               for i, vm, src, dst, after in moves]
    if placement is None:
        placement = {v.name: v.host for v in s.vms}
        for _, vm, _, dst, _ in moves:
            placement[vm] = dst
    return Plan(origin=s, placement=placement, actions=actions, constraints=constraints or [])


def refused(p: Plan, *words: str) -> str:
    with pytest.raises(DataError) as err:
        check_plan(p)
    text = str(err.value)
    for w in words:
        assert w in text, text
    assert err.value.exit_code == 65
    return text


@pytest.fixture
def two():
    # h1 and h2: 4 GiB each; a and b 2 GiB each, on h1 and h2; h3 empty 4 GiB.
    return snap({"h1": (4, 4), "h2": (4, 4), "h3": (4, 4)},
                {"a": ("h1", 0.5, 2), "b": ("h2", 0.5, 2), "c": ("h2", 0.5, 2)})


def test_a_good_plan_passes_and_helpers_replay_it(two):
    p = plan(two, [(1, "b", "h2", "h1", []), (2, "c", "h2", "h3", [])])
    check_plan(p)
    assert [a.id for a in runnable(p, finished=[])] == [1, 2]
    assert placement_after(p, [1]) == {"a": "h1", "b": "h1", "c": "h2"}
    assert stale_guests(p, {"a": "h1", "b": "h3", "c": "h2"}) == ["b"]


def test_empty_plan_passes(two):
    check_plan(plan(two, []))


def test_duplicate_ids(two):
    refused(plan(two, [(1, "b", "h2", "h3", []), (1, "c", "h2", "h3", [])]), "duplicate action id 1")


def test_after_names_a_missing_action(two):
    refused(plan(two, [(1, "b", "h2", "h3", [7])]), "action 7", "does not exist")


def test_cycle(two):
    refused(plan(two, [(1, "b", "h2", "h3", [2]), (2, "c", "h2", "h3", [1])]), "cycle")


def test_actions_of_one_guest_must_be_ordered(two):
    refused(plan(two, [(1, "b", "h2", "h3", []), (2, "b", "h3", "h1", [])]),
            "must be ordered by after")


def test_source_must_be_where_the_guest_is(two):
    refused(plan(two, [(1, "b", "h1", "h3", [])]), "b is on h2 at that point")
    refused(plan(two, [(1, "b", "h2", "h3", []), (2, "b", "h2", "h1", [1])]),
            "b is on h3 at that point")


def test_domain0_unknown_names_and_offline_hosts(two):
    refused(plan(two, [(1, "Domain-0", "h2", "h3", [])]), "Domain-0 never moves")
    refused(plan(two, [(1, "zz", "h2", "h3", [])]), "unknown guest zz")
    refused(plan(two, [(1, "b", "h2", "h9", [])]), "unknown host h9")
    off = snap({"h1": (4, 4), "h2": (4, 4)}, {"a": ("h1", 0.5, 1)}, offline=("h2",))
    refused(plan(off, [(1, "a", "h1", "h2", [])]), "destination h2 is offline")


def test_placement_must_match_and_place_every_guest(two):
    refused(plan(two, [(1, "b", "h2", "h3", [])], placement={"a": "h1", "b": "h1", "c": "h2"}),
            "the actions leave it on h3")
    refused(plan(two, [], placement={"a": "h1", "b": "h2"}), "c is not placed")


def test_two_arrivals_together_overflow_memory(two):
    # a and b both into h3 fit; a, b and c (6 GiB) into 4 GiB do not, in any order.
    check_plan(plan(two, [(1, "a", "h1", "h3", []), (2, "b", "h2", "h3", [])]))
    refused(plan(two, [(1, "a", "h1", "h3", []), (2, "b", "h2", "h3", []),
                       (3, "c", "h2", "h3", [])]), "host h3", "memory", "6144 MiB of 4096 MiB")


def test_arrival_must_wait_for_the_departure():
    s = snap({"h1": (4, 4), "h2": (4, 4)}, {"a": ("h1", 0.1, 3), "b": ("h2", 0.1, 1),
                                            "c": ("h2", 0.1, 2)})
    # c into h1 needs a gone first: without after it may overlap with a still there.
    refused(plan(s, [(1, "a", "h1", "h2", []), (2, "c", "h2", "h1", [])]), "host h1")
    # With after: a leaves h1 (h2 holds b 1 + c 2 + a 3 = 6 > 4 while c is still there).
    refused(plan(s, [(1, "a", "h1", "h2", []), (2, "c", "h2", "h1", [1])]), "host h2")


def test_swap_needs_a_pivot_and_a_pivoted_swap_passes():
    s = snap({"h1": (4, 4), "h2": (4, 4), "h3": (4, 4)},
             {"a": ("h1", 0.1, 3), "b": ("h2", 0.1, 3)})
    refused(plan(s, [(1, "a", "h1", "h2", [2]), (2, "b", "h2", "h1", [])]), "memory")
    check_plan(plan(s, [(1, "a", "h1", "h3", []), (2, "b", "h2", "h1", [1]),
                        (3, "a", "h3", "h2", [1, 2])]))


def test_exact_worst_case_needs_two_concurrent_arrivals():
    # h cap 4: x (2) and y (1) start on h. 1: x leaves; 2: p (2) in after 1; 3: q (2) in
    # after 1. After 1 finished, y + p + q = 5 > 4 if 2 and 3 run together.
    s = snap({"h": (8, 4), "o": (8, 16)},
             {"x": ("h", 0.1, 2), "y": ("h", 0.1, 1), "p": ("o", 0.1, 2), "q": ("o", 0.1, 2)})
    text = refused(plan(s, [(1, "x", "h", "o", []), (2, "p", "o", "h", [1]),
                            (3, "q", "o", "h", [1])]), "host h", "actions 2, 3")
    assert "5120 MiB" in text
    # Ordering q after y has left fits: 1 (x out), 4 (y out) then p, q.
    check_plan(plan(s, [(1, "x", "h", "o", []), (4, "y", "h", "o", []),
                        (2, "p", "o", "h", [1]), (3, "q", "o", "h", [1, 4])]))


def test_a_departure_still_running_counts_on_the_source():
    # y leaves h (1) and p arrives (2) after 4, an unrelated action: 1 may still be running.
    s = snap({"h": (8, 4), "o": (8, 16), "z": (8, 16)},
             {"y": ("h", 0.1, 3), "p": ("o", 0.1, 2), "w": ("z", 0.1, 1)})
    refused(plan(s, [(1, "y", "h", "o", []), (4, "w", "z", "o", []), (2, "p", "o", "h", [4])]),
            "host h", "while actions 2 run together")
    check_plan(plan(s, [(1, "y", "h", "o", []), (2, "p", "o", "h", [1])]))


def test_cpu_overload_is_not_made_worse_but_may_be_relieved():
    s = snap({"hot": (2, 16), "cool": (4, 16)},
             {"a": ("hot", 1.5, 1), "b": ("hot", 1.5, 1), "c": ("cool", 0.5, 1)})
    check_plan(plan(s, [(1, "a", "hot", "cool", [])]))
    refused(plan(s, [(1, "c", "cool", "hot", [])]), "host hot", "CPU")


def test_rules_ban_fence_maintenance_even_for_pivots(two):
    ban = [{"rule": "ban", "vms": ["b"], "hosts": ["h3"]}]
    refused(plan(two, [(1, "b", "h2", "h3", []), (2, "b", "h3", "h1", [1])], ban),
            "rules[0] (ban) forbids b on h3")
    fence = [{"rule": "fence", "vms": ["b"], "hosts": ["h1", "h2"]}]
    refused(plan(two, [(1, "b", "h2", "h3", [])], fence), "rules[0] (fence)")
    maint = [{"rule": "maintenance", "hosts": ["h3"]}]
    refused(plan(two, [(1, "c", "h2", "h3", [])], maint), "rules[0] (maintenance)")
    # A host in maintenance must end empty.
    maint1 = [{"rule": "maintenance", "hosts": ["h1"]}]
    refused(plan(two, [], maint1), "a ends on h1")
    check_plan(plan(two, [(1, "a", "h1", "h3", [])], maint1))


def test_pin_means_no_action(two):
    refused(plan(two, [(1, "a", "h1", "h3", [])], [{"rule": "pin", "vms": ["a"]}]),
            "pinned by rules[0] (pin)")


def test_spread_at_every_moment():
    s = snap({"h1": (4, 8), "h2": (4, 8), "h3": (4, 8)},
             {"a": ("h1", 0.1, 1), "b": ("h2", 0.1, 1)})
    rules = [{"rule": "spread", "vms": ["a", "b"]}]
    # b into h1 while a may still be there (a leaving in parallel): refused.
    refused(plan(s, [(1, "a", "h1", "h3", []), (2, "b", "h2", "h1", [])], rules),
            "rules[0] (spread)", "same time")
    check_plan(plan(s, [(1, "a", "h1", "h3", []), (2, "b", "h2", "h1", [1])], rules))
    refused(plan(s, [(1, "a", "h1", "h2", [])], rules), "both end on h2")


def test_gather_in_the_target(two):
    rules = [{"rule": "gather", "vms": ["a", "b"]}]
    refused(plan(two, [], rules), "rules[0] (gather)", "not on one host")
    check_plan(plan(two, [(1, "b", "h2", "h1", [])], rules))


def test_max_vms_counts_at_every_moment(two):
    rules = [{"rule": "max_vms", "hosts": ["h3"], "count": 1}]
    refused(plan(two, [(1, "b", "h2", "h3", []), (2, "c", "h2", "h3", [])], rules),
            "host h3", "2 guests of 1 guests", "rules[0] (max_vms)")
    check_plan(plan(two, [(1, "b", "h2", "h3", [])], rules))


def test_capacity_rule_caps_memory(two):
    rules = [{"rule": "capacity", "hosts": ["h3"], "mem": 0.5}]
    refused(plan(two, [(1, "b", "h2", "h3", []), (2, "a", "h1", "h3", [])], rules),
            "rules[0] (capacity)")
    check_plan(plan(two, [(1, "b", "h2", "h3", [])], rules))


def test_bad_rules_in_the_plan_are_named(two):
    refused(plan(two, [], [{"rule": "frobnicate", "vms": ["a"]}]), "rules[0]", "unknown rule")
    refused(plan(two, [], [{"rule": "ban", "vms": ["zz"], "hosts": ["h1"]}]),
            "rules[0] (ban)", "unknown guest")


def test_a_rule_kind_is_one_object(monkeypatch, two):
    """A kind the primitives express (here: a guest kept off hosts, like ban) is one class
    registered in rules.kinds.KINDS: parsing, the lookups and the checker follow."""
    from vmtools.rules import kinds
    from vmtools.rules.constraints import parse_rules

    class Avoid(kinds.Ban):
        name = "avoid"

    monkeypatch.setitem(kinds.KINDS, "avoid", Avoid())
    cons = parse_rules([{"rule": "avoid", "vms": ["b"], "hosts": ["h3"]}], two)
    assert cons.forbidden_by("b", "h3").label == "rules[0] (avoid)"
    assert cons.to_list() == [{"rule": "avoid", "vms": ["b"], "hosts": ["h3"]}]
    with pytest.raises(DataError, match=r"rules\[0\] \(avoid\) forbids b on h3"):
        check_plan(plan(two, [(1, "b", "h2", "h3", [])]), cons)


# --------------------------------------------------------------------------- kinds' own checks

def test_each_rule_kind_prunes_what_the_snapshot_lacks_itself():
    from vmtools.rules.constraints import parse_rules
    s = snap({"h1": (8, 16), "h2": (8, 16)},
             {"a": ("h1", 1, 1), "b": ("h2", 1, 1)})
    skipped: list[dict] = []
    c = parse_rules([{"rule": "fence", "vms": ["a", "gone"], "hosts": ["retired"]},
                     {"rule": "spread", "vms": ["a", "gone"]},
                     {"rule": "ban", "vms": ["b", "gone"], "hosts": ["h2", "retired"]},
                     {"rule": "gather", "vms": ["a", "b", "gone"]}],
                    s, strict=False, skipped=skipped)
    assert [(e["kind"], e["outcome"]) for e in skipped] == [
        ("fence", "pinned"), ("spread", "dropped"), ("ban", "narrowed"), ("gather", "narrowed")]
    assert [(r.rule, r.vms, r.hosts) for r in c.rules] == [
        ("pin", ["a"], []), ("ban", ["b"], ["h2"]), ("gather", ["a", "b"], [])]
    assert "a" in c.pinned and not c.allowed("b", "h2") and c.allowed("b", "h1")


@pytest.mark.parametrize("rules, where, words", [
    ([{"rule": "pin", "vms": ["a", "b"]}, {"rule": "gather", "vms": ["a", "b"]}],
     "rules[1] (gather)", ["pinned on different hosts", "h1, h2"]),
    ([{"rule": "pin", "vms": ["a", "c"]}, {"rule": "spread", "vms": ["a", "c"]}],
     "rules[1] (spread)", ["pinned together on h1"]),
    ([{"rule": "pin", "vms": ["a", "c"]}, {"rule": "max_vms", "hosts": ["h1"], "count": 1}],
     "rules[1] (max_vms)", ["allows 1 guests on h1, where 2 are pinned"]),
    ([{"rule": "pin", "vms": ["b"]}, {"rule": "maintenance", "hosts": ["h2"]}],
     "rules[1] (maintenance)", ["rules[0] (pin) pins b on h2", "forbids it"]),
    ([{"rule": "spread", "vms": ["a", "b", "c"]}],
     "rules[0] (spread)", ["spreads 3 guests over 2 online hosts"]),
])
def test_each_rule_kind_refuses_rules_that_cannot_hold_before_planning(rules, where, words):
    from vmtools.rules.constraints import parse_rules
    s = snap({"h1": (8, 16), "h2": (8, 16)},
             {"a": ("h1", 1, 1), "b": ("h2", 1, 1), "c": ("h1", 1, 1)})
    with pytest.raises(DataError) as err:
        parse_rules(rules, s)
    assert err.value.where == where
    for w in words:
        assert w in str(err.value), str(err.value)
