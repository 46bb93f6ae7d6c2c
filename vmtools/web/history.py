"""What vm-web shows of the past: vm-rebalance's run directories (:mod:`vmtools.runs`).

Each run archived the snapshot it planned from, its plan and vm-apply's report. The history of
a host is its CPU and memory use in each archived snapshot, one point per run: what is
recorded, no more (between two runs nothing is known). A run over several migration domains
(vm-rebalance's DOMAINS) keeps a snapshot per domain, in RUN/NAME/: each is read.
"""

from __future__ import annotations

import re
from pathlib import Path

from vmtools.errors import DataError
from vmtools.model import Plan, Snapshot, iso_to_epoch
from vmtools.runs import RESULT, clean_result, headline, load

RUN_NAME = re.compile(r"[0-9][0-9A-Za-z._-]{0,60}")
DOMAIN_DIR = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,100}")   # vm-rebalance's DOMAINS names
MAX_RUNS = 200


def _run_dirs(runs_dir: str | None) -> list[Path]:
    if not runs_dir:
        return []
    try:
        dirs = [p for p in Path(runs_dir).iterdir()
                if RUN_NAME.fullmatch(p.name) and p.is_dir()]
    except OSError:
        return []
    return sorted(dirs, key=lambda p: p.name, reverse=True)[:MAX_RUNS]


def list_runs(runs_dir: str | None, limit: int = 30) -> list[dict]:
    """The newest runs: name, what they did (vm-rebalance's headline), exit code."""
    out = []
    for d in _run_dirs(runs_dir)[:limit]:
        result = load(d / RESULT)
        clean = clean_result(result) if result is not None else None
        out.append({"name": d.name, "what": headline(clean) if clean else "no result",
                    "exit": clean.get("exit") if clean else None})
    return out


def run_documents(runs_dir: str | None, name: str) -> dict | None:
    """A run's result, plan (parsed, or None) and report; None when there is no such run.
    A run over several domains: ``domains``, each one's name, headline, plan and report."""
    d = next((p for p in _run_dirs(runs_dir) if p.name == name), None)
    if d is None:
        return None
    result = load(d / RESULT)
    clean = clean_result(result) if result is not None else None
    plan, report = _plan_and_report(d)
    domains = [{"name": n, "what": headline(r), **dict(zip(("plan", "report"),
                                                           _plan_and_report(d / n)))}
               for n, r in ((clean or {}).get("domains") or {}).items()
               if DOMAIN_DIR.fullmatch(n)]
    return {"result": {"what": headline(clean), **clean} if clean else None, "plan": plan,
            "report": report, "domains": domains}


def _plan_and_report(d: Path) -> tuple[Plan | None, dict | None]:
    plan = None
    raw = load(d / "plan.json")
    if raw is not None:
        try:
            plan = Plan.from_dict(raw, "plan")
        except DataError:
            plan = None
    report = load(d / "report.json")
    if report is not None and not isinstance(report.get("actions"), list):
        report = None
    return plan, report


def host_series(runs_dir: str | None, host: str | None) -> tuple[list[str], list[dict]]:
    """Every host named in an archived snapshot, and ``host``'s points oldest first:
    ``{t, when, cpu, mem, guests}`` (fractions of its capacity; None when unknown)."""
    names: set[str] = set()
    points = []
    for d in reversed(_run_dirs(runs_dir)):
        for raw in _snapshots_of(d):
            try:
                snap = Snapshot.from_dict(raw, "snapshot")
                t = iso_to_epoch(snap.created)
            except (DataError, ValueError, TypeError):
                continue
            names.update(h.name for h in snap.hosts)
            h = next((h for h in snap.hosts if h.name == host), None)
            if h is None:
                continue
            mine = [v for v in snap.vms if v.host == host]
            points.append({"t": t, "when": snap.created, "guests": len(mine),
                           "cpu": sum(v.cpu for v in mine) / h.cpu if h.cpu else None,
                           "mem": sum(v.mem_mib for v in mine) / h.mem_mib
                           if h.mem_mib else None})
    return sorted(names), points


def _snapshots_of(run_dir: Path) -> list[dict]:
    """The run's snapshot; a run over several domains (vm-rebalance's DOMAINS) has one per
    domain, in RUN/NAME/snapshot.json."""
    raw = load(run_dir / "snapshot.json")
    if raw is not None:
        return [raw]
    try:
        subdirs = sorted(p for p in run_dir.iterdir() if DOMAIN_DIR.fullmatch(p.name)
                         and p.is_dir())
    except OSError:
        return []
    return [raw for raw in (load(sub / "snapshot.json") for sub in subdirs) if raw is not None]


def guest_samples(state_dir: str | None, host: str) -> tuple[dict[str, list], str | None]:
    """The CPU samples vm-plan keeps (its state, the demand window) of the guests it last saw
    on ``host``: {guest: [(time, CPUs)]}, and why there are none when the state is unreadable.
    With vm-rebalance's DOMAINS, each domain's vm-plan keeps its own, STATE_DIR/NAME (NAME a
    name vm-rebalance accepts; nothing else is made a path): the first domain directory whose
    vm-plan saw guests on ``host``, else STATE_DIR's."""
    if not state_dir:
        return {}, None
    import os
    from vmtools.state import domain_dirs, read_state
    try:
        names = os.listdir(state_dir)
    except OSError:
        names = []
    note = None
    for path in [*domain_dirs(state_dir, names).values(), state_dir]:
        try:
            memory = read_state(path).plan
        except DataError as exc:
            note = note or str(exc)
            continue
        out = {}
        for guest, where in sorted(memory.placement.items()):
            points = [(float(t), float(c)) for t, c in memory.samples.get(guest, [])]
            if where == host and points:
                out[guest] = sorted(points)
        if out:
            return out, None
    return {}, note
