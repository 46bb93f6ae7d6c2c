"""CBC is found however this machine has it: PuLP's bundled binary (PuLP <= 3), else a cbc on
PATH (Debian's coinor-cbc; what PuLP 4, which bundles none, needs), else a clear error."""

from __future__ import annotations

import shutil
import signal
import subprocess
import time

import pulp
import pytest

from vmtools.errors import Unavailable
from vmtools.model import VM, Host, Snapshot
from vmtools.planner import solve
from vmtools.rules.constraints import Constraints
from vmtools.planner.plan import Options, make_plan


@pytest.fixture
def no_bundled_cbc(monkeypatch):
    """This PuLP as PuLP 4 would be: no working bundled CBC."""
    bundled = getattr(pulp, "PULP_CBC_CMD", None)
    if bundled is not None:
        class Missing(bundled):
            def available(self):
                return False
        monkeypatch.setattr(pulp, "PULP_CBC_CMD", Missing)


def tiny() -> Snapshot:
    return Snapshot(hosts=[Host("h1", cpu=4, mem_mib=4096), Host("h2", cpu=4, mem_mib=4096)],
                    vms=[VM("a", "h1", cpu=0.5, mem_mib=1024), VM("b", "h2", cpu=0.5, mem_mib=1024)])


def test_without_any_cbc_the_error_names_what_to_install(no_bundled_cbc, monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(Unavailable) as err:
        solve.check_solver("cbc")
    assert "coinor-cbc" in str(err.value) and "highspy" in str(err.value)


@pytest.mark.skipif(shutil.which("cbc") is None, reason="no cbc on PATH (apt-get install coinor-cbc)")
def test_a_cbc_on_path_plans_when_pulp_bundles_none(no_bundled_cbc):
    plan = make_plan(tiny(), Constraints([]), Options(time_limit=10))
    assert plan.summary["hosts_after"] == 1
    assert plan.solver["name"] == "cbc" and plan.solver["method"].startswith("milp")
    assert plan.solver["status"] == "optimal"


# ----------------------------------------------------------------------------- the time limit
# CBC reads -sec only between branch-and-bound nodes; the watchdog holds it to --time-limit.
# A copy of sleep(1) named cbc stands for a CBC stuck in its root node.

def _stuck_cbc(tmp_path, ignore_sigint: bool):
    binary = tmp_path / "cbc"
    shutil.copy(shutil.which("sleep"), binary)
    # Set SIGINT either way: a test run started in the background by a shell without job
    # control inherits SIGINT ignored, and so would the stand-in.
    action = signal.SIG_IGN if ignore_sigint else signal.SIG_DFL
    return subprocess.Popen([str(binary), "60"],
                            preexec_fn=lambda: signal.signal(signal.SIGINT, action))


@pytest.mark.slow           # waits out a real time limit
def test_a_solver_past_its_limit_is_interrupted(tmp_path):
    proc = _stuck_cbc(tmp_path, ignore_sigint=False)
    started = time.monotonic()
    with solve._Watchdog("cbc", 1.0) as dog:
        proc.wait(timeout=30)
    assert proc.returncode == -2 and dog.fired          # SIGINT: CBC stops, keeps its best
    assert 1.9 <= time.monotonic() - started < 10


@pytest.mark.slow           # waits out a real time limit and the grace after it
def test_a_solver_that_ignores_the_interrupt_is_killed(tmp_path):
    proc = _stuck_cbc(tmp_path, ignore_sigint=True)
    with solve._Watchdog("cbc", 1.0) as dog:
        proc.wait(timeout=30)
    assert proc.returncode == -9 and dog.fired


def test_a_solver_within_its_limit_is_left_alone(tmp_path):
    proc = _stuck_cbc(tmp_path, ignore_sigint=False)
    try:
        with solve._Watchdog("cbc", 30.0) as dog:
            pass                                  # the solve returned in time
        assert proc.poll() is None and not dog.fired
    finally:
        proc.kill()
        proc.wait()
