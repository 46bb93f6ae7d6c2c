"""Issue 10 through the installed commands: hostile numbers and documents give one error line
and the documented exit code, never exit 70, never half a document on stdout."""

from __future__ import annotations

import json
import resource
import subprocess
from pathlib import Path

import pytest

from tests.conftest import run, script
from tests.fuzz import generators as gen

PLAN_ARGS = ("--objective", "repair", "--time-limit", "5")


def _one_error(proc, code: int) -> str:
    assert proc.returncode == code, proc.stderr
    assert proc.stdout == ""
    errors = [line for line in proc.stderr.splitlines() if ": error: " in line]
    assert len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr
    return errors[0]


def _snapshot_text(**host0) -> str:
    doc = gen.snapshot_doc(__import__("random").Random(5), hosts=3, vms=4)
    doc["hosts"][0].update(host0)
    return json.dumps(doc)


def test_a_guest_metric_of_1e308_is_a_problem_and_the_snapshot_is_whole(tmp_path: Path):
    m = "".join(gen._metric(k, v) for k, v in (
        ("container.mem_total", "16777216"), ("container.cpu_num", "8"),
        ("container.vms", "web1 web2"), ("container.driver.migration", "xen"),
        ("container.type", "xen-4.17"), ("container.vm.web1.cpu", "1e308"),
        ("container.vm.web1.mem", "1048576"), ("container.vm.web2.cpu", "10"),
        ("container.vm.web2.mem", "1048576"), ("container.vm.web2.net", "1e308")))
    xml = tmp_path / "dump.xml"
    xml.write_text('<GANGLIA_XML VERSION="3" SOURCE="gmond"><CLUSTER NAME="c" LOCALTIME="1">'
                   f'<HOST NAME="n1" IP="1" REPORTED="1" TN="1" TMAX="20">{m}</HOST>'
                   "</CLUSTER></GANGLIA_XML>")
    proc = run("vm-snapshot", "--input", str(xml))
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert [v["name"] for v in doc["vms"]] == ["web2"] and "net_mbps" not in doc["vms"][0]
    messages = " ".join(p["message"] for p in doc["problems"])
    assert "container.vm.web1.cpu" in messages and "container.vm.web2.net" in messages
    assert "1e308" in messages


@pytest.mark.parametrize("host0, where", [
    ({"cpu": 0}, "hosts[0].cpu"), ({"cpu": 1e300}, "hosts[0].cpu"),
    ({"mem_mib": 10**30}, "hosts[0].mem_mib")])
def test_a_snapshot_with_a_host_of_no_cpu_or_impossible_figures_is_65(host0, where):
    line = _one_error(run("vm-plan", *PLAN_ARGS, input=_snapshot_text(**host0)), 65)
    assert where in line


@pytest.mark.parametrize("text, where", [
    ("[" * 100000 + "]" * 100000, "nested more than 64"),
    ('{"format": "vmtools.snapshot", "x": 1e400}', "1e400"),
    ('{"format": "vmtools.snapshot", "version": "1.0", "hosts": [{"cpu": ' + "9" * 400 + "}]}",
     "hosts[0].cpu")])
@pytest.mark.parametrize("command", ["vm-plan", "vm-apply"])
def test_hostile_json_is_65_naming_the_place(command, text, where):
    args = PLAN_ARGS if command == "vm-plan" else ("--dry-run",)
    assert where in _one_error(run(command, *args, input=text), 65)


def test_1e400_in_a_plan_summary_is_refused_before_any_host_is_asked(tmp_path: Path):
    r = run("vm-plan", *PLAN_ARGS, input=_snapshot_text())
    assert r.returncode == 0, r.stderr
    text = r.stdout.replace('"summary": {', '"summary": {"odd": 1e400, ', 1)
    line = _one_error(run("vm-apply", "--dry-run", "--connect-timeout", "1", input=text), 65)
    assert "1e400" in line


@pytest.mark.parametrize("content", [
    "[]", '{"observations": "x"}', '{"observations": [1, 2]}',
    '{"observations": [{"time": "yesterday", "hot": []}]}', '{"hot_since": {"a": "b"}}',
    '{"moved": []}', '{"placement": {"vm1": 3}}', '{"observations": [{"time": 1e400}]}',
    "{\"observations\": [", "\xff\xfe"])
def test_a_malformed_state_file_is_65_naming_the_file_and_the_fix(tmp_path: Path, content):
    (tmp_path / "vm-plan-state.json").write_text(content, encoding="latin-1")
    line = _one_error(run("vm-plan", *PLAN_ARGS, "--state", str(tmp_path),
                          input=_snapshot_text()), 65)
    assert "vm-plan-state.json" in line and "remove it" in line


def test_a_state_that_cannot_be_saved_is_exit_1_naming_the_directory(tmp_path: Path):
    def small_files():
        resource.setrlimit(resource.RLIMIT_FSIZE, (64, 64))     # "disk full" for the state
    proc = subprocess.run([script("vm-plan"), *PLAN_ARGS, "--state", str(tmp_path)],
                          input=_snapshot_text().encode(), capture_output=True,
                          preexec_fn=small_files, timeout=120)
    assert proc.returncode == 1 and proc.stdout == b""
    err = proc.stderr.decode()
    assert "cannot save vm-plan's state" in err and str(tmp_path) in err
    assert "Traceback" not in err and "bug" not in err
    # no half-written temporary left (the state's lock file stays, by design: vmtools.state)
    assert [p.name for p in tmp_path.iterdir() if p.name != ".vmtools.state.lock"] == []
