"""Run a simulated Xen cluster on this machine and drive the real pipeline against it.

Starts a real gmond and gmetad (or, with --monitoring prometheus, a real Prometheus server),
and per simulated Domain-0 a simulated xend (HTTP and XML-RPC), an sshd with xm/xl/virsh
stand-ins (as root), and a real vm-gmetric publishing that host (to gmond, or as a Prometheus
exporter). With --platform xapi it starts instead a simulated XCP-ng / XenServer pool master.
Then prints the commands to try, and runs until interrupted (or --duration). With --demo it
shows, one lab after another, consolidation, hotspot relief and a host evacuation.
"""

from __future__ import annotations

import enum
import json
import shlex
import sys
import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from vmtools.cli._common import (TextfileDir, EXIT_CODES_EPILOG, Debug, Quiet, Verbose, Version, entry_point,
                                 guard, make_app)
from vmtools.errors import OperationFailed, Unavailable, UsageError
from vmtools.model import Snapshot
from vmtools.render import plan_tables, snapshot_table
from vmtools.rules.load import hotspots

app = make_app("vm-lab", __doc__)


class Platform(str, enum.Enum):
    xend = "xend"
    xapi = "xapi"

DEMO = (("steady", "consolidate", "pack 16 guests from 6 hosts onto as few as possible"),
        ("hotspot", "balance", "node-1's guests turn CPU-hungry: relieve the hotspot"),
        ("maintenance", "repair", "node-3 goes into maintenance: evacuate it"))


def _say(text: str = "") -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _start(scenario: str, workdir: Optional[Path], interval: float, ssh: Optional[bool],
           platform: str = "xend", monitoring: str = "ganglia"):
    from vmtools.lab.run import Lab, LabError
    from vmtools.lab.scenario import load_scenario
    try:
        sc = load_scenario(scenario)
    except FileNotFoundError as exc:
        raise UsageError(str(exc)) from None
    try:
        return Lab(sc, workdir=workdir, ssh=ssh, interval=interval, platform=platform,
                   power=platform == "xapi", monitoring=monitoring).start()
    except (LabError, RuntimeError, OSError) as exc:
        raise Unavailable(f"cannot start the lab: {exc}") from None


def _env_file(lab) -> Path:
    """DIR/env: the lab's settings as VMTOOLS_<COMMAND>_<OPTION> variables, so that after
    ``. DIR/env`` a bare ``vm-snapshot | vm-plan | vm-apply`` works against the lab (SSH user,
    key and known_hosts included), and so do ``vm-status`` and ``vm-web``, and a suspend
    then a resume: VMTOOLS_STATE_DIR is where vm-plan finds vm-apply's suspended-guests
    ledger, and the image directory is the lab's (the default, /var/lib/xen/save, is not)."""
    snapshot, plan, apply = lab.snapshot_args(), lab.plan_args(), lab.apply_args()
    images = ["--image-dir", str(lab.ssh.image_dir)] if lab.ssh else []
    state = ["--state", str(lab.plan_state)]
    status = ([] if lab.ganglia is None else ["--gmetad", lab.ganglia.gmetad_address]) + state
    lines = ["# vm-lab: . this file, then: vm-snapshot | vm-plan | vm-apply -f table",
             f"export VMTOOLS_STATE_DIR={shlex.quote(str(lab.state_dir))}"]
    for prefix, args in (("SNAPSHOT", snapshot), ("PLAN", plan + images),
                         ("APPLY", apply + images), ("STATUS", status),
                         ("WEB", snapshot + apply + images + plan[2:])):
        i = 0
        while i < len(args):
            name = args[i][2:].upper().replace("-", "_")
            if i + 1 < len(args) and not args[i + 1].startswith("--"):
                lines.append(f"export VMTOOLS_{prefix}_{name}={shlex.quote(args[i + 1])}")
                i += 2
            else:
                lines.append(f"export VMTOOLS_{prefix}_{name}=1")
                i += 1
    path = lab.dir / "env"
    path.write_text("\n".join(dict.fromkeys(lines)) + "\n")     # once each, in order
    path.chmod(0o600)
    return path


def _commands(lab) -> str:
    snap = "vm-snapshot " + " ".join(map(shlex.quote, lab.snapshot_args()))
    plan = "vm-plan " + " ".join(map(shlex.quote, lab.plan_args("consolidate")))
    apply = "vm-apply " + " ".join(map(shlex.quote, lab.apply_args()))
    return (f"  {snap} -f table\n"
            f"  {snap} | {plan} -f table\n"
            f"  {snap} | {plan} | {apply} -f table\n"
            f"  (vm-apply keeps its lock, journal and suspended-guests ledger in "
            f"{shlex.quote(str(lab.state_dir))})\n")


def _demo_one(scenario: str, objective: str, title: str, workdir: Optional[Path],
              interval: float, ssh: Optional[bool], monitoring: str = "ganglia") -> None:
    from vmtools.lab.run import LabError
    _say(f"=== {scenario}: {title}")
    lab = _start(scenario, workdir / scenario if workdir else None, interval, ssh,
                 monitoring=monitoring)
    try:
        snap = lab.wait_for_truth(90)
        if scenario == "hotspot":
            _say(f"waiting for the hotspot (at {lab.scenario['load'][0]['at']} s) to show in "
                 "Ganglia...")
            snap = lab.wait_until(lambda s: any(
                "cpu" in dims for dims in hotspots(Snapshot.from_dict(s)).values()), 90,
                "the hotspot")
        _say(snapshot_table(Snapshot.from_dict(snap)))
        for _ in range(10):
            origin, plan, report, codes = lab.pipeline(objective)
            if plan["actions"] or objective != "balance":
                break
            time.sleep(interval)          # balance waits until the hotspot has lasted
        _say(f"$ vm-snapshot | vm-plan --objective {objective} | vm-apply")
        _say(plan_tables(plan))
        if report is not None:
            s = report["summary"]
            _say(f"vm-apply: {s.get('done', 0)} done, {s.get('failed', 0)} failed, "
                 f"{s.get('not-run', 0)} not run in {s.get('seconds', 0)} s "
                 f"(exit {codes['vm-apply']})")
            if codes["vm-apply"] != 0:
                raise OperationFailed(f"vm-apply failed in the {scenario} demo: "
                                      f"{lab.last_apply_stderr.strip().splitlines()[-1:]}")
        after = lab.wait_for_truth(90)
        _say("after vm-gmetric republished:")
        _say(snapshot_table(Snapshot.from_dict(after)))
        _, again, _, _ = lab.pipeline(objective)
        _say(f"a second run plans {len(again['actions'])} migrations.\n")
    except LabError as exc:
        raise OperationFailed(f"{scenario} demo: {exc}") from None
    finally:
        lab.cleanup() if workdir is None else lab.stop()


@app.command(epilog=EXIT_CODES_EPILOG)
def lab(
    scenario: Annotated[str, typer.Option(
        "--scenario", "-s", metavar="NAME|FILE",
        help="Built-in scenario (steady, hotspot, diurnal, maintenance) or a scenario JSON "
             "file.")] = "steady",
    workdir: Annotated[Optional[Path], typer.Option(
        "--dir", metavar="DIR",
        help="Keep the lab's files (state, logs, host map, ssh keys) in DIR; default: a "
             "temporary directory removed at exit.")] = None,
    interval: Annotated[float, typer.Option(
        "--interval", metavar="SECONDS", min=0.5,
        help="vm-gmetric's publishing interval on every simulated Domain-0.")] = 2.0,
    ssh: Annotated[Optional[bool], typer.Option(
        "--ssh/--no-ssh",
        help="Serve xm-ssh/xl-ssh hosts through real sshds (needs root and openssh-server); "
             "default: when possible, else those hosts use xend's HTTP interface.")] = None,
    duration: Annotated[float, typer.Option(
        "--duration", metavar="SECONDS", min=0,
        help="Stop after this long; 0 runs until interrupted.")] = 0.0,
    platform: Annotated[Platform, typer.Option(
        "--platform",
        help="xend: per Domain-0 a simulated xend, an sshd with xm/xl/virsh stand-ins and "
             "vm-gmetric, with gmond and gmetad; xapi: a simulated XCP-ng / XenServer pool "
             "master (XAPI over HTTPS on 127.0.1.1, each host's /rrd_updates on its own "
             "127.0.1.N) whose hosts XAPI can power off and on.")] = "xend",
    monitoring: Annotated[str, typer.Option(
        "--monitoring", metavar="ganglia|prometheus|both",
        help="What the simulated Domain-0s publish to and vm-snapshot reads: gmond and gmetad "
             "(ganglia), a Prometheus server on loopback scraping vm-gmetric's exporters "
             "(prometheus), or both at once (vm-snapshot reads Ganglia).")] = "ganglia",
    demo: Annotated[bool, typer.Option(
        "--demo", help="Show consolidation, hotspot relief and a host evacuation, one lab "
                       "after another, then exit.")] = False,
    textfile_dir: TextfileDir = None,
    verbose: Verbose = 0, quiet: Quiet = False, debug: Debug = False, version: Version = False,
) -> None:
    """Run a simulated Xen cluster lab on loopback."""
    import signal

    def stop(signum, frame):
        raise KeyboardInterrupt
    # `vm-lab ... &` from a script starts with SIGINT ignored; SIGTERM (kill %1, systemd) must
    # stop the lab as Ctrl-C does: every daemon it started goes with it.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, stop)
    with guard("vm-lab", verbose, quiet, debug, textfile_dir=textfile_dir):
        platform = Platform(platform).value
        if demo and platform != "xend":
            raise UsageError("--demo runs the xend lab; drop --platform")
        if platform == "xapi" and monitoring != "ganglia":
            raise UsageError("--monitoring is for the xend lab (the XAPI lab reads XAPI)")
        if monitoring not in ("ganglia", "prometheus", "both"):
            raise UsageError(f"--monitoring {monitoring}: expected ganglia, prometheus or both")
        if monitoring != "ganglia":
            from vmtools.lab.prometheus import prometheus_missing
            if prometheus_missing():
                raise Unavailable(f"--monitoring {monitoring}: {prometheus_missing()}")
        if demo:
            for name, objective, title in DEMO:
                _demo_one(name, objective, title, workdir, interval, ssh, monitoring)
            return
        from vmtools.cli._progress import Progress
        with Progress("vm-lab", quiet, verbose) as progress:
            what = {"ganglia": "gmond, gmetad", "prometheus": "prometheus",
                    "both": "gmond, gmetad, prometheus"}[monitoring]
            progress.stage(f"starting scenario {scenario}: " + (
                "a simulated XAPI pool master" if platform == "xapi" else
                f"{what}, and per Domain-0 a xend, an sshd and vm-gmetric"))
            lab_ = _start(scenario, workdir, interval, ssh, platform, monitoring)
        try:
            with Progress("vm-lab", quiet, verbose) as progress:
                source = "XAPI" if platform == "xapi" else \
                    "Prometheus" if monitoring == "prometheus" else "Ganglia"
                progress.stage(f"waiting until {source} shows every host and guest")
                snap = lab_.wait_for_truth(90)
            (lab_.dir / "lab.json").write_text(json.dumps({
                "platform": platform,
                "gmetad": lab_.ganglia.gmetad_address if lab_.ganglia else None,
                "prometheus": lab_.prometheus.url if lab_.prometheus else None,
                "xapi": lab_.xapi.url if lab_.xapi else None,
                "hosts_file": str(lab_.hosts_file),
                "snapshot_args": lab_.snapshot_args(), "plan_args": lab_.plan_args(),
                "apply_args": lab_.apply_args(), "state_dir": str(lab_.state_dir)}, indent=1))
            _say(f"vm-lab: scenario {lab_.scenario['name']}: {len(snap['hosts'])} Domain-0s, "
                 f"{len(snap['vms'])} guests, files in {lab_.dir}")
            _say(lab_.scenario.get("description", ""))
            env = _env_file(lab_)
            _say("Try, in another shell:")
            _say(_commands(lab_))
            _say(f"or, with the lab's settings in the environment:\n  . {env}\n"
                 "  vm-snapshot | vm-plan | vm-apply -f table\n")
            _say("Ctrl-C stops the lab.")
            deadline = time.time() + duration if duration else None
            while deadline is None or time.time() < deadline:
                time.sleep(0.5)
        except KeyboardInterrupt:
            _say("vm-lab: stopping")
        finally:
            lab_.cleanup() if workdir is None else lab_.stop()


main = entry_point(app, "vm-lab")
