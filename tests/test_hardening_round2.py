"""Hardening, second round (issue 27): each class of the campaign, reproduced and refused at
its root. Numbers: one check (vmtools.numbers) for options, settings and readers; capacities
no host has are problems; every file read bounded; what hosts send is escaped."""

from __future__ import annotations

import json

import pytest

from tests.conftest import run
from vmtools import numbers
from vmtools.errors import DataError, OptionError


_LAB: list[str] = []


def lab_text() -> str:
    """The lab example's snapshot, made once per test session."""
    if not _LAB:
        proc = run("vm-snapshot", "--example", "lab")
        assert proc.returncode == 0, proc.stderr
        _LAB.append(proc.stdout)
    return _LAB[0]


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
    snap.write_text(lab_text())
    proc = run("vm-status", str(snap), "--runs", str(runs), "-f", "json")
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    from vmtools import render
    render.status_table(json.loads(proc.stdout))           # what -f table shows
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
    snap.write_text(lab_text())
    proc = run("vm-status", str(snap), "--runs", str(tmp_path / "runs"), "-f", "table")
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


# ----------------------------------------------------------------- the atomic write

@pytest.mark.parametrize("target", ["DIR", "", "DIR/", "missing/doc.json"])
def test_output_to_a_directory_or_nowhere_is_a_usage_error(tmp_path, target):
    target = target.replace("DIR", str(tmp_path))
    snap = lab_text()
    proc = run("vm-plan", "-o", target, input=snap)
    one_error_line(proc, 2, "vm-plan", "cannot write" if "missing" in target else "")
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def replay_files(tmp_path, trace: str | None = None, hosts: str | None = None):
    from tests.test_replay import HOSTS, TRACE
    t, h = tmp_path / "t.csv", tmp_path / "h.csv"
    t.write_text(TRACE if trace is None else trace)
    h.write_text(HOSTS if hosts is None else hosts)
    return str(t), str(h)


def test_replay_html_and_output_to_a_directory_are_usage_errors(tmp_path):
    t, h = replay_files(tmp_path)
    for flag in ("--html", "-o"):
        proc = run("vm-replay", t, "--hosts", h, "--baseline", "none", flag, str(tmp_path))
        one_error_line(proc, 2, "vm-replay", "is a directory")
    proc = run("vm-replay", t, "--hosts", h, "--baseline", "none",
               env={"VMTOOLS_REPLAY_HTML": ""})
    one_error_line(proc, 2, "vm-replay")


# ----------------------------------------------------------------- every read has a limit

def test_a_peer_that_never_stops_sending_is_cut_at_the_answer_limit():
    import socket
    import threading

    from vmtools.errors import VmtoolsError
    from vmtools.ganglia.sources import fetch
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    stop = threading.Event()

    def flood():
        conn, _ = server.accept()
        with conn:
            block = b"<" * 65536
            try:
                while not stop.is_set():
                    conn.sendall(block)
            except OSError:
                pass
    thread = threading.Thread(target=flood, daemon=True)
    thread.start()
    with pytest.raises(DataError, match=r"larger than 4 MiB: not a Ganglia answer") as err:
        fetch("127.0.0.1", server.getsockname()[1], "gmond://127.0.0.1", timeout=5,
              limit=4 * 2**20)
    assert isinstance(err.value, VmtoolsError) and err.value.exit_code == 65
    stop.set()
    server.close()


def test_one_host_with_endless_metrics_is_dropped_not_held(tmp_path):
    from vmtools.ganglia.xml import MAX_METRICS_PER_HOST
    xml = tmp_path / "big.xml"
    metric = ('<METRIC NAME="container.guest.g{0}.cpu" VAL="1" TYPE="float" UNITS="" TN="1" '
              'TMAX="60" DMAX="0" SLOPE="both"/>\n')
    with open(xml, "w") as fh:
        fh.write('<GANGLIA_XML VERSION="3.7.2" SOURCE="gmond"><CLUSTER NAME="c" '
                 'LOCALTIME="1765000000">\n<HOST NAME="h1" REPORTED="1765000000" TN="1" '
                 'TMAX="20">\n')
        for i in range(MAX_METRICS_PER_HOST + 10):
            fh.write(metric.format(i))
        fh.write("</HOST></CLUSTER></GANGLIA_XML>\n")
    proc = run("vm-snapshot", "-i", str(xml))
    assert proc.returncode == 0, proc.stderr
    (problem,) = json.loads(proc.stdout)["problems"]
    assert problem["kind"] == "dropped-host" and problem["host"] == "h1"
    assert f"{MAX_METRICS_PER_HOST + 10} metrics" in problem["message"]


def test_a_toolstack_printing_without_end_is_killed_at_the_output_limit(tmp_path, monkeypatch):
    from vmtools.dom0 import read
    from vmtools.dom0.read import ToolstackError, run_command
    xl = tmp_path / "xl"
    xl.write_text("#!/bin/sh\nexec tr '\\0' x < /dev/zero\n")
    xl.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")
    monkeypatch.setattr(read, "MAX_OUTPUT_BYTES", 2 * 2**20)
    with pytest.raises(ToolstackError, match=r"xl list: printed more than 2 MiB, killed"):
        run_command(["xl", "list"], timeout=20)


@pytest.mark.parametrize("prog, args", [
    ("vm-plan", ["--constraints", "/dev/zero"]),
    ("vm-plan", ["--power-model", "/dev/zero"]),
    ("vm-apply", ["--hosts", "/dev/zero"]),
])
def test_files_of_endless_bytes_are_bad_data_naming_the_file(prog, args):
    snap = lab_text()
    doc = snap if prog == "vm-plan" else run("vm-plan", input=snap).stdout
    proc = run(prog, *args, input=doc)
    one_error_line(proc, 65, prog, "/dev/zero", "larger than")


# ----------------------------------------------------------------- vm-replay's readers and bounds

@pytest.mark.parametrize("edit, where, what", [
    (lambda t: t.replace("0,g2,0.5,1000,b", "0,g2,0.5\r,1000,b"), "t.csv:3", "fields"),
    (lambda t: t.replace("0,g2,0.5,1000,b", '0,g2,"0.5\x00,1000,b'), "t.csv:3", "fields"),
    (lambda t: t.replace("0,g2,0.5,1000,b", "0,g2,1e308,1000,b"), "t.csv:3", "cpu: expected"),
    (lambda t: t.replace("0,g2,0.5,1000,b", "0,g2,nan,1000,b"), "t.csv:3", "finite"),
    (lambda t: t.replace("1200,g3", "100000000000000000000,g3"), "t.csv:10", "time"),
    (lambda t: t.replace("1200,g3", "10000-01-01T00:00:00Z,g3"), "t.csv:10", "time"),
    (lambda t: t.replace("1200,g3", "3000000000,g3"), "t.csv:10", "mistyped time"),
])
def test_replay_csv_errors_name_file_and_line(tmp_path, edit, where, what):
    from tests.test_replay import TRACE
    t, h = replay_files(tmp_path, edit(TRACE).replace("\n0,", "\n1764547200,")
                        .replace("\n600,", "\n1764547800,").replace("\n1200,", "\n1764548400,"))
    proc = run("vm-replay", t, "--hosts", h, "--baseline", "none")
    one_error_line(proc, 65, "vm-replay", where, what)


def test_a_mistyped_epoch_names_its_line_not_a_54_year_replay(tmp_path):
    from tests.test_replay import TRACE
    text = TRACE.replace("\n0,", "\n64547200,", 1).replace("\n0,", "\n1764547200,") \
        .replace("\n600,", "\n1764547800,").replace("\n1200,", "\n1764548400,")
    t, h = replay_files(tmp_path, text)
    proc = run("vm-replay", t, "--hosts", h, "--baseline", "none")
    one_error_line(proc, 65, "vm-replay", "t.csv:2", "mistyped time")


@pytest.mark.parametrize("hosts, what", [("name,cpu,mem_mib\na,1e-320,4096\n", "cpu"),
                                         ("name,cpu,mem_mib\na,2,0\n", "mem_mib"),
                                         ("name,cpu,mem_mib\na,inf,4096\n", "cpu")])
def test_replay_host_capacities_get_a_snapshots_bounds(tmp_path, hosts, what):
    t, h = replay_files(tmp_path, hosts=hosts)
    proc = run("vm-replay", t, "--hosts", h, "--baseline", "none")
    one_error_line(proc, 65, "vm-replay", "h.csv:2", what)


@pytest.mark.parametrize("args, option", [
    (["--repeat", "100000000"], "--repeat"), (["--every", "1e-300"], "--every"),
    (["--every", "0.001"], "--every"), (["--step", "inf"], "--step"),
])
def test_replay_length_is_bounded_before_the_first_tick(tmp_path, args, option):
    import resource
    t, h = replay_files(tmp_path)
    proc = run("vm-replay", t, "--hosts", h, "--baseline", "none", *args, timeout=60)
    one_error_line(proc, 2, "vm-replay", option)
    assert resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss < 1024 * 1024  # KB: < 1 GiB


@pytest.mark.slow
def test_sigterm_ends_a_replay_with_a_state_cleanly_and_leaves_nothing_behind(tmp_path):
    """A --plan setting's state lives in the replay's memory (issue 20), so there is no
    directory to leave; SIGTERM still ends the replay through its finally blocks: one line,
    exit 143, no solver file left in $TMPDIR."""
    import os
    import signal
    import subprocess
    import time

    from tests.conftest import script
    lines = ["time,guest,cpu,mem_mib,host"]
    for k in range(3000):
        lines += [f"{1764547200 + 300 * k},g{i},{0.2 + 0.1 * (i % 3)},512,{'abc'[i % 3]}"
                  for i in range(6)]
    t, h = replay_files(tmp_path, "\n".join(lines) + "\n")
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("VMTOOLS_")}
    env["TMPDIR"] = str(scratch)
    # stderr on a terminal: the replay draws "tick k/n" once it runs its ticks, which is when
    # the signal is sent (a fixed sleep loses the race on a loaded machine)
    import pty
    import select
    master, slave = pty.openpty()
    proc = subprocess.Popen([script("vm-replay"), t, "--hosts", h, "--plan",
                             "--objective balance --state x"], stdout=subprocess.PIPE,
                            stderr=slave, env=env)
    os.close(slave)
    seen = b""

    def read_some(wait: float) -> bool:
        nonlocal seen
        ready, _, _ = select.select([master], [], [], wait)
        if not ready:
            return True
        try:
            chunk = os.read(master, 4096)
        except OSError:                      # the child closed the terminal
            return False
        seen += chunk
        return bool(chunk)

    deadline = time.monotonic() + 120
    while b"tick " not in seen and time.monotonic() < deadline and proc.poll() is None:
        read_some(0.5)
    assert b"tick " in seen, seen.decode("utf-8", "replace")
    proc.send_signal(signal.SIGTERM)
    proc.stdout.read()
    proc.wait(timeout=60)
    end = time.monotonic() + 10
    while time.monotonic() < end and read_some(0.2):
        pass
    os.close(master)
    err = seen.decode("utf-8", "replace")
    assert proc.returncode == 143, err[-500:]
    assert "stopped by SIGTERM" in err and "Traceback" not in err
    assert list(scratch.iterdir()) == [] and not (tmp_path / "x").exists()


def test_a_guest_growing_past_its_hosts_memory_is_held_as_xen_would(tmp_path):
    from tests.test_replay import TRACE
    t, h = replay_files(tmp_path, TRACE.replace("600,g1,1.0,1000,", "600,g1,1.0,5000,"))
    proc = run("vm-replay", t, "--hosts", h, "--baseline", "none", "--plan", "")
    assert proc.returncode == 0, proc.stderr
    assert "a bug" not in proc.stderr
    assert "grows guest g1 to 5000 MiB" in proc.stderr and "it gets 4096 MiB" in proc.stderr
    assert "t.csv:5: the trace grows" in proc.stderr          # the line of the growing row
    doc = json.loads(proc.stdout)
    assert all(r["figures"]["memory_over_capacity"] == 0 for r in doc["runs"])


# ----------------------------------------------------------------- the planner's own input

def lab_snapshot() -> dict:
    return json.loads(lab_text())


@pytest.mark.parametrize("objective", ["consolidate", "balance", "auto", "repair"])
def test_a_standby_host_listing_guests_is_incoherent_input(objective):
    snap = lab_snapshot()
    snap["hosts"][0]["state"] = "standby"
    proc = run("vm-plan", "--objective", objective, input=json.dumps(snap))
    one_error_line(proc, 65, "vm-plan", f"on host {snap['hosts'][0]['name']}", "standby")


@pytest.mark.parametrize("objective", ["consolidate", "balance", "auto", "repair"])
def test_a_gather_rule_no_host_can_hold_is_exit_1_not_a_safety_check(tmp_path, objective):
    snap = lab_snapshot()
    off = snap["hosts"][0]["name"]
    snap["hosts"][0]["state"] = "offline"
    stuck = next(v["name"] for v in snap["vms"] if v["host"] == off)
    other = next(v["name"] for v in snap["vms"] if v["host"] != off)
    rules = tmp_path / "rules.json"
    rules.write_text(json.dumps({"format": "vmtools.constraints", "version": "1.0",
                                 "rules": [{"rule": "gather", "vms": [stuck, other]}]}))
    proc = run("vm-plan", "--objective", objective, "--constraints", str(rules),
               input=json.dumps(snap))
    one_error_line(proc, 1, "vm-plan", "gather", f"{stuck} must stay on {off}")


@pytest.mark.parametrize("fraction", [0.00001, 0.0, 1.5])
def test_a_capacity_rule_fraction_no_host_lives_with_is_bad_input(tmp_path, fraction):
    snap = lab_snapshot()
    rules = tmp_path / "rules.json"
    rules.write_text(json.dumps({"format": "vmtools.constraints", "version": "1.0",
                                 "rules": [{"rule": "capacity", "hosts": [snap["hosts"][0]
                                                                          ["name"]],
                                            "mem": fraction}]}))
    proc = run("vm-plan", "--constraints", str(rules), input=json.dumps(snap))
    one_error_line(proc, 65, "vm-plan", "rules[0]", "mem must be a fraction from 0.01 to 1")


def test_a_host_of_half_a_mib_from_ganglia_is_a_problem_not_a_crash(tmp_path):
    from vmtools.ganglia.sources import example_path
    from pathlib import Path
    text = Path(example_path("lab")).read_text()
    import re
    first = re.search(r'NAME="container.mem_total" VAL="(\d+)"', text)
    broken = tmp_path / "broken.xml"
    broken.write_text(text[:first.start(1)] + "512" + text[first.end(1):])
    proc = run("vm-snapshot", "-i", str(broken))
    assert proc.returncode == 0, proc.stderr
    problems = json.loads(proc.stdout)["problems"]
    assert any(p["kind"] == "bad-value" and "container.mem_total" in p["message"]
               and '"512"' in p["message"] for p in problems), problems
    plan = run("vm-plan", input=proc.stdout)
    assert plan.returncode == 0, plan.stderr
    assert "internal error" not in plan.stderr


def test_an_unreadable_reported_is_the_reason_given():
    from vmtools.ganglia.interpret import SnapshotBuilder
    from vmtools.ganglia.xml import Cluster, RawHost
    b = SnapshotBuilder(now=1765000000)
    raw = RawHost(name="h1", reported=None, tn=1, tmax=20, line=3,
                  times={"REPORTED": "4294967296"},
                  metrics={"container.cpu_num": "4", "container.mem_total": "8388608",
                           "container.type": "xen-4.17", "container.driver.migration": "xen",
                           "container.vms": "g1"})
    from vmtools.ganglia.names import HOST_METRICS
    for m in HOST_METRICS:
        raw.metrics.setdefault(m, "g1" if m.endswith("vms") else "1")
    b.add_host(Cluster(name="c"), raw, "test")
    messages = [p.message for p in b.problems]
    assert any("REPORTED of host h1" in m and "not a uint32" in m for m in messages), messages
    offline = [m for m in messages if "still lists" in m]
    assert offline and "has not reported for" not in offline[0], offline
    assert "report times that are not uint32" in offline[0]


@pytest.mark.parametrize("scenario, where", [
    ('{"hosts": {"a": {}}, "guests": {"g": {"host": "b"}}}', "guests.g.host"),
    ("[1]", "expected an object"),
    ('{"hosts": {"a": {}}}', "guests"),
    ('{"hosts": {"a": {}}, "guests": {}', "invalid JSON"),
    ('{"hosts": {"a": {"mem_mib": 1e400}}, "guests": {}}', "invalid JSON"),
    ('{"hosts": {"a": {"cpus": 0}}, "guests": {}}', "hosts.a.cpus"),
    ('{"hosts": {"a": {}}, "guests": {}, "load": [{"guests": ["x"], "shape": "step"}]}',
     "load[0].guests[0]"),
    ('{"hosts": {"a": {}}, "guests": {"g": {"host": "a"}}, "load": [{"guests": ["g"], '
     '"shape": "pulse", "load": 1, "on": 1, "period": 0}]}', "load[0].period"),
])
def test_vm_lab_scenario_files_are_checked_before_the_lab_starts(tmp_path, scenario, where):
    path = tmp_path / "sc.json"
    path.write_text(scenario)
    proc = run("vm-lab", "--scenario", str(path), "--duration", "1", timeout=60)
    one_error_line(proc, 65, "vm-lab", str(path), where)


@pytest.mark.parametrize("model, where", [
    ('{"hosts": [{"curve_w": [1.7e308, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1]}]}', "curve_w[0]"),
    ('{"hosts": [{"idle_w": 70, "peak_w": 1e9}]}', "peak_w"),
    ('{"hosts": [{"idle_w": 70, "peak_w": 100, "standby_w": "5"}]}', "standby_w"),
])
def test_power_model_numbers_are_bounded(tmp_path, model, where):
    path = tmp_path / "power.json"
    path.write_text(model)
    snap = lab_text()
    proc = run("vm-plan", "--power-model", str(path), input=snap)
    one_error_line(proc, 65, "vm-plan", str(path), where)


def test_a_nul_in_a_path_setting_is_a_usage_error(tmp_path):
    conf = tmp_path / "vmtools.toml"
    conf.write_text('[vm-plan]\npower_model = "\\u0000"\n')
    snap = lab_text()
    one_error_line(run("vm-plan", env={"VMTOOLS_CONFIG": str(conf)}, input=snap), 2,
                   "vm-plan", "--power-model", "NUL")
    one_error_line(run("vm-plan", env={"VMTOOLS_PLAN_CONSTRAINTS": "a\x01b"}, input=snap), 2,
                   "vm-plan", "a\\x01b")


# ----------------------------------------------------------------- RRDs written by rrdtool itself

def make_rrd(path, values: list[float | None], start: int, step: int = 15) -> None:
    import subprocess
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["rrdtool", "create", str(path), "--start", str(start - step), "--step",
                    str(step), f"DS:sum:GAUGE:{step * 4}:U:U", "RRA:AVERAGE:0.5:1:1000"],
                   check=True)
    updates = [f"{start + k * step}:{'U' if v is None else v}" for k, v in enumerate(values)]
    subprocess.run(["rrdtool", "update", str(path), *updates], check=True)


@pytest.mark.skipif(not __import__("shutil").which("rrdtool"), reason="needs rrdtool")
@pytest.mark.parametrize("cluster", ["xen", "a\\b", "with:colon"])
def test_rrd_capacities_get_a_snapshots_bounds_and_odd_directory_names_are_read(tmp_path,
                                                                                 cluster):
    from vmtools.replay.rrd import read_rrd
    start = 1765000000
    n = 20
    root = tmp_path / "rrds"
    good, bad = root / cluster / "xen-1", root / cluster / "xen-2"
    make_rrd(good / "container.cpu_num.rrd", [4] * n, start)
    make_rrd(good / "container.mem_total.rrd", [8 * 2**20] * n, start)
    make_rrd(good / "container.vm.g1.cpu.rrd", [50.0] * n, start)
    make_rrd(good / "container.vm.g1.mem.rrd", [2**20] * n, start)
    make_rrd(bad / "container.cpu_num.rrd", [-1] * n, start)          # a lie
    make_rrd(bad / "container.mem_total.rrd", [-100] * n, start)
    make_rrd(bad / "container.vm.g2.cpu.rrd", [1e300] * n, start)
    make_rrd(bad / "container.vm.g2.mem.rrd", [2**20] * n, start)
    trace = read_rrd(str(root), start, start + (n - 2) * 15, 15)
    assert [(h.name, h.cpu, h.mem_mib) for h in trace.hosts] == [("xen-1", 4.0, 8192)]
    assert any("host xen-2 has no container.cpu_num" in note for note in trace.notes)
    assert any("outside" in note and "container.cpu_num" in note for note in trace.notes)
    assert all(s.vms["g1"].cpu == pytest.approx(0.5) for s in trace.samples)


@pytest.mark.skipif(not __import__("shutil").which("rrdtool"), reason="needs rrdtool")
def test_an_rrdtool_answer_beyond_its_bounds_is_refused_before_it_is_parsed(tmp_path,
                                                                            monkeypatch):
    from vmtools.replay import rrd
    start = 1765000000
    host = tmp_path / "rrds" / "xen" / "xen-1"
    for metric, value in (("container.cpu_num", 4), ("container.mem_total", 8 * 2**20),
                          ("container.vm.g1.cpu", 50.0), ("container.vm.g1.mem", 2**20)):
        make_rrd(host / f"{metric}.rrd", [value] * 40, start)
    monkeypatch.setattr(rrd, "MAX_ROWS", 10)
    with pytest.raises(DataError, match=r"rrdtool answers \d+ rows, more than 10"):
        rrd.read_rrd(str(tmp_path / "rrds"), start, start + 39 * 15, 15)
    monkeypatch.setattr(rrd, "MAX_ROWS", 250_000)
    monkeypatch.setattr(rrd, "MAX_ANSWER_BYTES", 200)
    with pytest.raises(DataError, match=r"rrdtool's answer is larger than"):
        rrd.read_rrd(str(tmp_path / "rrds"), start, start + 39 * 15, 15)


def test_an_xend_answering_without_end_is_read_up_to_its_limit(monkeypatch):
    import http.server
    import threading

    from vmtools.drivers import xend_http
    from vmtools.drivers.base import Endpoint

    class Endless(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server names it
            self.send_response(200)
            self.end_headers()
            try:
                while True:
                    self.wfile.write(b"(" * 65536)
            except OSError:
                pass

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Endless)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setattr(xend_http, "MAX_ANSWER_BYTES", 1 << 20)
    try:
        driver = xend_http.XendHttpDriver(Endpoint("n1", "xen", "127.0.0.1",
                                                   server.server_address[1], "127.0.0.1"))
        status, body = driver._request("GET", "/xend/domain", None, timeout=10)
        assert status == 200 and len(body) == 1 << 20
    finally:
        server.shutdown()


def test_a_usage_error_echoing_a_hostile_value_is_escaped():
    proc = run("vm-plan", "--objective", "\x1b[2Jauto", input="{}")
    one_error_line(proc, 2, "vm-plan", "\\x1b[2J")
    assert "\x1b" not in proc.stderr
