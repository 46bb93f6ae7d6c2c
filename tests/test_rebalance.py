"""shell/vm-rebalance, the cron wrapper, against the lab: audit directories, summaries fit for
cron mail, the lock, and stopping at the first failing step."""

from __future__ import annotations

import fcntl
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT
from vmtools.lab.ganglia import binaries_missing, free_port

# The cron wrapper runs every command through real pipes, against the lab for one test.
pytestmark = pytest.mark.slow

REBALANCE = ROOT / "shell" / "vm-rebalance"


def rebalance(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    import os
    import sys
    full = {k: v for k, v in os.environ.items() if not k.startswith("VMTOOLS_")}
    full["PATH"] = f"{Path(sys.executable).parent}:{full.get('PATH', '/usr/bin:/bin')}"
    full["XDG_CONFIG_HOME"] = "/nonexistent-vmtools-test-config"
    full.update(env or {})
    return subprocess.run(["bash", str(REBALANCE), *args], capture_output=True, text=True,
                          timeout=300, env=full)


def write_conf(path: Path, archive: Path, snapshot: list[str], plan: list[str],
               apply: list[str]) -> Path:
    q = lambda args: shlex.quote(" ".join(args))   # noqa: E731
    path.write_text(f"ARCHIVE={shlex.quote(str(archive))}\nKEEP_DAYS=7\n"
                    f"SNAPSHOT_ARGS={q(snapshot)}\nPLAN_ARGS={q(plan)}\nAPPLY_ARGS={q(apply)}\n")
    return path


def test_usage_version_and_bad_flags():
    from vmtools import __version__
    for flag in ("-h", "--help"):
        proc = rebalance(flag)
        assert proc.returncode == 0 and "Usage: vm-rebalance" in proc.stdout
    assert rebalance("--version").stdout == f"vm-rebalance {__version__}\n"
    for args in (("-k", "soon"), ("extra",), ("--bogus",), ("-x",), ("-c",)):
        proc = rebalance(*args)
        assert proc.returncode == 2, args
        assert proc.stderr.startswith("vm-rebalance: error: ") and proc.stderr.count("\n") == 1


def test_a_bad_jobs_or_keep_setting_names_the_settings_file(tmp_path):
    """JOBS=abc in rebalance.conf said '-j abc: ...', a flag nobody gave."""
    conf = tmp_path / "rebalance.conf"
    for setting, flag, expected in (
            ("JOBS=abc", (), f"JOBS=abc in {conf}: expected a number of domains at once"),
            ("KEEP_DAYS=soon", (), f"KEEP_DAYS=soon in {conf}: expected a number of days"),
            ("JOBS=2", ("-j", "0"), "-j 0: expected a number of domains at once")):
        conf.write_text(f"ARCHIVE={tmp_path / 'runs'}\n{setting}\n")
        proc = rebalance("-c", str(conf), *flag)
        assert proc.returncode == 2 and proc.stdout == ""
        assert proc.stderr.startswith(f"vm-rebalance: error: {expected}"), proc.stderr


def test_shellcheck_finds_nothing_in_the_shell_scripts():
    import shutil
    if not shutil.which("shellcheck"):
        if os.environ.get("CI"):
            pytest.fail("shellcheck is missing (.ci/run installs it)")
        pytest.skip("shellcheck is not installed (apt-get install shellcheck)")
    scripts = [REBALANCE, ROOT / "contrib" / "vm-gmetric.init",
               *sorted((ROOT / "packaging").iterdir())]
    proc = subprocess.run(["shellcheck", *map(str, scripts)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout
    proc = subprocess.run(["shellcheck", "-s", "bash", str(ROOT / "shell" /
                                                         "vmtools-completion.bash")],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout


@pytest.mark.parametrize("how", ["flag", "environment"])
def test_a_settings_file_named_explicitly_must_exist(tmp_path, how):
    missing = tmp_path / "rebalance.conf"
    args, env = ((["-c", str(missing)], None) if how == "flag"
                 else ([], {"VMTOOLS_REBALANCE_CONFIG": str(missing)}))
    proc = rebalance(*args, "-a", str(tmp_path / "runs"), env=env)
    assert proc.returncode == 2
    assert proc.stderr == f"vm-rebalance: error: {missing}: no such settings file " \
                          "(see vm-rebalance --help)\n"
    assert not (tmp_path / "runs").exists()


def installed_like_a_venv(tmp_path: Path) -> Path:
    """A venv's bin/ (the wrapper beside the console scripts), reached through a symlink in
    another directory as /usr/local/bin/vm-rebalance would be; returns the symlink."""
    import shutil
    import sys
    venv_bin = tmp_path / "opt" / "bin"
    venv_bin.mkdir(parents=True)
    shutil.copy(REBALANCE, venv_bin / "vm-rebalance")
    for name in ("vm-snapshot", "vm-plan", "vm-apply"):
        (venv_bin / name).symlink_to(Path(sys.executable).parent / name)
    local_bin = tmp_path / "usr-local-bin"
    local_bin.mkdir()
    (local_bin / "vm-rebalance").symlink_to(venv_bin / "vm-rebalance")
    return local_bin / "vm-rebalance"


def test_from_a_venv_it_finds_its_siblings_and_a_dry_run_says_what_would_move(tmp_path):
    wrapper = installed_like_a_venv(tmp_path)
    conf = write_conf(tmp_path / "r.conf", tmp_path / "runs", ["--example", "lab"],
                      ["--objective", "consolidate"], ["--hosts", str(tmp_path / "hosts.csv")])
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path)}
    proc = subprocess.run([str(wrapper), "-c", str(conf), "-n"], capture_output=True,
                          text=True, timeout=300, env=env, cwd=tmp_path)
    # No hosts.csv: vm-apply's check fails (exit 2) and the summary says so, with the plan.
    assert proc.returncode == 2, proc.stdout + proc.stderr
    first = proc.stdout.splitlines()[0]
    assert first.startswith("vm-rebalance ") and first.endswith("vm-apply failed (exit 2)")
    assert "hosts in use 6 -> 2, 16 migrations" in proc.stdout
    assert "    would move app1: node-2 -> node-3 (4.0 GiB)" in proc.stdout
    assert "hosts.csv" in proc.stdout.splitlines()[-1]          # the failing step's own error
    run_dir, = [p for p in (tmp_path / "runs").iterdir() if p.name[0].isdigit()]
    result = json.loads((run_dir / "result.json").read_text())
    assert (result["exit"], result["failed_step"], result["dry_run"]) == (2, "report", True)
    assert len(result["moves"]) == 16 and result["moves"][0]["from"] == "node-2"


def test_a_missing_command_is_exit_69_naming_it(tmp_path):
    wrapper = installed_like_a_venv(tmp_path)
    (tmp_path / "opt" / "bin" / "vm-apply").unlink()
    proc = subprocess.run([str(wrapper), "-a", str(tmp_path / "runs")], capture_output=True,
                          text=True, timeout=60, env={"PATH": "/usr/bin:/bin"})
    assert proc.returncode == 69
    assert proc.stderr.startswith("vm-rebalance: error: vm-apply: not found next to ")


def test_a_failing_snapshot_stops_the_run_with_a_summary(tmp_path):
    port = free_port()
    conf = write_conf(tmp_path / "r.conf", tmp_path / "runs",
                      ["--gmetad", f"127.0.0.1:{port}", "--timeout", "1"], [], [])
    proc = rebalance("-c", str(conf))
    assert proc.returncode == 69
    assert "vm-snapshot failed (exit 69)" in proc.stdout
    assert f"127.0.0.1:{port}" in proc.stdout          # the failing step's own error line
    run_dir, = [p for p in (tmp_path / "runs").iterdir() if p.is_dir() and p.name[0] != "."]
    assert (run_dir / "snapshot.log").exists() and not (run_dir / "plan.json").exists()


def test_a_second_run_waits_for_nobody_while_the_lock_is_held(tmp_path):
    archive = tmp_path / "runs"
    archive.mkdir()
    conf = write_conf(tmp_path / "r.conf", archive, ["--example", "lab"], [], [])
    with open(archive / ".vm-rebalance.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        proc = rebalance("-c", str(conf))
    assert proc.returncode == 75
    assert "another vm-rebalance is running" in proc.stderr


@pytest.mark.ganglia
@pytest.mark.skipif(bool(binaries_missing()), reason="needs gmond and gmetad")
def test_cron_run_against_the_lab_keeps_every_document(tmp_path, make_lab):
    lab = make_lab("steady")
    lab.wait_for_truth()
    archive = tmp_path / "runs"
    conf = write_conf(tmp_path / "r.conf", archive, lab.snapshot_args(),
                      lab.plan_args("consolidate"), lab.apply_args())
    env = {"VMTOOLS_STATE_DIR": str(lab.state_dir)}

    dry = rebalance("-c", str(conf), "-n", env=env)
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert dry.stdout.splitlines()[0].endswith("checked against the hosts, none started")
    assert "would move" in dry.stdout
    before = dict(lab.placement())

    proc = rebalance("-c", str(conf), env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert " migrations done" in proc.stdout.splitlines()[0]
    assert "hosts in use 6 -> 2" in proc.stdout
    runs = sorted(p for p in archive.iterdir() if p.is_dir() and p.name[0] != ".")
    assert len(runs) == 2
    last = runs[-1]
    for name in ("snapshot.json", "plan.json", "report.json", "summary.txt", "result.json"):
        assert (last / name).exists(), name
    plan = json.loads((last / "plan.json").read_text())
    report = json.loads((last / "report.json").read_text())
    assert lab.placement() == plan["placement"] != before
    assert {a["outcome"] for a in report["actions"]} == {"done"}
    # and its metrics for Prometheus (node_exporter's textfile collector), default: the archive
    from prometheus_client.parser import text_string_to_metric_families
    got = {(s.name, tuple(s.labels.values())): s.value for f in text_string_to_metric_families(
        (archive / "vm-rebalance.prom").read_text()) for s in f.samples}
    assert got[("vmtools_rebalance_migrations", ("done",))] == len(report["actions"])
    assert got[("vmtools_rebalance_exit_code", ())] == 0
    assert got[("vmtools_rebalance_last_migration_timestamp_seconds", ())] == \
        got[("vmtools_rebalance_last_run_timestamp_seconds", ())]

    # Once Ganglia shows the new placement, a quiet run has nothing to say to cron.
    lab.wait_for_truth()
    quiet = rebalance("-c", str(conf), "-q", env=env)
    assert (quiet.returncode, quiet.stdout) == (0, "")


def test_summary_words_for_one_migration_and_deferred_work(tmp_path):
    from vmtools.runs import describe, headline, summary_text
    (tmp_path / "plan.json").write_text(json.dumps({
        "objective": "auto", "solver": {"name": "none", "status": "heuristic"},
        "summary": {"hosts_before": 3, "hosts_after": 2, "migrated_mib": 2048,
                    "deferred": {"migrations": 1, "migrated_mib": 1024}},
        "actions": [{"vm": "web1", "src": "n1", "dst": "n2", "mem_mib": 2048}]}))
    result = describe(tmp_path, 0, None, True, 0.0, 5.0)
    assert headline(result) == "dry run: 1 migration checked against the hosts, none started"
    text = summary_text(result, tmp_path)
    assert "hosts in use 3 -> 2, 1 migration, 2.0 GiB to move" in text
    assert "deferred to later runs: 1 migration, 1.0 GiB" in text
    assert "    would move web1: n1 -> n2 (2.0 GiB)" in text


def test_apply_state_dir_gives_vm_plan_the_ledger_there(tmp_path):
    """APPLY_ARGS --state-dir DIR: vm-plan reads vm-apply's ledger DIR/suspended.json (the
    guest it suspended is resumed by PLAN_ARGS --resume), without PLAN_ARGS saying so."""
    state = tmp_path / "apply-state"
    state.mkdir()
    (state / "suspended.json").write_text(json.dumps({
        "format": "vmtools.suspended", "version": "1.0",
        "guests": [{"name": "sleeper", "host": "node-1",
                    "image": "/var/lib/xen/save/sleeper.save", "mem_mib": 512, "vcpus": 1,
                    "cpu": 0.1, "suspended": "2026-12-07T05:00:00Z"}]}))
    conf = tmp_path / "r.conf"
    conf.write_text(f"ARCHIVE={shlex.quote(str(tmp_path / 'runs'))}\n"
                    "SNAPSHOT_ARGS='--example lab'\nPLAN_ARGS='--resume sleeper'\n"
                    f"APPLY_ARGS={shlex.quote('--state-dir=' + str(state))}\n")
    proc = rebalance("-c", str(conf), "-n")
    run_dir, = [p for p in (tmp_path / "runs").iterdir() if p.name[0].isdigit()]
    plan = json.loads((run_dir / "plan.json").read_text())
    assert [(a["op"], a["vm"]) for a in plan["actions"]] == [("resume", "sleeper")], \
        proc.stdout + proc.stderr
    # PLAN_ARGS' own --suspended wins: an empty ledger there, so nothing to resume (65)
    empty = tmp_path / "empty.json"
    empty.write_text('{"format": "vmtools.suspended", "version": "1.0", "guests": []}')
    conf.write_text(conf.read_text().replace("'--resume sleeper'",
                                             f"'--resume sleeper --suspended {empty}'"))
    proc = rebalance("-c", str(conf), "-n")
    assert proc.returncode == 65 and "not in the suspended-guests ledger" in proc.stdout


# A path no word splitting survives: a space, a command substitution, quotes, a semicolon.
HOSTILE = "my dir $(touch pwned);'x\" *"


def ledger_with_sleeper(state: Path) -> None:
    state.mkdir(parents=True)
    (state / "suspended.json").write_text(json.dumps({
        "format": "vmtools.suspended", "version": "1.0",
        "guests": [{"name": "sleeper", "host": "node-1",
                    "image": "/var/lib/xen/save/sleeper.save", "mem_mib": 512, "vcpus": 1,
                    "cpu": 0.1, "suspended": "2026-12-07T05:00:00Z"}]}))


@pytest.mark.parametrize("how", ["array", "quoted string"])
def test_paths_with_spaces_and_shell_characters_reach_the_commands_whole(tmp_path, how):
    """The *_ARGS are arrays, or strings split as quoted command lines: never word-split, never
    evaluated. The archive, the dump, vm-plan's state and vm-apply's state directory (whose
    ledger vm-plan is handed: the guest it lists is resumed) all hold a space and shell
    characters."""
    import shutil
    base = tmp_path / HOSTILE
    base.mkdir()
    dump = base / "lab gmetad.xml"
    shutil.copy(ROOT / "vmtools" / "examples" / "lab-gmetad.xml", dump)
    state = base / "apply state"
    ledger_with_sleeper(state)
    plan_state = base / "plan state"
    plan_state.mkdir()
    snapshot, plan, apply = (["--input", str(dump)], ["--resume", "sleeper", "--state",
                                                        str(plan_state)],
                             ["--state-dir", str(state)])
    if how == "array":
        setting = lambda words: "(" + " ".join(map(shlex.quote, words)) + ")"  # noqa: E731
    else:
        setting = lambda words: shlex.quote(shlex.join(words))               # noqa: E731
    conf = tmp_path / "r.conf"
    conf.write_text(f"ARCHIVE={shlex.quote(str(base / 'runs'))}\n"
                    f"SNAPSHOT_ARGS={setting(snapshot)}\nPLAN_ARGS={setting(plan)}\n"
                    f"APPLY_ARGS={setting(apply)}\n")
    proc = rebalance("-c", str(conf), "-n")
    run_dir, = [p for p in (base / "runs").iterdir() if p.name[0].isdigit()]
    doc = json.loads((run_dir / "plan.json").read_text())
    assert [(a["op"], a["vm"]) for a in doc["actions"]] == [("resume", "sleeper")], \
        proc.stdout + proc.stderr
    assert not list(tmp_path.rglob("pwned")) and not (ROOT / "pwned").exists()


def test_a_setting_that_cannot_be_split_is_a_bad_settings_file(tmp_path):
    conf = tmp_path / "r.conf"
    conf.write_text(f"ARCHIVE={shlex.quote(str(tmp_path / 'runs'))}\n"
                    "SNAPSHOT_ARGS=\"--input '/srv/a b.xml\"\n")
    proc = rebalance("-c", str(conf))
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert proc.stderr.startswith("vm-rebalance: error: SNAPSHOT_ARGS: cannot split it")
    assert not (tmp_path / "runs").exists()


def domains_conf(tmp_path: Path, port: int) -> Path:
    """Two domains: east reads a saved dump (auto within one migration: no whole host can be
    emptied, so nothing to do), west a gmetad nobody runs (its snapshot fails: 69)."""
    conf = tmp_path / "r.conf"
    dump = ROOT / "vmtools" / "examples" / "lab-gmetad.xml"
    conf.write_text(f"ARCHIVE={shlex.quote(str(tmp_path / HOSTILE))}\n"
                    "DOMAINS='east west-2'\nPLAN_ARGS=(--max-migrations 1)\n"
                    f"SNAPSHOT_ARGS_east=(--input {shlex.quote(str(dump))})\n"
                    f"SNAPSHOT_ARGS_west_2=(--gmetad 127.0.0.1:{port} --timeout 1)\n")
    return conf


def test_one_failing_domain_does_not_stop_the_others_and_the_result_says_which(tmp_path):
    conf = domains_conf(tmp_path, free_port())
    proc = rebalance("-c", str(conf))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    first = proc.stdout.splitlines()[0]
    assert first.endswith("1 of 2 domains failed (west-2: vm-snapshot failed (exit 69))")
    assert "== east: nothing to do" in proc.stdout
    archive = tmp_path / HOSTILE
    run_dir, = [p for p in archive.iterdir() if p.name[0].isdigit()]
    result = json.loads((run_dir / "result.json").read_text())
    assert result["exit"] == 1 and result["version"] == "1.1"
    east, west = result["domains"]["east"], result["domains"]["west-2"]
    assert (east["exit"], east["failed_step"], east["plan"]["migrations"]) == (0, None, 0)
    assert (west["exit"], west["failed_step"], west["plan"]) == (69, "snapshot", None)
    assert (run_dir / "east" / "plan.json").exists()
    assert not (run_dir / "west-2" / "plan.json").exists()
    assert "127.0.0.1" in (run_dir / "west-2" / "snapshot.log").read_text()
    # each domain keeps its own vm-plan history
    assert (archive / ".plan-state" / "east" / "vmtools.state").exists()
    # vm-status's last run is the whole run's line
    status = subprocess.run([str(Path(sys.executable).parent / "vm-status"),
                             str(run_dir / "east" / "snapshot.json"), "--runs", str(archive)],
                            capture_output=True, text=True, timeout=120)
    assert "1 of 2 domains failed (west-2: vm-snapshot failed (exit 69))" in \
        " ".join(status.stdout.split()), status.stdout + status.stderr
    # one domain alone: its own outcome; every domain failing: the first one's code
    assert rebalance("-c", str(conf), "-d", "east", "-q").returncode == 0
    proc = rebalance("-c", str(conf), "--domain=west-2", "-j", "1")
    assert proc.returncode == 69 and "1 of 1 domains failed" in proc.stdout
    proc = rebalance("-c", str(conf), "-d", "north")
    assert proc.returncode == 2 and "north: not a domain of DOMAINS" in proc.stderr


@pytest.mark.ganglia
@pytest.mark.skipif(bool(binaries_missing()), reason="needs gmond and gmetad")
def test_domains_against_the_lab_one_migrates_while_the_other_source_is_down(tmp_path,
                                                                             make_lab):
    """east is the lab (its gmetad, its xends and sshd): consolidated for real, in the same
    cron run in which west's gmetad does not answer."""
    lab = make_lab("steady")
    lab.wait_for_truth()
    archive = tmp_path / HOSTILE
    words = lambda args: "(" + " ".join(map(shlex.quote, args)) + ")"  # noqa: E731
    conf = tmp_path / "r.conf"
    conf.write_text(f"ARCHIVE={shlex.quote(str(archive))}\nDOMAINS=(west east)\n"
                    f"SNAPSHOT_ARGS_east={words(lab.snapshot_args())}\n"
                    "PLAN_ARGS_east=(--objective consolidate)\n"
                    f"APPLY_ARGS_east={words(lab.apply_args())}\n"
                    f"SNAPSHOT_ARGS_west=(--gmetad 127.0.0.1:{free_port()} --timeout 1)\n")
    before = dict(lab.placement())
    proc = rebalance("-c", str(conf), env={"VMTOOLS_STATE_DIR": str(lab.state_dir)})
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert proc.stdout.splitlines()[0].endswith(
        "1 of 2 domains failed (west: vm-snapshot failed (exit 69))")
    run_dir, = [p for p in archive.iterdir() if p.name[0].isdigit()]
    plan = json.loads((run_dir / "east" / "plan.json").read_text())
    report = json.loads((run_dir / "east" / "report.json").read_text())
    assert {a["outcome"] for a in report["actions"]} == {"done"}
    assert lab.placement() == plan["placement"] != before
    result = json.loads((run_dir / "result.json").read_text())
    east = result["domains"]["east"]
    assert (east["exit"], east["outcomes"]) == (0, {"done": len(report["actions"])})
    assert result["domains"]["west"]["exit"] == 69
    assert (archive / ".plan-state" / "east" / "vmtools.state").exists()
    # the run's metrics count what every domain did
    from prometheus_client.parser import text_string_to_metric_families
    got = {(s.name, tuple(s.labels.values())): s.value for f in text_string_to_metric_families(
        (archive / "vm-rebalance.prom").read_text()) for s in f.samples}
    assert got[("vmtools_rebalance_exit_code", ())] == 1
    assert got[("vmtools_rebalance_migrations", ("done",))] == len(report["actions"])
    assert got[("vmtools_rebalance_hosts", ("online",))] == len(plan["origin"]["hosts"])
