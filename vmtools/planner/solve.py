"""Solving a built model: the solver is chosen by name, with a time limit; the status is
checked explicitly and becomes a result or a typed error.

``cbc`` is PuLP's bundled CBC binary when it runs, else a ``cbc`` on PATH (Debian package
``coinor-cbc``); PuLP 4 no longer bundles CBC, so a fresh install may need that package.
``highs`` is HiGHS through ``highspy`` (``pip install highspy``). Any other name is one of
PuLP's solvers (``pulp.listSolvers()``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import signal
import sys
import threading
import time
import warnings
from dataclasses import dataclass

import pulp

from vmtools.errors import OptionError, Unavailable
from vmtools.planner.deadline import MIN_SOLVE_SECONDS
from vmtools.planner.options import Options
from vmtools.planner.scratch import (
    SOLVER_PROGRAMS, children, empty_scratch, kill_children, scratch_dir,
)

log = logging.getLogger("vmtools.planner.solve")


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
        raise OptionError("solver", f"{name!r}: unknown solver; expected cbc, highs or one of "
                                    f"{', '.join(pulp.listSolvers())}")
    if not pulp.getSolver(name, msg=False).available():
        raise Unavailable(f"solver {name} is not available on this machine")


def solve(prob: pulp.LpProblem, name: str = "cbc", time_limit: float = 60.0,
          warm_start: bool = False, threads: int = 1) -> SolveResult:
    """Solve ``prob`` in place. Never raises on time limit: the status says what happened."""
    time_limit = max(MIN_SOLVE_SECONDS, time_limit)
    started = time.monotonic()
    log_path = None
    scratch = scratch_dir()
    if name == "cbc":
        log_path = os.path.join(scratch, "cbc.log")
        solver = _cbc(time_limit, warm_start, threads, log_path)
    elif name == "highs":
        try:
            import highspy  # noqa: F401
            solver = pulp.HiGHS(msg=False, timeLimit=time_limit, threads=threads)
        except ImportError:
            solver = pulp.HiGHS_CMD(msg=False, timeLimit=time_limit, threads=threads)
    else:
        solver = pulp.getSolver(name, msg=False, timeLimit=time_limit)
    if hasattr(solver, "tmpDir"):
        solver.tmpDir = scratch          # PuLP's model and solution files, never $TMPDIR's
    watchdog = _Watchdog("cbc", time_limit) if name == "cbc" else None
    try:
        if watchdog:
            with watchdog:
                prob.solve(solver)
        else:
            with _stdout_to_stderr():
                prob.solve(solver)
    except pulp.PulpSolverError as exc:
        if watchdog is None or not watchdog.fired:
            raise Unavailable(f"solver {name} failed to run: {exc}") from None
        log.info("CBC killed %.0f s past --time-limit; no solution from this stage",
                 time.monotonic() - started - time_limit)
        return SolveResult("none", None, None, time.monotonic() - started)
    finally:
        text = ""
        if log_path:
            with contextlib.suppress(OSError):
                with open(log_path, encoding="utf-8", errors="replace") as fh:
                    text = fh.read()
        if watchdog is not None and watchdog.fired:
            kill_children(names=SOLVER_PROGRAMS)
        empty_scratch()
    seconds = time.monotonic() - started
    objective = pulp.value(prob.objective) if prob.objective is not None else None
    sol = prob.sol_status
    if prob.status == pulp.LpStatusInfeasible or sol == pulp.LpSolutionInfeasible:
        return SolveResult("infeasible", None, None, seconds)
    stopped = "Stopped on" in text or (watchdog is not None and watchdog.fired)
    if sol == pulp.LpSolutionOptimal and not stopped:
        return SolveResult("optimal", objective, objective, seconds)
    if sol in (pulp.LpSolutionIntegerFeasible, pulp.LpSolutionOptimal):
        return SolveResult("feasible", objective, _cbc_bound(text), seconds)
    return SolveResult("none", None, _cbc_bound(text), seconds)


@contextlib.contextmanager
def _stdout_to_stderr():
    """Solvers run in this process may write to file descriptor 1 whatever their options say
    (HiGHS 1.16 prints its banner there with output off): that is vm-plan's document, so
    point it at stderr while they run."""
    sys.stdout.flush()
    try:
        saved = os.dup(1)
    except OSError:
        yield
        return
    try:
        os.dup2(2, 1)
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


class _Watchdog:
    """Holds a solver subprocess to its time limit. CBC reads its ``-sec`` only between
    branch-and-bound nodes; its root node (cuts, heuristics) can run far past it (measured:
    11 s for a 2 s limit at 50 hosts / 250 guests under rules, 440 s for 12 s at 200 / 2,000).
    Past the limit plus a grace it sends SIGINT, on which CBC stops and writes the best
    solution it has; if CBC is still there after another grace, SIGKILL (no solution: the
    caller keeps what it had). Children are found in /proc; without /proc this does nothing."""

    def __init__(self, program: str, limit: float):
        self.program = program
        self.grace = max(1.0, 0.1 * limit)
        self.limit = limit
        self.fired = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="solver-watchdog", daemon=True)

    def __enter__(self) -> "_Watchdog":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _children(self) -> list[int]:
        return children(names=frozenset({self.program}))

    def _run(self) -> None:
        # The clock runs from the solve call: writing a large model can take longer than the
        # limit, so CBC may not exist yet when it is due. Keep watching until the solve ends:
        # every solver child seen past the limit gets SIGINT, and SIGKILL a grace later.
        if self._stop.wait(self.limit + self.grace):
            return
        interrupted: dict[int, float] = {}
        while True:
            now = time.monotonic()
            for pid in self._children():
                first = interrupted.get(pid)
                try:
                    if first is None:
                        log.info("%s is past its %.0f s limit: interrupting it", self.program,
                                 self.limit)
                        os.kill(pid, signal.SIGINT)
                        interrupted[pid] = now
                    elif now - first >= self.grace:
                        os.kill(pid, signal.SIGKILL)
                    self.fired = True
                except ProcessLookupError:
                    pass
            if self._stop.wait(0.1):
                return


def _cbc_bound(text: str) -> float | None:
    # CBC's summary: "Lower bound:                    14.2"
    m = re.search(r"Lower bound:\s+(-?[0-9.eE+-]+)", text)
    if m:
        try:
            return float(m.group(1))
        except ValueError:
            return None
    return None


def solve_model(model, inst, opts: Options, time_limit: float,
                warm: list[int] | None) -> tuple[list[int] | None, object]:
    """Solve a built model (``milp.build_*``), warm-started from ``warm`` when given; the
    placement it found if the instance accepts it, else None, and the solver's result."""
    if warm is not None:
        model.warm_start(inst, warm)
    res = solve(model.prob, opts.solver, time_limit, warm_start=warm is not None,
                threads=opts.threads)
    if res.status in ("optimal", "feasible"):
        place = model.placement(inst)
        if inst.valid(place):
            return place, res
        log.debug("solver placement failed validation; keeping the warm start")
    return None, res
