"""vm-snapshot through the installed script and real pipes: sources, formats, errors."""

from __future__ import annotations

import pytest

import json
import socket

from tests.conftest import FIXTURES, run
from vmtools.ganglia.sources import example_path
from vmtools.model import Snapshot

GANGLIA = FIXTURES / "ganglia"


def test_example_lab_is_a_clean_snapshot_that_vm_plan_can_read():
    proc = run("vm-snapshot", "--example", "lab")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    snap = Snapshot.from_dict(doc)   # validates like every reader does
    assert doc["format"] == "vmtools.snapshot" and doc["source"] == "example:lab"
    assert len(snap.hosts) == 6 and len(snap.vms) == 24 and snap.problems == []
    assert [h.name for h in snap.hosts] == sorted(h.name for h in snap.hosts)
    # consolidates nicely: all guests fit in the two largest hosts
    assert sum(v.mem_mib for v in snap.vms) < snap.host("node-1").mem_mib * 2
    assert proc.stderr == ""


def test_example_hotspot_has_one_cpu_hot_host():
    doc = json.loads(run("vm-snapshot", "--example", "hotspot").stdout)
    use = {h["name"]: sum(v["cpu"] for v in doc["vms"] if v["host"] == h["name"]) / h["cpu"]
           for h in doc["hosts"]}
    assert [h for h, u in use.items() if u > 0.9] == ["node-4"]


def test_input_from_stdin_pipe_equals_input_file():
    path = example_path("lab")
    with open(path, "rb") as fh:
        piped = run("vm-snapshot", "--input", "-", input=fh.read())
    direct = run("vm-snapshot", "-i", path)
    assert piped.returncode == direct.returncode == 0
    a, b = json.loads(piped.stdout), json.loads(direct.stdout)
    assert a["source"] == "<stdin>" and b["source"] == path
    for d in (a, b):
        d.pop("source"), d.pop("created")
    assert a == b


def test_table_shows_hosts_and_guests_per_host():
    proc = run("vm-snapshot", "--example", "hotspot", "-f", "table")
    assert proc.returncode == 0
    out = proc.stdout
    assert "Hosts (6)" in out and "Guests on node-4 (4)" in out
    node4 = next(line for line in out.splitlines() if line.startswith("node-4 "))
    assert "95%" in node4 and "30.0" in node4          # CPU %, mem GiB
    assert not out.lstrip().startswith("{")
    assert max(map(len, out.splitlines())) <= 80


def test_wide_tables_have_every_column():
    out = run("vm-snapshot", "--example", "hotspot", "-f", "wide").stdout
    node4 = next(line for line in out.splitlines() if line.startswith("node-4 "))
    assert "xen-lab" in node4 and "xen-4.17" in node4


def test_output_file_is_written_and_stdout_stays_empty(tmp_path):
    target = tmp_path / "snap.json"
    proc = run("vm-snapshot", "--example", "lab", "-o", str(target))
    assert proc.returncode == 0 and proc.stdout == ""
    assert json.loads(target.read_text())["format"] == "vmtools.snapshot"


def test_problems_are_warned_on_stderr_but_exit_zero():
    proc = run("vm-snapshot", "-i", str(GANGLIA / "problems.xml"))
    assert proc.returncode == 0
    assert "8 problems in the snapshot" in proc.stderr
    quiet = run("vm-snapshot", "-q", "-i", str(GANGLIA / "problems.xml"))
    assert quiet.stderr == "" and quiet.stdout == proc.stdout.replace(
        json.loads(proc.stdout)["created"], json.loads(quiet.stdout)["created"])


def test_recover_keeps_the_hosts_that_parse():
    path = str(GANGLIA / "recover-mixed.xml")
    strict = run("vm-snapshot", "-i", path)
    assert strict.returncode == 65 and strict.stdout == ""
    assert "--recover" in strict.stderr
    proc = run("vm-snapshot", "--recover", "-i", path)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert [h["name"] for h in doc["hosts"]] == ["node-1", "node-2", "node-3", "node-5", "node-6"]
    dropped = [p for p in doc["problems"] if p["kind"] == "dropped-host"]
    assert dropped and dropped[0]["host"] == "node-4" and ":129:" in dropped[0]["message"]


def test_recover_on_a_truncated_stream_keeps_complete_hosts():
    proc = run("vm-snapshot", "--recover", "-i", str(GANGLIA / "hostile-truncated.xml"))
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    kinds = {p["kind"] for p in doc["problems"]}
    assert "truncated" in kinds and 0 < len(doc["hosts"]) < 6


def test_recover_still_refuses_entity_attacks():
    proc = run("vm-snapshot", "--recover", "-i", str(GANGLIA / "hostile-billion-laughs.xml"))
    assert proc.returncode == 65 and proc.stdout == "" and "entity" in proc.stderr


def test_unreachable_gmetad_exits_69_naming_the_address():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]        # bound, not listening: connection refused
        proc = run("vm-snapshot", "--gmetad", f"127.0.0.1:{port}", "--timeout", "2")
    assert proc.returncode == 69
    assert proc.stdout == ""
    assert proc.stderr.startswith(f"vm-snapshot: error: gmetad://127.0.0.1:{port}: ")


def test_silent_gmetad_times_out_with_69():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)                      # accepts (kernel backlog) but never answers
        port = s.getsockname()[1]
        proc = run("vm-snapshot", "--gmond", f"127.0.0.1:{port}", "--timeout", "0.5")
    assert proc.returncode == 69
    assert f"gmond://127.0.0.1:{port}: no data for 0.5 s" in proc.stderr


@pytest.mark.slow  # a replay or several commands through real pipes: seconds of CPU
def test_bad_command_lines_exit_2():
    for args in (["--gmetad", "host:99999"], ["--example", "nosuch"], ["--timeout", "0"],
                 ["--cluster", "a/b"], ["--input", "/nonexistent/dump.xml"], ["--frobnicate"]):
        proc = run("vm-snapshot", *args)
        assert proc.returncode == 2, (args, proc.stderr)
        assert proc.stdout == ""


def test_not_a_ganglia_document_exits_65():
    proc = run("vm-snapshot", "-i", "-", input=b"<?xml version='1.0'?><html><body/></html>")
    assert proc.returncode == 65
    assert "not a Ganglia document" in proc.stderr and "<stdin>:1:" in proc.stderr


def test_version_and_help():
    assert run("vm-snapshot", "--version").stdout.strip() == "vm-snapshot 0.1.0"
    help_text = run("vm-snapshot", "--help").stdout
    for option in ("--gmetad", "--cluster", "--gmond", "--input", "--example", "--recover",
                   "--stale-after", "--timeout"):
        assert option in help_text


def test_settings_come_from_the_environment():
    proc = run("vm-snapshot", "-f", "table", env={"VMTOOLS_SNAPSHOT_EXAMPLE": "lab"})
    assert proc.returncode == 0 and "Hosts (6) from example:lab" in proc.stdout


def test_streamed_json_is_the_canonical_text():
    from vmtools.model import dumps
    from vmtools.snapshot import snapshot_json
    doc = json.loads(run("vm-snapshot", "-i", str(GANGLIA / "problems.xml")).stdout)
    snap = Snapshot.from_dict(doc)
    assert snapshot_json(snap) == dumps(doc) == dumps(snap.to_dict())
    assert snapshot_json(Snapshot()) == dumps(Snapshot().to_dict())
