"""Hardening, second round (issue 27): each class of the campaign, reproduced and refused at
its root. Numbers: one check (vmtools.numbers) for options, settings and readers; capacities
no host has are problems; every file read bounded; what hosts send is escaped."""

from __future__ import annotations

import json

import pytest

from tests.conftest import run
from vmtools import numbers
from vmtools.errors import DataError, OptionError


def one_error_line(proc, code: int, prog: str, *needles: str) -> None:
    assert proc.returncode == code, (proc.returncode, proc.stderr)
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith(f"{prog}: error: "), \
        proc.stderr
    assert "Traceback" not in proc.stderr
    for needle in needles:
        assert needle in proc.stderr, proc.stderr


# ----------------------------------------------------------------- numbers, one check


@pytest.mark.parametrize("value, bounds, wanted", [
    (float("inf"), {}, "expected a finite number, got inf"),
    (float("nan"), {}, "expected a finite number, got nan"),
    (True, {}, "expected a number, got true"),
    ("3", {}, 'expected a number, got "3"'),
    (0.0, {"lo": 0.0, "lo_open": True}, "expected a number > 0, got 0.0"),
    (1e300, {}, "expected a number <= 1e+15, got 1e+300"),
    (3.5, {"integer": True}, "expected an integer, got 3.5"),
    (2**60, {"integer": True}, "expected an integer <= 9007199254740992"),
])
def test_one_number_check_says_what_is_wrong(value, bounds, wanted):
    assert wanted in numbers.problem(value, **bounds)


def test_number_check_raises_the_callers_kind_of_error():
    assert numbers.number(2, "a.b", lo=0) == 2.0
    with pytest.raises(DataError, match=r"^t.csv:3: expected a finite number, got inf$"):
        numbers.parse("inf", "t.csv:3")
    with pytest.raises(DataError, match=r"^t.csv:3: expected a number, got \"1e999x\"$"):
        numbers.parse("1e999x", "t.csv:3")
    with pytest.raises(OptionError) as err:
        numbers.option("time_limit", float("nan"), lo=0.0, lo_open=True)
    assert err.value.on_command_line() == "--time-limit must be a finite number, got nan"


@pytest.mark.parametrize("prog, args, env, option", [
    ("vm-plan", ["--time-limit", "inf"], {}, "--time-limit"),
    ("vm-plan", ["--time-limit", "1e10"], {}, "--time-limit"),
    ("vm-plan", ["--max-duration", "nan"], {}, "--max-duration"),
    ("vm-plan", ["--max-moved", "nan"], {}, "--max-moved"),
    ("vm-plan", [], {"VMTOOLS_PLAN_TIME_LIMIT": "inf"}, "--time-limit"),
    ("vm-plan", [], {"VMTOOLS_PLAN_VERBOSE": "-4"}, "--verbose"),
    ("vm-gmetric", ["--timeout", "inf"], {}, "--timeout"),
    ("vm-gmetric", ["--interval", "inf"], {}, "--interval"),
    ("vm-gmetric", ["--window", "inf"], {}, "--window"),
    ("vm-gmetric", ["--tmax", str(2**32)], {}, "--tmax"),
    ("vm-replay", ["--step", "inf"], {}, "--step"),
    ("vm-replay", ["--warm-up", "nan"], {}, "--warm-up"),
    ("vm-snapshot", ["--timeout", "inf"], {}, "--timeout"),
    ("vm-status", ["--timeout", "inf"], {}, "--timeout"),
    ("vm-apply", ["--timeout", "-inf"], {}, "--timeout"),
])
def test_number_options_and_settings_refuse_inf_nan_and_the_absurd(prog, args, env, option):
    proc = run(prog, *args, env=env, input="")
    one_error_line(proc, 2, prog, option)


def test_a_number_setting_in_vmtools_toml_is_checked_too(tmp_path):
    conf = tmp_path / "vmtools.toml"
    conf.write_text("[common]\nverbose = -4\n")
    one_error_line(run("vm-snapshot", env={"VMTOOLS_CONFIG": str(conf)}), 2, "vm-snapshot",
                   "--verbose")
    conf.write_text("[vm-plan]\ntime_limit = inf\n")
    one_error_line(run("vm-plan", env={"VMTOOLS_CONFIG": str(conf)}, input="{}"), 2,
                   "vm-plan", "--time-limit", "finite")


def test_settings_file_of_endless_bytes_is_one_line(tmp_path):
    one_error_line(run("vm-plan", env={"VMTOOLS_CONFIG": "/dev/zero"}, input="{}"), 2,
                   "vm-plan", "/dev/zero", "larger than")


# ----------------------------------------------------------------- capacities


def snapshot_doc(host_mem: int = 4096) -> dict:
    return {"format": "vmtools.snapshot", "version": "1.0", "source": "test",
            "taken": "2026-12-07T05:00:00Z",
            "hosts": [{"name": "h1", "cpu": 4, "mem_mib": host_mem},
                      {"name": "h2", "cpu": 4, "mem_mib": 4096}],
            "vms": [{"name": "g1", "host": "h1", "cpu": 0.5, "mem_mib": 512}]}


def test_a_host_without_memory_is_bad_input_not_a_crash():
    proc = run("vm-plan", input=json.dumps(snapshot_doc(host_mem=0)))
    one_error_line(proc, 65, "vm-plan", "hosts[0].mem_mib", ">= 1")


# ----------------------------------------------------------------- what hosts send is data

HOSTILE = "\x1b[2J\x1b[1;31mALL MIGRATIONS SUCCEEDED\x1b]0;title\x07\r"


@pytest.fixture(name="xend_lab")
def _xend_lab(tmp_path):
    from tests.apply_lab import four_hosts
    yield from four_hosts(tmp_path)


@pytest.mark.slow
def test_a_hosts_error_text_never_reaches_the_terminal_raw(xend_lab, tmp_path):
    """A simulated xend refuses a migration with escape sequences: vm-apply's progress lines,
    its report (JSON and table), vm-rebalance's result.json and summary, and vm-status show
    them escaped."""
    import subprocess
    import sys
    import time

    from tests.apply_lab import plan_of, snapshot_of
    from vmtools.model import dumps
    lab = xend_lab
    with lab["state"].transaction() as st:
        st["faults"]["refuse"] = {"a": HOSTILE}
    path = lab["dir"] / "plan.json"
    path.write_text(dumps(plan_of(snapshot_of(lab["state"], "xen"), [("a", "n4")]).to_dict()))
    args = ["vm-apply", str(path), "--hosts", str(lab["hosts"]), "--state-dir",
            str(lab["state_dir"]), "-v"]
    proc = run(*args)
    assert proc.returncode == 1
    assert "ALL MIGRATIONS SUCCEEDED" in proc.stderr
    assert "\x1b" not in proc.stderr and "\r" not in proc.stderr and "\x07" not in proc.stderr
    assert "\\x1b[2J" in proc.stderr
    report = json.loads(proc.stdout)
    assert report["actions"][0]["error"].count("\\x1b") == 3
    table = run(*args[:-1], "-f", "table", "--resume",
                str(next((lab["state_dir"] / "journal").glob("*.jsonl"))))
    assert "\x1b" not in table.stdout + table.stderr

    runs = tmp_path / "runs"
    run_dir = runs / "20261207T050000Z"
    run_dir.mkdir(parents=True)
    (run_dir / "plan.json").write_text(path.read_text())
    (run_dir / "report.json").write_text(proc.stdout)
    (run_dir / "report.log").write_text(proc.stderr + "raw: " + HOSTILE + "\n")
    done = subprocess.run([sys.executable, "-m", "vmtools.runs", "finish", str(run_dir),
                           "--exit", "1", "--step", "report", "--started",
                           str(time.time() - 5)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "\x1b" not in done.stdout and "ALL MIGRATIONS SUCCEEDED" in done.stdout
    assert "\\u001b" not in (run_dir / "result.json").read_text()
    snap = tmp_path / "snap.json"
    snap.write_text(dumps(snapshot_of(lab["state"], "xen").to_dict()))
    status = run("vm-status", str(snap), "--runs", str(runs))
    assert status.returncode == 0, status.stderr
    assert "ALL MIGRATIONS SUCCEEDED" in " ".join(status.stdout.split())
    assert "\x1b" not in status.stdout


# ----------------------------------------------------------------- run archive and state

def write_run(runs, name: str, result: dict | str) -> None:
    d = runs / name
    d.mkdir(parents=True)
    (d / "result.json").write_text(result if isinstance(result, str) else json.dumps(result))


@pytest.mark.parametrize("damage", [
    {"failures": 1}, {"failures": [{"vm": "a"}]}, {"failures": [1, None]},
    {"plan": [], "exit": "x"}, {"plan": {"migrations": "many", "hosts_before": 1e308}},
    {"moves": {"a": 1}, "outcomes": [], "seconds": "long", "run": 7},
    "[1, 2]", "{\"exit\": NaN}",
])
def test_vm_status_survives_a_damaged_result_json(tmp_path, damage):
    runs = tmp_path / "runs"
    base = {"run": "20261207T050000Z", "exit": 1, "failed_step": "report",
            "plan": {"objective": "consolidate", "migrations": 1}}
    write_run(runs, "20261207T040000Z", {"run": "older", "exit": 0})
    write_run(runs, "20261207T050000Z",
              {**base, **damage} if isinstance(damage, dict) else damage)
    snap = tmp_path / "snap.json"
    assert run("vm-snapshot", "--example", "lab", "-o", str(snap)).returncode == 0
    for fmt in ("table", "json"):
        proc = run("vm-status", str(snap), "--runs", str(runs), "-f", fmt)
        assert proc.returncode == 0, proc.stderr
        assert "Traceback" not in proc.stderr
    if isinstance(damage, dict) and "failures" in damage:
        last = json.loads(proc.stdout)["last_run"]
        assert last["run"] == "20261207T050000Z"
        assert all(isinstance(f["error"], str) for f in last["failures"])


@pytest.mark.parametrize("plan", [
    {"actions": {"vm": "a"}, "summary": []}, {"actions": 3, "solver": "cbc"},
    {"actions": [1, "x", {"vm": ["a"]}], "summary": {"hosts_before": "nan"}}, [],
])
def test_runs_finish_writes_a_result_for_a_malformed_plan(tmp_path, plan):
    import subprocess
    import sys
    run_dir = tmp_path / "20261207T050000Z"
    run_dir.mkdir()
    (run_dir / "plan.json").write_text(json.dumps(plan))
    (run_dir / "report.json").write_text(json.dumps({"actions": {"outcome": "failed"}}))
    done = subprocess.run([sys.executable, "-m", "vmtools.runs", "finish", str(run_dir),
                           "--exit", "0", "--started", "1765000000"], capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stderr
    result = json.loads((run_dir / "result.json").read_text())
    assert result["run"] == run_dir.name and isinstance(result["moves"], list)


@pytest.mark.parametrize("standby", [
    '{"standby": {"node-9": {"cpu": NaN, "mem_mib": Infinity}}}',
    '{"standby": {"node-9": {"cpu": 1e999, "mem_mib": "lots"}}}',
    '{"standby": {"\\u001b[2Jnode": {"cpu": 8}, "node-9": 3}}',
    '{"standby": [1, 2]}', '\u0000\u0000',
])
def test_vm_status_refuses_a_damaged_power_state_naming_the_file_and_the_fix(tmp_path,
                                                                              standby):
    """As vm-plan does (issue 20: one state document, one reading of it): exit 65, one line
    naming the file and the fix, nothing a terminal would obey."""
    state = tmp_path / "runs" / ".plan-state"
    state.mkdir(parents=True)
    (state / "vm-plan-power.json").write_text(standby)
    snap = tmp_path / "snap.json"
    assert run("vm-snapshot", "--example", "lab", "-o", str(snap)).returncode == 0
    for fmt in ("table", "json"):
        proc = run("vm-status", str(snap), "--runs", str(tmp_path / "runs"), "-f", fmt)
        one_error_line(proc, 65, "vm-status", "vm-plan-power.json", "remove it")
        assert proc.stdout == "" and "\x1b" not in proc.stderr


@pytest.mark.slow
def test_vm_rebalance_passes_an_archive_path_with_a_space_as_one_word(tmp_path):
    from tests.test_rebalance import rebalance, write_conf
    archive = tmp_path / "my runs"
    conf = write_conf(tmp_path / "r.conf", archive, ["--example", "lab"],
                      ["--objective", "consolidate"], ["--hosts", str(tmp_path / "none.csv")])
    proc = rebalance("-c", str(conf), "-n")
    # The plan step ran with --state "my runs/.plan-state" (one word): the run gets to vm-apply,
    # which fails on the missing host map.
    assert proc.returncode == 2, proc.stdout + proc.stderr
    run_dir, = [p for p in archive.iterdir() if p.name[0].isdigit()]
    result = json.loads((run_dir / "result.json").read_text())
    assert result["failed_step"] == "report" and result["plan"]["migrations"] > 0
    assert (archive / ".plan-state").is_dir()
