"""vm-status: the morning view, from a snapshot file (live from gmetad is in
test_snapshot_ganglia.py), with the standby hosts of vm-plan's state and vm-rebalance's last
run; 80 columns."""

from __future__ import annotations

import pytest

import json
import re
import subprocess
import sys
import time

from tests.conftest import run

def snapshot(tmp_path, example="hotspot"):
    path = tmp_path / "snap.json"
    proc = run("vm-snapshot", "--example", example, "-o", str(path))
    assert proc.returncode == 0, proc.stderr
    return path


def lines_fit(text: str, width: int = 80) -> bool:
    """Every line fits, but for one word longer than the width (a long path)."""
    return all(len(line) <= width or " " not in line.strip() for line in text.splitlines())


def test_from_a_snapshot_file_hotspots_flagged_in_80_columns(tmp_path):
    proc = run("vm-status", str(snapshot(tmp_path)), "--runs", str(tmp_path / "none"))
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert lines_fit(out)
    assert out.startswith("6 hosts (6 online, 0 standby), 24 guests; snapshot of ")
    node4 = next(line for line in out.splitlines() if line.startswith("node-4 "))
    assert node4.split()[:5] == ["node-4", "online", "95%!", "35%", "4"]
    assert node4.endswith("hotspot: CPU")
    node1 = next(line for line in out.splitlines() if line.startswith("node-1 "))
    assert "!" not in node1 and "hotspot" not in node1
    assert "No problems." in out
    assert "No vm-rebalance run found in" in out


def test_the_host_table_has_no_nameless_column(tmp_path):
    """The note column (hotspot: CPU) is named, and left out when no host has a note: the
    header rule had a trailing '--' over nothing."""
    lab = tmp_path / "lab.json"
    assert run("vm-snapshot", "--example", "lab", "-o", str(lab)).returncode == 0
    for snap, noted in ((lab, False), (snapshot(tmp_path), True)):
        out = run("vm-status", str(snap), "--runs", "").stdout.splitlines()
        header = next(i for i, line in enumerate(out) if line.startswith("host "))
        names, rule = out[header].split(), out[header + 1].split()
        assert names[-1] == ("note" if noted else "GiB"), out[header]
        assert len(rule) == len(out[header].replace("CPU %", "CPU%").replace("mem %", "mem%")
                                .replace("mem GiB", "memGiB").split())


def test_a_bad_constraints_file_is_65_naming_the_file(tmp_path):
    rules = tmp_path / "rules.json"
    rules.write_text('{"format": "vmtools.constraints", "version": "1.0", '
                     '"rules": [{"rule": "nosuch"}]}')
    proc = run("vm-status", str(snapshot(tmp_path)), "--runs", "", "--constraints", str(rules))
    assert proc.returncode == 65 and proc.stdout == ""
    assert proc.stderr == (f"vm-status: error: {rules}: rules[0]: unknown rule 'nosuch'; "
                           "expected one of ban, fence, pin, spread, gather, maintenance, "
                           "max_vms, capacity, priority\n")


def test_a_snapshot_with_no_host_is_not_called_healthy(tmp_path):
    # gmetad's cluster with every host expired: nothing is seen, so "No problems." would lie
    dump = tmp_path / "empty.xml"
    dump.write_text('<?xml version="1.0"?>\n<GANGLIA_XML VERSION="3.7.2" SOURCE="gmetad">'
                    '<GRID NAME="g" AUTHORITY="x" LOCALTIME="1700000000"><CLUSTER NAME="c" '
                    'LOCALTIME="1700000000" OWNER="o" LATLONG="l" URL="u"></CLUSTER></GRID>'
                    '</GANGLIA_XML>\n')
    snap = run("vm-snapshot", "-i", str(dump))
    assert snap.returncode == 0, snap.stderr
    assert "the source reports no host at all" in snap.stderr
    path = tmp_path / "snap.json"
    path.write_text(snap.stdout)
    out = run("vm-status", str(path), "--runs", "").stdout
    assert "No problems." not in out
    assert "No host is seen" in out and "Nothing is known of the guests" in out


@pytest.mark.slow           # four command starts
def test_live_through_vm_snapshots_own_source_options(tmp_path):
    # any source vm-snapshot reads (here its built-in example, Ganglia's code path), and the
    # same view as through a pipe
    live = run("vm-status", "--example", "hotspot", "--runs", "")
    piped = run("vm-status", str(snapshot(tmp_path)), "--runs", "")
    assert live.returncode == 0, live.stderr

    def hosts(out: str) -> list[str]:
        return [line for line in out.splitlines() if line.startswith("node-")]
    assert hosts(live.stdout) == hosts(piped.stdout) and len(hosts(live.stdout)) == 6
    both = run("vm-status", str(snapshot(tmp_path)), "--prometheus", "http://127.0.0.1:1")
    assert both.returncode == 2 and "give a snapshot FILE or --prometheus, not both" in both.stderr
    gone = run("vm-status", "--prometheus", "http://127.0.0.1:1", "--timeout", "2",
               "--runs", "")
    assert gone.returncode == 69 and gone.stdout == ""
    assert len(gone.stderr.strip().splitlines()) == 1 and "127.0.0.1:1" in gone.stderr


def test_thresholds_move_the_flags(tmp_path):
    out = run("vm-status", str(snapshot(tmp_path)), "--runs", "", "--cpu-threshold", "0.1",
              "-f", "json").stdout
    doc = json.loads(out)
    assert doc["format"] == "vmtools.status"
    assert doc["summary"]["hotspots"] == ["node-4", "node-5", "node-6"]
    assert doc["last_run"] is None


@pytest.mark.slow  # a replay or several commands through real pipes: seconds of CPU
def test_standby_hosts_and_the_last_cron_run(tmp_path):
    state = tmp_path / "runs" / ".plan-state"
    state.mkdir(parents=True)
    (state / "vm-plan-power.json").write_text(json.dumps(
        {"standby": {"node-9": {"cluster": "xen-lab", "cpu": 8, "mem_mib": 32768,
                                "since": time.time() - 3600}}}))
    run_dir = tmp_path / "runs" / "20261128T060000Z"
    run_dir.mkdir()
    plan = run("vm-plan", str(snapshot(tmp_path)), "--objective", "consolidate").stdout
    (run_dir / "plan.json").write_text(plan)
    (run_dir / "report.log").write_text("vm-apply: error: node-3 does not answer\n")
    done = subprocess.run([sys.executable, "-m", "vmtools.runs", "finish", str(run_dir),
                           "--exit", "75", "--step", "report", "--started",
                           str(time.time() - 30)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    proc = run("vm-status", str(tmp_path / "snap.json"), "--runs", str(tmp_path / "runs"))
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert lines_fit(out)
    assert out.startswith("7 hosts (6 online, 1 standby)")
    node9 = next(line for line in out.splitlines() if line.startswith("node-9 "))
    assert node9.split()[:5] == ["node-9", "standby", "-", "-", "0"]
    assert "Last vm-rebalance run: 20261128T060000Z, " in out
    assert "vm-apply failed (exit 75)" in out
    assert "plan: consolidate, hosts in use 6 -> " in out


def test_problems_are_listed_in_full(tmp_path):
    from tests.conftest import FIXTURES
    snap = tmp_path / "snap.json"
    proc = run("vm-snapshot", "-i", str(FIXTURES / "ganglia" / "problems.xml"), "-o", str(snap))
    assert proc.returncode == 0, proc.stderr
    out = run("vm-status", str(snap), "--runs", "").stdout
    assert lines_fit(out)
    assert "Problems (8)" in out
    assert "- unsafe-name (host node-b): host node-b lists a guest named" in out
    # Each host a problem names is frozen, and the view says so and why.
    assert "Frozen hosts (" in out and "node-b" in out
    doc = json.loads(run("vm-status", str(snap), "--runs", "", "-f", "json").stdout)
    frozen = {h["name"]: h["frozen"] for h in doc["hosts"] if h["frozen"]}
    assert frozen and set(doc["summary"]["frozen"]) == set(frozen)
    assert "unsafe-name" in frozen["node-b"]["kinds"] and frozen["node-b"]["why"]
    assert all(h["knowledge"] == "known" for h in doc["hosts"] if not h["frozen"])


def test_bad_input_and_unreachable_gmetad():
    proc = run("vm-status", "-", input="{}")
    assert proc.returncode == 65 and proc.stdout == ""
    proc = run("vm-status", "--gmetad", "127.0.0.1:1", "--timeout", "1", "--runs", "")
    assert proc.returncode == 69 and proc.stdout == ""
    assert proc.stderr.startswith("vm-status: error: gmetad://127.0.0.1:1: ")
    proc = run("vm-status", "x.json", "--gmetad", "localhost")
    assert proc.returncode == 2


def test_a_host_gone_since_vm_plans_last_run_shows_as_vanished_and_frozen(tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    snap = snapshot(tmp_path)
    r = run("vm-plan", "--state", str(state), str(snap))
    assert r.returncode == 0, r.stderr
    doc = json.loads(snap.read_text())
    doc["hosts"] = [h for h in doc["hosts"] if h["name"] != "node-3"]
    doc["vms"] = [v for v in doc["vms"] if v["host"] != "node-3"]
    gone = tmp_path / "gone.json"
    gone.write_text(json.dumps(doc))
    out = run("vm-status", str(gone), "--runs", "", "--state", str(state))
    assert out.returncode == 0, out.stderr
    assert lines_fit(out.stdout)
    assert re.search(r"node-3\s+vanished,", out.stdout) and "Frozen hosts (1)" in out.stdout
    assert "node-3  vanished-host  host node-3 was seen" in out.stdout
    doc = json.loads(run("vm-status", str(gone), "--runs", "", "--state", str(state),
                         "-f", "json").stdout)
    entry = next(h for h in doc["hosts"] if h["name"] == "node-3")
    assert entry["state"] == "vanished" and entry["frozen"]["kinds"] == ["vanished-host"]
    assert "node-3" in doc["summary"]["frozen"]
