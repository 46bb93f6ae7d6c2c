"""vm-apply under faults (issue 10): a full disk under the journal, a torn journal line, two
runs with different state directories, guests left in flight, a guest landing on a host the
plan did not name, an unreachable host in a dry run. Simulated xends on loopback, the
installed script through real pipes; after each run the report and the cluster agree."""

from __future__ import annotations

import json
import resource
import subprocess
import time

import pytest

from tests.apply_lab import (GUESTS, assert_consistent, cluster_placement, four_hosts, held,
                             plan_of, snapshot_of)
from tests.conftest import run, script
from vmtools.model import dumps

pytestmark = pytest.mark.slow

lab = pytest.fixture(name="lab")(four_hosts)


def write_plan(lab, moves, name="plan.json"):
    plan = plan_of(snapshot_of(lab["state"], "xen"), moves)
    path = lab["dir"] / name
    path.write_text(dumps(plan.to_dict()))
    return path


def apply_args(lab, *args, state_dir=None):
    return ["--hosts", str(lab["hosts"]), "--state-dir", str(state_dir or lab["state_dir"]),
            *args]


def test_a_full_disk_under_the_journal_still_gives_a_report_and_resume_finishes(lab):
    path = write_plan(lab, [("a", "n4"), ("c", "n3", [1]), ("d", "n2", [2]), ("b", "n4", [3])])
    journal = lab["dir"] / "j" / "run.jsonl"
    # The begin event carries the whole plan; let the file grow a little past it, then fail.
    begin = len(json.dumps({"event": "begin", "plan": json.loads(path.read_text())})) + 400
    limit = begin + 700

    def small_disk():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    proc = subprocess.run([script("vm-apply"), str(path), "--journal", str(journal),
                           *apply_args(lab)], capture_output=True, text=True,
                          preexec_fn=small_disk, timeout=120)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr and "bug" not in proc.stderr
    report = json.loads(proc.stdout)
    outcomes = [a["outcome"] for a in report["actions"]]
    assert "not-run" in outcomes and "failed" not in outcomes, outcomes
    assert any("journal" in p and "cannot be written" in p for p in report["summary"]["problems"])
    assert_consistent(lab["state"], report, GUESTS)        # done ones verified, none lost
    # --resume, with room again, runs the rest; a second --resume finds nothing to do
    for _ in range(2):
        proc = run("vm-apply", "--resume", str(journal), *apply_args(lab))
        assert proc.returncode == 0, proc.stderr
        report = json.loads(proc.stdout)
        assert [a["outcome"] for a in report["actions"]] == ["done"] * 4
    assert_consistent(lab["state"], report, GUESTS)
    assert cluster_placement(lab["state"]) == {"a": "n4", "b": "n4", "c": "n3", "d": "n2"}


def test_an_unwritable_journal_is_an_environment_error_before_anything_moves(lab):
    path = write_plan(lab, [("a", "n4")])
    blocker = lab["dir"] / "not-a-dir"
    blocker.write_text("")
    proc = run("vm-apply", str(path), "--journal", str(blocker / "run.jsonl"), *apply_args(lab))
    assert proc.returncode == 1 and proc.stdout == ""
    assert "cannot write the journal" in proc.stderr and "nothing was moved" in proc.stderr
    assert cluster_placement(lab["state"])["a"] == "n1"


def test_a_torn_last_journal_line_is_tolerated_by_resume_twice(lab):
    path = write_plan(lab, [("a", "n4"), ("c", "n3", [1])])
    journal = lab["dir"] / "run.jsonl"
    proc = run("vm-apply", str(path), "--journal", str(journal), *apply_args(lab))
    assert proc.returncode == 0, proc.stderr
    lines = journal.read_text().splitlines()
    cut = [ln for ln in lines if json.loads(ln)["event"] != "finish"]
    journal.write_text("\n".join(cut) + "\n" + lines[-1][: len(lines[-1]) // 2])
    for _ in range(2):
        proc = run("vm-apply", "--resume", str(journal), *apply_args(lab))
        assert proc.returncode == 0, proc.stderr
        assert [a["outcome"] for a in json.loads(proc.stdout)["actions"]] == ["done", "done"]


def start_until_in_flight(lab, path) -> subprocess.Popen:
    """vm-apply of ``path`` in the background, once guest a is arriving on n4."""
    proc = subprocess.Popen([script("vm-apply"), str(path), *apply_args(lab)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while "a--incoming" not in lab["state"].read()["hosts"]["n4"]["domains"]:
        assert time.monotonic() < deadline and proc.poll() is None, \
            "the migration of a never started: " + (proc.communicate(timeout=30)[1]
                                                   if proc.poll() is not None else "")
        time.sleep(0.05)
    return proc


def test_two_runs_with_different_state_directories_never_run_together(lab):
    path = write_plan(lab, [("a", "n4")])
    with held(lab["state"], "a"):                           # in flight until the block ends
        first = start_until_in_flight(lab, path)
        try:
            second = run("vm-apply", str(path), *apply_args(lab,
                                                            state_dir=lab["dir"] / "other"))
            assert second.returncode == 75, second.stderr
            assert "another vm-apply is running on host" in second.stderr
            assert first.poll() is None                     # refused while the first runs
        except BaseException:
            first.kill()
            raise
    out, err = first.communicate(timeout=60)
    assert first.returncode == 0, err
    assert_consistent(lab["state"], json.loads(out), GUESTS)


def test_a_guest_still_in_flight_makes_the_plan_stale(lab):
    with lab["state"].transaction() as st:                 # a killed run left a--incoming
        st["hosts"]["n4"]["domains"]["a--incoming"] = dict(st["hosts"]["n1"]["domains"]["a"])
    path = write_plan(lab, [("a", "n4")])
    proc = run("vm-apply", str(path), *apply_args(lab))
    assert proc.returncode == 75 and proc.stdout == ""
    assert "a is in flight on n4" in proc.stderr and "a--incoming" in proc.stderr


def test_a_guest_landing_on_an_unexpected_host_is_found_and_stops_new_moves(lab):
    # n4's migrate address points at n3: a wrong line in the host map
    text = lab["hosts"].read_text().replace(",n4\n", ",n3\n")
    lab["hosts"].write_text(text)
    path = write_plan(lab, [("a", "n4"), ("b", "n4", [1]), ("c", "n4", [2])])
    proc = run("vm-apply", str(path), *apply_args(lab))
    assert proc.returncode == 1
    report = json.loads(proc.stdout)
    first = report["actions"][0]
    assert first["outcome"] == "failed" and first["where"] == "n3"
    assert "landed on n3" in first["error"]
    assert [a["outcome"] for a in report["actions"][1:]] == ["not-run", "not-run"]
    assert report["placement"]["a"] == "n3"
    assert any("landed on n3" in p for p in report["summary"]["problems"])
    st = lab["state"].read()
    assert "a" in st["hosts"]["n3"]["domains"]


def test_an_unreachable_host_in_a_dry_run_is_69_in_plain_words(lab):
    lab["labs"]["n4"].stop()
    path = write_plan(lab, [("a", "n4")])
    proc = run("vm-apply", "--dry-run", str(path), *apply_args(lab, "--connect-timeout", "2"))
    assert proc.returncode == 69 and proc.stdout == ""
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith("vm-apply: error: cannot reach host n4 (xen at 127.0.0.1:")
    assert "nothing was moved" in line and "stale" not in line


def test_a_guest_another_management_node_is_moving_is_never_migrated_again(lab):
    """A run from another machine (its own state directory and lock directory) moves c while
    this run waits to move it: this run asks both hosts right before and does not start."""
    from vmtools.apply import ApplyOptions, apply_plan
    from vmtools.drivers.hostmap import parse_hostmap
    path = write_plan(lab, [("a", "n4"), ("c", "n3", [1])])
    other = plan_of(snapshot_of(lab["state"], "xen"), [("c", "n4")])
    with held(lab["state"], "a"):            # this run moves a until the other has moved c
        first = start_until_in_flight(lab, path)
        try:
            report = apply_plan(other, ApplyOptions(
                hosts=parse_hostmap(lab["hosts"].read_text()),
                state_dir=str(lab["dir"] / "elsewhere"),
                lock_dir=str(lab["dir"] / "elsewhere-locks")))
            assert report.summary["done"] == 1
        except BaseException:
            first.kill()
            raise
    out, err = first.communicate(timeout=60)
    assert first.returncode == 1, err
    report = json.loads(out)
    assert report["actions"][0]["outcome"] == "done"
    second = report["actions"][1]
    assert second["outcome"] == "failed" and second["error"].startswith("not started: c ")
    assert report["placement"]["c"] == "n4"
    st = lab["state"].read()
    assert [h for h, spec in st["hosts"].items() if "c" in spec["domains"]] == ["n4"]


def journal_lines_until(lab, moves, stop) -> int:
    """Bytes of the journal a full run of ``moves`` writes before the first line ``stop``
    matches (the run is then undone, moving the guests back): the size a disk-full test lets
    the journal reach."""
    path = write_plan(lab, moves, "calibrate.json")
    journal = lab["dir"] / "calibrate.jsonl"
    proc = run("vm-apply", str(path), "--journal", str(journal), *apply_args(lab))
    assert proc.returncode == 0, proc.stderr
    size = 0
    for line in journal.read_text().splitlines():
        if stop(json.loads(line)):
            break
        size += len(line) + 1
    back = write_plan(lab, [(vm, src) for vm, src in
                            reversed([(m[0], GUEST_HOME[m[0]]) for m in moves])], "back.json")
    proc = run("vm-apply", str(back), "--journal", str(lab["dir"] / "back.jsonl"),
               *apply_args(lab))
    assert proc.returncode == 0, proc.stderr
    return size


GUEST_HOME = {"a": "n1", "b": "n1", "c": "n2", "d": "n3"}


def run_on_a_small_disk(lab, path, journal, limit):
    def small_disk():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return subprocess.run([script("vm-apply"), str(path), "--journal", str(journal),
                           *apply_args(lab)], capture_output=True, text=True,
                          preexec_fn=small_disk, timeout=120)


def test_a_journal_that_fails_on_its_last_lines_is_never_a_silent_success(lab):
    moves = [("a", "n4")]
    # Room for everything up to the migration's start: its end (and the finish) cannot be
    # written although the migration itself succeeds.
    limit = journal_lines_until(lab, moves, lambda ev: ev["event"] == "end") + 3
    path = write_plan(lab, moves)
    journal = lab["dir"] / "j" / "run.jsonl"
    proc = run_on_a_small_disk(lab, path, journal, limit)
    assert proc.returncode == 1, proc.stderr
    report = json.loads(proc.stdout)
    assert [a["outcome"] for a in report["actions"]] == ["done"]
    assert "cannot be written" in report["summary"]["journal_error"]
    assert proc.stderr.strip().splitlines()[-1].startswith(
        f"vm-apply: error: the journal {journal} cannot be written")
    assert cluster_placement(lab["state"])["a"] == "n4"
    # The next --resume completes the plan (here: finds it done) and says so.
    proc = run("vm-apply", "--resume", str(journal), *apply_args(lab))
    assert proc.returncode == 0, proc.stderr
    assert [a["outcome"] for a in json.loads(proc.stdout)["actions"]] == ["done"]


def full_disk_before_the_second_move(lab):
    moves = [("a", "n4"), ("c", "n3", [1]), ("d", "n2", [2])]
    limit = journal_lines_until(
        lab, moves,
        lambda ev: ev["event"] == "start" and ev["id"] == 2) + 3
    path = write_plan(lab, moves)
    journal = lab["dir"] / "j" / "run.jsonl"
    proc = run_on_a_small_disk(lab, path, journal, limit)
    assert proc.returncode == 1, proc.stderr
    report = json.loads(proc.stdout)
    # A move the journal cannot record is not started.
    assert [a["outcome"] for a in report["actions"]] == ["done", "not-run", "not-run"]
    assert report["summary"]["journal_error"]
    assert cluster_placement(lab["state"]) == {"a": "n4", "b": "n1", "c": "n2", "d": "n3"}
    return journal


def move_by_hand(lab, vm, dst):
    path = write_plan(lab, [(vm, dst)], "by-hand.json")
    proc = run("vm-apply", str(path), "--journal", str(lab["dir"] / "by-hand.jsonl"),
               *apply_args(lab))
    assert proc.returncode == 0, proc.stderr


def test_resume_after_a_full_disk_asks_the_hosts_which_moves_are_left(lab):
    journal = full_disk_before_the_second_move(lab)
    # Meanwhile someone moved c exactly where the plan sends it: done, not stale.
    move_by_hand(lab, "c", "n3")
    proc = run("vm-apply", "--resume", str(journal), *apply_args(lab))
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert [a["outcome"] for a in report["actions"]] == ["done"] * 3
    assert "found on n3 by --resume" in (report["actions"][1].get("error") or "")
    assert cluster_placement(lab["state"]) == {"a": "n4", "b": "n1", "c": "n3", "d": "n2"}
    assert_consistent(lab["state"], report, GUESTS)


def test_resume_reports_a_guest_found_neither_at_its_source_nor_its_destination(lab):
    journal = full_disk_before_the_second_move(lab)
    move_by_hand(lab, "c", "n1")
    proc = run("vm-apply", "--resume", str(journal), *apply_args(lab))
    assert proc.returncode == 75 and proc.stdout == ""
    assert "c is on n1, not on n2 as the plan expects" in proc.stderr
    assert cluster_placement(lab["state"])["c"] == "n1"
