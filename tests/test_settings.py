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


def test_flag_beats_environment_beats_config_file_beats_default(tmp_path):
    conf = tmp_path / "vmtools.toml"
    conf.write_text('[common]\ntimeout = 5\n[vm-snapshot]\nexample = "hotspot"\n')
    cfg = {"VMTOOLS_CONFIG": str(conf)}
    assert source_of(run("vm-snapshot", env=cfg)) == "example:hotspot"
    assert source_of(run("vm-snapshot", env={**cfg, "VMTOOLS_EXAMPLE": "lab"})) == "example:lab"
    assert source_of(run("vm-snapshot", "--example", "hotspot",
                         env={**cfg, "VMTOOLS_EXAMPLE": "lab"})) == "example:hotspot"


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
