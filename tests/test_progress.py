"""Progress on long work: a live line on stderr when it is a terminal, nothing under cron (a
pipe), one log line per stage with -v."""

from __future__ import annotations

import os
import pty
import subprocess

from tests.conftest import run, script


def snapshot_text() -> str:
    return run("vm-snapshot", "--example", "hotspot").stdout


def test_quiet_when_stderr_is_not_a_terminal():
    proc = run("vm-plan", "--objective", "consolidate", input=snapshot_text())
    assert proc.returncode == 0 and proc.stderr == ""


def test_verbose_logs_what_each_stage_did():
    proc = run("vm-plan", "--objective", "consolidate", "-v", input=snapshot_text())
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()
    assert lines[0] == "vm-plan: planning consolidate: 24 guests on 6 hosts, within 60 s"
    assert any(line.startswith("vm-plan: heuristic (") and "at least 2 hosts needed" in line
               for line in lines), lines
    assert any("stage 2 of 2, least memory moved on 2 hosts: best so far" in line
               for line in lines), lines


def test_a_terminal_gets_a_live_line_that_is_cleared(tmp_path):
    snap = tmp_path / "snap.json"
    snap.write_text(snapshot_text())
    controller, terminal = pty.openpty()
    env = dict(os.environ, XDG_CONFIG_HOME="/nonexistent-vmtools-test-config")
    proc = subprocess.Popen([script("vm-plan"), str(snap), "--objective", "consolidate"],
                            stdout=subprocess.PIPE, stderr=terminal, env=env)
    os.close(terminal)
    seen = b""
    try:
        while True:
            try:
                chunk = os.read(controller, 4096)
            except OSError:                 # the terminal closed: vm-plan exited
                break
            if not chunk:
                break
            seen += chunk
        assert proc.wait(timeout=120) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(controller)
    assert b"\r\x1b[Kvm-plan: [" in seen and b"planning consolidate: 24 guests" in seen
    assert b"heuristic (" in seen
    assert seen.endswith(b"\r\x1b[K")            # cleared before the plan is printed
    assert proc.stdout.read().startswith(b"{")
