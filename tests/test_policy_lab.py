"""``vm-plan --objective auto`` (the default) on the lab's scenarios, end to end through real
gmond/gmetad, vm-snapshot, vm-plan and vm-apply, as cron would run it."""

from __future__ import annotations

import pytest

from tests.test_e2e_lab import cpu_use, hosts_used
from vmtools.lab.ganglia import binaries_missing
from vmtools.lab.scenario import load_scenario

pytestmark = [pytest.mark.ganglia, pytest.mark.slow,
              pytest.mark.skipif(bool(binaries_missing()),
                                 reason="needs gmond and gmetad (ganglia-monitor, gmetad)")]


def test_auto_consolidates_in_budgeted_runs_emptying_whole_hosts(make_lab):
    lab = make_lab("steady")
    before = lab.wait_for_truth()
    start = hosts_used({v["name"]: v["host"] for v in before["vms"]})
    runs = 0
    while True:
        _, plan, report, codes = lab.pipeline("auto", plan_extra=["--max-migrations", "3"])
        assert plan["objective"] == "auto"
        if not plan["actions"]:
            assert plan["summary"]["deferred"]["migrations"] == 0
            break
        runs += 1
        assert runs <= 6, "auto never settled"
        assert codes["vm-apply"] == 0, (lab.last_apply_stderr, report, plan["actions"])
        assert len(plan["actions"]) <= 3
        assert {a["outcome"] for a in report["actions"]} == {"done"}
        placement = lab.placement()
        # Every host a guest left is empty now: no host half-emptied for nothing.
        assert not {a["src"] for a in plan["actions"]} & hosts_used(placement)
        lab.wait_for_truth()
    assert runs >= 2, "a budget of 3 migrations should take more than one run here"
    assert len(hosts_used(lab.placement())) < len(start)


def test_auto_relieves_a_hotspot_once_it_persists_and_says_why_before(make_lab):
    scenario = load_scenario("hotspot")
    scenario["load"][0]["at"] = 0
    # Hot but not overloaded (an overloaded host is relieved at once): 7.2 of 8 CPUs, in the
    # middle of the band between --cpu-threshold 0.8 and 100 %, measured over 2-s intervals.
    # On a loaded machine a lab CPU figure is off by several percent: with a band of 0.9-1.0,
    # 7.7 of 8 was once read as 101 % over 1-s intervals and 7.6 of 8 as 101 % over 2-s
    # intervals in a CI run, and node-1 was relieved on the first run. The wider band leaves
    # 11 % either side.
    scenario["load"][0]["load"] = [2.2, 2.4, 2.6]
    lab = make_lab(scenario, interval=2.0)
    lab.wait_until(lambda s: cpu_use(s).get("node-1", 0) > 0.8 and not s["problems"] and
                   len(s["vms"]) == len(scenario["guests"]), what="the hotspot")
    extra = ["--hotspot-window", "2/3", "--cpu-threshold", "0.8", "--cpu-target", "0.7"]
    origin, first, _, _ = lab.pipeline("auto", plan_extra=extra)
    assert not [a for a in first["actions"] if a["src"] == "node-1"], (
        [(a["vm"], a["src"], a["dst"], a["reason"]) for a in first["actions"]],
        first["summary"].get("hotspots"), cpu_use(origin))
    seen = {h["host"]: h for h in first["summary"]["hotspots"]}
    assert seen["node-1"]["why"].startswith("not persistent yet"), seen
    lab.wait_for_truth()          # the first run may have consolidated other hosts
    # the next run's snapshot of a later second: vm-plan counts one observation per second
    lab.wait_until(lambda s: s["created"] > origin["created"], what="a later snapshot")
    second, plan, report, codes = lab.pipeline("auto", plan_extra=extra)
    relieved = [a for a in plan["actions"] if a["src"] == "node-1"]
    assert relieved, ([(h["host"], h["cpu"], h.get("why")) for h in plan["summary"]["hotspots"]],
                      cpu_use(second), plan["actions"])
    assert all(a["reason"].startswith("relieve: node-1") for a in relieved)
    assert codes["vm-apply"] == 0, lab.last_apply_stderr
    # Ganglia's CPU figures lag a migration by an interval: wait for them to settle.
    lab.wait_until(lambda s: cpu_use(s).get("node-1", 1) <= 0.8, what="node-1 below 80 %")


def test_auto_repairs_maintenance_first_and_never_returns(make_lab):
    lab = make_lab("maintenance")
    lab.wait_for_truth()
    assert "node-3" in hosts_used(lab.placement())
    _, plan, report, codes = lab.pipeline("auto")
    assert codes["vm-apply"] == 0, lab.last_apply_stderr
    assert plan["summary"]["steps"][0]["kind"] == "repair"
    assert "node-3" not in hosts_used(lab.placement())
    for _ in range(2):
        lab.wait_for_truth()
        _, plan, _, _ = lab.pipeline("auto")
        assert all(a["dst"] != "node-3" for a in plan["actions"])
    assert "node-3" not in hosts_used(lab.placement())


def test_a_silent_domain0_is_planned_around_while_a_hotspot_elsewhere_is_relieved(make_lab,
                                                                                   tmp_path):
    """One Domain-0's vm-gmetric dies while node-1 is overloaded: vm-plan still relieves
    node-1 (exit 0), moves nothing onto or off the silent host, names it and why, and the host
    thaws once its agent is back."""
    scenario = load_scenario("hotspot")
    scenario["load"][0]["at"] = 0          # node-1: 8.9 CPUs of 8, overloaded from the start
    lab = make_lab(scenario)
    snap = lab.wait_until(lambda s: cpu_use(s).get("node-1", 0) > 1.0 and not s["problems"]
                          and len(s["vms"]) == len(scenario["guests"]), what="the overload")
    # Which host would the plan use to relieve node-1? That one falls silent.
    import json
    scratch = tmp_path / "scratch-state"
    scratch.mkdir()
    probe = lab.run("vm-plan", "--state", str(scratch), input=json.dumps(snap))
    assert probe.returncode == 0, probe.stderr
    relief = [a for a in json.loads(probe.stdout)["actions"] if a["src"] == "node-1"]
    assert relief, probe.stdout
    silent = relief[0]["dst"]
    lab.gmetrics.pop(silent).terminate()
    frozen = lab.wait_until(
        lambda s: any(p.get("host") == silent for p in s["problems"]), timeout=150,
        what=f"{silent}'s metrics to go stale")
    kinds = {p["kind"] for p in frozen["problems"] if p.get("host") == silent}
    assert kinds & {"stale-host", "offline-host", "stale-guest"}, frozen["problems"]
    before = lab.placement()
    # Cron's run on that snapshot (a fresh one races the test: in one CI run under load the
    # next snapshot had no problem naming the silent host, and the plan froze nothing; that run
    # kept no snapshot to say why, and the message below now names what the plan saw).
    _, plan, report, codes = lab.pipeline("auto", snapshot=frozen)
    assert codes["vm-plan"] == 0 and codes.get("vm-apply", 0) == 0, lab.last_apply_stderr
    entry = {f["host"]: f for f in plan["summary"]["frozen"]}
    assert silent in entry and set(entry[silent]["kinds"]) & kinds, (
        f"{silent} not frozen by the pipeline's run; its snapshot's problems: "
        f"{plan['origin']['problems']}; {silent} in it: "
        f"{[h for h in plan['origin']['hosts'] if h['name'] == silent]}")
    relieved = [a for a in plan["actions"] if a["src"] == "node-1"]
    assert relieved, plan["summary"]["hotspots"]
    assert all(silent not in (a["src"], a["dst"]) for a in plan["actions"]), plan["actions"]
    after = lab.placement()
    assert {v for v, h in before.items() if h == silent} == \
        {v for v, h in after.items() if h == silent}
    # The agent is back: the host thaws (no problem names it, vm-plan freezes nothing).
    lab._start_gmetric(silent, lab.state.read()["hosts"][silent])
    thawed = lab.wait_until(lambda s: not any(p.get("host") == silent for p in s["problems"]),
                            timeout=90, what=f"{silent} to report again")
    again = lab.run("vm-plan", "--state", str(scratch), input=json.dumps(thawed))
    assert again.returncode == 0, again.stderr
    assert silent not in {f["host"] for f in json.loads(again.stdout)["summary"]["frozen"]}
