"""shell/vm-rebalance, the cron wrapper, against the lab: audit directories, summaries fit for
cron mail, the lock, and stopping at the first failing step."""

from __future__ import annotations

import fcntl
import json
import shlex
import subprocess
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


def test_usage_and_bad_flags():
    proc = rebalance("-h")
    assert proc.returncode == 0 and "Usage: vm-rebalance" in proc.stdout
    assert rebalance("-k", "soon").returncode == 2
    assert rebalance("extra").returncode == 2


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
    assert "(dry run)" in dry.stdout
    before = dict(lab.placement())

    proc = rebalance("-c", str(conf), env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "actions applied" in proc.stdout and "hosts 6 -> 2" in proc.stdout
    runs = sorted(p for p in archive.iterdir() if p.is_dir() and p.name[0] != ".")
    assert len(runs) == 2
    last = runs[-1]
    for name in ("snapshot.json", "plan.json", "report.json", "summary.txt"):
        assert (last / name).exists(), name
    plan = json.loads((last / "plan.json").read_text())
    report = json.loads((last / "report.json").read_text())
    assert lab.placement() == plan["placement"] != before
    assert {a["outcome"] for a in report["actions"]} == {"done"}

    # Once Ganglia shows the new placement, a quiet run has nothing to say to cron.
    lab.wait_for_truth()
    quiet = rebalance("-c", str(conf), "-q", env=env)
    assert (quiet.returncode, quiet.stdout) == (0, "")
