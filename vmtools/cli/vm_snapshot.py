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
from vmtools.ganglia.interpret import DEFAULT_STALE_AFTER
from vmtools.ganglia.names import GMETAD_INTERACTIVE_PORT, GMETAD_XML_PORT, GMOND_PORT
from vmtools.ganglia.sources import DEFAULT_TIMEOUT, EXAMPLES
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
    prometheus: Annotated[Optional[list[str]], typer.Option(
        "--prometheus", metavar="URL",
        help="Read a Prometheus server's HTTP API (http[s]://HOST:PORT[/PATH]) through "
             "--prometheus-profile; no credentials in the URL. Repeatable.")] = None,
    prometheus_profile: Annotated[str, typer.Option(
        "--prometheus-profile", metavar="NAME|FILE",
        help="How hosts and guests are named and measured there: vmtools (vm-gmetric's "
             "exporter), xen-exporter (MikeDombo/xen-exporter), or a profile file "
             "(vmtools-formats(5), PROMETHEUS PROFILES).")] = "vmtools",
    prometheus_user: Annotated[Optional[str], typer.Option(
        "--prometheus-user", metavar="NAME",
        help="Basic auth user; the password is read from --prometheus-password-file.")] = None,
    prometheus_password_file: Annotated[Optional[str], typer.Option(
        "--prometheus-password-file", metavar="FILE",
        help="File whose first line is the basic auth password (not readable by others).")
    ] = None,
    prometheus_token_file: Annotated[Optional[str], typer.Option(
        "--prometheus-token-file", metavar="FILE",
        help="File whose first line is a bearer token (not readable by others).")] = None,
    prometheus_ca_file: Annotated[Optional[str], typer.Option(
        "--prometheus-ca-file", metavar="FILE",
        help="CA certificates (PEM) that sign the https:// server's certificate (default: "
             "the system's).")] = None,
    at: Annotated[Optional[str], typer.Option(
        "--at", metavar="TIME",
        help="With --prometheus: the snapshot as it was at TIME (Unix seconds or "
             "YYYY-MM-DDTHH:MM:SSZ) instead of now.")] = None,
    samples_window: Annotated[float, typer.Option(
        "--samples-window", metavar="MINUTES",
        help="With --prometheus: carry each guest's CPU samples of the last MINUTES (a range "
             "query) for vm-plan --demand; 0 carries none.")] = 120.0,
    samples_step: Annotated[float, typer.Option(
        "--samples-step", metavar="SECONDS",
        help="With --prometheus: seconds between two samples of --samples-window.")] = 60.0,
    timeout: Annotated[float, typer.Option(
        "--timeout", metavar="SECONDS",
        help="Ganglia: connect timeout and timeout of every read from gmetad or gmond; a whole "
             "answer must arrive within 30 times this. Prometheus: the deadline of the whole "
             "read, every query included.")] = DEFAULT_TIMEOUT,
    recover: Annotated[bool, typer.Option(
        "--recover",
        help="On malformed XML, keep every cluster and host that parses and list the dropped "
             "ones as problems, instead of failing with exit 65.")] = False,
    stale_after: Annotated[float, typer.Option(
        "--stale-after", metavar="SECONDS",
        help="A cluster whose gmond was last heard this long before gmetad's answer is "
             "stale (a problem).")] = DEFAULT_STALE_AFTER,
    xapi: Annotated[Optional[list[str]], typer.Option(
        "--xapi", metavar="URL",
        help="Read a XCP-ng / XenServer pool through its master's XAPI (https://MASTER): "
             "hosts, guests, anti-affinity VM groups, CPU and network from /rrd_updates; its "
             "hosts' migration domain is the pool. The user and password come from "
             "$VMTOOLS_XAPI_USER and $VMTOOLS_XAPI_PASSWORD, else --xapi-credentials; never "
             "from the command line. Repeatable (one per pool, the same credentials).")] = None,
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
    xapi_window: Annotated[float, typer.Option(
        "--xapi-window", metavar="SECONDS",
        help="With --xapi: average each guest's CPU and network over this many seconds of "
             "XAPI's RRDs.")] = 60.0,
    fmt: Format = OutputFormat.json,
    output: Output = None,
    textfile_dir: TextfileDir = None,
    verbose: Verbose = 0,
    quiet: Quiet = False,
    debug: Debug = False,
    deadline: Annotated[Optional[float], typer.Option(
        "--deadline", metavar="SECONDS",
        help="Read every source at once and end the whole read within SECONDS: a source "
             "(a gmetad, gmond, pool or Prometheus server) not done by then, or not answering, "
             "is an unavailable-source problem and its hosts are left out, while the others "
             "are read (exit 69 only when none answers). Default: each source's own "
             "timeouts.")] = None,
    version: Version = False,
) -> None:
    """Print a snapshot (JSON) of the Xen hosts and guests that Ganglia, Prometheus or XAPI
    reports."""
    with guard(PROG, verbose, quiet, debug, textfile_dir=textfile_dir):
        if not timeout > 0:
            raise UsageError(f"--timeout {timeout:g}: must be more than 0 seconds")
        if not stale_after >= 0:
            raise UsageError(f"--stale-after {stale_after:g}: must be 0 or more seconds")
        if deadline is not None and not deadline > 0:
            raise UsageError(f"--deadline {deadline:g}: must be more than 0 seconds")
        sources = []
        ganglia = bool(gmetad or cluster or gmond or input_ or example)
        if xapi:
            if not xapi_window > 0:
                raise UsageError(f"--xapi-window {xapi_window:g}: must be more than 0 seconds")
            for url in xapi:
                sources += make_sources("xapi", dict(
                    url=url, credentials=xapi_credentials, ca_file=xapi_ca,
                    fingerprints=xapi_fingerprint or [], insecure=xapi_insecure,
                    timeout=timeout, window=xapi_window))
        if prometheus:
            sources += make_sources("prometheus", _prometheus_settings(
                prometheus, prometheus_profile, prometheus_user, prometheus_password_file,
                prometheus_token_file, prometheus_ca_file, at, samples_window, samples_step,
                timeout, stale_after))
        elif at is not None:
            raise UsageError("--at needs --prometheus (Ganglia only knows now)")
        if ganglia or not sources:
            sources += make_sources("ganglia", dict(
                gmetad=gmetad or [], cluster=cluster or [], gmond=gmond or [],
                inputs=input_ or [], example=example, timeout=timeout, recover=recover,
                stale_after=stale_after))
        snap = take_snapshot(sources, timeout=deadline)
        evaluated = [src.evaluated_at for src in sources if hasattr(src, "evaluated_at")]
        if evaluated:           # the moment Prometheus was asked about (--at, or now)
            from vmtools.model import epoch_to_iso
            snap.created = epoch_to_iso(evaluated[0])
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


def _prometheus_settings(urls, profile, user, password_file, token_file, ca_file, at, window,
                         step, timeout, stale_after) -> dict:
    from vmtools.model import iso_to_epoch
    from vmtools.prometheus.query import Auth, read_secret
    if token_file and (user or password_file):
        raise UsageError("--prometheus-token-file or --prometheus-user with "
                         "--prometheus-password-file, not both")
    if bool(user) != bool(password_file):
        raise UsageError("--prometheus-user and --prometheus-password-file go together")
    if not window >= 0 or not step > 0 or (window and window * 60 / step > 11000):
        raise UsageError("--samples-window must be 0 or more minutes and --samples-step more "
                         "than 0 seconds, with at most 11,000 samples in the window")
    auth = None
    if token_file:
        auth = Auth(token=read_secret(token_file, "prometheus-token-file"))
    elif user:
        auth = Auth(user=user, password=read_secret(password_file, "prometheus-password-file"))
    when = None
    if at is not None:
        try:
            when = float(at) if at.replace(".", "", 1).isdigit() else iso_to_epoch(at)
        except (TypeError, ValueError):
            raise UsageError(f"--at {at!r}: expected Unix seconds or YYYY-MM-DDTHH:MM:SSZ") \
                from None
    return dict(prometheus=urls, profile=profile, auth=auth, ca_file=ca_file, at=when,
                window_minutes=window, step=step, timeout=timeout, stale_after=stale_after)


main = entry_point(app, PROG)
