"""Execute a plan made by vm-plan: check it still matches the cluster, run its live
migrations (xend HTTP, xend XML-RPC, xm/xl or virsh over SSH, or a XCP-ng / XenServer pool's
XAPI) in parallel, suspend, resume, create and checkpoint guests (xm/xl over SSH), switch hosts
off (an orderly shutdown over SSH, confirmed by IPMI; XAPI's host.shutdown) and on (IPMI,
Wake-on-LAN or XAPI's host.power_on), verify where every guest landed, and print a report.

Progress goes to stderr, one line per start and end; the report (JSON) to stdout. Every event
is also written, as it happens, to a journal that --resume can continue from.
"""

from __future__ import annotations

import sys
import enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from vmtools.apply import ApplyOptions, apply_plan, default_state_dir
from vmtools.cli._common import (TextfileDir, figures, EXIT_CODES_EPILOG, Debug, Format, InputFile, Output, OutputFormat, Quiet, Verbose,
                                 Version, emit, entry_point, guard, make_app, read_document)
from vmtools.errors import EXIT_FAILED, DataError, UsageError
from vmtools.model import Plan, dumps
from vmtools.power.execute import PowerSettings
from vmtools.xen import DEFAULT_IMAGE_DIR
from vmtools.drivers.registry import names as transport_names
from vmtools.text import printable

PROG = "vm-apply"
app = make_app(PROG, __doc__)


class ShutdownCommand(str, enum.Enum):
    poweroff = "poweroff"
    shutdown = "shutdown"


@app.command(epilog=EXIT_CODES_EPILOG)
def apply(
    file: InputFile = "-",
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", "-n",
        help="Check the plan and the hosts, print what would run and where each guest was "
             "verified to run, move nothing.")] = False,
    offline: Annotated[bool, typer.Option(
        "--offline",
        help="With --dry-run: check the plan against the replay checker, its rules and the "
             "host map without contacting any host (to review a plan away from the "
             "cluster).")] = False,
    force: Annotated[bool, typer.Option(
        "--force",
        help="Run a stale plan (guests not where the plan's origin says, or hosts that do not "
             "answer); the checker still runs.")] = False,
    parallel: Annotated[int, typer.Option(
        "--parallel", "-P", metavar="N",
        help="Actions running at once, in all (power and lifecycle ones count as migrations "
             "do).")] = 2,
    per_host: Annotated[int, typer.Option(
        "--per-host", metavar="N",
        help="Actions touching one host (as source or destination) at once.")] = 1,
    stop_on_failure: Annotated[bool, typer.Option(
        "--stop-on-failure",
        help="After a failed action, start nothing new in its migration domain (running ones "
             "finish; the plan's other domains go on).")] = False,
    driver: Annotated[Optional[str], typer.Option(
        "--driver", metavar="TRANSPORT",
        help=f"Use this transport for every host ({', '.join(transport_names())}) instead of each "
             "host's migration field in the plan's snapshot.")] = None,
    hosts: Annotated[Optional[Path], typer.Option(
        "--hosts", metavar="FILE",
        help="Host map CSV name,manage,migrate: where to reach each host (address[:port]) and "
             "the migration address to hand the hypervisor.")] = None,
    ssh_user: Annotated[Optional[str], typer.Option(
        "--ssh-user", metavar="USER", help="SSH user for xm-ssh/xl-ssh (default: yours).")] = None,
    ssh_key: Annotated[Optional[Path], typer.Option(
        "--ssh-key", metavar="FILE",
        help="SSH private key (default: the agent and ~/.ssh/id_*). Never a password.")] = None,
    known_hosts: Annotated[Optional[list[Path]], typer.Option(
        "--known-hosts", metavar="FILE",
        help="More known_hosts files (after /etc/ssh/ssh_known_hosts and ~/.ssh/known_hosts). "
             "Repeatable.")] = None,
    accept_new_host_keys: Annotated[bool, typer.Option(
        "--accept-new-host-keys",
        help="Trust hosts whose SSH key is unknown, and record their key (in the first "
             "--known-hosts file, else ~/.ssh/known_hosts). A changed key is always refused.")
    ] = False,
    xapi: Annotated[Optional[str], typer.Option(
        "--xapi", metavar="URL",
        help="The pool master (https://MASTER) through which hosts whose transport is xapi "
             "are reached: migrations by Async.VM.pool_migrate, power-off by host.disable and "
             "host.shutdown, power-on by host.power_on and host.enable. User and password "
             "from $VMTOOLS_XAPI_USER/$VMTOOLS_XAPI_PASSWORD or --xapi-credentials.")] = None,
    xapi_credentials: Annotated[Optional[str], typer.Option(
        "--xapi-credentials", metavar="FILE",
        help="XAPI user and password (TOML username, password; owned by root or you, mode "
             "600). Default: the environment, else /etc/vmtools/xapi.toml.")] = None,
    xapi_ca: Annotated[Optional[str], typer.Option(
        "--xapi-ca", metavar="FILE",
        help="Verify the pool master's TLS certificate against this CA bundle (PEM).")] = None,
    xapi_fingerprint: Annotated[Optional[list[str]], typer.Option(
        "--xapi-fingerprint", metavar="SHA256",
        help="Accept only a certificate with this SHA-256 fingerprint. Repeatable.")] = None,
    xapi_insecure: Annotated[bool, typer.Option(
        "--xapi-insecure",
        help="Do NOT verify the pool master's TLS certificate (a lab only; warned on every "
             "run).")] = False,
    timeout: Annotated[float, typer.Option(
        "--timeout", metavar="SECONDS",
        help="Client timeout of one migration call. It does not cancel the migration (except "
             "on XAPI, whose task is cancelled): the hosts are asked how it ended.")] = 600.0,
    verify_timeout: Annotated[float, typer.Option(
        "--verify-timeout", metavar="SECONDS",
        help="After a timeout or a dropped connection, how long to keep asking both hosts "
             "until they agree where the guest runs.")] = 600.0,
    connect_timeout: Annotated[float, typer.Option(
        "--connect-timeout", metavar="SECONDS",
        help="Timeout to connect to a host and of each question asked of it.")] = 10.0,
    ipmi_credentials: Annotated[Path, typer.Option(
        "--ipmi-credentials", metavar="FILE",
        help="power actions: IPMI user and password (TOML, readable by root or you only; "
             "handed to ipmitool in its environment, never its command line).")
    ] = Path("/etc/vmtools/ipmi.toml"),
    boot_timeout: Annotated[float, typer.Option(
        "--boot-timeout", metavar="SECONDS",
        help="power-on: how long a woken host has until its xend or sshd answers; past it "
             "the action fails and the migrations into that host are not run.")] = 600.0,
    power_off_timeout: Annotated[float, typer.Option(
        "--power-off-timeout", metavar="SECONDS",
        help="power-off: how long after the shutdown the BMC has to report the chassis off "
             "(or the transport to stop answering, for Wake-on-LAN hosts).")] = 300.0,
    wol_address: Annotated[str, typer.Option(
        "--wol-address", metavar="ADDRESS",
        help="Where Wake-on-LAN packets go: the broadcast address or a directed broadcast "
             "(10.0.0.255).")] = "255.255.255.255",
    wol_port: Annotated[int, typer.Option(
        "--wol-port", metavar="PORT", help="UDP port of Wake-on-LAN packets.")] = 9,
    shutdown_command: Annotated[ShutdownCommand, typer.Option(
        "--shutdown-command",
        help="power-off: poweroff, or shutdown (shutdown -h now), run on the Domain-0 over "
             "SSH once it runs no guest.")] = ShutdownCommand.poweroff,
    ssh_port: Annotated[int, typer.Option(
        "--ssh-port", metavar="PORT",
        help="power-off: SSH port of hosts managed through xend (xm-ssh/xl-ssh hosts use "
             "their host map port).")] = 22,
    state_dir: Annotated[Optional[Path], typer.Option(
        "--state-dir", metavar="DIR",
        help="Where the domain locks, the journals and the suspended-guests ledger (suspended.json) "
             "live (default $VMTOOLS_STATE_DIR or /var/lib/vmtools).")] = None,
    image_dir: Annotated[str, typer.Option(
        "--image-dir", metavar="DIR",
        help="The directory of suspend and checkpoint images, shared by every host at this "
             "same path (NFS or the cluster file system the guests' disks live on); a plan "
             "whose image is not a file of it is refused (exit 65). On xapi and libvirt-ssh "
             "hosts the platform keeps the images itself: the path only names them.")
    ] = DEFAULT_IMAGE_DIR,
    journal: Annotated[Optional[Path], typer.Option(
        "--journal", metavar="FILE",
        help="Journal file (JSON lines, one per event; default STATE_DIR/journal/"
             "TIME-DIGEST.jsonl).")] = None,
    resume: Annotated[Optional[Path], typer.Option(
        "--resume", metavar="JOURNAL",
        help="Continue the run this journal recorded, after asking the hosts again; the plan "
             "comes from the journal (a FILE given too must be the same plan).")] = None,
    fmt: Format = OutputFormat.json,
    output: Output = None,
    textfile_dir: TextfileDir = None,
    verbose: Verbose = 0,
    quiet: Quiet = False,
    debug: Debug = False,
    version: Version = False,
) -> None:
    """Run a plan's migrations and print a report (JSON)."""
    with guard(PROG, verbose, quiet, debug, textfile_dir=textfile_dir):
        from vmtools.drivers.hostmap import read_hostmap
        host_map = read_hostmap(str(hosts)) if hosts else {}
        from vmtools.drivers.ssh import SshOptions
        ssh = SshOptions(user=ssh_user, key=str(ssh_key) if ssh_key else None,
                         known_hosts=[str(p) for p in known_hosts or []],
                         accept_new=accept_new_host_keys)
        xapi_settings = None
        if xapi is not None:
            from vmtools.drivers.xapi import XapiSettings
            xapi_settings = XapiSettings(xapi, credentials=xapi_credentials, ca_file=xapi_ca,
                                         fingerprints=tuple(xapi_fingerprint or ()),
                                         insecure=xapi_insecure, timeout=connect_timeout)
        plan = None
        if resume is None or file != "-":
            plan = read_document(PROG, file, Plan, "plan")
        options = ApplyOptions(
            parallel=parallel, per_host=per_host, dry_run=dry_run, offline=offline, force=force,
            stop_on_failure=stop_on_failure, driver=driver, hosts=host_map, ssh=ssh,
            xapi=xapi_settings,
            timeout=timeout, verify_timeout=verify_timeout, connect_timeout=connect_timeout,
            state_dir=str(state_dir) if state_dir else default_state_dir(),
            journal=str(journal) if journal else None, resume=str(resume) if resume else None,
            image_dir=image_dir,
            power=PowerSettings(credentials=str(ipmi_credentials), boot_timeout=boot_timeout,
                                off_timeout=power_off_timeout, wol_address=wol_address,
                                wol_port=wol_port, shutdown_command=shutdown_command.value,
                                ssh_port=ssh_port))
        if resume is not None and journal is not None:
            raise UsageError("--resume appends to the journal it continues; drop --journal")

        def progress(line: str) -> None:
            if not quiet:
                print(f"{PROG}: {printable(line)}", file=sys.stderr, flush=True)

        try:
            report = apply_plan(plan, options, progress)
        except DataError as exc:
            raise _named(exc, file if plan is not None else None) from None
        if textfile_dir is not None:
            from vmtools.prometheus.textfile import report_families
            figures(*report_families(report))
        if fmt == OutputFormat.table:
            from vmtools.render import report_table
            text = report_table(report.to_dict())
        else:
            text = dumps(report.to_dict())
        emit(text, output)
        if report.summary.get("journal_error"):
            print(f"{PROG}: error: {printable(report.summary['journal_error'])}",
                  file=sys.stderr, flush=True)
            raise typer.Exit(EXIT_FAILED)
        if report.summary.get("failed") or report.summary.get("not-run"):
            raise typer.Exit(EXIT_FAILED)


def _named(exc: DataError, file: str | None) -> DataError:
    """A plan the checks refuse names its file, as a malformed one does (``plan.json:
    actions[0].vm: ...``); the core calls the document ``plan`` (a resumed run's plan is the
    journal's, named so)."""
    from vmtools.inputs import input_name
    where = exc.where or ""
    if file is None or not (where == "plan" or where.startswith("plan.")):
        return exc
    rest = where[len("plan."):] if where.startswith("plan.") else ""
    return DataError(exc.message, f"{input_name(file)}: {rest}" if rest else input_name(file),
                     settings=exc.settings)


main = entry_point(app, PROG)
