"""vm-apply against simulated xends (HTTP/SXP and XML-RPC) on loopback, with failure injection.

Each test runs the installed ``vm-apply`` through real pipes (or ``apply_plan`` when it must
inject something mid-run) and then checks that the report and the simulated cluster agree on
where every guest is, none lost or duplicated.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time

import pytest

from tests.apply_lab import (GUESTS, assert_consistent, cluster_placement, four_hosts, held,
                             hostmap_text, plan_of, snapshot_of)
from tests.conftest import run, script
from vmtools.apply import ApplyOptions, apply_plan
from vmtools.drivers.hostmap import parse_hostmap
from vmtools.model import dumps

# Every test runs a simulated xend per host on loopback and real migrations through it.
pytestmark = pytest.mark.slow

lab = pytest.fixture(name="lab")(four_hosts)


def write_plan(lab, moves, migration="xen", name="plan.json"):
    plan = plan_of(snapshot_of(lab["state"], migration), moves)
    path = lab["dir"] / name
    path.write_text(dumps(plan.to_dict()))
    return plan, path


def apply_cli(lab, plan_path, *args, transport_hosts=None):
    return run("vm-apply", str(plan_path), "--hosts", str(transport_hosts or lab["hosts"]),
               "--state-dir", str(lab["state_dir"]), *args)


def test_plan_runs_over_xend_http_and_report_matches_cluster(lab):
    _, path = write_plan(lab, [("a", "n4"), ("c", "n3"), ("b", "n2"), ("a", "n2", [1])])
    proc = apply_cli(lab, path, "--parallel", "3")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["format"] == "vmtools.report"
    assert [a["outcome"] for a in report["actions"]] == ["done"] * 4
    assert report["placement"] == {"a": "n2", "b": "n2", "c": "n3"}
    assert all(a["transport"] == "xen" for a in report["actions"])
    assert cluster_placement(lab["state"]) == {"a": "n2", "b": "n2", "c": "n3", "d": "n3"}
    # progress: one line per start and per end, with counts
    starts = [ln for ln in proc.stderr.splitlines() if " start #" in ln]
    ends = [ln for ln in proc.stderr.splitlines() if " done #" in ln]
    assert len(starts) == 4 and len(ends) == 4
    assert_consistent(lab["state"], report, GUESTS)
    journal = list((lab["state_dir"] / "journal").glob("*.jsonl"))
    events = [json.loads(ln)["event"] for ln in journal[0].read_text().splitlines()]
    assert events[0] == "begin" and events[-1] == "finish"
    assert events.count("start") == 4 and events.count("end") == 4


def test_xmlrpc_transport_with_per_host_limit(lab):
    hosts = lab["dir"] / "hosts-rpc.csv"
    hosts.write_text(hostmap_text(lab["labs"], "xend-xmlrpc"))
    plan, path = write_plan(lab, [("a", "n4"), ("b", "n4"), ("c", "n3")], "xend-xmlrpc")
    proc = apply_cli(lab, path, "--parallel", "3", "--per-host", "1",
                     transport_hosts=hosts)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert {a["transport"] for a in report["actions"]} == {"xend-xmlrpc"}
    # per-host 1: the two moves onto n4 never overlapped
    a1, a2 = report["actions"][0], report["actions"][1]
    assert a1["ended"] <= a2["started"] or a2["ended"] <= a1["started"]
    assert_consistent(lab["state"], report, GUESTS)


def test_refused_migration_fails_its_dependents_not_the_others(lab):
    with lab["state"].transaction() as st:
        st["faults"]["refuse"] = {"a": "Not enough free memory"}
    _, path = write_plan(lab, [("a", "n4"), ("a", "n2", [1]), ("c", "n3")])
    proc = apply_cli(lab, path)
    assert proc.returncode == 1
    report = json.loads(proc.stdout)
    outcomes = {a["id"]: a["outcome"] for a in report["actions"]}
    assert outcomes == {1: "failed", 2: "not-run", 3: "done"}
    assert "Not enough free memory" in report["actions"][0]["error"]
    assert report["placement"]["a"] == "n1"
    assert report["summary"]["failed"] == 1 and report["summary"]["not-run"] == 1
    assert_consistent(lab["state"], report, GUESTS)


def test_stop_on_failure_starts_nothing_new(lab):
    with lab["state"].transaction() as st:
        st["faults"]["refuse"] = {"a": "refused"}
    with lab["state"].transaction() as st:           # a is the biggest: it goes first
        st["hosts"]["n1"]["domains"]["a"]["mem_mib"] = 4096
    _, path = write_plan(lab, [("c", "n3"), ("a", "n4"), ("d", "n2", [1])])
    proc = apply_cli(lab, path, "--parallel", "1", "--stop-on-failure")
    assert proc.returncode == 1
    report = json.loads(proc.stdout)
    assert [a["outcome"] for a in report["actions"]] == ["not-run", "failed", "not-run"]
    assert "--stop-on-failure" in report["actions"][0]["error"]
    assert_consistent(lab["state"], report, GUESTS)


def test_destination_dies_mid_migration(lab):
    with lab["state"].transaction() as st:
        st["faults"]["dst_dies"] = ["a"]
    _, path = write_plan(lab, [("a", "n4"), ("b", "n4", [1]), ("c", "n3")])
    proc = apply_cli(lab, path, "--connect-timeout", "2")
    assert proc.returncode == 1
    report = json.loads(proc.stdout)
    by_id = {a["id"]: a for a in report["actions"]}
    assert by_id[1]["outcome"] == "failed" and by_id[1]["where"] == "n1"
    assert by_id[2]["outcome"] == "not-run"
    assert by_id[3]["outcome"] == "done"
    assert report["placement"] == {"a": "n1", "b": "n1", "c": "n3"}
    assert_consistent(lab["state"], report, GUESTS)


def test_migration_outliving_the_client_timeout_is_verified_not_assumed(lab):
    with lab["state"].transaction() as st:
        st["faults"]["slow"] = {"a": 6.0}          # 1.5 s, the client gives up after 0.3 s
    _, path = write_plan(lab, [("a", "n4")])
    proc = apply_cli(lab, path, "--timeout", "0.3", "--verify-timeout", "30")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    action = report["actions"][0]
    assert action["outcome"] == "done"
    assert "within 0.3s" in action["error"] and "verified running on n4" in action["error"]
    assert action["seconds"] >= 1.4
    assert_consistent(lab["state"], report, GUESTS)


def test_stale_plan_is_refused_and_nothing_moves(lab):
    _, path = write_plan(lab, [("a", "n4"), ("c", "n3")])
    with lab["state"].transaction() as st:           # someone moved c meanwhile
        st["hosts"]["n4"]["domains"]["c"] = st["hosts"]["n2"]["domains"].pop("c")
    before = cluster_placement(lab["state"])
    proc = apply_cli(lab, path)
    assert proc.returncode == 75
    assert "stale" in proc.stderr and "c is on n4, not on n2" in proc.stderr
    assert proc.stdout == ""
    assert cluster_placement(lab["state"]) == before
    # --force runs it anyway: a moves, c's action fails (it is not on n2), all verified
    proc = apply_cli(lab, path, "--force")
    assert proc.returncode == 1
    report = json.loads(proc.stdout)
    assert [a["outcome"] for a in report["actions"]] == ["done", "failed"]
    assert report["placement"]["c"] == "n4"
    assert_consistent(lab["state"], report, GUESTS)


def test_unreachable_destination_is_69_and_nothing_moves(lab):
    lab["labs"]["n4"].stop()
    _, path = write_plan(lab, [("a", "n4")])
    proc = apply_cli(lab, path, "--connect-timeout", "2")
    assert proc.returncode == 69
    assert "cannot reach host n4" in proc.stderr and "nothing was moved" in proc.stderr
    assert cluster_placement(lab["state"])["a"] == "n1"


def test_second_vm_apply_exits_75_at_once(lab):
    _, path = write_plan(lab, [("a", "n4")])
    with held(lab["state"], "a"):            # the first run's migration lasts the block
        first = subprocess.Popen([script("vm-apply"), str(path), "--hosts", str(lab["hosts"]),
                                  "--state-dir", str(lab["state_dir"])],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 120
            while "start #1" not in _incoming(lab):
                assert time.monotonic() < deadline and first.poll() is None, \
                    "the first run never started its migration"
                time.sleep(0.05)
            second = apply_cli(lab, path)
            assert second.returncode == 75
            assert "another vm-apply is running" in second.stderr
            # at once: it answered while the first run was still moving a, not after
            assert first.poll() is None and _incoming(lab)
        except BaseException:
            first.kill()
            raise
    out, err = first.communicate(timeout=60)
    assert first.returncode == 0, err
    assert_consistent(lab["state"], json.loads(out), GUESTS)


def _incoming(lab) -> str:
    st = lab["state"].read()
    return "start #1" if "a--incoming" in st["hosts"]["n4"]["domains"] else ""


def test_hostile_names_are_refused_before_anything_runs(lab):
    plan, path = write_plan(lab, [("a", "n4")])
    doc = plan.to_dict()
    doc["actions"][0]["vm"] = "a;touch /tmp/pwned"
    doc.pop("origin_digest")
    path.write_text(json.dumps(doc))
    proc = apply_cli(lab, path)
    assert proc.returncode == 65
    assert "a;touch /tmp/pwned" in proc.stderr and "unsafe name" in proc.stderr
    # and through the API, with a plan built in code
    plan.actions[0].dst = "n4 $(reboot)"
    with pytest.raises(Exception) as info:
        apply_plan(plan, ApplyOptions(state_dir=str(lab["state_dir"]),
                                      hosts=parse_hostmap(lab["hosts"].read_text())))
    assert getattr(info.value, "exit_code", None) == 65
    assert "n4 $(reboot)" in str(info.value)
    assert cluster_placement(lab["state"])["a"] == "n1"


def test_domain0_and_unknown_hosts_are_refused(lab):
    plan, path = write_plan(lab, [("a", "n4")])
    doc = plan.to_dict()
    doc["actions"][0]["dst"] = "n9"
    doc["placement"]["a"] = "n9"
    doc.pop("origin_digest")
    path.write_text(json.dumps(doc))
    proc = apply_cli(lab, path)
    assert proc.returncode == 65 and "n9" in proc.stderr
    doc["actions"][0].update(vm="Domain-0", dst="n4")
    path.write_text(json.dumps(doc))
    proc = apply_cli(lab, path)
    assert proc.returncode == 65 and "Domain-0" in proc.stderr


def test_plan_failing_the_checker_exits_65(lab):
    with lab["state"].transaction() as st:
        st["hosts"]["n4"]["mem_mib"] = 1500          # 476 MiB for guests
    _, path = write_plan(lab, [("a", "n4")])
    proc = apply_cli(lab, path)
    assert proc.returncode == 65, proc.stderr
    assert cluster_placement(lab["state"])["a"] == "n1"


def test_dry_run_moves_nothing(lab):
    _, path = write_plan(lab, [("a", "n4"), ("c", "n3")])
    proc = apply_cli(lab, path, "--dry-run")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["dry_run"] is True
    assert [a["outcome"] for a in report["actions"]] == ["skipped", "skipped"]
    assert "would migrate #1 a n1 -> n4" in proc.stderr
    assert cluster_placement(lab["state"]) == {"a": "n1", "b": "n1", "c": "n2", "d": "n3"}
    # each row says where its guest was verified to run; a dry run is no error
    assert [(a["where"], a["error"]) for a in report["actions"]] == [("n1", None), ("n2", None)]
    table = apply_cli(lab, path, "--dry-run", "-f", "table", "-q").stdout
    row = next(line for line in table.splitlines() if line.startswith("1 "))
    assert row.split() == ["1", "a", "n1", "n4", "would", "run", "-", "n1"]


def test_offline_dry_run_asks_no_host(lab):
    _, path = write_plan(lab, [("a", "n4"), ("c", "n3")])
    dead = lab["dir"] / "dead.csv"                 # every host at a port nobody listens on
    dead.write_text("".join(f"{h},127.0.0.1:9,{h}\n" for h in ("n1", "n2", "n3", "n4")))
    proc = apply_cli(lab, path, "--dry-run", "--offline", transport_hosts=dead)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["dry_run"] is True and report["summary"]["offline"] is True
    assert [(a["outcome"], a["where"]) for a in report["actions"]] == [("skipped", None)] * 2
    # the checker and the host map still hold: a host missing from the map is named
    partial = lab["dir"] / "partial.csv"
    partial.write_text("n1,127.0.0.1:9,n1\n")
    proc = apply_cli(lab, path, "--dry-run", "--offline", transport_hosts=partial)
    assert proc.returncode == 65 and "n2, n3, n4: not in the host map" in proc.stderr
    proc = apply_cli(lab, path, "--offline")
    assert proc.returncode == 2 and "--offline works only with --dry-run" in proc.stderr


def test_bad_host_map_names_the_line(lab):
    bad = lab["dir"] / "bad.csv"
    bad.write_text("name,manage,migrate\nn1,127.0.0.1:8000\nn2,host:99999,\n")
    _, path = write_plan(lab, [("a", "n4")])
    proc = apply_cli(lab, path, transport_hosts=bad)
    assert proc.returncode == 65
    assert "bad.csv:3" in proc.stderr and "port" in proc.stderr


def _journaled(lab, event: str) -> bool:
    return any(f'"event": "{event}"' in p.read_text()
               for p in (lab["state_dir"] / "journal").glob("*.jsonl"))


def test_sigterm_lets_running_migrations_finish_and_writes_the_report(lab):
    _, path = write_plan(lab, [("a", "n4"), ("c", "n3", [1]), ("d", "n2", [1])])
    # a's migration is held until the run has taken the signal in (its journal says so)
    with held(lab["state"], "a"):
        proc = subprocess.Popen([script("vm-apply"), str(path), "--hosts", str(lab["hosts"]),
                                 "--state-dir", str(lab["state_dir"]), "--parallel", "1"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 120
            while not _incoming(lab):
                assert time.monotonic() < deadline and proc.poll() is None, \
                    "the migration of a never started"
                time.sleep(0.05)
            proc.send_signal(signal.SIGTERM)
            while not _journaled(lab, "signal"):
                assert time.monotonic() < deadline and proc.poll() is None, \
                    "the run never took SIGTERM in"
                time.sleep(0.05)
        except BaseException:
            proc.kill()
            raise
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1, err
    report = json.loads(out)
    assert [a["outcome"] for a in report["actions"]] == ["done", "not-run", "not-run"]
    assert report["summary"]["interrupted"] == "interrupted by SIGTERM"
    assert "SIGTERM" in err
    assert_consistent(lab["state"], report, GUESTS)


def test_resume_continues_an_interrupted_run(lab):
    _, path = write_plan(lab, [("a", "n4"), ("c", "n3", [1]), ("d", "n2", [2])])
    journal = lab["dir"] / "run.jsonl"
    opts = dict(state_dir=str(lab["state_dir"]), hosts=parse_hostmap(lab["hosts"].read_text()))
    from vmtools.model import Plan
    plan = Plan.from_dict(json.loads(path.read_text()))
    # a run that died after action 1 and while action 2 ran: cut the journal there and do
    # action 2's migration by hand (it finished after vm-apply died)
    report = apply_plan(plan, ApplyOptions(journal=str(journal), **opts))
    assert report.summary["done"] == 3
    lines = journal.read_text().splitlines()
    keep = [ln for ln in lines if json.loads(ln)["event"] in ("begin", "check")]
    keep += [ln for ln in lines if json.loads(ln)["event"] in ("start", "end")
             and json.loads(ln)["id"] == 1]
    keep += [ln for ln in lines if json.loads(ln)["event"] == "start"
             and json.loads(ln)["id"] == 2]
    journal.write_text("\n".join(keep) + "\n")
    with lab["state"].transaction() as st:               # undo action 3 only
        st["hosts"]["n3"]["domains"]["d"] = st["hosts"]["n2"]["domains"].pop("d")
    proc = run("vm-apply", "--resume", str(journal), "--hosts", str(lab["hosts"]),
               "--state-dir", str(lab["state_dir"]))
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert [a["outcome"] for a in report["actions"]] == ["done", "done", "done"]
    assert report["actions"][0].get("from_journal") and report["actions"][1].get("from_journal")
    assert not report["actions"][2].get("from_journal")
    assert proc.stderr.count(" start #") == 1
    assert_consistent(lab["state"], report, GUESTS)


def test_table_format(lab):
    _, path = write_plan(lab, [("a", "n4")])
    proc = apply_cli(lab, path, "-f", "table")
    assert proc.returncode == 0, proc.stderr
    assert "outcome" in proc.stdout and "done" in proc.stdout and "n4" in proc.stdout
