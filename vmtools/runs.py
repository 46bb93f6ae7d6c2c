"""vm-rebalance's run directories: what one cron run did, for its summary and for vm-status.

A run directory (``ARCHIVE/YYYYMMDDTHHMMSSZ``) holds ``snapshot.json``, ``plan.json``,
``report.json``, one log per step, ``summary.txt`` (what cron mails) and ``result.json`` (the
same, for programs). vm-rebalance calls ``python -m vmtools.runs finish DIR ...`` at the end of
a run; vm-status reads the newest ``result.json``.

A run over several migration domains (vm-rebalance's ``DOMAINS``) keeps each domain's
documents, logs and result in ``DIR/NAME/``; ``finish DIR --domains NAME...`` then writes the
run's own ``result.json`` (each domain's result under ``domains``) and a summary with a block
per domain.
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import time
from pathlib import Path
from typing import Any

from vmtools.atomic import write_atomic
from vmtools import numbers
from vmtools.errors import DataError
from vmtools.inputs import MAX_FILE_BYTES, MAX_DOCUMENT_BYTES, decode, read_limited
from vmtools.text import printable

MAX_LISTED = 20           # moves named in a summary; the rest are counted
RESULT = "result.json"
RESULT_VERSION = "1.1"    # 1.1: the optional "domain" and "domains"
MAX_DOMAINS = 1000        # domains a result lists (vm-rebalance names far fewer)
COMMANDS = {"snapshot": "vm-snapshot", "plan": "vm-plan", "report": "vm-apply"}  # step: command


def _load(path: Path, limit: int = MAX_DOCUMENT_BYTES) -> dict | None:
    """A run's JSON file, or None when it is missing or damaged (bounded read; a run directory
    is written by vm-rebalance, but a full disk or a hand edit can leave anything)."""
    try:
        with open(path, "rb") as fh:
            doc = json.loads(decode(read_limited(fh, str(path), "document", limit), str(path)))
    except (OSError, ValueError, RecursionError, DataError):
        return None
    return doc if isinstance(doc, dict) else None


def load(path: Path) -> dict | None:
    """One JSON file of a run directory, or None when it is missing or damaged."""
    return _load(path)


# Typed reading of documents whose shape nobody vouches for: a wrong type is "unknown"
# (None, an empty list), never a traceback; a string is made printable.
def _obj(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list:
    return value if isinstance(value, list) else []


def _text(value: Any) -> str | None:
    return printable(value)[:400] if isinstance(value, str) else None


def _num(value: Any) -> float | int | None:
    return value if numbers.problem(value, lo=-numbers.MAX_NUMBER) is None else None


def _count(value: Any) -> int:
    return value if numbers.problem(value, lo=0, integer=True) is None else 0


def clean_result(doc: Any, nested: bool = False) -> dict:
    """A ``result.json`` as its readers expect it, whatever the file held: each field of the
    right type (or null), strings escaped, lists of objects; ``domains`` (a run over several
    migration domains) holds one such result per domain (``nested``: one of those, which
    holds none). vm-status reads through this; :func:`describe` writes through it."""
    r = _obj(doc)
    plan = r.get("plan")
    if plan is not None:
        p = _obj(plan)
        d = _obj(p.get("deferred"))
        plan = {"objective": _text(p.get("objective")),
                "hosts_before": _num(p.get("hosts_before")),
                "hosts_after": _num(p.get("hosts_after")),
                "migrations": _count(p.get("migrations")),
                "migrated_mib": _num(p.get("migrated_mib")) or 0,
                "solver_status": _text(p.get("solver_status")),
                "deferred": {"migrations": _count(d.get("migrations")),
                             "migrated_mib": _num(d.get("migrated_mib")) or 0} if d else None}
    exit_code = r.get("exit")
    out: dict[str, Any] = {
        "format": "vmtools.rebalance-run", "version": RESULT_VERSION, "run": _text(r.get("run")),
        "started": _text(r.get("started")), "finished": _text(r.get("finished")),
        "seconds": _num(r.get("seconds")) or 0,
        "exit": exit_code if numbers.problem(exit_code, lo=0, hi=255, integer=True) is None
        else None,
        "failed_step": _text(r.get("failed_step")), "dry_run": r.get("dry_run") is True,
        "plan": plan,
        "moves": [{"vm": _text(m.get("vm")), "from": _text(m.get("from")),
                   "to": _text(m.get("to")), "mem_mib": _num(m.get("mem_mib"))}
                  for m in map(_obj, _list(r.get("moves")))],
        "outcomes": {_text(k): _count(n) for k, n in _obj(r.get("outcomes")).items()}}
    if "failures" in r:
        out["failures"] = [{"vm": _text(f.get("vm")), "from": _text(f.get("from")),
                            "to": _text(f.get("to")),
                            "error": _text(f.get("error")) or "(no error recorded)"}
                           for f in map(_obj, _list(r.get("failures")))]
    if isinstance(r.get("domain"), str):
        out["domain"] = _text(r["domain"])
    if not nested and isinstance(r.get("domains"), dict):
        out["domains"] = {_text(k): clean_result(v, nested=True)
                          for k, v in list(r["domains"].items())[:MAX_DOMAINS]
                          if isinstance(k, str)}
    return out


def _gib(mib: Any) -> str:
    try:
        return f"{float(mib) / 1024:.1f} GiB"
    except (TypeError, ValueError):
        return "? GiB"


def describe(run_dir: Path, exit_code: int, step: str | None, dry_run: bool,
             started: float, finished: float) -> dict:
    """The result of one run, from the documents it left."""
    plan = _load(run_dir / "plan.json")
    report = _load(run_dir / "report.json")
    result: dict[str, Any] = {
        "format": "vmtools.rebalance-run", "version": RESULT_VERSION, "run": run_dir.name,
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(finished)),
        "seconds": round(finished - started, 1), "exit": exit_code, "failed_step": step,
        "dry_run": dry_run, "plan": None, "moves": [], "outcomes": {}}
    if plan is not None:
        s = _obj(plan.get("summary"))
        solver = _obj(plan.get("solver"))
        actions = [a for a in _list(plan.get("actions")) if isinstance(a, dict)]
        result["plan"] = {"objective": plan.get("objective"),
                          "hosts_before": s.get("hosts_before"),
                          "hosts_after": s.get("hosts_after"),
                          "migrations": len(actions), "migrated_mib": s.get("migrated_mib", 0),
                          "solver_status": solver.get("status"),
                          "deferred": s.get("deferred") or None}
        result["moves"] = [{"vm": a.get("vm"), "from": a.get("src"), "to": a.get("dst"),
                            "mem_mib": a.get("mem_mib")} for a in actions]
    if report is not None:
        counts = collections.Counter(str(a.get("outcome")) for a in _list(report.get("actions"))
                                     if isinstance(a, dict))
        result["outcomes"] = dict(sorted(counts.items()))
        result["failures"] = [{"vm": a.get("vm"), "from": a.get("src"), "to": a.get("dst"),
                               "error": a.get("error")}
                              for a in _list(report.get("actions"))
                              if isinstance(a, dict) and a.get("outcome") == "failed"]
    return clean_result(result)


def headline(result: dict) -> str:
    """One line: what the run did (over several domains: how many failed, and which)."""
    if result.get("domains"):
        return _domains_headline(result["domains"])
    plan = result.get("plan") or {}
    n = plan.get("migrations", 0)
    moves = f"{n} migration{'' if n == 1 else 's'}"
    if result.get("exit"):
        step = result.get("failed_step")
        return f"{COMMANDS.get(step, step or 'a step')} failed (exit {result['exit']})"
    if result.get("plan") is None:
        return "no plan"
    if n == 0:
        return "nothing to do"
    if result.get("dry_run"):
        return f"dry run: {moves} checked against the hosts, none started"
    done = (result.get("outcomes") or {}).get("done", 0)
    return f"{done} of {moves} done"


def _domains_headline(domains: dict[str, dict]) -> str:
    failed = [name for name, r in domains.items() if r.get("exit") != 0]
    if not failed:
        return f"{len(domains)} domain{'' if len(domains) == 1 else 's'}, all ok"
    which = "; ".join(f"{name}: {headline(domains[name])}" for name in failed[:5])
    more = f"; and {len(failed) - 5} more" if len(failed) > 5 else ""
    return f"{len(failed)} of {len(domains)} domains failed ({which}{more})"


def summary_text(result: dict, run_dir: Path) -> str:
    if result.get("domains"):
        out = f"vm-rebalance {result['run']}: {headline(result)}\n"
        for name, r in result["domains"].items():
            out += _domain_text(r, run_dir / name, f"== {name}: ")
        return out + f"took {result['seconds']:.0f} s; documents and logs in {run_dir}\n"
    return _domain_text(result, run_dir, f"vm-rebalance {result['run']}: ")


def _domain_text(result: dict, run_dir: Path, lead: str = "") -> str:
    lines = [f"{lead}{headline(result)}"]
    plan = result.get("plan")
    if plan:
        n = plan["migrations"]
        lines.append(f"  plan: {plan['objective']}, hosts in use {plan['hosts_before']} -> "
                     f"{plan['hosts_after']}, {n} migration{'' if n == 1 else 's'}, "
                     f"{_gib(plan['migrated_mib'])} to move; solver: {plan['solver_status']}")
        d = plan.get("deferred") or {}
        if d.get("migrations"):
            lines.append(f"  deferred to later runs: {d['migrations']} "
                         f"migration{'' if d['migrations'] == 1 else 's'}, "
                         f"{_gib(d.get('migrated_mib', 0))}")
    moves = result.get("moves") or []
    verb = "would move" if result.get("dry_run") else "move"
    for m in moves[:MAX_LISTED]:
        lines.append(f"    {verb} {m['vm']}: {m['from']} -> {m['to']} ({_gib(m['mem_mib'])})")
    if len(moves) > MAX_LISTED:
        lines.append(f"    ... and {len(moves) - MAX_LISTED} more (plan.json)")
    if result.get("outcomes"):
        lines.append("  apply: " + ", ".join(f"{n} {k}" for k, n in result["outcomes"].items())
                     + (" (dry run: checked, nothing moved)" if result.get("dry_run") else ""))
    for f in result.get("failures") or []:
        lines.append(f"    failed: {f['vm']} {f['from']} -> {f['to']}: {f['error']}")
    lines.append(f"  took {result['seconds']:.0f} s; documents and logs in {run_dir}")
    step = result.get("failed_step")
    if result.get("exit") and step:
        try:
            tail = (run_dir / f"{step}.log").read_text(errors="replace").splitlines()[-5:]
        except OSError:
            tail = []
        if tail:
            lines.append("  last lines of the failing step:")
            lines += [f"    {printable(line)}" for line in tail]
    return "\n".join(lines) + "\n"


def latest(archive: Path) -> tuple[Path, dict] | None:
    """The newest run directory under ``archive`` that has a result, and that result."""
    try:
        dirs = sorted((p for p in archive.iterdir() if p.is_dir() and p.name[:1].isdigit()),
                      key=lambda p: p.name, reverse=True)
    except OSError:
        return None
    for d in dirs:
        result = _load(d / RESULT, MAX_FILE_BYTES)
        if result is not None:
            return d, clean_result(result)
    return None


def describe_domains(run_dir: Path, names: list[str], exit_code: int, dry_run: bool,
                     started: float, finished: float) -> dict:
    """The result of a run over several domains: each one's own result (``NAME/result.json``,
    written when its pipeline ended; a domain without one failed before it could say)."""
    result = describe(run_dir, exit_code, None, dry_run, started, finished)
    domains = {}
    for name in names:
        own = _load(run_dir / name / RESULT, MAX_FILE_BYTES)
        domains[name] = own if own is not None else {
            "run": run_dir.name, "exit": 70, "failed_step": None, "dry_run": dry_run,
            "domain": name}
    result["domains"] = domains
    return clean_result(result)


def _finish(args: argparse.Namespace) -> int:
    run_dir = Path(args.dir)
    if args.domains:
        result = describe_domains(run_dir, args.domains, args.exit, args.dry_run,
                                  args.started, time.time())
        moved = any((r.get("plan") or {}).get("migrations")
                    for r in result["domains"].values())
    else:
        result = describe(run_dir, args.exit, args.step or None, args.dry_run, args.started,
                          time.time())
        if args.domain:
            result["domain"] = args.domain
            result = clean_result(result)
        moved = (result.get("plan") or {}).get("migrations")
    text = summary_text(result, run_dir)
    for name, data in ((RESULT, json.dumps(result, indent=2) + "\n"), ("summary.txt", text)):
        write_atomic(run_dir / name, data)
    if not args.silent and (not args.quiet or args.exit or moved):
        sys.stdout.write(text)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vmtools.runs")
    sub = parser.add_subparsers(dest="cmd", required=True)
    finish = sub.add_parser("finish", help="write result.json and summary.txt of a run")
    finish.add_argument("dir")
    finish.add_argument("--exit", type=int, default=0)
    finish.add_argument("--step", default="")
    finish.add_argument("--dry-run", action="store_true")
    finish.add_argument("--quiet", action="store_true")
    finish.add_argument("--started", type=float, required=True)
    finish.add_argument("--domain", default="", help="this run directory is one domain's")
    finish.add_argument("--silent", action="store_true", help="write, print nothing")
    finish.add_argument("--domains", nargs="+", default=[],
                        help="the run's domains, one directory each: write the whole run's")
    args = parser.parse_args(argv)
    return _finish(args)


if __name__ == "__main__":
    sys.exit(main())
