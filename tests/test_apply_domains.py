"""vm-apply per migration domain (issue 25): one lock per domain, so runs on two domains go on
side by side while a second run on one domain exits 75 naming the first; in a plan over two
domains, a failure under --stop-on-failure stops only its own domain, and the report says per
domain what happened. Simulated xends on loopback, the installed script through real pipes."""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from tests.apply_lab import GUESTS, assert_consistent, cluster_placement, four_hosts, held
from tests.apply_lab import plan_of, snapshot_of
from tests.conftest import run, script
from vmtools.model import dumps

pytestmark = pytest.mark.slow

lab = pytest.fixture(name="lab")(four_hosts)

# n1 (a, b) and n2 (c) are the cluster "east"; n3 (d) and n4 (empty) are "west"
DOMAIN = {"n1": "east", "n2": "east", "n3": "west", "n4": "west"}


def write_plan(lab, moves, name):
    snap = snapshot_of(lab["state"], "xen")
    for h in snap.hosts:
        h.cluster = h.domain = DOMAIN[h.name]
    path = lab["dir"] / name
    path.write_text(dumps(plan_of(snap, moves).to_dict()))
    return path


def start(lab, path, *args) -> subprocess.Popen:
    return subprocess.Popen([script("vm-apply"), str(path), "--hosts", str(lab["hosts"]),
                             "--state-dir", str(lab["state_dir"]), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def apply_cli(lab, path, *args):
    return run("vm-apply", str(path), "--hosts", str(lab["hosts"]),
               "--state-dir", str(lab["state_dir"]), *args)


def wait_in_flight(lab, vm, host, first) -> None:
    deadline = time.monotonic() + 120
    while vm + "--incoming" not in lab["state"].read()["hosts"][host]["domains"]:
        assert time.monotonic() < deadline and first.poll() is None, first.stderr.read()
        time.sleep(0.05)


def test_runs_on_two_domains_go_on_together_and_a_second_on_one_domain_names_the_first(lab):
    east = write_plan(lab, [("a", "n2")], "east.json")
    west = write_plan(lab, [("d", "n4")], "west.json")
    east_again = write_plan(lab, [("b", "n2")], "east-again.json")
    with held(lab["state"], "a"):                    # a in flight until the block ends
        first = start(lab, east)
        try:
            wait_in_flight(lab, "a", "n2", first)
            other = apply_cli(lab, west)             # the same state directory, domain west
            assert other.returncode == 0, other.stderr
            assert first.poll() is None              # east's run was still migrating a
            assert json.loads(other.stdout)["placement"] == {"d": "n4"}
            same = apply_cli(lab, east_again)        # domain east: held by the first run
            assert first.poll() is None
            assert same.returncode == 75 and same.stdout == ""
            line, = same.stderr.strip().splitlines()
            assert "another vm-apply is running on migration domain 'east'" in line
            assert f"(pid {first.pid} since 20" in line
        except BaseException:
            first.kill()
            raise
    out, err = first.communicate(timeout=60)
    assert first.returncode == 0, err
    assert cluster_placement(lab["state"]) == {"a": "n2", "b": "n1", "c": "n2", "d": "n4"}
    # the first run let go: the same plan now runs
    assert apply_cli(lab, east_again).returncode == 0


def test_a_failure_under_stop_on_failure_stops_only_its_domain(lab):
    with lab["state"].transaction() as st:
        st["faults"]["refuse"] = {"a": "Not enough free memory"}
        st["hosts"]["n1"]["domains"]["a"]["mem_mib"] = 4096     # the biggest: it goes first
    path = write_plan(lab, [("a", "n2"), ("b", "n2"), ("d", "n4")], "both.json")
    proc = apply_cli(lab, path, "--parallel", "1", "--stop-on-failure")
    assert proc.returncode == 1, proc.stderr
    report = json.loads(proc.stdout)
    by_id = {a["id"]: a for a in report["actions"]}
    assert [by_id[i]["outcome"] for i in (1, 2, 3)] == ["failed", "not-run", "done"]
    assert "--stop-on-failure" in by_id[2]["error"] and "east" in by_id[2]["error"]
    domains = report["summary"]["domains"]
    assert domains["east"] == {"actions": 2, "done": 0, "failed": 1, "skipped": 0,
                               "not-run": 1, "migrated_mib": 0,
                               "stopped": by_id[2]["error"]}
    assert domains["west"] == {"actions": 1, "done": 1, "failed": 0, "skipped": 0,
                               "not-run": 0, "migrated_mib": 512, "stopped": None}
    assert_consistent(lab["state"], report, GUESTS)
    assert cluster_placement(lab["state"]) == {"a": "n1", "b": "n1", "c": "n2", "d": "n4"}


def test_a_domain_whose_host_is_down_or_whose_guest_moved_starts_nothing_the_other_goes_on(
        lab):
    lab["labs"]["n4"].stop()                          # west's destination does not answer
    path = write_plan(lab, [("a", "n2"), ("d", "n4")], "both.json")
    proc = apply_cli(lab, path, "--connect-timeout", "2")
    assert proc.returncode == 1, proc.stderr
    report = json.loads(proc.stdout)
    by_id = {a["id"]: a for a in report["actions"]}
    assert (by_id[1]["outcome"], by_id[2]["outcome"]) == ("done", "not-run")
    assert "migration domain west: nothing started: cannot reach host n4" in by_id[2]["error"]
    assert report["summary"]["domains"]["west"]["stopped"] == by_id[2]["error"]
    assert report["summary"]["domains"]["east"]["stopped"] is None
    assert any("west" in p for p in report["summary"]["problems"])
    assert cluster_placement(lab["state"]) == {"a": "n2", "b": "n1", "c": "n2", "d": "n3"}
    # a stale domain likewise (d was moved by hand after the plan was made): east goes on
    lab["labs"]["n4"].start()
    path = write_plan(lab, [("b", "n2"), ("d", "n4")], "stale.json")
    with lab["state"].transaction() as st:
        st["hosts"]["n4"]["domains"]["d"] = st["hosts"]["n3"]["domains"].pop("d")
    proc = apply_cli(lab, path)
    assert proc.returncode == 1, proc.stderr
    report = json.loads(proc.stdout)
    assert [a["outcome"] for a in report["actions"]] == ["done", "not-run"]
    assert "nothing started: the plan is stale" in report["actions"][1]["error"]
    assert "d is on n4, not on n3" in report["actions"][1]["error"]
    assert_consistent(lab["state"], report, GUESTS)
    assert cluster_placement(lab["state"]) == {"a": "n2", "b": "n2", "c": "n2", "d": "n4"}


def test_when_every_domain_fails_the_check_nothing_moves_and_the_exit_is_as_for_one(lab):
    lab["labs"]["n2"].stop()
    lab["labs"]["n4"].stop()
    path = write_plan(lab, [("a", "n2"), ("d", "n4")], "both.json")
    proc = apply_cli(lab, path, "--connect-timeout", "2")
    assert proc.returncode == 69 and proc.stdout == ""
    assert "cannot reach host n2" in proc.stderr and "nothing was moved" in proc.stderr
    assert cluster_placement(lab["state"]) == {"a": "n1", "b": "n1", "c": "n2", "d": "n3"}
