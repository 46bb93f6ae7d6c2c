"""Settings and streams every command shares: flag > VMTOOLS_* environment > config file >
default; -o FILE is all or nothing; a terminal on stdin gets a notice; errors are one line."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess

import pytest

from tests.conftest import run, script


def source_of(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)["source"]


@pytest.mark.slow  # a replay or several commands through real pipes: seconds of CPU
def test_flag_beats_environment_beats_config_file_beats_default(tmp_path):
    conf = tmp_path / "vmtools.toml"
    conf.write_text('[common]\nverbose = 0\n[vm-snapshot]\ntimeout = 5\nexample = "hotspot"\n')
    cfg = {"VMTOOLS_CONFIG": str(conf)}
    assert source_of(run("vm-snapshot", env=cfg)) == "example:hotspot"
    env = {**cfg, "VMTOOLS_SNAPSHOT_EXAMPLE": "lab"}
    assert source_of(run("vm-snapshot", env=env)) == "example:lab"
    assert source_of(run("vm-snapshot", "--example", "hotspot", env=env)) == "example:hotspot"


@pytest.mark.parametrize("where", ["variable", "file", "flag"])
def test_a_bad_value_set_outside_the_command_line_says_where_it_was_set(tmp_path, where):
    """`vm-plan: error: --time-limit -5: must be more than 0` sent the admin who never typed
    --time-limit looking for it: a value from a variable or vmtools.toml is named as such."""
    conf = tmp_path / "vmtools.toml"
    conf.write_text('[vm-plan]\ntime-limit = -5\nobjective = "nosuch"\n')
    env, args = {"variable": ({"VMTOOLS_PLAN_TIME_LIMIT": "-5"}, []),
                 "file": ({"VMTOOLS_CONFIG": str(conf)}, ["--objective", "auto"]),
                 "flag": ({"VMTOOLS_PLAN_TIME_LIMIT": "-5"}, ["--time-limit=-3"])}[where]
    proc = run("vm-plan", *args, env=env, input="{}")
    assert proc.returncode == 2 and proc.stdout == "" and proc.stderr.count("\n") == 1
    expected = {"variable": "--time-limit -5: must be more than 0 "
                            "(set by VMTOOLS_PLAN_TIME_LIMIT)",
                "file": f"--time-limit -5: must be more than 0 "
                        f"(set by {conf} [vm-plan] time-limit)",
                "flag": "--time-limit -3: must be more than 0"}[where]
    assert proc.stderr == f"vm-plan: error: {expected}\n"
    # a value click refuses while parsing: the same note, before the pointer to --help
    proc = run("vm-plan", env={"VMTOOLS_PLAN_OBJECTIVE": "nosuch"}, input="{}")
    assert proc.returncode == 2
    assert proc.stderr.endswith("(set by VMTOOLS_PLAN_OBJECTIVE) (see vm-plan --help)\n")


def test_config_file_under_xdg_config_home_is_read(tmp_path):
    (tmp_path / "vmtools").mkdir()
    (tmp_path / "vmtools" / "vmtools.toml").write_text('[vm-snapshot]\nexample = "hotspot"\n')
    assert source_of(run("vm-snapshot", env={"XDG_CONFIG_HOME": str(tmp_path)})) == \
        "example:hotspot"


def test_a_broken_config_file_is_one_line_and_exit_2(tmp_path):
    conf = tmp_path / "vmtools.toml"
    conf.write_text("[vm-plan\nobjective = 1\n")
    proc = run("vm-plan", env={"VMTOOLS_CONFIG": str(conf)}, input="{}")
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"vm-plan: error: {conf}:") and proc.stderr.count("\n") == 1
    assert proc.stdout == ""


@pytest.mark.parametrize("name", ["vm-plan", "vm-apply"])
def test_output_file_is_all_or_nothing(tmp_path, name):
    out = tmp_path / "doc.json"
    out.write_text("previous document\n")
    proc = run(name, "-o", str(out), input='{"format": "vmtools.snapshot", "version": "1.0",')
    assert proc.returncode == 65
    assert proc.stdout == ""
    assert out.read_text() == "previous document\n"
    assert [p.name for p in tmp_path.iterdir()] == ["doc.json"], "a temporary file was left"


def test_output_file_gets_the_whole_plan(tmp_path):
    snap = run("vm-snapshot", "--example", "lab")
    out = tmp_path / "plan.json"
    proc = run("vm-plan", "-o", str(out), input=snap.stdout)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""
    assert json.loads(out.read_text())["format"] == "vmtools.plan"


@pytest.mark.parametrize("name, what", [("vm-plan", "snapshot"), ("vm-apply", "plan")])
def test_a_terminal_on_stdin_gets_a_notice(name, what):
    controller, terminal = pty.openpty()
    env = dict(os.environ, XDG_CONFIG_HOME="/nonexistent-vmtools-test-config")
    proc = subprocess.Popen([script(name)], stdin=terminal, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env)
    os.close(terminal)
    try:
        ready, _, _ = select.select([proc.stderr], [], [], 30)
        assert ready, f"{name} printed nothing while waiting on a terminal"
        line = proc.stderr.readline().decode()
        assert f"reading {what} from standard input" in line
        os.write(controller, b"\x04")                   # Ctrl-D: end of input
        assert proc.wait(timeout=30) == 65              # an empty document is bad input
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(controller)


@pytest.mark.parametrize("name", ["vm-plan", "vm-apply"])
@pytest.mark.parametrize("text, where", [
    ("", "<stdin>: empty input"),
    ("{\"format\": \"vmtools.plan\",\n \"version\": 1.0\n", "<stdin>:3:1: invalid JSON"),
    ('{"format": "vmtools.report", "version": "1.0"}', "format: expected a vmtools."),
])
def test_bad_documents_are_one_line_exit_65_nothing_on_stdout(name, text, where):
    proc = run(name, input=text)
    assert proc.returncode == 65
    assert proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith(f"{name}: error: ")
    assert where in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_reader_that_goes_away_is_not_a_traceback():
    # vm-snapshot --example lab | head -c 10
    proc = subprocess.Popen([script("vm-snapshot"), "--example", "lab"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    assert len(proc.stdout.read(10)) == 10
    proc.stdout.close()
    _, err = proc.communicate(timeout=60)
    assert b"Traceback" not in err and b"BrokenPipe" not in err
    assert proc.returncode in (0, 1)


@pytest.mark.slow           # a listening server that never speaks SSH; waits for timeouts
def test_a_dead_ssh_endpoint_is_one_line_not_a_paramiko_traceback(tmp_path):
    """A port that accepts and hangs up (no SSH banner) must not let paramiko's transport
    thread print its tracebacks: vm-apply says what failed, in one line."""
    import socket
    import threading

    from vmtools.model import VM, Action, Host, Plan, Snapshot, dumps

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    port = server.getsockname()[1]

    def hang_up():
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            conn.close()

    threading.Thread(target=hang_up, daemon=True).start()
    snap = Snapshot(hosts=[Host("n1", cpu=4, mem_mib=4096, migration="xm-ssh"),
                           Host("n2", cpu=4, mem_mib=4096, migration="xm-ssh")],
                    vms=[VM("web1", "n1", cpu=0.5, mem_mib=1024)])
    plan = Plan(origin=snap, placement={"web1": "n2"},
                actions=[Action(1, "web1", "n1", "n2", 1024, reason="test")])
    hosts = tmp_path / "hosts.csv"
    hosts.write_text(f"n1,127.0.0.1:{port},n1\nn2,127.0.0.1:{port},n2\n")
    (tmp_path / "known_hosts").write_text("")
    try:
        proc = run("vm-apply", "--hosts", str(hosts), "--state-dir", str(tmp_path / "st"),
                   "--known-hosts", str(tmp_path / "known_hosts"), "--connect-timeout", "3",
                   input=dumps(plan.to_dict()))
    finally:
        server.close()
    assert proc.returncode in (69, 75)
    assert proc.stdout == ""
    assert "Traceback" not in proc.stderr and "paramiko" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert all(line.startswith("vm-apply: ") for line in lines), lines
    assert [line for line in lines if line.startswith("vm-apply: error: ")] == lines[-1:]


def test_each_command_has_its_own_namespace():
    """VMTOOLS_<COMMAND>_<OPTION>: vm-plan's setting never reaches vm-snapshot, and the old
    shared names (VMTOOLS_EXAMPLE, VMTOOLS_FORMAT, VMTOOLS_VERSION) do nothing."""
    env = {"VMTOOLS_PLAN_EXAMPLE": "hotspot", "VMTOOLS_EXAMPLE": "hotspot",
           "VMTOOLS_FORMAT": "table", "VMTOOLS_VERSION": "1", "VMTOOLS_HELP": "1"}
    assert source_of(run("vm-snapshot", "--example", "lab", env=env)) == "example:lab"


@pytest.mark.parametrize("var", ["VMTOOLS_SNAPSHOT_FORMAT", "VMTOOLS_SNAPSHOT_VERSION",
                                 "VMTOOLS_SNAPSHOT_OUTPUT", "VMTOOLS_SNAPSHOT_EXAMPEL"])
def test_format_output_version_are_not_settings_and_typos_are_named(var):
    proc = run("vm-snapshot", "--example", "lab", env={var: "table"})
    assert proc.returncode == 0
    assert json.loads(proc.stdout)["format"] == "vmtools.snapshot"      # a pipe gets JSON
    assert proc.stderr.startswith(f"vm-snapshot: warning: {var} ignored: ")
    if var.endswith("EXAMPEL"):
        assert proc.stderr.rstrip().endswith("did you mean example?")


@pytest.mark.parametrize("text, message", [
    ('[vm-plan]\nobjectiv = "balance"\n',
     "[vm-plan] objectiv: not a setting of vm-plan; did you mean objective?"),
    ('[vm-plan]\ntime_limt = 3\n',
     "[vm-plan] time_limt: not a setting of vm-plan; did you mean time-limit?"),
    ('[common]\nformat = "table"\n', "[common] format: --format is not a setting"),
    ('[vm-plan]\noutput = "x"\n', "[vm-plan] output: --output is not a setting"),
    ('[common]\ntimeout = 5\n', "[common] timeout: not a common setting"),
    ('[vm-pln]\nobjective = "balance"\n', "[vm-pln]: no such table; tables are [common] and "
     "one per command; did you mean vm-plan?"),
    ('vm-plan = 1\n', "vm-plan: expected a table [vm-plan]"),
])
def test_a_bad_key_in_vmtools_toml_is_an_error_naming_file_key_and_closest(tmp_path, text,
                                                                           message):
    conf = tmp_path / "vmtools.toml"
    conf.write_text(text)
    proc = run("vm-plan", env={"VMTOOLS_CONFIG": str(conf)}, input="{}")
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.startswith(f"vm-plan: error: {conf}: {message}"), proc.stderr
    assert proc.stderr.count("\n") == 1


def test_another_commands_table_is_left_to_that_command(tmp_path):
    conf = tmp_path / "vmtools.toml"
    conf.write_text('[vm-apply]\nper-hots = 1\n[vm-snapshot]\nexample = "lab"\n')
    assert source_of(run("vm-snapshot", env={"VMTOOLS_CONFIG": str(conf)})) == "example:lab"
    proc = run("vm-apply", env={"VMTOOLS_CONFIG": str(conf)}, input="{}")
    assert proc.returncode == 2 and "did you mean per-host?" in proc.stderr


def test_the_shipped_example_settings_file_is_valid_for_every_command(tmp_path):
    from tests.conftest import ROOT
    env = {"VMTOOLS_CONFIG": str(ROOT / "contrib" / "vmtools.toml")}
    for name in ("vm-snapshot", "vm-plan", "vm-apply", "vm-gmetric", "vm-lab", "vm-replay"):
        proc = run(name, "--version", env=env)
        assert proc.returncode == 0 and proc.stderr == "", (name, proc.stderr)


@pytest.mark.parametrize("args, message", [
    (["--bogus"], "vm-plan: error: no such option: --bogus"),
    (["--threads", "x"], "vm-plan: error: invalid value for '--threads'"),
    (["--objective", "nope"], "vm-plan: error: invalid value for '--objective'"),
    (["a", "b"], "vm-plan: error: "),
])
def test_usage_errors_are_one_line_in_the_common_style_exit_2(args, message):
    proc = run("vm-plan", *args, input="{}")
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.startswith(message), proc.stderr
    assert proc.stderr.endswith(" (see vm-plan --help)\n") and proc.stderr.count("\n") == 1


def test_help_has_plain_metavars_and_says_where_settings_come_from():
    text = run("vm-plan", "--help").stdout
    assert "<int range>" not in text and "<str>" not in text and " <" not in text
    assert "--threads N" in text
    assert "VMTOOLS_PLAN_<OPTION>" in text


def test_a_pipeline_after_a_failed_step_says_so_and_pipestatus_has_the_first_status():
    import sys
    from pathlib import Path
    bin_dir = Path(sys.executable).parent
    script = (f"set -o pipefail; {bin_dir}/vm-snapshot --gmetad 127.0.0.1:1 --timeout 1 "
              f"| {bin_dir}/vm-plan | {bin_dir}/vm-apply; "
              'rc=$? codes="${PIPESTATUS[*]}"; echo "$rc $codes"; exit $rc')
    env = dict(os.environ, XDG_CONFIG_HOME="/nonexistent-vmtools-test-config")
    proc = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=120,
                          env=env)
    # pipefail: the pipeline fails; its status is the rightmost failure's, PIPESTATUS has all
    assert proc.returncode == 65 and proc.stdout == "65 69 65 65\n"
    lines = proc.stderr.splitlines()
    assert lines[0].startswith("vm-snapshot: error: gmetad://127.0.0.1:1: ")
    assert all("the command before this one in the pipe printed nothing" in line
               for line in lines[1:]) and len(lines) == 3


@pytest.mark.parametrize("change, where", [
    ({"vm": "Domain-0"}, "actions[0].vm: action 1 moves Domain-0"),
    ({"dst": "node-9"}, "actions[0].dst: action 1: host node-9 is not in the plan's snapshot"),
])
def test_a_plan_vm_apply_refuses_is_named_by_its_file(tmp_path, change, where):
    """'vm-apply: error: plan.actions[0].vm: ...' named no file; a malformed plan names its
    file (plan.json: version: ...), and so does one the checks refuse."""
    snap = run("vm-snapshot", "--example", "lab")
    plan = json.loads(run("vm-plan", input=snap.stdout).stdout)
    plan["actions"][0].update(change)
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(plan))
    for args, name in (([str(path)], str(path)), ([], "<stdin>")):
        proc = run("vm-apply", *args, "--dry-run", "--offline", input=path.read_text())
        assert proc.returncode == 65 and proc.stdout == ""
        assert proc.stderr.startswith(f"vm-apply: error: {name}: {where}"), proc.stderr
        assert proc.stderr.count("\n") == 1
