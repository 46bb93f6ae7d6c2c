"""Read Ganglia (gmetad, gmond or a saved XML dump) or Prometheus and print a snapshot of the
Xen hosts and their guests: capacity, demand and the problems that make it incoherent.

With no source option it reads gmetad's XML port on localhost:8651. With --prometheus URL it
reads a Prometheus server instead (instant queries of a mapping profile), and carries each
guest's recent CPU samples (a range query) for vm-plan --demand. With --xapi URL it reads a
XCP-ng / XenServer pool through its master's XAPI instead. Several sources of any kinds
are read at once (--deadline) into one snapshot, each host tagged with its migration domain
(its Ganglia cluster, its XAPI pool, a Prometheus label).
"""

from __future__ import annotations

import logging
import sys
from typing import Annotated, Optional

import typer

from vmtools.cli._common import (TextfileDir, figures, EXIT_CODES_EPILOG, Debug, Format, Output, OutputFormat, Quiet, Verbose, Version,
                                 emit, entry_point, guard, make_app)
from vmtools.errors import UsageError
from vmtools.cli import _sources as S
from vmtools.cli._sources import source_settings
from vmtools.snapshot import snapshot_json, snapshot_json_chunks, sources_from, take_snapshot

log = logging.getLogger("vmtools.snapshot")
PROG = "vm-snapshot"
app = make_app(PROG, __doc__)


@app.command(epilog=EXIT_CODES_EPILOG)
@S.with_sources()
def snapshot(
    at: Annotated[Optional[str], typer.Option(
        "--at", metavar="TIME",
        help="With --prometheus: the snapshot as it was at TIME (Unix seconds or "
             "YYYY-MM-DDTHH:MM:SSZ) instead of now.")] = None,
    fmt: Format = OutputFormat.json,
    output: Output = None,
    textfile_dir: TextfileDir = None,
    verbose: Verbose = 0,
    quiet: Quiet = False,
    debug: Debug = False,
    version: Version = False,
    **given,
) -> None:
    """Print a snapshot (JSON) of the Xen hosts and guests that Ganglia, Prometheus or XAPI
    reports.
    \f
    ``given``: the source options (:func:`vmtools.cli._sources.with_sources`)."""
    with guard(PROG, verbose, quiet, debug, textfile_dir=textfile_dir):
        deadline = given["deadline"]
        if deadline is not None and not deadline > 0:
            raise UsageError(f"--deadline {deadline:g}: must be more than 0 seconds")
        sources = sources_from(source_settings(given, at=at))
        snap = take_snapshot(sources, timeout=deadline)
        evaluated = [src.evaluated_at for src in sources if hasattr(src, "evaluated_at")]
        if evaluated:           # the moment Prometheus was asked about (--at, or now)
            from vmtools.model import epoch_to_iso
            snap.created = epoch_to_iso(evaluated[0])
        if not snap.hosts and not snap.problems:
            log.warning("the source reports no host at all (every agent gone, or the wrong "
                        "cluster or source): nothing is known of the cluster")
        if snap.problems:
            n = len(snap.problems)
            log.warning("%d problem%s in the snapshot, first: %s: %s", n, "" if n == 1 else "s",
                        snap.problems[0].kind, snap.problems[0].message)
        log.info("%d host%s, %d guest%s", len(snap.hosts), "" if len(snap.hosts) == 1 else "s",
                 len(snap.vms), "" if len(snap.vms) == 1 else "s")
        if textfile_dir is not None:
            from vmtools.prometheus.textfile import snapshot_families
            figures(*snapshot_families(snap))
        if fmt == OutputFormat.table:
            from vmtools.render import snapshot_table     # tabulate: only for the table
            emit(snapshot_table(snap), output)
        elif output is None or str(output) == "-":
            # Encoded whole before the first byte goes out (a value the encoder refuses must
            # not leave half a snapshot on stdout), but entry by entry: 40,000 guests as one
            # dict tree and one indenting encoder would cost several times the text.
            chunks = list(snapshot_json_chunks(snap))
            for chunk in chunks:
                sys.stdout.write(chunk)
            sys.stdout.flush()
        else:
            emit(snapshot_json(snap), output)


main = entry_point(app, PROG)
