"""The morning view of a Xen cluster: one line per host (state, CPU and memory use with the
hotspots flagged, guests, capacity), the problems, and what the last vm-rebalance run did and
when. In 80 columns.

Reads a snapshot FILE (vm-snapshot's document), or with no FILE takes one live through
vm-snapshot's own source options and code (Ganglia, gmetad on localhost by default;
--prometheus; --xapi). Standby hosts come from vm-plan's --state directory, the last run from
vm-rebalance's archive (--runs).
"""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from vmtools.cli import _sources as S
from vmtools.cli._sources import source_settings
from vmtools.cli._common import (TextfileDir, EXIT_CODES_EPILOG, Debug, Format, Output, OutputFormat, Quiet,
                                 Verbose, Version, emit, entry_point, guard, make_app,
                                 log, read_document)
from vmtools.errors import DataError, UsageError
from vmtools.model import Snapshot, dumps
from vmtools.rules.load import CPU_THRESHOLD, MEM_THRESHOLD

PROG = "vm-status"
RUNS_DIR = "/var/lib/vmtools/runs"
app = make_app(PROG, __doc__)


@app.command(epilog=EXIT_CODES_EPILOG)
@S.with_sources(after="file", omit=("samples_window", "samples_step"))
def status(
    file: Annotated[Optional[str], typer.Argument(
        metavar="[FILE]", help="A snapshot document (- reads stdin). Default: take one live "
                               "through the source options (gmetad on localhost when none "
                               "is given).")] = None,
    runs: Annotated[str, typer.Option(
        "--runs", metavar="DIR",
        help="vm-rebalance's archive (its -a), for the last run; '' to leave it out.")
    ] = RUNS_DIR,
    state: Annotated[Optional[str], typer.Option(
        "--state", metavar="DIR",
        help="vm-plan's --state directory, for the hosts it switched off (standby) and the "
             "hosts in maintenance (maintenance.json, written by vm-web); with "
             "vm-rebalance's DOMAINS, each domain's own DIR/NAME for its hosts. Default: "
             "vm-rebalance's, RUNS/.plan-state.")] = None,
    suspended: Annotated[Optional[str], typer.Option(
        "--suspended", metavar="FILE", help="vm-apply's suspended-guests ledger, for the "
        "guests suspended and not resumed (default: STATE_DIR/suspended.json under "
        "$VMTOOLS_STATE_DIR or /var/lib/vmtools; '' to leave them out).")] = None,
    constraints: Annotated[Optional[str], typer.Option(
        "--constraints", metavar="FILE",
        help="vm-plan's vmtools.constraints document: its capacity rules set what each host "
             "gives, so a host is a hotspot here exactly when it is one for vm-plan.")] = None,
    cpu_threshold: Annotated[float, typer.Option(
        "--cpu-threshold", metavar="FRACTION",
        help="Flag a host above this fraction of its CPUs (as vm-plan's).")] = CPU_THRESHOLD,
    mem_threshold: Annotated[float, typer.Option(
        "--mem-threshold", metavar="FRACTION",
        help="Flag a host above this fraction of its memory (as vm-plan's).")] = MEM_THRESHOLD,
    fmt: Format = OutputFormat.table,
    output: Output = None,
    textfile_dir: TextfileDir = None,
    verbose: Verbose = 0,
    quiet: Quiet = False,
    debug: Debug = False,
    version: Version = False,
    **given,
) -> None:
    """Print the state of the cluster for people (or -f json: a vmtools.status document).
    \f
    ``given``: the source options (:func:`vmtools.cli._sources.with_sources`)."""
    timeout, deadline = given["timeout"], given["deadline"]
    with guard(PROG, verbose, quiet, debug, textfile_dir=textfile_dir):
        from vmtools.render import status_table
        from vmtools.status import build_status
        for name, value in (("--cpu-threshold", cpu_threshold),
                            ("--mem-threshold", mem_threshold)):
            if not 0 < value <= 1:
                raise UsageError(f"{name} {value:g}: expected a fraction in (0, 1]")
        if not timeout > 0:
            raise UsageError(f"--timeout {timeout:g}: must be more than 0 seconds")
        if deadline is not None and not deadline > 0:
            raise UsageError(f"--deadline {deadline:g}: must be more than 0 seconds")
        live = [f"--{name.rstrip('_').replace('_', '-')}" for name in
                ("gmetad", "cluster", "gmond", "input_", "example", "prometheus", "xapi")
                if given[name]]
        if file is not None:
            if live:
                raise UsageError(f"give a snapshot FILE or {live[0]}, not both")
            snap = read_document(PROG, file, Snapshot, "snapshot")
        else:
            from vmtools.snapshot import sources_from, take_snapshot
            # the sources exactly as vm-snapshot makes them (its options, its code); no
            # range query: the view shows now
            snap = take_snapshot(sources_from(source_settings(dict(given,
                                                                   samples_window=0.0))),
                                 timeout=deadline)
        runs_dir = runs or None
        state_dir = state if state is not None else (f"{runs_dir}/.plan-state"
                                                     if runs_dir else None)
        from vmtools.apply.lifecycle import LEDGER, read_suspended
        from vmtools.apply.options import default_state_dir
        ledger: dict = {}
        if suspended:
            ledger = read_suspended(suspended)
        elif suspended is None:
            # the default ledger: a view for people still shows the rest without it
            try:
                ledger = read_suspended(f"{default_state_dir()}/{LEDGER}")
            except DataError as exc:
                log.warning("the suspended guests are left out: %s", exc)
        rules = None
        if constraints is not None:
            from vmtools.model import load_file
            from vmtools.rules.constraints import checked_document
            rules = load_file(constraints, "constraints", checked_document, prog=PROG)
        doc = build_status(snap, runs_dir, state_dir, cpu_threshold, mem_threshold,
                           suspended=ledger, constraints=rules)
        emit(status_table(doc) if fmt == OutputFormat.table else dumps(doc), output)


main = entry_point(app, PROG)
