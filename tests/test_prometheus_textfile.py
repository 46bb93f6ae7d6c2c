"""Metrics out: every command's --textfile-dir file and vm-rebalance's file on every run, as
node_exporter's textfile collector reads them; promtool accepts them and the alerting rules
example in contrib/."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT, run
from tests.test_rebalance import installed_like_a_venv, write_conf

PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool (Debian prometheus) missing")


def samples(path: Path) -> dict[tuple, float]:
    from prometheus_client.parser import text_string_to_metric_families
    out = {}
    for fam in text_string_to_metric_families(path.read_text()):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def promtool_accepts(path: Path) -> None:
    check = subprocess.run([PROMTOOL, "check", "metrics"], stdin=open(path), capture_output=True,
                           text=True, timeout=30)
    assert check.returncode == 0, f"{path.name}: {check.stdout}{check.stderr}"


@needs_promtool
def test_each_command_writes_its_file_and_a_failure_keeps_the_last_success(tmp_path):
    snap = run("vm-snapshot", "--example", "lab", "--textfile-dir", str(tmp_path))
    assert snap.returncode == 0, snap.stderr
    plan = run("vm-plan", "--objective", "consolidate", "--textfile-dir", str(tmp_path),
               input=snap.stdout)
    assert plan.returncode == 0, plan.stderr
    got = samples(tmp_path / "vm-plan.prom")
    c = (("command", "vm-plan"),)
    assert got[("vmtools_command_exit_code", c)] == 0
    success = got[("vmtools_command_last_success_timestamp_seconds", c)]
    assert success == got[("vmtools_command_last_run_timestamp_seconds", c)]
    migrations = len(json.loads(plan.stdout)["actions"])
    assert got[("vmtools_plan_actions", (("op", "migrate"),))] == migrations > 0
    snap_got = samples(tmp_path / "vm-snapshot.prom")
    assert snap_got[("vmtools_snapshot_guests", ())] == 24
    assert snap_got[("vmtools_snapshot_hosts", (("state", "online"),))] == 6
    for name in ("vm-snapshot.prom", "vm-plan.prom"):
        promtool_accepts(tmp_path / name)

    bad = run("vm-plan", "--textfile-dir", str(tmp_path), input="{not json")
    assert bad.returncode == 65
    got = samples(tmp_path / "vm-plan.prom")
    assert got[("vmtools_command_exit_code", c)] == 65
    assert got[("vmtools_command_last_success_timestamp_seconds", c)] == success
    assert got[("vmtools_command_last_run_timestamp_seconds", c)] > success
    assert ("vmtools_plan_actions", (("op", "migrate"),)) not in got   # this run planned nothing
    promtool_accepts(tmp_path / "vm-plan.prom")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["vm-plan.prom", "vm-snapshot.prom"], \
        "a temporary file was left behind"


def test_an_unwritable_directory_is_a_warning_and_the_run_keeps_its_exit_code(tmp_path):
    proc = run("vm-snapshot", "--example", "lab", "--textfile-dir", str(tmp_path / "missing"))
    assert proc.returncode == 0 and json.loads(proc.stdout)["vms"]
    assert "warning:" in proc.stderr and "cannot write the textfile metrics" in proc.stderr


def test_the_setting_goes_in_the_common_table_for_every_command(tmp_path):
    conf = tmp_path / "vmtools.toml"
    conf.write_text(f'[common]\ntextfile_dir = "{tmp_path}"\n')
    snap = run("vm-snapshot", "--example", "lab").stdout
    proc = run("vm-status", "-", input=snap, env={"VMTOOLS_CONFIG": str(conf)})
    assert (tmp_path / "vm-status.prom").exists(), proc.stderr
    got = samples(tmp_path / "vm-status.prom")
    assert got[("vmtools_command_exit_code", (("command", "vm-status"),))] == proc.returncode


@pytest.mark.slow
@needs_promtool
def test_vm_rebalance_writes_its_metrics_on_every_run(tmp_path):
    wrapper = installed_like_a_venv(tmp_path)
    conf = write_conf(tmp_path / "r.conf", tmp_path / "runs", ["--example", "lab"],
                      ["--objective", "consolidate"], ["--hosts", str(tmp_path / "hosts.csv")])
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path)}
    proc = subprocess.run([str(wrapper), "-c", str(conf), "-n", "-t", str(tmp_path)],
                          capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert proc.returncode == 2, proc.stdout + proc.stderr        # no hosts.csv: vm-apply fails
    path = tmp_path / "vm-rebalance.prom"
    promtool_accepts(path)
    got = samples(path)
    assert got[("vmtools_rebalance_exit_code", ())] == 2
    assert got[("vmtools_rebalance_failed_step", (("step", "report"),))] == 1
    assert got[("vmtools_rebalance_planned_actions", (("op", "migrate"),))] == 16
    assert got[("vmtools_rebalance_planned_migrated_bytes", ())] > 0
    assert got[("vmtools_rebalance_hosts", (("state", "online"),))] == 6
    assert got[("vmtools_rebalance_dry_run", ())] == 1
    assert got[("vmtools_rebalance_frozen_hosts", ())] == 0
    assert ("vmtools_rebalance_last_success_timestamp_seconds", ()) not in got
    assert got[("vmtools_rebalance_solver_seconds", ())] >= 0
    assert any(k[0] == "vmtools_rebalance_solver_status" for k in got)
    for outcome in ("done", "failed", "not-run"):
        assert ("vmtools_rebalance_migrations", (("outcome", outcome),)) in got
    assert got[("vmtools_rebalance_duration_seconds", ())] > 0
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".") and "tmp" in p.name]

    # a run that succeeds (nothing to apply: a repair of a healthy cluster plans nothing)
    conf = write_conf(tmp_path / "r2.conf", tmp_path / "runs", ["--example", "lab"],
                      ["--objective", "repair"], [])
    ok = subprocess.run([str(wrapper), "-c", str(conf), "-t", str(tmp_path)],
                        capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    got = samples(path)
    assert got[("vmtools_rebalance_exit_code", ())] == 0
    assert got[("vmtools_rebalance_last_success_timestamp_seconds", ())] == \
        got[("vmtools_rebalance_last_run_timestamp_seconds", ())]
    promtool_accepts(path)


@needs_promtool
def test_the_alerting_rules_example_is_valid_and_its_unit_tests_pass():
    rules = ROOT / "contrib" / "prometheus"
    check = subprocess.run([PROMTOOL, "check", "rules", "vmtools-alerts.yml"], cwd=rules,
                           capture_output=True, text=True, timeout=60)
    assert check.returncode == 0 and "SUCCESS: 5 rules found" in check.stdout, check.stderr
    unit = subprocess.run([PROMTOOL, "test", "rules", "vmtools-alerts.test.yml"], cwd=rules,
                          capture_output=True, text=True, timeout=60)
    assert unit.returncode == 0, unit.stdout + unit.stderr
