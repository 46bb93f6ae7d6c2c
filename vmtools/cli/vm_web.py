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
from typing import Annotated, Optional

import typer

from vmtools.cli._common import (TextfileDir, EXIT_CODES_EPILOG, Debug, Quiet, Verbose, Version,
                                 entry_point, guard, log, make_app)
from vmtools.cli import _sources as S
from vmtools.cli._sources import source_settings
from vmtools.errors import DataError, UsageError

PROG = "vm-web"
DEFAULT_PORT = 8470
app = make_app(PROG, __doc__)


# vm-apply's options that vm-web's actions run with, declared once, by vm-apply (flag, type,
# default, help, check): vm-web name -> vm-apply's; vm-web's --migration-timeout is vm-apply's
# --timeout (vm-web's --timeout is its source's, as vm-snapshot's).
APPLY_OPTIONS = {name: name for name in (
    "hosts", "ssh_user", "ssh_key", "known_hosts", "ipmi_credentials", "parallel", "per_host",
    "stop_on_failure", "driver")}
APPLY_OPTIONS.update(migration_timeout="timeout")
APPLY_OPTIONS.update({name: name for name in (
    "verify_timeout", "connect_timeout", "boot_timeout", "power_off_timeout", "wol_address",
    "wol_port", "shutdown_command", "ssh_port", "state_dir", "image_dir")})
_COMMON = ("textfile_dir", "verbose", "quiet", "debug", "version")


def _with_apply_options(func):
    """``func(..., **apply)`` takes vm-apply's options (:data:`APPLY_OPTIONS`) in ``apply``:
    for typer its signature is its own options, then vm-apply's as vm-apply declares them,
    then those every command has."""
    import inspect
    import typing
    from copy import copy

    from vmtools.cli import vm_apply
    hints = typing.get_type_hints(vm_apply.apply, include_extras=True)
    theirs = inspect.signature(vm_apply.apply).parameters
    kw = inspect.Parameter.KEYWORD_ONLY
    taken = []
    for name, source in APPLY_OPTIONS.items():
        annotation = hints[source]
        if name != source:                  # the same option under vm-web's flag
            kind, info = typing.get_args(annotation)[:2]
            info = copy(info)           # typer keeps an Annotated option's first name in
            info.default = "--" + name.replace("_", "-")    # ``default``
            annotation = Annotated[kind, info]
        taken.append(inspect.Parameter(name, kw, default=theirs[source].default,
                                       annotation=annotation))
    own = [p.replace(kind=kw) for p in inspect.signature(func, eval_str=True).parameters.values()
           if p.kind != p.VAR_KEYWORD]
    func.__signature__ = inspect.Signature(
        [p for p in own if p.name not in _COMMON] + taken
        + [p for p in own if p.name in _COMMON])
    return func


def _apply_options(apply: dict, state_dir: str, xapi: object):
    """The executor's options from vm-apply's options as vm-web took them (as vm-apply makes
    them, host keys never accepted new: a page is no place to trust one)."""
    from vmtools.apply import ApplyOptions
    from vmtools.drivers.hostmap import read_hostmap
    from vmtools.drivers.ssh import SshOptions
    from vmtools.power.execute import PowerSettings
    a = apply
    if not a["migration_timeout"] > 0:
        raise UsageError(f"--migration-timeout {a['migration_timeout']:g}: must be positive")
    return ApplyOptions(
        hosts=read_hostmap(str(a["hosts"])) if a["hosts"] else {},
        ssh=SshOptions(user=a["ssh_user"], key=str(a["ssh_key"]) if a["ssh_key"] else None,
                       known_hosts=[str(p) for p in a["known_hosts"] or []], accept_new=False),
        xapi=xapi, state_dir=state_dir, image_dir=a["image_dir"], parallel=a["parallel"],
        per_host=a["per_host"], stop_on_failure=a["stop_on_failure"], driver=a["driver"],
        timeout=a["migration_timeout"], verify_timeout=a["verify_timeout"],
        connect_timeout=a["connect_timeout"],
        power=PowerSettings(credentials=str(a["ipmi_credentials"]),
                            boot_timeout=a["boot_timeout"], off_timeout=a["power_off_timeout"],
                            wol_address=a["wol_address"], wol_port=a["wol_port"],
                            shutdown_command=a["shutdown_command"].value,
                            ssh_port=a["ssh_port"]))


def _check(cpu_threshold: float, mem_threshold: float, session_minutes: float, port: int,
           deadline: float | None, inputs: list[str] | None) -> None:
    """vm-web's own options, checked before anything is read or made (usage errors)."""
    for name, value in (("--cpu-threshold", cpu_threshold),
                        ("--mem-threshold", mem_threshold)):
        if not 0 < value <= 1:
            raise UsageError(f"{name} {value:g}: expected a fraction in (0, 1]")
    if not session_minutes > 0:
        raise UsageError(f"--session-minutes {session_minutes:g}: must be more than 0")
    if not 0 <= port <= 65535:
        raise UsageError(f"--port {port}: expected 0-65535")
    if deadline is not None and not deadline > 0:
        raise UsageError(f"--deadline {deadline:g}: must be more than 0 seconds")
    if inputs and "-" in inputs:
        raise UsageError("--input -: vm-web reads its sources again at every page; "
                         "stdin can be read once")


class _States:
    """What the page reads again at every request: vm-apply's suspended guests (the ledger
    in its state directory), vm-plan's standby hosts and the hosts in maintenance (in vm-plan's
    state directory, ``standby_dir``)."""

    def __init__(self, state_dir: str, standby_dir: str | None):
        from vmtools.apply.lifecycle import LEDGER
        self.ledger_path = f"{state_dir}/{LEDGER}"
        self.standby_dir = standby_dir

    def ledger(self) -> dict:
        from vmtools.apply.lifecycle import read_suspended
        try:
            return read_suspended(self.ledger_path)
        except DataError as exc:
            log.warning("the suspended guests are left out: %s", exc)
            return {}

    def standby(self, snap) -> dict:
        """vm-plan's standby records (capacity and transport), for switching on: of each
        domain's own directory in domain mode (:func:`vmtools.status.domain_standby`)."""
        from vmtools.status import domain_standby
        return domain_standby(snap, self.standby_dir)

    def maintenance(self, snap) -> dict:
        from vmtools.status import domain_maintenance
        return domain_maintenance(snap, self.standby_dir)


def _maintain_host(xapi_settings: object):
    """With a pool master: host.disable (maintenance) or host.enable (its end) through it;
    else None (vm-plan's state keeps maintenance alone)."""
    if xapi_settings is None:
        return None

    def maintain_host(host: str, on: bool) -> str:
        from vmtools.drivers.base import Endpoint
        from vmtools.drivers.xapi import XapiDriver
        driver = XapiDriver.for_endpoint(Endpoint(host, "xapi", host, 443, host),
                                         xapi=xapi_settings)
        return driver.disable() if on else driver.enable()
    return maintain_host


@app.command(epilog=EXIT_CODES_EPILOG)
@_with_apply_options
@S.with_sources(after="read_only", samples_window=0.0)
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
    constraints: Annotated[Optional[str], typer.Option(
        "--constraints", metavar="FILE", help="The rules every action obeys (as vm-plan).")
    ] = None,
    runs: Annotated[str, typer.Option(
        "--runs", metavar="DIR", help="vm-rebalance's archive: its runs, their reports and "
        "the history charts; '' for none.")] = "/var/lib/vmtools/runs",
    plan_state: Annotated[Optional[str], typer.Option(
        "--state", metavar="DIR", help="vm-plan's --state directory: the standby hosts, "
        "and where the hosts in maintenance are kept (DIR/maintenance.json, obeyed by vm-plan "
        "--state DIR); with vm-rebalance's DOMAINS, each domain's own DIR/NAME for its "
        "hosts. Default: RUNS/.plan-state.")] = None,
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
    **given,
) -> None:
    """Serve the cluster and its manual actions in a browser (the first line printed is the
    URL to open).
    \f
    ``given``: the source options (:func:`vmtools.cli._sources.with_sources`) and vm-apply's
    options (:data:`APPLY_OPTIONS`)."""
    apply = given
    deadline, input_, xapi = given["deadline"], given["input_"], given["xapi"]
    with guard(PROG, verbose, quiet, debug, textfile_dir=textfile_dir,
               flags={"off_timeout": "--power-off-timeout"}):
        from vmtools.web.serve import check_listen, serve, tls_context
        ctx = tls_context(tls_cert, tls_key)          # before anything else is read or made
        check_listen(listen, ctx)
        from vmtools.apply import apply_plan, default_state_dir
        from vmtools.model import load_file
        from vmtools.snapshot import sources_from, take_snapshot
        from vmtools.status import build_status
        from vmtools.web.actions import PlanSettings
        from vmtools.web.app import Config
        from vmtools.web.auth import Gate, read_or_create_token
        _check(cpu_threshold, mem_threshold, session_minutes, port, deadline, input_)
        if replay_dir is not None and not os.path.isdir(replay_dir):
            raise UsageError(f"--replay-dir {replay_dir}: no such directory")
        state = str(apply["state_dir"] or default_state_dir())
        # the sources exactly as vm-snapshot makes them (its options, its code)
        sources = sources_from(source_settings(given))
        xapi_settings = None
        if xapi:
            if len(xapi) > 1 and not read_only:
                raise UsageError("vm-web acts through one pool master (as vm-apply --xapi): "
                                 "give one --xapi, or --read-only to watch several pools")
            from vmtools.drivers.xapi_pool import XapiSettings
            xapi_settings = XapiSettings(xapi[0], credentials=given["xapi_credentials"],
                                         ca_file=given["xapi_ca"],
                                         fingerprints=tuple(given["xapi_fingerprint"] or ()),
                                         insecure=given["xapi_insecure"],
                                         timeout=apply["connect_timeout"])
        rules = None
        if constraints is not None:
            from vmtools.rules.constraints import checked_document
            rules = load_file(constraints, "constraints", checked_document, prog=PROG)
        runs_dir = runs or None
        standby_dir = plan_state if plan_state is not None else (
            f"{runs_dir}/.plan-state" if runs_dir else None)
        states = _States(state, standby_dir)

        def status(snap):
            return build_status(snap, runs_dir, standby_dir, cpu_threshold, mem_threshold,
                                suspended=states.ledger())

        options = _apply_options(apply, state, xapi_settings)
        options.validate()
        # last: nothing is created on disk for a command line that is refused
        token = read_or_create_token(token_file or f"{state}/web-token")

        def execute(plan, progress) -> dict:
            return apply_plan(plan, options, progress).to_dict()

        cfg = Config(take=lambda: take_snapshot(sources, timeout=deadline), execute=execute,
                     gate=Gate(token, lifetime=session_minutes * 60),
                     plan=PlanSettings(constraints=rules, image_dir=apply["image_dir"],
                                       ledger=states.ledger, standby=states.standby,
                                       maintenance=states.maintenance, state_dir=standby_dir),
                     maintain_host=_maintain_host(xapi_settings),
                     status=status, runs_dir=runs_dir, replay_dir=replay_dir,
                     plan_state_dir=standby_dir,
                     read_only=read_only, targets=(cpu_threshold, mem_threshold))

        def announce(url: str) -> None:
            print(url, flush=True)
            log.info("serving on %s:%s%s", listen, port, " (read-only)" if read_only else "")

        serve(cfg, listen, port, ctx, announce)


main = entry_point(app, PROG)
