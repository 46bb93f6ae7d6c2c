"""The node_exporter textfile-collector metrics vmtools writes (vmtools-formats(5), TEXTFILE
METRICS): one file per command, ``DIR/<command>.prom``, replaced atomically at the end of
every run (``--textfile-dir DIR``), and vm-rebalance's own file on every run.

Every command's file says when it last ran, how it ended and how long it took, and when it
last succeeded (carried over from the previous file when this run failed); vm-snapshot,
vm-plan and vm-apply add what they saw or did. vm-rebalance's file describes the whole run
from the documents it left (:func:`rebalance_families`). Run as
``python -m vmtools.prometheus.textfile rebalance RUN_DIR FILE`` by vm-rebalance.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import sys
import time
from typing import Any, Iterable

from vmtools.model import ACTION_OUTCOMES, HOST_STATES, POWER_OPS
from vmtools.prometheus.exposition import Family, read_textfile, write_textfile

COMMAND_LAST_RUN = "vmtools_command_last_run_timestamp_seconds"
COMMAND_LAST_SUCCESS = "vmtools_command_last_success_timestamp_seconds"
COMMAND_EXIT = "vmtools_command_exit_code"
COMMAND_DURATION = "vmtools_command_duration_seconds"

REBALANCE = "vmtools_rebalance_"
LAST_SUCCESS = REBALANCE + "last_success_timestamp_seconds"
LAST_MIGRATION = REBALANCE + "last_migration_timestamp_seconds"


def _g(name: str, help: str, labels: tuple[str, ...] = ()) -> Family:
    return Family(name, help, "gauge", labels)


def textfile_path(directory: str, command: str) -> str:
    return os.path.join(directory, f"{command}.prom")


def _carried(path: str, name: str, labels: dict[str, str] | None = None) -> float | None:
    for got, value in read_textfile(path).get(name, []):
        if labels is None or got == labels:
            return value
    return None


def command_families(command: str, path: str, started: float, finished: float,
                     exit_code: int, extra: Iterable[Family] = ()) -> list[Family]:
    """When ``command`` ran, its exit code and duration, its last success (this run's end
    when it succeeded, else the previous file's), and ``extra``."""
    c = (command,)
    last_ok = finished if exit_code == 0 else _carried(path, COMMAND_LAST_SUCCESS,
                                                        {"command": command})
    fams = [_g(COMMAND_LAST_RUN, "When the command last ended (Unix time)",
               ("command",)).add(finished, *c),
            _g(COMMAND_EXIT, "Exit code of the last run (vmtools(7): 0 success)",
               ("command",)).add(exit_code, *c),
            _g(COMMAND_DURATION, "Wall-clock seconds the last run took",
               ("command",)).add(round(finished - started, 3), *c)]
    success = _g(COMMAND_LAST_SUCCESS, "When the command last ended with exit 0 (Unix time)",
                 ("command",))
    if last_ok is not None:
        success.add(last_ok, *c)
    fams.append(success)
    return fams + list(extra)


def write_command(directory: str, command: str, started: float, exit_code: int,
                  extra: Iterable[Family] = ()) -> str:
    path = textfile_path(directory, command)
    write_textfile(path, command_families(command, path, started, time.time(), exit_code,
                                          extra))
    return path


# --------------------------------------------------------------------------- per command

def snapshot_families(snap) -> list[Family]:
    hosts = _g("vmtools_snapshot_hosts", "Hosts in the snapshot, by state", ("state",))
    count = collections.Counter(h.state for h in snap.hosts)
    for state in HOST_STATES:
        hosts.add(count.get(state, 0), state)
    problems = _g("vmtools_snapshot_problems", "Problems in the snapshot, by kind", ("kind",))
    for kind, n in sorted(collections.Counter(p.kind for p in snap.problems).items()):
        problems.add(n, kind)
    return [hosts, _g("vmtools_snapshot_guests", "Guests in the snapshot").add(len(snap.vms)),
            problems]


def plan_families(plan) -> list[Family]:
    ops = _g("vmtools_plan_actions", "Actions in the plan, by operation", ("op",))
    count = collections.Counter(a.op for a in plan.actions)
    for op in ("migrate", *POWER_OPS):
        ops.add(count.get(op, 0), op)
    return [ops] + _solver_families("vmtools_plan_", plan.solver or {})


def report_families(report) -> list[Family]:
    out = _g("vmtools_apply_actions", "Actions of the plan by outcome", ("outcome",))
    count = collections.Counter(a.get("outcome") for a in report.actions)
    for outcome in ACTION_OUTCOMES:
        out.add(count.get(outcome, 0), outcome)
    return [out, _g("vmtools_apply_dry_run", "1 when the run was a dry run").add(
        1 if report.dry_run else 0)]


def _dict(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def _solver_families(prefix: str, solver: dict) -> list[Family]:
    status = _g(prefix + "solver_status", "The solver's status (one series, value 1)",
                ("status",))
    if isinstance(solver.get("status"), str):
        status.add(1, solver["status"])
    gap = _g(prefix + "solver_gap_ratio", "Relative gap the solver proved (absent: unknown)")
    if _num(solver.get("gap")) is not None:
        gap.add(_num(solver["gap"]))
    seconds = _g(prefix + "solver_seconds", "Seconds the planning took")
    if _num(solver.get("seconds")) is not None:
        seconds.add(_num(solver["seconds"]))
    return [status, gap, seconds]


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


# --------------------------------------------------------------------------- vm-rebalance

def _load(path: str) -> dict | None:
    try:
        with open(path, encoding="utf-8") as fh:
            doc = json.loads(fh.read(64 << 20))
    except (OSError, ValueError, RecursionError):
        return None
    return doc if isinstance(doc, dict) else None


def _dicts(value: Any) -> list[dict]:
    return [x for x in value if isinstance(x, dict)] if isinstance(value, list) else []


def frozen_hosts(plan: dict | None, snapshot: dict | None) -> list[str]:
    """The hosts the plan froze (its summary's ``frozen``: a list of names or of
    {"host": ...}, or a {host: why} object), else the hosts the snapshot has problems on."""
    frozen = _dict((plan or {}).get("summary")).get("frozen")
    if isinstance(frozen, dict):
        return sorted(str(h) for h in frozen)
    if isinstance(frozen, list):
        return sorted({str(x.get("host")) if isinstance(x, dict) else str(x)
                       for x in frozen if x})
    origin = snapshot or _dict((plan or {}).get("origin"))
    return sorted({str(p["host"]) for p in _dicts(origin.get("problems")) if p.get("host")})


def _domain_names(names: dict) -> list[str]:
    """The domains of a run's result whose name is a directory of the run."""
    return [n for n in names if isinstance(n, str) and n and "/" not in n
            and not n.startswith(".")]


def _domain_documents(run_dir: str, name: str) -> tuple[dict | None, dict | None, dict | None]:
    """One domain's snapshot (else its plan's origin), plan and report, from ``RUN/NAME/``."""
    d = os.path.join(run_dir, name)
    plan = _load(os.path.join(d, "plan.json"))
    snap = _load(os.path.join(d, "snapshot.json")) or _dict((plan or {}).get("origin"))
    return snap or None, plan, _load(os.path.join(d, "report.json"))


def _run_documents(run_dir: str, result: dict) -> tuple[dict | None, dict | None, dict | None]:
    """The run's snapshot, plan and report; a run over several migration domains (its
    result's ``domains``) as one: the domains' hosts, problems, actions and outcomes together,
    the deferred work summed, the frozen hosts and hotspots of all, the worst host's CPU, and
    the solver figures of the domain whose planning took longest."""
    names = result.get("domains")
    if not isinstance(names, dict):
        return (_load(os.path.join(run_dir, "snapshot.json")),
                _load(os.path.join(run_dir, "plan.json")),
                _load(os.path.join(run_dir, "report.json")))
    snaps, plans, reports = [], [], []
    for name in _domain_names(names):
        snap, plan, report = _domain_documents(run_dir, name)
        snaps += [snap] if snap else []
        plans += [plan] if plan is not None else []
        reports += [report] if report is not None else []
    snapshot = {"hosts": [h for x in snaps for h in _dicts(x.get("hosts"))],
                "problems": [p for x in snaps for p in _dicts(x.get("problems"))]} \
        if snaps else None
    report = {"actions": [a for r in reports for a in _dicts(r.get("actions"))]} \
        if reports else None
    if not plans:
        return snapshot, None, report
    summaries = [_dict(p.get("summary")) for p in plans]
    deferred = [_dict(x.get("deferred")) for x in summaries]
    worst = [_num(x.get("worst_cpu_before")) for x in summaries]
    summary: dict[str, Any] = {
        "deferred": {"migrations": sum(_num(d.get("migrations")) or 0 for d in deferred)},
        "frozen": sorted(set().union(*(frozen_hosts(p, None) for p in plans)))}
    if any("hotspots" in x for x in summaries):
        summary["hotspots"] = [h for x in summaries for h in _dicts(x.get("hotspots"))]
    if any(w is not None for w in worst):
        summary["worst_cpu_before"] = max(w for w in worst if w is not None)
    solver = max((_dict(p.get("solver")) for p in plans),
                 key=lambda x: _num(x.get("seconds")) or 0.0)
    plan = {"actions": [a for p in plans for a in _dicts(p.get("actions"))],
            "summary": summary, "solver": solver}
    return snapshot, plan, report


def rebalance_families(run_dir: str, path: str, now: float | None = None) -> list[Family]:
    """vm-rebalance's metrics for the run in ``run_dir`` (its result.json, snapshot, plan and
    report); ``path`` is the previous file, for what carries over."""
    now = time.time() if now is None else now
    result = _load(os.path.join(run_dir, "result.json")) or {}
    snapshot, plan, report = _run_documents(run_dir, result)
    exit_code = result.get("exit") if isinstance(result.get("exit"), int) and \
        not isinstance(result.get("exit"), bool) and 0 <= result["exit"] <= 255 else 70
    actions = _dicts((plan or {}).get("actions"))
    ops = collections.Counter(str(a.get("op", "migrate")) for a in actions)
    fams = (_run_outcome_families(result, exit_code, path, now) +
            _planned_families(plan, snapshot, actions, ops) +
            _applied_families(report, ops, snapshot or _dict((plan or {}).get("origin")),
                              result, path, now))
    if isinstance(result.get("domains"), dict):
        fams += _per_domain_families(run_dir, result["domains"], path, now)
    return fams


DOMAIN = REBALANCE + "domain_"


def _per_domain_families(run_dir: str, results: dict, path: str, now: float) -> list[Family]:
    """A run over several migration domains: each domain's own figures, the families of a
    single-domain run named ``vmtools_rebalance_domain_*`` with the label ``domain`` first
    (its exit code and failed step from its own result; no timestamps: they are the run's)."""
    merged: dict[str, Family] = {}
    for name in _domain_names(results):
        own = _dict(results[name])
        code = own.get("exit")
        code = code if isinstance(code, int) and not isinstance(code, bool) and \
            0 <= code <= 255 else 70
        snapshot, plan, report = _domain_documents(run_dir, name)
        actions = _dicts((plan or {}).get("actions"))
        ops = collections.Counter(str(a.get("op", "migrate")) for a in actions)
        fams = [f for f in _run_outcome_families(own, code, path, now)
                if f.name in (REBALANCE + "exit_code", REBALANCE + "failed_step")]
        fams += _planned_families(plan, snapshot, actions, ops)
        fams += [f for f in _applied_families(report, ops, snapshot or _dict(
            (plan or {}).get("origin")), own, path, now) if f.name != LAST_MIGRATION]
        for f in fams:
            into = merged.get(f.name)
            if into is None:
                into = merged[f.name] = _g(DOMAIN + f.name[len(REBALANCE):],
                                           f"{f.help}, per migration domain",
                                           ("domain", *f.labels))
            for labels, value in f.samples:
                into.add(value, name, *labels)
    return list(merged.values())


def _run_outcome_families(result: dict, exit_code: int, path: str, now: float) -> list[Family]:
    """How the run ended: when, its exit code and failed step, how long, dry or not."""
    fams = [_g(REBALANCE + "last_run_timestamp_seconds", "When the last run ended (Unix time)")
            .add(now),
            _g(REBALANCE + "exit_code", "Exit code of the last run (vmtools(7); 0 success)")
            .add(exit_code)]
    step = _g(REBALANCE + "failed_step", "The step the last run failed at (value 1; absent "
              "when it succeeded)", ("step",))
    if exit_code and result.get("failed_step"):
        step.add(1, str(result["failed_step"])[:40])
    fams.append(step)
    fams.append(_g(REBALANCE + "duration_seconds", "Seconds the last run took").add(
        _num(result.get("seconds")) or 0.0))
    fams.append(_g(REBALANCE + "dry_run", "1 when the last run was a dry run (-n)").add(
        1 if result.get("dry_run") else 0))
    last_ok = now if exit_code == 0 else _carried(path, LAST_SUCCESS)
    fam = _g(LAST_SUCCESS, "When a run last ended with exit 0 (Unix time)")
    fams.append(fam.add(last_ok) if last_ok is not None else fam)
    return fams


def _planned_families(plan: dict | None, snapshot: dict | None, actions: list[dict],
                      ops: collections.Counter) -> list[Family]:
    """What the run's plan held: actions by operation, memory to move, what it deferred,
    froze and found hot, and the solver's figures."""
    summary = _dict((plan or {}).get("summary"))
    planned = _g(REBALANCE + "planned_actions", "Actions the last plan holds, by operation",
                 ("op",))
    for op in ("migrate", *POWER_OPS):
        planned.add(ops.get(op, 0), op)
    fams = [planned]
    fams.append(_g(REBALANCE + "planned_migrated_bytes", "Memory the last plan migrates, "
                   "bytes").add(sum(_num(a.get("mem_mib")) or 0 for a in actions
                                   if a.get("op", "migrate") == "migrate") * 2**20))
    deferred = summary.get("deferred") if isinstance(summary.get("deferred"), dict) else {}
    fams.append(_g(REBALANCE + "deferred_migrations", "Migrations the last plan deferred to "
                   "later runs (its budget)").add(_num(deferred.get("migrations")) or 0))
    frozen = frozen_hosts(plan, snapshot)
    fams.append(_g(REBALANCE + "frozen_hosts", "Hosts the last plan froze (nothing moves on "
                   "or off them: they have problems)").add(len(frozen)))
    per_host = _g(REBALANCE + "host_frozen", "1 for each host the last plan froze",
                  ("host",))
    for h in frozen:
        per_host.add(1, h)
    fams.append(per_host)
    hot = _dicts(summary.get("hotspots"))
    hotspots = _g(REBALANCE + "hotspots", "Persistent hotspots the last plan found (auto)")
    unrelieved = _g(REBALANCE + "hotspots_not_relieved", "Of those, the ones the last plan "
                    "did not act on (deferred)")
    if plan is not None and "hotspots" in summary:
        hotspots.add(len(hot))
        unrelieved.add(sum(1 for h in hot if h.get("acted") is False))
    fams += [hotspots, unrelieved]
    worst = _g(REBALANCE + "worst_host_cpu_ratio", "CPU demand over capacity of the most "
               "loaded host before the plan")
    if _num(summary.get("worst_cpu_before")) is not None:
        worst.add(_num(summary["worst_cpu_before"]))
    fams.append(worst)
    return fams + _solver_families(REBALANCE, _dict((plan or {}).get("solver")))


def _applied_families(report: dict | None, ops: collections.Counter, origin: dict,
                      result: dict, path: str, now: float) -> list[Family]:
    """What the run did: migrations and power actions by outcome, the hosts by state, and
    when a migration last completed."""
    outcomes: collections.Counter = collections.Counter()
    power: collections.Counter = collections.Counter()
    for a in _dicts((report or {}).get("actions")):
        op = str(a.get("op", "migrate"))
        if op == "migrate":
            outcomes[str(a.get("outcome"))] += 1
        elif op in POWER_OPS:
            power[(op, str(a.get("outcome")))] += 1
    migrations = _g(REBALANCE + "migrations", "Migrations of the last run, by outcome (none "
                    "when nothing was applied)", ("outcome",))
    for outcome in ACTION_OUTCOMES:
        migrations.add(outcomes.get(outcome, 0), outcome)
    power_f = _g(REBALANCE + "power_actions", "Power actions of the last run, by operation "
                 "and outcome (planned: in the plan)", ("op", "outcome"))
    for op in POWER_OPS:
        power_f.add(ops.get(op, 0), op, "planned")
        for outcome in ACTION_OUTCOMES:
            power_f.add(power.get((op, outcome), 0), op, outcome)
    states = collections.Counter(str(h.get("state", "online"))
                                 for h in _dicts(origin.get("hosts")))
    hosts = _g(REBALANCE + "hosts", "Hosts in the run's snapshot, by state (online: on; "
               "offline; standby: switched off by vmtools)", ("state",))
    if isinstance(origin.get("hosts"), list):
        for state in HOST_STATES:
            hosts.add(states.get(state, 0), state)
    last_move = now if outcomes.get("done") and not result.get("dry_run") else \
        _carried(path, LAST_MIGRATION)
    fam = _g(LAST_MIGRATION, "When a run last completed a migration (Unix time)")
    return [migrations, power_f, hosts,
            fam.add(last_move) if last_move is not None else fam]


def write_rebalance(run_dir: str, path: str) -> None:
    write_textfile(path, rebalance_families(run_dir, path))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vmtools.prometheus.textfile")
    sub = parser.add_subparsers(dest="cmd", required=True)
    reb = sub.add_parser("rebalance", help="write vm-rebalance's metrics for one run")
    reb.add_argument("run_dir")
    reb.add_argument("file")
    args = parser.parse_args(argv)
    from vmtools.errors import VmtoolsError
    try:
        write_rebalance(args.run_dir, args.file)
    except VmtoolsError as exc:
        from vmtools.text import one_line
        print(f"vm-rebalance: warning: {one_line(exc)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
