"""Solving a built model: the solver is chosen by name, with a time limit; the status is
checked explicitly and becomes a result or a typed error.

``cbc`` is PuLP's bundled CBC binary when it runs, else a ``cbc`` on PATH (Debian package
``coinor-cbc``); PuLP 4 no longer bundles CBC, so a fresh install may need that package.
``highs`` is HiGHS through ``highspy`` (``pip install highspy``). Any other name is one of
PuLP's solvers (``pulp.listSolvers()``).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
import warnings
from dataclasses import dataclass

import pulp

from vmtools.errors import Unavailable, UsageError


@dataclass
class SolveResult:
    status: str            # optimal, feasible (time limit, a solution), none (no solution), infeasible
    objective: float | None
    bound: float | None
    seconds: float

    @property
    def gap(self) -> float | None:
        if self.objective is None or self.bound is None:
            return None
        if abs(self.objective) < 1e-9:
            return 0.0
        return max(0.0, (self.objective - self.bound) / abs(self.objective))


def _cbc(time_limit: float, warm: bool, threads: int, log_path: str | None):
    opts = dict(msg=False, timeLimit=max(1, int(time_limit + 0.999)), warmStart=warm,
                logPath=log_path, threads=threads if threads > 1 else None)
    # PuLP <= 3 bundles a CBC binary (its class is deprecated in 3.3); PuLP 4 finds CBC from
    # the cbcbox package or PATH through COIN_CMD; Debian's coinor-cbc puts one on PATH.
    bundled_cls = getattr(pulp, "PULP_CBC_CMD", None)
    if bundled_cls is not None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            bundled = bundled_cls(**opts)
        if bundled.available():
            return bundled
    coin = pulp.COIN_CMD(**opts)
    if coin.available():
        return coin
    path = shutil.which("cbc")
    if path:
        return pulp.COIN_CMD(path=path, **opts)
    raise Unavailable("no working CBC solver: PuLP's bundled CBC is missing (PuLP 4 no longer "
                      "ships it) and there is no cbc on PATH (install the Debian package "
                      "coinor-cbc or pip install 'pulp[cbc]', or use --solver highs after "
                      "pip install highspy)")


def solver_names() -> list[str]:
    return ["cbc", "highs"] + [n for n in pulp.listSolvers() if n not in ("PULP_CBC_CMD",)]


def check_solver(name: str) -> None:
    """Fail early (before any model is built) when the named solver is not usable."""
    if name == "cbc":
        _cbc(1, False, 1, None)
        return
    if name == "highs":
        try:
            import highspy  # noqa: F401
        except ImportError:
            if not pulp.HiGHS_CMD(msg=False).available():
                raise Unavailable("HiGHS is not installed (pip install highspy, or install "
                                  "the highs binary)") from None
        return
    if name not in pulp.listSolvers():
        raise UsageError(f"--solver: unknown solver {name!r}; expected cbc, highs or one of "
                         f"{', '.join(pulp.listSolvers())}")
    if not pulp.getSolver(name, msg=False).available():
        raise Unavailable(f"solver {name} is not available on this machine")


def solve(prob: pulp.LpProblem, name: str = "cbc", time_limit: float = 60.0,
          warm_start: bool = False, threads: int = 1) -> SolveResult:
    """Solve ``prob`` in place. Never raises on time limit: the status says what happened."""
    time_limit = max(1.0, time_limit)
    started = time.monotonic()
    log_path = None
    if name == "cbc":
        fd, log_path = tempfile.mkstemp(prefix="vm-plan-cbc-", suffix=".log")
        os.close(fd)
        solver = _cbc(time_limit, warm_start, threads, log_path)
    elif name == "highs":
        try:
            import highspy  # noqa: F401
            solver = pulp.HiGHS(msg=False, timeLimit=time_limit, threads=threads)
        except ImportError:
            solver = pulp.HiGHS_CMD(msg=False, timeLimit=time_limit, threads=threads)
    else:
        solver = pulp.getSolver(name, msg=False, timeLimit=time_limit)
    try:
        prob.solve(solver)
    except pulp.PulpSolverError as exc:
        raise Unavailable(f"solver {name} failed to run: {exc}") from None
    finally:
        text = ""
        if log_path:
            try:
                with open(log_path, encoding="utf-8", errors="replace") as fh:
                    text = fh.read()
            finally:
                os.unlink(log_path)
    seconds = time.monotonic() - started
    objective = pulp.value(prob.objective) if prob.objective is not None else None
    sol = prob.sol_status
    if prob.status == pulp.LpStatusInfeasible or sol == pulp.LpSolutionInfeasible:
        return SolveResult("infeasible", None, None, seconds)
    if sol == pulp.LpSolutionOptimal and "Stopped on time" not in text:
        return SolveResult("optimal", objective, objective, seconds)
    if sol in (pulp.LpSolutionIntegerFeasible, pulp.LpSolutionOptimal):
        return SolveResult("feasible", objective, _cbc_bound(text), seconds)
    return SolveResult("none", None, _cbc_bound(text), seconds)


def _cbc_bound(text: str) -> float | None:
    # CBC's summary: "Lower bound:                    14.2"
    m = re.search(r"Lower bound:\s+(-?[0-9.eE+-]+)", text)
    if m:
        try:
            return float(m.group(1))
        except ValueError:
            return None
    return None
