"""Read Ganglia (gmetad, gmond or a saved XML dump) and print a snapshot of the Xen hosts and
their guests: capacity, demand and the problems that make it incoherent.

With no source option it reads gmetad's XML port on localhost:8651. With --xapi it reads a
XCP-ng / XenServer pool through its master's XAPI instead.
"""

from __future__ import annotations

import logging
import sys
from typing import Annotated, Optional

import typer

from vmtools.cli._common import (EXIT_CODES_EPILOG, Debug, Format, Output, OutputFormat, Quiet, Verbose, Version,
                                 emit, entry_point, guard, make_app)
from vmtools.errors import UsageError
from vmtools.ganglia.interpret import DEFAULT_STALE_AFTER
from vmtools.ganglia.names import GMETAD_INTERACTIVE_PORT, GMETAD_XML_PORT, GMOND_PORT
from vmtools.ganglia.sources import DEFAULT_TIMEOUT, EXAMPLES
from vmtools.render import snapshot_table
from vmtools.snapshot import make_sources, snapshot_json, snapshot_json_chunks, take_snapshot

log = logging.getLogger("vmtools.snapshot")
PROG = "vm-snapshot"
app = make_app(PROG, __doc__)


@app.command(epilog=EXIT_CODES_EPILOG)
def snapshot(
    gmetad: Annotated[Optional[list[str]], typer.Option(
        "--gmetad", metavar="HOST[:PORT]",
        help=f"Read gmetad's XML port (default port {GMETAD_XML_PORT}; with --cluster, the "
             f"interactive port, default {GMETAD_INTERACTIVE_PORT}). Repeatable: the union is "
             "read and hosts seen twice are problems. Default: localhost when no other source "
             "is given.")] = None,
    cluster: Annotated[Optional[list[str]], typer.Option(
        "--cluster", metavar="NAME",
        help="Ask gmetad's interactive port for this cluster only (path query /NAME), so a "
             "large grid need not be downloaded whole. Repeatable.")] = None,
    gmond: Annotated[Optional[list[str]], typer.Option(
        "--gmond", metavar="HOST[:PORT]",
        help=f"Read a gmond's own TCP port (default port {GMOND_PORT}). Repeatable.")] = None,
    input_: Annotated[Optional[list[str]], typer.Option(
        "--input", "-i", metavar="FILE",
        help="Read a saved gmetad or gmond XML dump; - reads stdin. Repeatable.")] = None,
    example: Annotated[Optional[str], typer.Option(
        "--example", metavar="NAME",
        help=f"Read a gmetad dump shipped with vmtools: {', '.join(EXAMPLES)} (a small Xen "
             "lab cluster; the same with one CPU-hot host).")] = None,
    timeout: Annotated[float, typer.Option(
        "--timeout", metavar="SECONDS",
        help="Connect timeout and timeout of every read from gmetad or gmond; a whole answer "
             "must arrive within 30 times this.")] = DEFAULT_TIMEOUT,
    recover: Annotated[bool, typer.Option(
        "--recover",
        help="On malformed XML, keep every cluster and host that parses and list the dropped "
             "ones as problems, instead of failing with exit 65.")] = False,
    stale_after: Annotated[float, typer.Option(
        "--stale-after", metavar="SECONDS",
        help="A cluster whose gmond was last heard this long before gmetad's answer is "
             "stale (a problem).")] = DEFAULT_STALE_AFTER,
    xapi: Annotated[Optional[str], typer.Option(
        "--xapi", metavar="URL",
        help="Read a XCP-ng / XenServer pool through its master's XAPI (https://MASTER): "
             "hosts, guests, anti-affinity VM groups, CPU and network from /rrd_updates. The "
             "user and password come from $VMTOOLS_XAPI_USER and $VMTOOLS_XAPI_PASSWORD, else "
             "--xapi-credentials; never from the command line.")] = None,
    xapi_credentials: Annotated[Optional[str], typer.Option(
        "--xapi-credentials", metavar="FILE",
        help="XAPI user and password (TOML username, password; owned by root or you, mode "
             "600). Default: the environment, else /etc/vmtools/xapi.toml.")] = None,
    xapi_ca: Annotated[Optional[str], typer.Option(
        "--xapi-ca", metavar="FILE",
        help="Verify the pool's TLS certificates against this CA bundle (PEM) instead of the "
             "system's.")] = None,
    xapi_fingerprint: Annotated[Optional[list[str]], typer.Option(
        "--xapi-fingerprint", metavar="SHA256",
        help="Accept only a certificate with this SHA-256 fingerprint (openssl x509 "
             "-fingerprint -sha256; one per host of the pool when each has its own). "
             "Repeatable.")] = None,
    xapi_insecure: Annotated[bool, typer.Option(
        "--xapi-insecure",
        help="Do NOT verify the pool's TLS certificate (anyone on the path can read the "
             "password): for a lab only; warned on every run.")] = False,
    window: Annotated[float, typer.Option(
        "--window", metavar="SECONDS",
        help="With --xapi: average each guest's CPU and network over this many seconds of "
             "XAPI's RRDs.")] = 60.0,
    fmt: Format = OutputFormat.json,
    output: Output = None,
    verbose: Verbose = 0,
    quiet: Quiet = False,
    debug: Debug = False,
    version: Version = False,
) -> None:
    """Print a snapshot (JSON) of the Xen hosts and guests that Ganglia (or XAPI) reports."""
    with guard(PROG, verbose, quiet, debug):
        if not timeout > 0:
            raise UsageError(f"--timeout {timeout:g}: must be more than 0 seconds")
        if not stale_after >= 0:
            raise UsageError(f"--stale-after {stale_after:g}: must be 0 or more seconds")
        if xapi is not None:
            if gmetad or cluster or gmond or input_ or example:
                raise UsageError("--xapi reads a pool by itself: drop --gmetad, --cluster, "
                                 "--gmond, --input and --example")
            if not window > 0:
                raise UsageError(f"--window {window:g}: must be more than 0 seconds")
            sources = make_sources("xapi", dict(
                url=xapi, credentials=xapi_credentials, ca_file=xapi_ca,
                fingerprints=xapi_fingerprint or [], insecure=xapi_insecure, timeout=timeout,
                window=window))
        else:
            sources = make_sources("ganglia", dict(
                gmetad=gmetad or [], cluster=cluster or [], gmond=gmond or [],
                inputs=input_ or [], example=example, timeout=timeout, recover=recover,
                stale_after=stale_after))
        snap = take_snapshot(sources)
        if snap.problems:
            log.warning("%d problem(s) in the snapshot, first: %s: %s", len(snap.problems),
                        snap.problems[0].kind, snap.problems[0].message)
        log.info("%d host(s), %d guest(s)", len(snap.hosts), len(snap.vms))
        if fmt == OutputFormat.table:
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
