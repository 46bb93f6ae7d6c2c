"""Serve the cluster in a browser: every host with its guests, CPU and memory against the
targets, hot, frozen and standby hosts, guests in migration, the last plans and vm-rebalance
runs, per-host history from the run archive, vm-replay's pages. And act on it: migrate,
suspend, resume, evacuate, put a host in maintenance (kept in vm-plan's --state directory,
obeyed by every vm-plan --state run until the page ends it), switch a host off or on, each a one-action plan checked as vm-plan
checks it, shown for confirmation, run by vm-apply's executor with live progress and its report.

The first line of output is the URL to open, carrying a one-time login. The login token is kept
in --token-file (created 0600 when missing). Listening beyond loopback needs --tls-cert and
--tls-key.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Optional

import typer

from vmtools.cli._common import (TextfileDir, EXIT_CODES_EPILOG, Debug, Quiet, Verbose, Version,
                                 entry_point, guard, log, make_app)
from vmtools.cli import _sources as S
from vmtools.cli._sources import source_settings
from vmtools.errors import DataError, UsageError
from vmtools.ganglia.interpret import DEFAULT_STALE_AFTER
from vmtools.ganglia.sources import DEFAULT_TIMEOUT
from vmtools.xen import DEFAULT_IMAGE_DIR

PROG = "vm-web"
DEFAULT_PORT = 8470
app = make_app(PROG, __doc__)


@app.command(epilog=EXIT_CODES_EPILOG)
def web(
    listen: Annotated[str, typer.Option(
        "--listen", metavar="ADDRESS", help="Address to listen on; beyond loopback only with "
        "--tls-cert and --tls-key.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(
        "--port", metavar="PORT", help="TCP port (0: any free one, shown in the URL).")
    ] = DEFAULT_PORT,
    tls_cert: Annotated[Optional[str], typer.Option(
        "--tls-cert", metavar="FILE", help="Serve HTTPS with this certificate chain (PEM).")
    ] = None,
    tls_key: Annotated[Optional[str], typer.Option(
        "--tls-key", metavar="FILE", help="The certificate's private key (PEM).")] = None,
    token_file: Annotated[Optional[str], typer.Option(
        "--token-file", metavar="FILE", help="The login token (created 0600 with a random "
        "token when missing; refused when others may read it). Default: "
        "STATE_DIR/web-token under $VMTOOLS_STATE_DIR or /var/lib/vmtools.")] = None,
    session_minutes: Annotated[float, typer.Option(
        "--session-minutes", metavar="MINUTES", help="A login lasts this long.")] = 60.0,
    read_only: Annotated[bool, typer.Option(
        "--read-only", help="Show, never act: no action page, every action refused.")] = False,
    gmetad: S.Gmetad = None,
    cluster: S.Cluster = None,
    gmond: S.Gmond = None,
    input_: S.Input = None,
    example: S.Example = None,
    prometheus: S.Prometheus = None,
    prometheus_profile: S.PrometheusProfile = "vmtools",
    prometheus_user: S.PrometheusUser = None,
    prometheus_password_file: S.PrometheusPasswordFile = None,
    prometheus_token_file: S.PrometheusTokenFile = None,
    prometheus_ca_file: S.PrometheusCaFile = None,
    samples_window: S.SamplesWindow = 0.0,
    samples_step: S.SamplesStep = 60.0,
    timeout: S.Timeout = DEFAULT_TIMEOUT,
    recover: S.Recover = False,
    stale_after: S.StaleAfter = DEFAULT_STALE_AFTER,
    xapi: S.Xapi = None,
    xapi_credentials: S.XapiCredentials = None,
    xapi_ca: S.XapiCa = None,
    xapi_fingerprint: S.XapiFingerprint = None,
    xapi_insecure: S.XapiInsecure = False,
    xapi_window: S.XapiWindow = 60.0,
    deadline: S.Deadline = None,
    constraints: Annotated[Optional[str], typer.Option(
        "--constraints", metavar="FILE", help="The rules every action obeys (as vm-plan).")
    ] = None,
    hosts: Annotated[Optional[Path], typer.Option(
        "--hosts", metavar="FILE", help="vm-apply's host map.")] = None,
    ssh_user: Annotated[Optional[str], typer.Option(
        "--ssh-user", metavar="USER", help="As vm-apply.")] = None,
    ssh_key: Annotated[Optional[str], typer.Option(
        "--ssh-key", metavar="FILE", help="As vm-apply.")] = None,
    known_hosts: Annotated[Optional[list[str]], typer.Option(
        "--known-hosts", metavar="FILE", help="As vm-apply. Repeatable.")] = None,
    ipmi_credentials: Annotated[str, typer.Option(
        "--ipmi-credentials", metavar="FILE", help="As vm-apply.")
    ] = "/etc/vmtools/ipmi.toml",
    parallel: Annotated[int, typer.Option(
        "--parallel", "-P", metavar="N", help="As vm-apply: actions of a plan running at "
        "once, in all (an evacuation's migrations).")] = 2,
    per_host: Annotated[int, typer.Option(
        "--per-host", metavar="N", help="As vm-apply: actions touching one host at once.")
    ] = 1,
    stop_on_failure: Annotated[bool, typer.Option(
        "--stop-on-failure", help="As vm-apply: after a failed action, start nothing new.")
    ] = False,
    driver: Annotated[Optional[str], typer.Option(
        "--driver", metavar="TRANSPORT", help="As vm-apply: this transport for every host "
        "instead of each host's migration field.")] = None,
    migration_timeout: Annotated[float, typer.Option(
        "--migration-timeout", metavar="SECONDS", help="vm-apply's --timeout: client timeout "
        "of one migration call (the hosts are then asked how it ended).")] = 600.0,
    verify_timeout: Annotated[float, typer.Option(
        "--verify-timeout", metavar="SECONDS", help="As vm-apply.")] = 600.0,
    connect_timeout: Annotated[float, typer.Option(
        "--connect-timeout", metavar="SECONDS", help="As vm-apply: timeout to connect to a "
        "host (or the pool master) and of each question asked of it.")] = 10.0,
    boot_timeout: Annotated[float, typer.Option(
        "--boot-timeout", metavar="SECONDS", help="As vm-apply (power-on).")] = 600.0,
    power_off_timeout: Annotated[float, typer.Option(
        "--power-off-timeout", metavar="SECONDS", help="As vm-apply (power-off).")] = 300.0,
    wol_address: Annotated[str, typer.Option(
        "--wol-address", metavar="ADDRESS", help="As vm-apply (Wake-on-LAN).")
    ] = "255.255.255.255",
    wol_port: Annotated[int, typer.Option(
        "--wol-port", metavar="PORT", help="As vm-apply (Wake-on-LAN).")] = 9,
    shutdown_command: Annotated[str, typer.Option(
        "--shutdown-command", metavar="poweroff|shutdown", help="As vm-apply (power-off over "
        "SSH).")] = "poweroff",
    ssh_port: Annotated[int, typer.Option(
        "--ssh-port", metavar="PORT", help="As vm-apply (power-off of xend hosts).")] = 22,
    state_dir: Annotated[Optional[str], typer.Option(
        "--state-dir", metavar="DIR", help="vm-apply's state directory (journals, the "
        "suspended-guests ledger; default $VMTOOLS_STATE_DIR or /var/lib/vmtools).")] = None,
    image_dir: Annotated[str, typer.Option(
        "--image-dir", metavar="DIR", help="Where suspend images go (as vm-plan, vm-apply).")
    ] = DEFAULT_IMAGE_DIR,
    runs: Annotated[str, typer.Option(
        "--runs", metavar="DIR", help="vm-rebalance's archive: its runs, their reports and "
        "the history charts; '' for none.")] = "/var/lib/vmtools/runs",
    plan_state: Annotated[Optional[str], typer.Option(
        "--state", metavar="DIR", help="vm-plan's --state directory: the standby hosts, "
        "and where the hosts in maintenance are kept (DIR/maintenance.json, obeyed by vm-plan "
        "--state DIR). Default: RUNS/.plan-state.")] = None,
    replay_dir: Annotated[Optional[str], typer.Option(
        "--replay-dir", metavar="DIR", help="A directory of vm-replay HTML pages to link.")
    ] = None,
    cpu_threshold: Annotated[float, typer.Option(
        "--cpu-threshold", metavar="FRACTION", help="A host above this CPU use is hot.")
    ] = 0.9,
    mem_threshold: Annotated[float, typer.Option(
        "--mem-threshold", metavar="FRACTION", help="A host above this memory use is hot.")
    ] = 0.95,
    textfile_dir: TextfileDir = None,
    verbose: Verbose = 0,
    quiet: Quiet = False,
    debug: Debug = False,
    version: Version = False,
) -> None:
    """Serve the cluster and its manual actions in a browser (the first line printed is the
    URL to open)."""
    with guard(PROG, verbose, quiet, debug, textfile_dir=textfile_dir,
               flags={"off_timeout": "--power-off-timeout"}):
        from vmtools.web.serve import check_listen, serve, tls_context
        ctx = tls_context(tls_cert, tls_key)          # before anything else is read or made
        check_listen(listen, ctx)
        from vmtools.apply import ApplyOptions, apply_plan, default_state_dir
        from vmtools.apply.lifecycle import LEDGER, read_suspended
        from vmtools.model import load_file
        from vmtools.power.execute import PowerSettings
        from vmtools.snapshot import sources_from, take_snapshot
        from vmtools.status import build_status
        from vmtools.web.actions import PlanSettings
        from vmtools.web.app import Config
        from vmtools.web.auth import Gate, read_or_create_token
        for name, value in (("--cpu-threshold", cpu_threshold),
                            ("--mem-threshold", mem_threshold)):
            if not 0 < value <= 1:
                raise UsageError(f"{name} {value:g}: expected a fraction in (0, 1]")
        if not session_minutes > 0:
            raise UsageError(f"--session-minutes {session_minutes:g}: must be more than 0")
        if not 0 <= port <= 65535:
            raise UsageError(f"--port {port}: expected 0-65535")
        state = state_dir or default_state_dir()
        if deadline is not None and not deadline > 0:
            raise UsageError(f"--deadline {deadline:g}: must be more than 0 seconds")
        if input_ and "-" in input_:
            raise UsageError("--input -: vm-web reads its sources again at every page; "
                             "stdin can be read once")
        # the sources exactly as vm-snapshot makes them (its options, its code)
        sources = sources_from(source_settings(locals()))
        xapi_settings = None
        if xapi:
            if len(xapi) > 1 and not read_only:
                raise UsageError("vm-web acts through one pool master (as vm-apply --xapi): "
                                 "give one --xapi, or --read-only to watch several pools")
            from vmtools.drivers.xapi import XapiSettings
            xapi_settings = XapiSettings(xapi[0], credentials=xapi_credentials,
                                         ca_file=xapi_ca,
                                         fingerprints=tuple(xapi_fingerprint or ()),
                                         insecure=xapi_insecure, timeout=connect_timeout)
        rules = None
        if constraints is not None:
            rules = load_file(constraints, "constraints", lambda obj: obj, prog=PROG)
        runs_dir = runs or None
        standby_dir = plan_state if plan_state is not None else (
            f"{runs_dir}/.plan-state" if runs_dir else None)
        ledger_path = f"{state}/{LEDGER}"

        def ledger() -> dict:
            try:
                return read_suspended(ledger_path)
            except DataError as exc:
                log.warning("the suspended guests are left out: %s", exc)
                return {}

        def standby_records() -> dict:
            """vm-plan's standby records (capacity and transport), for switching on."""
            if not standby_dir or not os.path.isdir(standby_dir):
                return {}
            from vmtools.state import read_state
            return read_state(standby_dir).power.standby

        def maintenance() -> dict:
            from vmtools.maintenance import read_maintenance
            return read_maintenance(standby_dir)

        maintain_host = None
        if xapi_settings is not None:
            def maintain_host(host: str, on: bool) -> str:
                """host.disable (maintenance) or host.enable (its end) through the master."""
                from vmtools.drivers.base import Endpoint
                from vmtools.drivers.xapi import XapiDriver
                driver = XapiDriver.for_endpoint(Endpoint(host, "xapi", host, 443, host),
                                                 xapi=xapi_settings)
                return driver.disable() if on else driver.enable()

        def status(snap):
            return build_status(snap, runs_dir, standby_dir, cpu_threshold, mem_threshold,
                                suspended=ledger())

        from vmtools.drivers.hostmap import read_hostmap
        from vmtools.drivers.ssh import SshOptions
        options = ApplyOptions(
            hosts=read_hostmap(str(hosts)) if hosts else {},
            ssh=SshOptions(user=ssh_user, key=ssh_key, known_hosts=list(known_hosts or []),
                           accept_new=False),
            xapi=xapi_settings, state_dir=state, image_dir=image_dir,
            parallel=parallel, per_host=per_host, stop_on_failure=stop_on_failure,
            driver=driver, timeout=migration_timeout, verify_timeout=verify_timeout,
            connect_timeout=connect_timeout,
            power=PowerSettings(credentials=ipmi_credentials, boot_timeout=boot_timeout,
                                off_timeout=power_off_timeout, wol_address=wol_address,
                                wol_port=wol_port, shutdown_command=shutdown_command,
                                ssh_port=ssh_port))
        if not migration_timeout > 0:
            raise UsageError(f"--migration-timeout {migration_timeout:g}: must be positive")
        if shutdown_command not in ("poweroff", "shutdown"):
            raise UsageError(f"--shutdown-command {shutdown_command!r}: expected poweroff or "
                             "shutdown")
        options.validate()
        # last: nothing is created on disk for a command line that is refused
        token = read_or_create_token(token_file or f"{state}/web-token")

        def execute(plan, progress) -> dict:
            return apply_plan(plan, options, progress).to_dict()

        cfg = Config(take=lambda: take_snapshot(sources, timeout=deadline), execute=execute,
                     gate=Gate(token, lifetime=session_minutes * 60),
                     plan=PlanSettings(constraints=rules, image_dir=image_dir, ledger=ledger,
                                       standby=standby_records, maintenance=maintenance,
                                       state_dir=standby_dir),
                     maintain_host=maintain_host,
                     status=status, runs_dir=runs_dir, replay_dir=replay_dir,
                     plan_state_dir=standby_dir,
                     read_only=read_only, targets=(cpu_threshold, mem_threshold))

        def announce(url: str) -> None:
            print(url, flush=True)
            log.info("serving on %s:%s%s", listen, port, " (read-only)" if read_only else "")

        serve(cfg, listen, port, ctx, announce)


main = entry_point(app, PROG)
