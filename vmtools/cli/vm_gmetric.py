"""Publish a Xen Domain-0's hosts and guests metrics to Ganglia, speaking gmond's protocol
itself (no gmetric process): the five Entropy container.* metrics and, per guest,
container.vm.NAME.cpu|mem|vcpus|net. With --prometheus-listen it also (or, without --gmond
and --config, only) serves the same figures to Prometheus as an exporter.

Runs in the foreground as a daemon (for systemd or an init script), or --once (cron).
--dry-run prints what would be sent and sends nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from vmtools.cli._common import (TextfileDir, EXIT_CODES_EPILOG, Debug, Format, Output, OutputFormat, Quiet, Verbose, Version,
                                 emit, entry_point, guard, make_app)
from vmtools.errors import UsageError
from vmtools.gmetric.publish import Settings, parse_spoof, publish_metrics
from vmtools.model import dumps
from vmtools.drivers.registry import names as transport_names
from vmtools.prometheus.names import EXPORTER_PORT

PROG = "vm-gmetric"
DEFAULT_CONFIG = "/etc/ganglia/gmond.conf"
app = make_app(PROG, __doc__)


@app.command(epilog=EXIT_CODES_EPILOG)
def gmetric(
    toolstack: Annotated[str, typer.Option(
        "--toolstack", metavar="xl|xm|auto",
        help="Which Xen toolstack to read: xl, xm, or auto (xl if it answers, else xm).")
    ] = "auto",
    config: Annotated[Optional[Path], typer.Option(
        "--config", "-c", metavar="GMOND_CONF",
        help=f"gmond.conf whose udp_send_channel blocks say where to send (unicast host or "
             f"multicast mcast_join, port, ttl). Default {DEFAULT_CONFIG}; ignored when "
             "--gmond is given.")] = None,
    gmond: Annotated[Optional[list[str]], typer.Option(
        "--gmond", metavar="HOST:PORT",
        help="Send to this gmond's UDP port instead of gmond.conf's channels. Repeatable.")
    ] = None,
    spoof: Annotated[Optional[str], typer.Option(
        "--spoof", metavar="IP:NAME",
        help="Publish as host NAME with address IP (gmetric -S), with a heartbeat so gmetad "
             "shows the host's start time. Use one stable IP per name.")] = None,
    interval: Annotated[float, typer.Option(
        "--interval", metavar="SECONDS",
        help="Seconds between two publishing cycles (daemon mode).")] = 15.0,
    once: Annotated[bool, typer.Option(
        "--once", help="Publish one cycle (CPU and network measured over --window) and exit; "
                       "exit 69 if the toolstack failed.")] = False,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", "-n", help="Read the toolstack, print what would be sent (JSON, or -f table) "
                          "and send nothing.")] = False,
    migration: Annotated[Optional[str], typer.Option(
        "--migration", metavar="DRIVER",
        help=f"What to publish as container.driver.migration: {', '.join(transport_names())}. "
             "Default: xl-ssh with xl, xm-ssh with xm.")] = None,
    tmax: Annotated[Optional[int], typer.Option(
        "--tmax", metavar="SECONDS",
        help="TMAX of every metric: the most seconds expected between two updates. Default: "
             "the larger of 60 and twice --interval.")] = None,
    dmax: Annotated[Optional[int], typer.Option(
        "--dmax", metavar="SECONDS",
        help="DMAX (lifetime) of the per-guest metrics and of container.vms.N parts, so a "
             "guest that left stops showing; 0 = forever. Default: 3 x TMAX. The five host "
             "metrics never expire.")] = None,
    metadata_interval: Annotated[float, typer.Option(
        "--metadata-interval", metavar="SECONDS",
        help="Resend each metric's metadata this often (0 = with every value), so a "
             "restarted gmond shows the values again.")] = 60.0,
    sysfs_root: Annotated[Path, typer.Option(
        "--sysfs-root", metavar="DIR",
        help="Read the guests' vif counters under DIR/sys/class/net (for tests and labs).")
    ] = Path("/"),
    timeout: Annotated[float, typer.Option(
        "--timeout", metavar="SECONDS",
        help="Kill a toolstack command that has not finished after this long.")] = 10.0,
    window: Annotated[Optional[float], typer.Option(
        "--window", metavar="SECONDS",
        help="Seconds between the two samples CPU and network rates are measured over, "
             "before the first cycle (--once, --dry-run, daemon start). Default: the smaller "
             "of --interval and 5.")] = None,
    cycles: Annotated[Optional[int], typer.Option(
        "--cycles", metavar="N",
        help="Stop the daemon after N cycles (tests, benchmarks).")] = None,
    prometheus_listen: Annotated[Optional[str], typer.Option(
        "--prometheus-listen", metavar="[ADDR]:PORT",
        help="Serve the same figures to Prometheus (text exposition format, every path) on "
             f"ADDR:PORT; :PORT listens on every address (the usual port is {EXPORTER_PORT}). "
             "Without --gmond and --config nothing is sent to Ganglia. Daemon mode only.")
    ] = None,
    fmt: Format = OutputFormat.json,
    output: Output = None,
    textfile_dir: TextfileDir = None,
    verbose: Verbose = 0,
    quiet: Quiet = False,
    debug: Debug = False,
    version: Version = False,
) -> None:
    """Publish this Domain-0's Xen metrics to gmond."""
    with guard(PROG, verbose, quiet, debug, textfile_dir=textfile_dir):
        from vmtools.ganglia.send import channels_from_conf, parse_destination
        for name, value in (("--interval", interval), ("--timeout", timeout)):
            if not value > 0:
                raise UsageError(f"{name} {value:g}: must be more than 0 seconds")
        for name, value in (("--tmax", tmax), ("--dmax", dmax), ("--window", window),
                            ("--metadata-interval", metadata_interval), ("--cycles", cycles)):
            if value is not None and value < 0:
                raise UsageError(f"{name} {value:g}: must be 0 or more")
        listen = None
        if prometheus_listen is not None:
            from vmtools.prometheus.exposition import parse_listen
            listen = parse_listen(prometheus_listen, EXPORTER_PORT)
            if once:
                raise UsageError("--once with --prometheus-listen: the exporter serves between "
                                 "cycles, run vm-gmetric as a daemon")
        ganglia = listen is None or bool(gmond) or config is not None
        if gmond:
            channels = [parse_destination(g) for g in gmond]
        elif ganglia:
            channels = channels_from_conf(str(config or DEFAULT_CONFIG))
        else:
            channels = []
        settings = Settings(toolstack=toolstack, channels=channels,
                            spoof=parse_spoof(spoof) if spoof else None, interval=interval,
                            once=once, dry_run=dry_run, migration=migration, tmax=tmax,
                            dmax=dmax, metadata_interval=metadata_interval,
                            sysfs_root=str(sysfs_root), timeout=timeout, window=window,
                            cycles=cycles, prometheus_listen=listen, ganglia=ganglia)
        if dry_run or once:
            from vmtools.cli._progress import Progress
            wait = window if window is not None else min(interval, 5.0)
            with Progress(PROG, quiet, verbose) as progress:
                if wait:
                    progress.stage(f"sampling the toolstack twice, {wait:g} s apart, for CPU "
                                   "and network rates (--window)")
                doc = publish_metrics(settings)
        else:
            doc = publish_metrics(settings)
        if doc is not None:
            if fmt == OutputFormat.table:
                from vmtools.render import table
                rows = [[m["name"], m["value"], m["type"], m["units"], m["tmax"], m["dmax"]]
                        for m in doc["metrics"]]
                text = table(rows, ["metric", "value", "type", "units", "tmax", "dmax"],
                             f"{doc['host']}: {doc['packets']} packets, {doc['bytes']} bytes")
                for s in doc["skipped"]:
                    text += f"\nskipped {s['name']!r}: {s['reason']}"
            else:
                text = dumps(doc)
            emit(text, output)
            if not doc["ok"]:
                from vmtools.errors import Unavailable
                raise Unavailable("the toolstack had problems (see the warnings above); "
                                  "the output shows what was known")


main = entry_point(app, PROG)
