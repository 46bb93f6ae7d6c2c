"""Where the solver's files live, and making sure nothing of a solver outlives vm-plan.

PuLP hands CBC its model through files (``<uuid>-pulp.mps``, ``.sol``, ``.mst``; about 200 MB
at 1,000 hosts / 10,000 guests) in ``$TMPDIR`` and deletes them only when the solve returns
normally; CBC is a child process that keeps running when vm-plan is interrupted. So:

- every solver file goes into one private directory per vm-plan process (:func:`scratch_dir`,
  ``$TMPDIR/vm-plan-XXXXXXXX``, mode 0700), emptied after each solve and removed at exit;
- :func:`solver_guard` wraps a whole vm-plan run: SIGTERM and SIGHUP become a clean exit
  (``SystemExit(128 + signal)``, so ``finally`` blocks run, as SIGINT's KeyboardInterrupt
  does), and on the way out, however it is taken (return, error, signal, the watchdog's
  kill), every child process left is killed with SIGKILL and waited for, and the directory
  is removed. An ``atexit`` hook does the same for code that solves outside the guard.

Only SIGKILL of vm-plan itself cannot be cleaned up after; its directory is then the only
``vm-plan-*`` left in ``$TMPDIR``, and the next vm-plan removes those of dead processes.
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import logging
import os
import shutil
import signal
import sys
import tempfile
import time
from typing import Iterator

log = logging.getLogger("vmtools.planner.scratch")

PREFIX = "vm-plan-"
_dir: str | None = None


def scratch_dir() -> str:
    """This process's private directory for solver files (made on first use)."""
    global _dir
    if _dir is None or not os.path.isdir(_dir):
        _reap_dead()
        _dir = tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-")
        atexit.register(cleanup)
    return _dir


def in_worker() -> None:
    """In a process forked from vm-plan (:mod:`vmtools.planner.split`): its own directory
    (made on first use) instead of its parent's, and SIGTERM a clean exit (the ``finally``
    that calls :func:`cleanup` runs)."""
    global _dir
    _dir = None
    with contextlib.suppress(ValueError, OSError):
        signal.signal(signal.SIGTERM, _exit_on)


def empty_scratch() -> None:
    """Remove the files of the last solve (the directory stays for the next)."""
    if _dir is None:
        return
    for entry in glob.glob(os.path.join(_dir, "*")):
        with contextlib.suppress(OSError):
            if os.path.isdir(entry):
                shutil.rmtree(entry, ignore_errors=True)
            else:
                os.unlink(entry)


# Programs PuLP may start; the atexit hook kills only these (a library user's own children
# are none of its business), the guard of a vm-plan run kills every child.
SOLVER_PROGRAMS = frozenset({"cbc", "highs", "glpsol", "scip", "cplex", "gurobi_cl", "xpress",
                             "mosek", "choco", "copt_cmd"})


def children(pid: int | None = None, names: frozenset[str] | None = None) -> list[int]:
    """Direct child processes of ``pid`` (default: this process), from /proc; only those whose
    program name is in ``names`` when given."""
    me = str(os.getpid() if pid is None else pid)
    found = []
    try:
        entries = os.listdir("/proc")
    except OSError:
        return []
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as fh:
                stat = fh.read()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2:].split()
        comm = stat[stat.find("(") + 1:stat.rfind(")")]
        if len(fields) > 1 and fields[1] == me and (names is None or comm in names):
            found.append(int(entry))
    return found


def kill_children(timeout: float = 5.0, names: frozenset[str] | None = None) -> list[int]:
    """SIGKILL the child processes (all, or those named ``names``) and reap them."""
    killed = []
    for pid in children(names=names):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
    deadline = time.monotonic() + timeout
    for pid in killed:
        while time.monotonic() < deadline:
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                break
            if done:
                break
            time.sleep(0.01)
    if killed:
        log.info("killed solver process(es) %s", ", ".join(map(str, killed)))
    return killed


def cleanup(every_child: bool = False) -> None:
    """Kill what is left of the solver (``every_child``: every child process) and remove the
    scratch directory."""
    global _dir
    kill_children(names=None if every_child else SOLVER_PROGRAMS)
    if _dir is not None:
        shutil.rmtree(_dir, ignore_errors=True)
        _dir = None


def _reap_dead() -> None:
    """Remove the scratch directories of vm-plan processes that no longer exist (one killed
    with SIGKILL cannot clean up after itself)."""
    for path in glob.glob(os.path.join(tempfile.gettempdir(), f"{PREFIX}*-*")):
        pid_text = os.path.basename(path)[len(PREFIX):].split("-", 1)[0]
        if not pid_text.isdigit() or not os.path.isdir(path):
            continue
        try:
            os.kill(int(pid_text), 0)
        except ProcessLookupError:
            shutil.rmtree(path, ignore_errors=True)
        except PermissionError:
            pass


def _exit_on(signum: int, frame) -> None:  # noqa: ARG001 - a signal handler's signature
    raise SystemExit(128 + signum)


@contextlib.contextmanager
def solver_guard(every_child: bool = True, announce: bool = True) -> Iterator[None]:
    """Run a vm-plan body so that no solver process or file outlives it (see the module);
    ``every_child=False`` kills only solver programs (the planner run inside another program,
    vm-replay); ``announce=False`` leaves the line about a stopping signal to that program."""
    previous = {}
    for sig in (signal.SIGTERM, signal.SIGHUP):
        with contextlib.suppress(ValueError, OSError):   # not the main thread: leave it
            previous[sig] = signal.signal(sig, _exit_on)
    try:
        yield
    except SystemExit as exc:
        if announce and isinstance(exc.code, int) and exc.code > 128:
            name = signal.Signals(exc.code - 128).name
            print(f"vm-plan: error: stopped by {name}; the solver and its files are removed",
                  file=sys.stderr)
        raise
    finally:
        cleanup(every_child=every_child)
        for sig, handler in previous.items():
            with contextlib.suppress(ValueError, OSError):
                signal.signal(sig, handler)
