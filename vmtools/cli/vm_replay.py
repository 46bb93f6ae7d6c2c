"""Replay recorded history through vm-plan settings and built-in baselines, in simulated time,
and print a replay document: energy, overload, SLA figures, migrations and flapping per setting.

SOURCE is a directory of snapshot documents (vm-rebalance's archive), snapshot files, or a CSV
trace (time,guest,cpu,mem_mib[,net_mbps], with --hosts); or Ganglia's RRD files with --rrd.
"""

from __future__ import annotations

import re
import shlex
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from vmtools.cli._common import (TextfileDir, EXIT_CODES_EPILOG, Debug, Format, Output, OutputFormat, Quiet,
                                 Verbose, Version, emit, entry_point, guard, make_app,
                                 write_atomic)
from vmtools.cli._planning import read_documents
from vmtools.cli._settings import SettingsError, env_prefix, load_config, load_environment
from vmtools.errors import DataError, UsageError
from vmtools.inputs import input_name
from vmtools.model import dumps, iso_to_epoch, load_file
from vmtools.text import printable

PROG = "vm-replay"
app = make_app(PROG, __doc__)


def _time(option: str, text: str) -> float:
    try:
        return float(text) if text.replace(".", "", 1).isdigit() else iso_to_epoch(text)
    except ValueError:
        raise UsageError(f"{option} {text}: expected 2026-11-22T01:30:00Z or epoch "
                         "seconds") from None


def vm_plan_setting(text: str, verbose: int, quiet: bool, debug: bool):
    """One ``--plan "OPTIONS"``, checked before the first tick: the options by vm-plan's
    settings table (:mod:`vmtools.planner.settings`), what the string leaves out from
    vm-plan's ``VMTOOLS_PLAN_*`` variables and ``[vm-plan]`` settings, the documents it names
    read once. A bad string is a usage error (exit 2) naming it; each tick then calls the
    planner's front door (a :class:`vmtools.replay.engine.VmPlanSetting`)."""
    from vmtools.planner.settings import SETTINGS, parse_argv, settings_from
    from vmtools.replay.engine import VmPlanSetting
    del quiet, debug
    try:
        argv = shlex.split(text)
    except ValueError as exc:
        raise UsageError(f"--plan {text!r}: {exc}") from None
    long_names = {s.flag[2:]: s.name for s in SETTINGS}
    set_by: dict[str, str] = {}         # a flag the string leaves out -> where its value is set
    try:
        # what vm-plan's own entry point does: its VMTOOLS_PLAN_* variables, then [common]
        # and [vm-plan] of the settings files, give the options the string leaves out
        valid = [*long_names, "verbose", "quiet", "debug", "textfile-dir"]
        origins: dict[str, str] = {}
        values = load_config("vm-plan", valid, origins)
        env, _ = load_environment("vm-plan", {name: None for name in valid})
        values.update(env)
        origins.update({k: env_prefix("vm-plan") + k.upper().replace("-", "_") for k in env})
        values = {long_names[k]: v for k, v in values.items() if k in long_names}
        given = parse_argv(argv)
        values.update(given)
        set_by = {f"--{k}": v for k, v in origins.items()
                  if k in long_names and long_names[k] not in given}
        settings = settings_from(values)
        documents = read_documents(PROG, settings, None)
    except SettingsError as exc:
        raise UsageError(f"--plan {text!r}: {exc}") from None
    except UsageError as exc:           # OptionError too: the flag it names
        message = exc.on_command_line()
        where = next((f" (set by {origin})" for flag, origin in set_by.items()
                      if re.search(r"(?<![\w-])" + re.escape(flag) + r"(?![\w-])", message)), "")
        raise UsageError(f"--plan {text!r}: {message}{where}") from None
    except DataError as exc:
        raise DataError(f"--plan {text!r}: {exc}") from None
    return VmPlanSetting(text, settings, documents, show_log=verbose > 0)


def _progress_printer(quiet: bool):
    if quiet or not sys.stderr.isatty():
        return None

    def show(name: str, k: int, n: int) -> None:
        end = "\n" if k == n else ""
        sys.stderr.write(f"\r{PROG}: {printable(name)}: tick {k}/{n}" + end)
        sys.stderr.flush()
    return show


@app.command(epilog=EXIT_CODES_EPILOG)
def replay(
    sources: Annotated[Optional[list[str]], typer.Argument(
        metavar="SOURCE", help="Snapshot directories or files, or one CSV trace.",
        show_default=False)] = None,
    plan: Annotated[Optional[list[str]], typer.Option(
        "--plan", metavar="\"VM-PLAN OPTIONS\"",
        help="A vm-plan setting to replay, its options as vm-plan's command line takes them, "
             "e.g. --plan \"--objective balance --state x\" (repeatable: one run each). Without "
             "--plan and --baseline: vm-plan's defaults and the none baseline.")] = None,
    baseline: Annotated[Optional[list[str]], typer.Option(
        "--baseline", metavar="NAME[:K=V,...]",
        help="A built-in setting: none, threshold, sandpiper, thr-mmt (repeatable; "
             "parameters in vm-replay(1)).")] = None,
    every: Annotated[float, typer.Option(
        "--every", metavar="MINUTES", help="Minutes between two cron runs.")] = 5.0,
    lookahead: Annotated[bool, typer.Option(
        "--lookahead", help="Give each tick the demand of the interval that starts then (what "
        "CloudSim's simulations do: the policy sees the next interval). Default: the demand "
        "of the interval that just ended, averaged, as monitoring reports it; the placement "
        "is judged on the next.")] = False,
    hosts: Annotated[Optional[str], typer.Option(
        "--hosts", metavar="FILE",
        help="Hosts of a CSV trace: name,cpu,mem_mib[,net_mbps[,cluster]].")] = None,
    rrd: Annotated[Optional[str], typer.Option(
        "--rrd", metavar="DIR", help="Ganglia's RRD directory (gmetad's rrd_rootdir) as the "
        "source; needs --from and --until.")] = None,
    cluster: Annotated[Optional[str], typer.Option(
        "--cluster", metavar="NAME", help="With --rrd: the cluster to replay (default: the "
        "only one).")] = None,
    start: Annotated[Optional[str], typer.Option(
        "--from", metavar="TIME", help="Start of the replay (2026-11-22T01:30:00Z or epoch "
        "seconds; default: the source's first sample).")] = None,
    until: Annotated[Optional[str], typer.Option(
        "--until", metavar="TIME", help="End of the replay (default: the source's last "
        "sample plus one sample interval).")] = None,
    repeat: Annotated[int, typer.Option(
        "--repeat", metavar="N", min=1, help="Play the source N times back to back (a "
        "recorded day as N days; with --warm-up, the days after the first show the steady "
        "state).")] = 1,
    warm_up: Annotated[float, typer.Option(
        "--warm-up", metavar="MINUTES", help="Run the first MINUTES of the replay but leave "
        "them out of every figure and series: the settings start from where they have led "
        "the cluster, not from the source's placement.")] = 0.0,
    step: Annotated[float, typer.Option(
        "--step", metavar="SECONDS", help="With --rrd: seconds between two samples read.")] = 300.0,
    power_model: Annotated[Optional[str], typer.Option(
        "--power-model", metavar="FILE", help="A vmtools.power document: idle and peak watts "
        "or a SPECpower curve per host (default: HP ProLiant ML110 G5).")] = None,
    cpu_threshold: Annotated[float, typer.Option(
        "--cpu-threshold", metavar="FRACTION",
        help="over_threshold_hours counts host-time above this share of the CPUs.")] = 0.9,
    parallel: Annotated[int, typer.Option(
        "--parallel", "-P", metavar="N", min=1,
        help="Actions at once, as vm-apply --parallel.")] = 2,
    per_host: Annotated[int, typer.Option(
        "--per-host", min=1, help="Actions touching one host at once, as vm-apply "
        "--per-host.")] = 1,
    bandwidth: Annotated[float, typer.Option(
        "--bandwidth", metavar="MBIT/S", help="Bandwidth of one migration: it takes "
        "1 s + memory / bandwidth.")] = 1000.0,
    boot_seconds: Annotated[float, typer.Option(
        "--boot-seconds", metavar="SECONDS", help="A power-on takes this long before the host "
        "takes guests; it draws idle watts meanwhile.")] = 180.0,
    halt_seconds: Annotated[float, typer.Option(
        "--halt-seconds", metavar="SECONDS", help="A power-off takes this long before the host "
        "draws its standby watts (0 by default).")] = 60.0,
    monitoring_loss: Annotated[float, typer.Option(
        "--monitoring-loss", metavar="FRACTION", help="Lose each guest's metrics and each "
        "host's report at this rate, at random (--loss-seed): a lost guest is a no-data "
        "problem, a lost host a stale-host one, and vm-plan plans around them (frozen "
        "host-ticks, refused ticks).")] = 0.0,
    loss_seed: Annotated[int, typer.Option(
        "--loss-seed", metavar="N", help="Seed of --monitoring-loss: the same seed loses the "
        "same figures for every setting and every run.")] = 0,
    html: Annotated[Optional[Path], typer.Option(
        "--html", metavar="FILE", help="Also write a self-contained page with charts (opens "
        "offline).")] = None,
    fmt: Format = OutputFormat.json,
    output: Output = None,
    textfile_dir: TextfileDir = None,
    verbose: Verbose = 0,
    quiet: Quiet = False,
    debug: Debug = False,
    version: Version = False,
) -> None:
    """Replay SOURCE through each setting and print a replay document (JSON)."""
    with guard(PROG, verbose, quiet, debug, flags={"start": "--from"}, textfile_dir=textfile_dir):
        from vmtools.power_model import DEFAULT, parse_power_model
        from vmtools.replay.baselines import make_baseline
        from vmtools.replay.engine import SimOptions
        from vmtools.replay.report import replay_table, run_replay
        from vmtools.replay.sources import read_csv_trace, read_snapshots
        if not every > 0 or not bandwidth > 0:
            raise UsageError("--every and --bandwidth must be more than 0")
        if boot_seconds < 0 or halt_seconds < 0:
            raise UsageError("--boot-seconds and --halt-seconds must be 0 or more")
        if not 0 <= monitoring_loss <= 1:
            raise UsageError(f"--monitoring-loss {monitoring_loss:g}: expected a fraction in "
                             "[0, 1]")
        if not 0 < cpu_threshold <= 1:
            raise UsageError(f"--cpu-threshold {cpu_threshold:g}: expected a fraction in (0, 1]")
        model = DEFAULT
        if power_model is not None:
            model = load_file(power_model, "power model",
                              lambda obj: parse_power_model(obj, input_name(power_model)),
                              prog=PROG)
        opts = SimOptions(every_minutes=every, parallel=parallel, per_host=per_host,
                          bandwidth=bandwidth, cpu_threshold=cpu_threshold, power_model=model,
                          boot_seconds=boot_seconds, halt_seconds=halt_seconds,
                          start=_time("--from", start) if start else None,
                          until=_time("--until", until) if until else None,
                          warm_up=warm_up * 60, lookahead=lookahead,
                          monitoring_loss=monitoring_loss, loss_seed=loss_seed)
        if warm_up < 0:
            raise UsageError(f"--warm-up {warm_up:g}: expected 0 or more minutes")
        # Every setting checked before any source is read or any tick runs.
        settings: list = []
        for text in plan or ([] if baseline else [""]):
            settings.append(vm_plan_setting(text, verbose, quiet, debug))
        for spec in baseline or ([] if plan else ["none"]):
            settings.append(make_baseline(spec, model))
        names = [s.name for s in settings]
        dup = next((n for n in names if names.count(n) > 1), None)
        if dup is not None:
            raise UsageError(f"setting {dup!r} is given twice")
        sources = list(sources or [])
        if rrd is not None:
            if sources:
                raise UsageError("--rrd DIR is the source: give no SOURCE with it")
            if opts.start is None or opts.until is None:
                raise UsageError("--rrd needs --from and --until")
            if not step > 0:
                raise UsageError("--step must be more than 0")
            from vmtools.replay.rrd import read_rrd
            trace = read_rrd(rrd, opts.start, opts.until, step, cluster)
        elif not sources:
            raise UsageError("no SOURCE: give snapshot files or directories, a CSV trace, or "
                             "--rrd DIR (see vm-replay --help)")
        elif len(sources) == 1 and sources[0].endswith(".csv"):
            trace = read_csv_trace(sources[0], hosts)
        else:
            if hosts is not None:
                raise UsageError("--hosts goes with a CSV trace, not with snapshots")
            trace = read_snapshots(sources)
        trace = trace.repeated(repeat)
        for note in trace.notes[:10]:
            typer.echo(f"{PROG}: note: {printable(note)}", err=True) if not quiet else None
        if len(trace.notes) > 10 and not quiet:
            typer.echo(f"{PROG}: note: ... and {len(trace.notes) - 10} more (in the document)",
                       err=True)
        doc = run_replay(trace, settings, opts, _progress_printer(quiet))
        for run in doc["runs"]:
            if run["figures"]["memory_over_capacity"]:
                typer.echo(f"{PROG}: warning: {run['name']}: a host's memory went over its "
                           "capacity during the replay (a bug: please report it)", err=True)
        if html is not None:
            from vmtools.replay.html import page
            write_atomic(html, page(doc))
        emit(replay_table(doc) if fmt == OutputFormat.table else dumps(doc), output)


main = entry_point(app, PROG)
