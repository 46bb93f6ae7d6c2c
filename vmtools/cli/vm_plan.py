"""Read a snapshot and print a plan: a target placement and the migrations that reach it,
ordered so that any execution respecting their `after` links stays within capacity.

Objectives: auto (the default, for cron: repair broken rules, relieve persistent hotspots,
then empty whole hosts, within a budget per run), consolidate (fewest hosts, then least
memory moved), balance (end hotspots with the fewest migrations, then the lowest worst CPU
use), repair (only satisfy the rules).
"""

from __future__ import annotations

import enum
import re
from typing import Annotated, Optional

import typer

from vmtools.cli._common import (TextfileDir, figures, EXIT_CODES_EPILOG, Debug, Format, InputFile, Output, OutputFormat, Quiet, Verbose,
                                 Version, emit, entry_point, guard, log, make_app,
                                 read_document, started)
from vmtools.errors import DataError, UsageError
from vmtools.inputs import input_name
from vmtools.model import Plan, Snapshot, dumps, load_file
from vmtools.xen import DEFAULT_IMAGE_DIR

PROG = "vm-plan"
app = make_app(PROG, __doc__)


class Objective(str, enum.Enum):
    auto = "auto"
    consolidate = "consolidate"
    balance = "balance"
    repair = "repair"


class CpuDemand(str, enum.Enum):
    usage = "usage"
    vcpus = "vcpus"


def _fraction(name: str, value: float, high: float = 1.0) -> None:
    if not 0 < value <= high:
        raise UsageError(f"{name} {value:g}: expected a fraction in (0, {high:g}]")


@app.command(epilog=EXIT_CODES_EPILOG)
def plan(
    file: InputFile = "-",
    objective: Annotated[Objective, typer.Option(
        "--objective", help="auto (for cron): repair broken rules, relieve persistent CPU or "
        "memory hotspots, then empty whole hosts worth emptying, within --max-migrations, "
        "--max-moved and --max-duration; consolidate: fewest active hosts, then least memory "
        "migrated; balance: end hotspots with the fewest migrations; repair: only satisfy the "
        "rules and end overloads.")] = Objective.auto,
    constraints: Annotated[Optional[str], typer.Option(
        "--constraints", metavar="FILE",
        help="A vmtools.constraints document (ban, fence, pin, spread, gather, maintenance, "
             "max_vms, capacity); echoed in the plan. A rule naming a guest or host that is "
             "not in the snapshot loses those names (a warning, and rules_skipped in the "
             "plan).")] = None,
    strict_rules: Annotated[bool, typer.Option(
        "--strict-rules", help="Refuse (exit 65) a constraints file naming a guest or host "
        "that is not in the snapshot, instead of skipping those names.")] = False,
    time_limit: Annotated[float, typer.Option(
        "--time-limit", metavar="SECONDS",
        help="Time budget of the whole run (solver, ordering, checks); consolidation gives "
             "each stage a share.")] = 60.0,
    solver: Annotated[str, typer.Option(
        "--solver", metavar="NAME",
        help="cbc (PuLP's bundled CBC, else cbc on PATH), highs (needs highspy) or another "
             "solver PuLP knows.")] = "cbc",
    threads: Annotated[int, typer.Option("--threads", min=1,
                                         help="Solver threads.")] = 1,
    cpu_target: Annotated[float, typer.Option(
        "--cpu-target", metavar="FRACTION",
        help="consolidate, auto: keep each host's CPU use at most this fraction of its CPUs "
             "(headroom); auto also relieves a CPU hotspot down to it.")] = 0.8,
    mem_target: Annotated[Optional[float], typer.Option(
        "--mem-target", metavar="FRACTION",
        help="consolidate, auto: keep each host's memory use at most this fraction of its "
             "memory; auto also relieves a memory hotspot down to it. Default: 0.9 under "
             "auto, 1 under consolidate.")] = None,
    cpu_threshold: Annotated[float, typer.Option(
        "--cpu-threshold", metavar="FRACTION",
        help="balance, auto: a host above this fraction of its CPUs is a hotspot.")] = 0.9,
    mem_threshold: Annotated[float, typer.Option(
        "--mem-threshold", metavar="FRACTION",
        help="balance, auto: a host above this fraction of its memory is a hotspot.")] = 0.95,
    min_gain: Annotated[float, typer.Option(
        "--min-gain", metavar="FRACTION",
        help="balance, auto: relieve a hotspot only when the worst utilisation (CPU or "
             "memory, whichever is higher) drops by at least this much.")] = 0.05,
    max_migrations: Annotated[int, typer.Option(
        "--max-migrations", metavar="N",
        help="auto: at most N migrations per run (0: no limit); the rest is left to later "
             "runs (summary.deferred).")] = 40,
    max_moved: Annotated[float, typer.Option(
        "--max-moved", metavar="GIB",
        help="auto: at most this much guest memory migrated per run (0: no limit).")] = 50.0,
    max_duration: Annotated[float, typer.Option(
        "--max-duration", metavar="MINUTES",
        help="auto: the plan's estimated duration (with --bandwidth and --parallel) at most "
             "this long (0: no limit); keep it under the cron interval.")] = 4.0,
    cpu_demand: Annotated[CpuDemand, typer.Option(
        "--cpu-demand", help="usage: measured CPU use; vcpus: allocated virtual CPUs "
        "(Entropy's 'simplify').")] = CpuDemand.usage,
    max_frozen: Annotated[float, typer.Option(
        "--max-frozen", metavar="FRACTION",
        help="A host a snapshot problem names is frozen: nothing moves onto it, its guests "
        "stay (one may leave only to end an overload its known guests alone cause). With "
        "more than this fraction of the hosts frozen, or of the guests stale or unknown, "
        "monitoring is broken: plan nothing, exit 75.")] = 0.25,
    refuse_problems: Annotated[bool, typer.Option(
        "--refuse-problems", help="Refuse (exit 65) any snapshot with problems, instead of "
        "planning around them (vmtools before 0.2).")] = False,
    allow_problems: Annotated[bool, typer.Option(
        "--allow-problems", hidden=True,
        help="Ignored: planning around problems is the default now.")] = False,
    require_optimal: Annotated[bool, typer.Option(
        "--require-optimal", help="Refuse (exit 75) a plan not proven optimal within "
        "--time-limit.")] = False,
    bandwidth: Annotated[float, typer.Option(
        "--bandwidth", metavar="MBIT/S",
        help="Migration bandwidth, for the estimated duration.")] = 1000.0,
    parallel: Annotated[int, typer.Option(
        "--parallel", "-P", metavar="N", min=1,
        help="Migrations run at once (as vm-apply --parallel), for the estimated duration.")] = 2,
    explain: Annotated[bool, typer.Option(
        "--explain", help="Add an explain object: why each guest moves.")] = False,
    state: Annotated[Optional[str], typer.Option(
        "--state", metavar="DIR", help="Keep hotspot history, recent moves and each guest's "
        "CPU samples here between runs (cron).")] = None,
    demand: Annotated[str, typer.Option(
        "--demand", metavar="last|mean|pNN|max",
        help="With --state, or a snapshot carrying samples (vm-snapshot --prometheus): plan "
             "on this statistic of each guest's CPU samples over --demand-window (never "
             "below the last sample).")] = "max",
    demand_window: Annotated[float, typer.Option(
        "--demand-window", metavar="MINUTES",
        help="With --state or a snapshot's samples: how far back --demand looks (chosen "
             "from replays: see vm-plan(1)).")] = 120.0,
    hotspot_window: Annotated[str, typer.Option(
        "--hotspot-window", metavar="K/N", help="With --state: balance acts on a hotspot "
        "seen in at least K of the last N snapshots (Sandpiper's rule).")] = "3/5",
    hold: Annotated[float, typer.Option(
        "--hold", metavar="MINUTES", help="With --state: also act on a hotspot that has "
        "lasted this long, however few snapshots saw it (0: off).")] = 0.0,
    cooldown: Annotated[float, typer.Option(
        "--cooldown", metavar="MINUTES", help="With --state: a guest seen to move this "
        "recently is not moved again, except to obey a hard rule.")] = 30.0,
    settle: Annotated[float, typer.Option(
        "--settle", metavar="MINUTES", help="With --state, auto: a guest seen to move this "
        "recently is not moved by consolidation (relief and repairs may still move it once "
        "--cooldown is over), so no host just filled is emptied again.")] = 60.0,
    power: Annotated[bool, typer.Option(
        "--power", help="Also switch hosts off (power-off) and on (power-on): emptied hosts "
        "go to standby, standby hosts wake when room is needed. On by default under "
        "--objective auto when --hosts gives hosts a power method.")] = False,
    hosts: Annotated[Optional[str], typer.Option(
        "--hosts", metavar="FILE", help="The host map (as vm-apply's): only hosts whose power "
        "column is ipmi or wol are switched off. Without it --power may switch any host.")
    ] = None,
    standby_after: Annotated[float, typer.Option(
        "--standby-after", metavar="MINUTES", help="With --power: switch off a host only once "
        "it has been empty this long (needs --state; 0: as soon as it is emptied).")] = 10.0,
    min_hosts: Annotated[int, typer.Option(
        "--min-hosts", min=0, help="With --power: never fewer online hosts per "
        "cluster.")] = 1,
    reserve: Annotated[float, typer.Option(
        "--reserve", metavar="HOSTS", help="With --power: keep this many hosts' worth (the "
        "largest online host's CPU and memory) free online; 1 = N+1.")] = 1.0,
    power_model: Annotated[Optional[str], typer.Option(
        "--power-model", metavar="FILE", help="A vmtools.power document: consolidation "
        "prefers the hosts that draw least for the capacity they give; hungriest hosts are "
        "switched off first, most frugal woken first.")] = None,
    boot_timeout: Annotated[float, typer.Option(
        "--boot-timeout", metavar="SECONDS", help="With --power: a woken host that has not "
        "reported this long after its power-on failed to boot; it is not woken again until "
        "it reports.")] = 600.0,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the candidate-host sampling "
                                      "(plans are reproducible).")] = 0,
    migrate: Annotated[Optional[str], typer.Option(
        "--migrate", metavar="GUEST:HOST",
        help="Plan one live migration of GUEST to HOST, checked like any plan (rules, "
             "capacity at every moment, frozen hosts); no objective is run.")] = None,
    suspend: Annotated[Optional[str], typer.Option(
        "--suspend", metavar="GUEST", help="Plan the suspend of GUEST to its image "
        "IMAGE_DIR/GUEST.save (its memory is freed when the save ends).")] = None,
    resume: Annotated[Optional[str], typer.Option(
        "--resume", metavar="GUEST[:HOST]", help="Plan the resume of a guest vm-apply "
        "suspended (--suspended) on HOST, or on the host with room the rules allow (the "
        "one it left first, then the emptiest).")] = None,
    checkpoint: Annotated[Optional[str], typer.Option(
        "--checkpoint", metavar="GUEST", help="Plan a checkpoint of GUEST to "
        "IMAGE_DIR/GUEST-TIME.chk (it keeps running).")] = None,
    evacuate: Annotated[Optional[str], typer.Option(
        "--evacuate", metavar="HOST", help="Plan the migrations that empty HOST (a "
        "maintenance rule on it, the repair objective): the fewest moves the rules and "
        "capacity allow.")] = None,
    add: Annotated[Optional[str], typer.Option(
        "--add", metavar="FILE", help="Provision the new guests of a vmtools.guests document "
        "all or nothing under the rules, --objective, --cpu-target and --mem-target, waking "
        "standby hosts if that is what it takes: one create action per guest, naming its "
        "host. A group that cannot fit exits 1 saying why, nothing on stdout.")] = None,
    context_switch: Annotated[bool, typer.Option(
        "--context-switch", help="auto: when the guests want more CPU than every host "
        "(standby ones too) can give, suspend the fewest lowest-priority guests (priority "
        "rules) that end it, and resume them, most important first, once room returns; a "
        "run that suspends or resumes does nothing else.")] = False,
    suspend_above: Annotated[float, typer.Option(
        "--suspend-above", metavar="FRACTION", help="With --context-switch: suspend when the "
        "CPU demand exceeds this fraction of the cluster's CPUs (standby hosts counted), down "
        "to --resume-below.")] = 1.0,
    resume_below: Annotated[float, typer.Option(
        "--resume-below", metavar="FRACTION", help="With --context-switch: resume a guest only "
        "while the demand with it stays within this fraction of the cluster's CPUs "
        "(hysteresis).")] = 0.8,
    resume_after: Annotated[float, typer.Option(
        "--resume-after", metavar="MINUTES", help="With --context-switch: a guest stays "
        "suspended at least this long.")] = 15.0,
    image_dir: Annotated[str, typer.Option(
        "--image-dir", metavar="DIR", help="Where suspend and checkpoint images go: the "
        "directory every host shares at this path (as vm-apply --image-dir).")
    ] = DEFAULT_IMAGE_DIR,
    suspended: Annotated[Optional[str], typer.Option(
        "--suspended", metavar="FILE", help="The suspended-guests ledger --resume reads "
        "(default: vm-apply's, STATE_DIR/suspended.json under $VMTOOLS_STATE_DIR or "
        "/var/lib/vmtools).")] = None,
    fmt: Format = OutputFormat.json,
    output: Output = None,
    textfile_dir: TextfileDir = None,
    verbose: Verbose = 0,
    quiet: Quiet = False,
    debug: Debug = False,
    version: Version = False,
) -> Optional[Plan]:
    """Print a plan (JSON) for the snapshot in FILE."""
    with guard(PROG, verbose, quiet, debug, textfile_dir=textfile_dir):
        from vmtools.rules.constraints import parse_constraints
        from vmtools.planner.plan import Options, plan_with_state
        from vmtools.planner.scratch import solver_guard
        from vmtools.render import plan_tables
        for name, value, high in (("--cpu-target", cpu_target, 1.0),
                                  ("--mem-target", mem_target or 1.0, 1.0),
                                  ("--cpu-threshold", cpu_threshold, 1.0),
                                  ("--mem-threshold", mem_threshold, 1.0)):
            _fraction(name, value, high)
        if not 0 <= max_frozen <= 1:
            raise UsageError(f"--max-frozen {max_frozen:g}: expected a fraction in [0, 1]")
        if allow_problems:
            log.warning("--allow-problems is ignored: vm-plan plans around problems by "
                        "default now (--refuse-problems refuses them)")
        if not 0 <= min_gain < 1:
            raise UsageError(f"--min-gain {min_gain:g}: expected a fraction in [0, 1)")
        if not time_limit > 0 or not bandwidth > 0:
            raise UsageError("--time-limit and --bandwidth must be more than 0")
        if settle < 0 or cooldown < 0:
            raise UsageError("--settle and --cooldown must be 0 or more minutes")
        if max_migrations < 0 or max_moved < 0 or max_duration < 0 or demand_window <= 0:
            raise UsageError("--max-migrations, --max-moved and --max-duration must be 0 (no "
                             "limit) or more, --demand-window more than 0")
        from vmtools.planner.demand import parse_demand
        demand = parse_demand(demand)
        m = re.fullmatch(r"(\d+)/(\d+)", hotspot_window)
        if not m or not 1 <= int(m.group(1)) <= int(m.group(2)):
            raise UsageError(f"--hotspot-window {hotspot_window}: expected K/N with "
                             "1 <= K <= N, e.g. 3/5")
        # vm-replay calls this command in process with the snapshot itself as FILE
        in_process = isinstance(file, Snapshot)
        snap = file if in_process else read_document(PROG, file, Snapshot, "snapshot")
        cons_obj = None
        skipped: list[dict] = []
        # The platform's own rules (a XAPI pool's anti-affinity groups, its disabled hosts)
        # come first, then the operator's: one set, checked together.
        platform_rules = list(snap.rules)
        if constraints is not None:
            def with_platform_rules(obj):
                if platform_rules and isinstance(obj, dict) and \
                        isinstance(obj.get("rules"), list):
                    obj = dict(obj, rules=platform_rules + obj["rules"])
                return parse_constraints(obj, snap, strict=strict_rules, skipped=skipped)
            cons_obj = load_file(constraints, "constraints", with_platform_rules, prog=PROG)
        elif platform_rules:
            from vmtools.rules.constraints import parse_rules
            try:
                cons_obj = parse_rules(platform_rules, snap, strict=strict_rules,
                                       skipped=skipped)
            except DataError as exc:
                raise DataError(exc.message, f"snapshot.rules: {exc.where}" if exc.where
                                else "snapshot.rules") from None
        else:
            from vmtools.rules.constraints import Constraints
            cons_obj = Constraints([])
        opts = Options(objective=objective.value, solver=solver, time_limit=time_limit,
                       cpu_target=cpu_target, cpu_threshold=cpu_threshold,
                       mem_threshold=mem_threshold, min_gain=min_gain,
                       cpu_demand=cpu_demand.value, refuse_problems=refuse_problems,
                       max_frozen=max_frozen,
                       require_optimal=require_optimal, bandwidth=bandwidth, parallel=parallel,
                       explain=explain, threads=threads, seed=seed, mem_target=mem_target,
                       max_migrations=max_migrations, max_moved_gib=max_moved,
                       max_duration_min=max_duration, demand=demand,
                       demand_window=demand_window, started=started())
        k, n = int(m.group(1)), int(m.group(2))
        for entry in skipped:
            log.warning("%s: %s", input_name(constraints) if constraints is not None
                        else "snapshot.rules", entry["message"])
        if context_switch:
            switched = _context_switch(snap, objective.value, constraints, strict_rules,
                                       suspended, image_dir, suspend_above, resume_below,
                                       resume_after, cpu_target, in_process)
            if switched is not None and in_process:
                return switched
            if switched is not None:
                doc = switched.to_dict()
                emit(plan_tables(doc) if fmt == OutputFormat.table else dumps(doc), output)
                return None
        manual = _manual_op(migrate, suspend, resume, checkpoint, evacuate, add)
        if manual is not None and not in_process:
            result = _manual_plan(manual, snap, cons_obj, opts, image_dir, suspended, hosts,
                                  constraints)
            result.rules_skipped = skipped
            doc = result.to_dict()
            emit(plan_tables(doc) if fmt == OutputFormat.table else dumps(doc), output)
            return None
        power_opts = _power_options(power, objective.value, hosts, standby_after, min_hosts,
                                    reserve, power_model, boot_timeout)
        from vmtools.cli._progress import Progress
        # In process (vm-replay) the caller's other children are none of vm-plan's business.
        with solver_guard(every_child=not in_process), \
                Progress(PROG, quiet or in_process, verbose) as progress:
            progress.follow("vmtools.planner")
            progress.stage(f"planning {objective.value}: {len(snap.vms)} guests on "
                           f"{len(snap.hosts)} hosts, within {time_limit:g} s")
            result = plan_with_state(snap, cons_obj, opts, state, (k, n), hold, cooldown,
                                     power=power_opts, settle=settle)
        result.rules_skipped = skipped
        if in_process:
            return result
        for entry in result.summary.get("frozen", []):
            log.warning("host %s is frozen (nothing moves onto it, its guests stay%s): %s",
                        entry["host"], f"; {', '.join(entry['leaving'])} leave it to end an "
                        "overload" if entry["leaving"] else "", entry["why"])
        if textfile_dir is not None:
            from vmtools.prometheus.textfile import plan_families
            figures(*plan_families(result))
        doc = result.to_dict()
        emit(plan_tables(doc) if fmt == OutputFormat.table else dumps(doc), output)


def _context_switch(snap: Snapshot, objective: str, constraints: str | None,
                    strict_rules: bool, suspended: str | None, image_dir: str,
                    suspend_above: float, resume_below: float, resume_after: float,
                    cpu_target: float, in_process: bool = False) -> Plan | None:
    """vmtools.planner.context: a plan that suspends or resumes guests, or None."""
    import time
    from vmtools.apply.lifecycle import LEDGER, read_suspended
    from vmtools.apply.options import default_state_dir
    from vmtools.model import VM, is_safe_path, iso_to_epoch
    from vmtools.planner.context import SwitchSettings, context_switch
    if objective != "auto":
        raise UsageError("--context-switch works with --objective auto")
    if not 0 < resume_below < suspend_above <= 4:
        raise UsageError(f"--resume-below {resume_below:g} and --suspend-above "
                         f"{suspend_above:g}: expected 0 < resume-below < suspend-above <= 4")
    if resume_after < 0:
        raise UsageError("--resume-after must be 0 or more")
    if not is_safe_path(image_dir.rstrip("/") or "/"):
        raise UsageError(f"--image-dir {image_dir!r}: expected an absolute path of letters, "
                         "digits and '._+-' between slashes, without '..'")
    ledger = read_suspended(suspended or f"{default_state_dir()}/{LEDGER}")
    running = {v.name for v in snap.vms}
    universe = Snapshot(hosts=snap.hosts, vms=list(snap.vms) + [
        VM(name=e["name"], host=e["host"], vcpus=e["vcpus"], cpu=e["cpu"], mem_mib=e["mem_mib"])
        for e in ledger.values() if e["name"] not in running], source=snap.source)
    from vmtools.rules.constraints import parse_rules
    items, name = _rule_items(constraints)
    skipped: list[dict] = []
    try:
        # the platform's own rules first, then the operator's, as the planner reads them
        cons = parse_rules(list(snap.rules) + items, universe, strict=strict_rules,
                           skipped=skipped)
    except DataError as exc:
        where = name or "snapshot.rules"
        raise DataError(exc.message, f"{where}: {exc.where}" if exc.where else where) \
            from None
    for entry in skipped:
        if entry["kind"] == "priority":
            raise DataError(f"rules[{entry['rule']}] (priority) names "
                            f"{', '.join(entry['unknown_vms'])}, neither running nor "
                            "suspended: with --context-switch a priority must name known "
                            "guests (a misspelt name would lose its protection)",
                            name or "snapshot.rules")
    return context_switch(snap, cons, ledger,
                          SwitchSettings(image_dir=image_dir, suspend_above=suspend_above,
                                         resume_below=resume_below, resume_after=resume_after,
                                         cpu_target=cpu_target),
                          # vm-replay: the replay's clock, which the snapshot carries
                          iso_to_epoch(snap.created) if in_process else time.time())


def _manual_op(migrate, suspend, resume, checkpoint, evacuate, add) -> tuple | None:
    given = [(flag, value) for flag, value in (
        ("--migrate", migrate), ("--suspend", suspend), ("--resume", resume),
        ("--checkpoint", checkpoint), ("--evacuate", evacuate), ("--add", add))
        if value is not None]
    if len(given) > 1:
        raise UsageError(f"{given[0][0]} and {given[1][0]}: one manual operation per plan")
    if not given:
        return None
    flag, value = given[0]
    if flag in ("--migrate", "--resume"):
        guest, sep, host = value.partition(":")
        if not guest or (flag == "--migrate" and not host) or (sep and not host):
            raise UsageError(f"{flag} {value}: expected "
                             f"{'GUEST:HOST' if flag == '--migrate' else 'GUEST[:HOST]'}")
        return flag, guest, host or None
    return flag, value, None


def _rule_items(constraints: str | None) -> tuple[list, str]:
    """The rules of the --constraints document, as objects (validated when parsed against
    the guests they may name)."""
    if constraints is None:
        return [], ""
    from vmtools.model import CONSTRAINTS_FORMAT, check_envelope
    items = load_file(constraints, "constraints", lambda obj: [
        item for _, item in check_envelope(obj, CONSTRAINTS_FORMAT).list("rules")], prog=PROG)
    return items, input_name(constraints)


def _manual_plan(manual: tuple, snap: Snapshot, cons, opts, image_dir: str,
                 suspended: str | None, hosts: str | None, constraints: str | None) -> Plan:
    """A plan of one manual operation (vmtools.planner.manual), or of a group to add
    (vmtools.planner.provision). A guest to resume or to add may be named by --constraints:
    the rules are read again with it."""
    from vmtools.model import is_safe_path
    from vmtools.planner import manual as M
    flag, first, second = manual
    if not is_safe_path(image_dir.rstrip("/") or "/"):
        raise UsageError(f"--image-dir {image_dir!r}: expected an absolute path of letters, "
                         "digits and '._+-' between slashes, without '..'")
    if flag == "--migrate":
        return M.migrate_plan(snap, cons, first, second)
    if flag in ("--suspend", "--checkpoint"):
        return M.suspend_plan(snap, cons, first, image_dir, checkpoint=flag == "--checkpoint")
    if flag == "--resume":
        from vmtools.apply.lifecycle import LEDGER, read_suspended
        from vmtools.apply.options import default_state_dir
        path = suspended or f"{default_state_dir()}/{LEDGER}"
        ledger = read_suspended(path)
        if first not in ledger:
            running = next((v.host for v in snap.vms if v.name == first), None)
            if running is not None:
                raise DataError(f"{first} already runs on {running}; only a suspended guest is "
                                "resumed", "--resume")
            raise DataError(f"{first} is not in the suspended-guests ledger {path} (vm-apply "
                            "records the guests it suspends; pass --suspended FILE for "
                            "another)", "--resume")
        entry = ledger[first]
        if constraints is not None or snap.rules:
            from vmtools.model import VM
            from vmtools.rules.constraints import parse_rules
            items, name = _rule_items(constraints)
            items = list(snap.rules) + items
            name = name or "snapshot.rules"
            universe = Snapshot(hosts=snap.hosts, vms=list(snap.vms) + [VM(
                name=first, host=entry["host"], vcpus=entry["vcpus"], cpu=entry["cpu"],
                mem_mib=entry["mem_mib"])])
            try:
                cons = parse_rules(items, universe, strict=False, skipped=[])
            except DataError as exc:
                raise DataError(exc.message, f"{name}: {exc.where}" if exc.where else name) \
                    from None
        return M.resume_plan(snap, cons, entry, second, image_dir)
    if flag == "--evacuate":
        from dataclasses import replace
        from vmtools.planner.plan import make_plan
        from vmtools.planner.scratch import solver_guard
        from vmtools.rules.constraints import parse_rules
        rules = parse_rules(M.evacuate_rules(cons, snap, first), snap)
        with solver_guard(every_child=True):
            plan = make_plan(snap, rules, replace(opts, objective="repair"))
        plan.summary["manual"] = f"evacuate {first}"
        return plan
    from vmtools.planner.provision import add_plan, parse_guests, rules_for
    guests, rules = load_file(first, "guests", lambda obj: parse_guests(obj, snap), prog=PROG)
    try:
        items = list(snap.rules) + _rule_items(constraints)[0]
        both = rules_for(guests, rules, items, snap)
    except DataError as exc:
        name = input_name(first)
        raise DataError(exc.message, f"{name}: {exc.where}" if exc.where else name) from None
    wakeable = None
    if hosts is not None:
        from vmtools.drivers.hostmap import read_hostmap
        wakeable = {n for n, e in read_hostmap(hosts).items() if e.power in ("ipmi", "wol")}
    mem_target = opts.mem_target if opts.mem_target is not None else \
        (0.9 if opts.objective == "auto" else 1.0)
    return add_plan(snap, both, guests, opts.objective, opts.cpu_target, mem_target,
                    opts.time_limit, wakeable)


def _power_options(power: bool, objective: str, hosts: str | None, standby_after: float,
                   min_hosts: int, reserve: float, power_model: str | None,
                   boot_timeout: float):
    """The settings checked, the host map and the power model read: planner.options says
    whether the plan switches hosts."""
    from vmtools.planner.options import check_power_settings, power_options
    check_power_settings(standby_after, reserve, boot_timeout)   # before any file is read
    methods = None
    if hosts is not None:
        from vmtools.drivers.hostmap import read_hostmap
        methods = {name: e.power for name, e in read_hostmap(hosts).items()}
    model = None
    if power_model is not None:
        from vmtools.power_model import parse_power_model
        model = load_file(power_model, "power model",
                          lambda obj: parse_power_model(obj, input_name(power_model)),
                          prog=PROG)
    return power_options(power, objective, methods, standby_after, min_hosts, reserve, model,
                         boot_timeout)


main = entry_point(app, PROG)
