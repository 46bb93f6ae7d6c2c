"""Read a snapshot and print a plan: a target placement and the migrations that reach it,
ordered so that any execution respecting their `after` links stays within capacity.

Objectives: auto (the default, for cron: repair broken rules, relieve persistent hotspots,
then empty whole hosts, within a budget per run), consolidate (fewest hosts, then least
memory moved), balance (end hotspots with the fewest migrations, then the lowest worst CPU
use), repair (only satisfy the rules).
"""

from __future__ import annotations

import gc
import inspect
from contextlib import ExitStack, contextmanager

from vmtools.cli._common import (EXIT_CODES_EPILOG, Debug, Format, InputFile, Output,
                                 OutputFormat, Quiet, TextfileDir, Verbose, Version, emit,
                                 entry_point, figures, guard, log, make_app, read_document,
                                 started)
from vmtools.cli._planning import read_documents, with_settings
# The solver's modules (pulp) are imported here, at the top of the stack, not by the first
# plan that needs them: pulp keeps the exceptions of its optional back ends (CPLEX, COPT) with
# their tracebacks, whose frames reach every caller of that first import and kept the
# snapshot, the instance and the plan alive until the interpreter's exit (at 150,000 guests
# 0.8 s of teardown after the plan was printed, and 110 MiB).
import vmtools.planner.solve  # noqa: F401,E402
from vmtools.jsontext import dumps_indented, shared_columns
from vmtools.model import Snapshot
from vmtools.planner.settings import SETTINGS, manual_operation, settings_from

PROG = "vm-plan"
app = make_app(PROG, __doc__)

_KW = inspect.Parameter.KEYWORD_ONLY


@app.command(epilog=EXIT_CODES_EPILOG)
@with_settings(
    [inspect.Parameter("file", _KW, default="-", annotation=InputFile)],
    [inspect.Parameter(name, _KW, default=default, annotation=annotation)
     for name, default, annotation in (("fmt", OutputFormat.json, Format),
                                       ("output", None, Output),
                                       ("textfile_dir", None, TextfileDir),
                                       ("verbose", 0, Verbose), ("quiet", False, Quiet),
                                       ("debug", False, Debug), ("version", False, Version))])
def plan(**kwargs) -> None:
    """Print a plan (JSON) for the snapshot in FILE."""
    verbose, quiet, debug = kwargs["verbose"], kwargs["quiet"], kwargs["debug"]
    # A young-generation collection every 100,000 allocations, not 700: reading 150,000
    # guests and building the instance set off full collections over millions of objects
    # (3 s of the idle auto run's 8 s of CPU at 20,000 hosts); cycles are still collected.
    gc.set_threshold(100_000, 50, 100)
    textfile_dir = kwargs["textfile_dir"]
    with guard(PROG, verbose, quiet, debug, textfile_dir=textfile_dir), _unfrozen():
        from vmtools.render import plan_tables
        from vmtools.state import read_state, state_lock
        settings = settings_from({s.name: kwargs[s.name] for s in SETTINGS})
        if settings.allow_problems:
            log.warning("--allow-problems is ignored: vm-plan plans around problems by "
                        "default now (--refuse-problems refuses them)")
        manual = manual_operation(settings)
        with _no_collection():
            snap = read_document(PROG, kwargs["file"], Snapshot, "snapshot")
            docs = read_documents(PROG, settings, snap)
        keeps_state = settings.state is not None and manual is None
        with ExitStack() as held:
            if keeps_state:             # vm-web may record a host it switched meanwhile
                held.enter_context(state_lock(settings.state))
            state = read_state(settings.state) if keeps_state else None
            result = _plan(docs, settings, state, quiet or manual is not None, verbose)
        for entry in result.rules_skipped:
            log.warning("%s: %s", docs.rules_name, entry["message"])
        plan = result.plan
        if manual is None:
            for entry in plan.summary.get("frozen", []):
                log.warning("host %s is frozen (nothing moves onto it, its guests stay%s): %s",
                            entry["host"], f"; {', '.join(entry['leaving'])} leave it, for "
                            "what its known guests alone cause" if entry["leaving"] else "",
                            entry["why"])
            if textfile_dir is not None:
                from vmtools.prometheus.textfile import plan_families
                figures(*plan_families(plan))
        with _no_collection(), shared_columns():    # the origin's values encoded once
            doc = plan.to_dict()
            # the plan's text; emit ends it with the newline (no copy of 39 MB to add one)
            text = plan_tables(doc) if kwargs["fmt"] == OutputFormat.table else \
                dumps_indented(doc)
        emit(text, kwargs["output"])


@contextmanager
def _no_collection():
    """No cyclic garbage collection while documents are read and the plan is written, and
    what was read or built kept out of later collections (``gc.freeze``, undone when the
    command ends): parsed JSON and the model's records hold no cycles, and a young
    collection every 100,000 of their objects walked them (at 150,000 guests a million and
    more, 0.2 s)."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if was:
            gc.enable()


@contextmanager
def _unfrozen():
    try:
        yield
    finally:
        gc.unfreeze()


def _plan(docs, settings, state, quiet: bool, verbose: int):
    """plan_run with the progress lines; the state (when kept) is written back even when
    planning fails: what was observed stays observed."""
    from vmtools.cli._progress import Progress
    from vmtools.planner.front import plan_run
    from vmtools.planner.scratch import solver_guard
    from vmtools.state import write_state
    snap = docs.snapshot
    with solver_guard(), Progress(PROG, quiet, verbose) as progress:
        progress.follow("vmtools.planner")
        progress.stage(f"planning {settings.objective}: {len(snap.vms)} guests on "
                       f"{len(snap.hosts)} hosts, within {settings.time_limit:g} s")
        try:
            return plan_run(docs, settings, state, started=started())
        finally:
            if state is not None:
                write_state(settings.state, state)


main = entry_point(app, PROG)
