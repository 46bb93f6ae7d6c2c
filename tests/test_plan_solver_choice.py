"""CBC is found however this machine has it: PuLP's bundled binary (PuLP <= 3), else a cbc on
PATH (Debian's coinor-cbc; what PuLP 4, which bundles none, needs), else a clear error."""

from __future__ import annotations

import shutil

import pulp
import pytest

from vmtools.errors import Unavailable
from vmtools.model import VM, Host, Snapshot
from vmtools.planner import solve
from vmtools.planner.constraints import Constraints
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
