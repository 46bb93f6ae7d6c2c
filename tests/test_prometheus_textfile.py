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


@pytest.mark.slow  # several commands through real pipes: seconds on a loaded machine
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


@pytest.mark.slow  # several commands through real pipes: seconds on a loaded machine
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


def test_rebalance_metrics_from_a_run_with_power_actions_frozen_hosts_and_hotspots(tmp_path):
    """What vm-rebalance.prom says of a run directory, figure by figure (the documents as
    vm-snapshot, vm-plan and vm-apply write them)."""
    from vmtools.prometheus.exposition import render
    from vmtools.prometheus.textfile import rebalance_families
    run_dir = tmp_path / "20261207T030000Z"
    run_dir.mkdir()
    hosts = [{"name": f"node-{i}", "state": s} for i, s in
             enumerate(["online", "online", "online", "standby", "offline"], 1)]
    (run_dir / "snapshot.json").write_text(json.dumps({"hosts": hosts, "vms": [], "problems": [
        {"kind": "stale-host", "host": "node-2", "message": "old"}]}))
    (run_dir / "plan.json").write_text(json.dumps({
        "actions": [{"id": 1, "op": "migrate", "vm": "a", "mem_mib": 1024},
                    {"id": 2, "op": "migrate", "vm": "b", "mem_mib": 2048},
                    {"id": 3, "op": "power-off", "host": "node-1"},
                    {"id": 4, "op": "power-on", "host": "node-4"}],
        "solver": {"status": "feasible", "gap": 0.125, "seconds": 3.5},
        "summary": {"deferred": {"migrations": 7}, "worst_cpu_before": 1.2,
                    "frozen": [{"host": "node-2", "why": "stale-host: old", "leaving": []}],
                    "hotspots": [{"host": "node-3", "acted": True},
                                 {"host": "node-5", "acted": False, "why": "budget"}]}}))
    (run_dir / "report.json").write_text(json.dumps({"actions": [
        {"id": 1, "op": "migrate", "outcome": "done"},
        {"id": 2, "op": "migrate", "outcome": "failed"},
        {"id": 3, "op": "power-off", "outcome": "done"},
        {"id": 4, "op": "power-on", "outcome": "not-run"}]}))
    (run_dir / "result.json").write_text(json.dumps({"exit": 1, "failed_step": "report",
                                                     "seconds": 42.0, "dry_run": False}))
    prom = tmp_path / "vm-rebalance.prom"
    prom.write_text('vmtools_rebalance_last_success_timestamp_seconds 1000\n')
    text = render(rebalance_families(str(run_dir), str(prom), now=5000.0))
    prom.write_text(text)
    got = samples(prom)
    r = "vmtools_rebalance_"
    assert got[(r + "exit_code", ())] == 1
    assert got[(r + "failed_step", (("step", "report"),))] == 1
    assert got[(r + "last_success_timestamp_seconds", ())] == 1000     # carried over
    assert got[(r + "last_migration_timestamp_seconds", ())] == 5000   # one was done
    assert got[(r + "planned_actions", (("op", "migrate"),))] == 2
    assert got[(r + "planned_migrated_bytes", ())] == 3 * 2**30
    assert got[(r + "deferred_migrations", ())] == 7
    assert got[(r + "frozen_hosts", ())] == 1
    assert got[(r + "host_frozen", (("host", "node-2"),))] == 1
    assert got[(r + "hotspots", ())] == 2 and got[(r + "hotspots_not_relieved", ())] == 1
    assert got[(r + "worst_host_cpu_ratio", ())] == 1.2
    assert got[(r + "solver_status", (("status", "feasible"),))] == 1
    assert got[(r + "solver_gap_ratio", ())] == 0.125 and got[(r + "solver_seconds", ())] == 3.5
    assert got[(r + "migrations", (("outcome", "done"),))] == 1
    assert got[(r + "migrations", (("outcome", "failed"),))] == 1
    assert got[(r + "power_actions", (("op", "power-off"), ("outcome", "done")))] == 1
    assert got[(r + "power_actions", (("op", "power-on"), ("outcome", "not-run")))] == 1
    assert got[(r + "power_actions", (("op", "power-on"), ("outcome", "planned")))] == 1
    assert {s: got[(r + "hosts", (("state", s),))] for s in ("online", "offline", "standby")} \
        == {"online": 3, "offline": 1, "standby": 1}
    assert got[(r + "duration_seconds", ())] == 42
    if PROMTOOL:
        promtool_accepts(prom)


def test_a_run_directory_with_garbage_documents_still_gives_metrics(tmp_path):
    from vmtools.prometheus.exposition import render
    from vmtools.prometheus.textfile import rebalance_families
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "plan.json").write_text('{"actions": "nope", "summary": [1], "solver": 3}')
    (run_dir / "report.json").write_text("\x00\x01 not json")
    text = render(rebalance_families(str(run_dir), str(tmp_path / "none.prom"), now=1.0))
    assert "vmtools_rebalance_exit_code 70.0" in text      # no result.json: not a success
    assert "NaN" not in text


def _two_domain_run(tmp_path: Path) -> Path:
    """A run over two domains (east failed at apply, west did its one move); its file."""
    from vmtools.prometheus.textfile import write_rebalance
    run_dir = tmp_path / "20261207T050000Z"
    docs = {"east": (["e1", "e2"], [("web1", "done"), ("web2", "failed")], 12.0, 1),
            "west": (["w1"], [("db1", "done")], 30.0, 2)}
    for name, (hosts, moves, seconds, deferred) in docs.items():
        (run_dir / name).mkdir(parents=True)
        origin = {"hosts": [{"name": h, "state": "online"} for h in hosts], "problems": []}
        (run_dir / name / "plan.json").write_text(json.dumps({
            "origin": origin, "summary": {"deferred": {"migrations": deferred},
                                          "frozen": [hosts[0]]},
            "solver": {"status": f"status-{name}", "seconds": seconds},
            "actions": [{"id": i, "op": "migrate", "vm": vm, "mem_mib": 1024}
                        for i, (vm, _) in enumerate(moves, 1)]}))
        (run_dir / name / "report.json").write_text(json.dumps({"actions": [
            {"id": i, "op": "migrate", "vm": vm, "outcome": outcome}
            for i, (vm, outcome) in enumerate(moves, 1)]}))
    (run_dir / "result.json").write_text(json.dumps({"exit": 1, "domains": {
        "east": {"exit": 1, "failed_step": "apply"}, "west": {"exit": 0}}}))
    write_rebalance(str(run_dir), str(tmp_path / "vm-rebalance.prom"))
    return tmp_path / "vm-rebalance.prom"


def test_a_run_over_two_domains_counts_what_both_planned_and_did(tmp_path):
    got = samples(_two_domain_run(tmp_path))
    assert got[("vmtools_rebalance_exit_code", ())] == 1
    assert got[("vmtools_rebalance_planned_actions", (("op", "migrate"),))] == 3
    assert got[("vmtools_rebalance_migrations", (("outcome", "done"),))] == 2
    assert got[("vmtools_rebalance_migrations", (("outcome", "failed"),))] == 1
    assert got[("vmtools_rebalance_hosts", (("state", "online"),))] == 3
    assert got[("vmtools_rebalance_deferred_migrations", ())] == 3
    assert got[("vmtools_rebalance_frozen_hosts", ())] == 2
    assert got[("vmtools_rebalance_solver_status", (("status", "status-west"),))] == 1
    assert got[("vmtools_rebalance_solver_seconds", ())] == 30.0


def test_a_run_over_two_domains_gives_each_domains_figures_with_its_label(tmp_path):
    prom = _two_domain_run(tmp_path)
    got = samples(prom)
    east, west = ("domain", "east"), ("domain", "west")
    assert got[("vmtools_rebalance_domain_exit_code", (east,))] == 1
    assert got[("vmtools_rebalance_domain_exit_code", (west,))] == 0
    assert got[("vmtools_rebalance_domain_failed_step", (east, ("step", "apply")))] == 1
    assert not any(k[0] == "vmtools_rebalance_domain_failed_step" and west in k[1] for k in got)
    assert got[("vmtools_rebalance_domain_planned_actions", (east, ("op", "migrate")))] == 2
    assert got[("vmtools_rebalance_domain_planned_actions", (west, ("op", "migrate")))] == 1
    assert got[("vmtools_rebalance_domain_migrations", (east, ("outcome", "failed")))] == 1
    assert got[("vmtools_rebalance_domain_migrations", (west, ("outcome", "failed")))] == 0
    assert got[("vmtools_rebalance_domain_hosts", (east, ("state", "online")))] == 2
    assert got[("vmtools_rebalance_domain_deferred_migrations", (west,))] == 2
    assert got[("vmtools_rebalance_domain_host_frozen", (east, ("host", "e1")))] == 1
    assert got[("vmtools_rebalance_domain_solver_seconds", (east,))] == 12.0
    # the domains' figures add up to the run's (summed, no domain label)
    for name, labels in (("planned_actions", (("op", "migrate"),)),
                         ("migrations", (("outcome", "done"),)), ("frozen_hosts", ())):
        assert sum(got[(f"vmtools_rebalance_domain_{name}", (d, *labels))]
                   for d in (east, west)) == got[(f"vmtools_rebalance_{name}", labels)]
    assert not any("timestamp" in k[0] and "domain" in k[0] for k in got)
    if PROMTOOL is not None:
        promtool_accepts(prom)


def test_a_single_domain_run_has_no_domain_families(tmp_path):
    from vmtools.prometheus.textfile import write_rebalance
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "result.json").write_text(json.dumps({"exit": 0}))
    write_rebalance(str(tmp_path / "run"), str(tmp_path / "vm-rebalance.prom"))
    assert "vmtools_rebalance_domain_" not in (tmp_path / "vm-rebalance.prom").read_text()
