"""The summary and solver record of a plan merged from parts (:mod:`vmtools.planner.split`).

Counts add up over the parts (migrations, memory moved, pivots), worst utilisations are the
worst of any part, the estimated duration is the longest domain's (each domain's migrations
run side by side with the others'; the partitions of one domain share its ``--parallel``),
the host lower bound is the sum of the domains' (guests never cross a domain, so the sum is
one), a partitioned domain's bound computed over the whole domain. ``summary.parts`` says what
each part did; auto's summaries (steps, hotspots, consolidation, deferred, budget) are
merged: lists joined, counts added.
"""

from __future__ import annotations

import os
from typing import Any

from vmtools.model import Action, Snapshot
from vmtools.planner.options import Options
from vmtools.planner.parts import Part
from vmtools.planner.schedule import estimate_seconds

# summary keys whose values are recomputed or kept from the first part, not merged
_OWN = {"hosts_before", "hosts_after", "hosts_lower_bound", "migrations", "migrated_mib",
        "pivots", "estimated_seconds", "estimate_assumes", "worst_cpu_before",
        "worst_cpu_after", "worst_mem_before", "worst_mem_after", "frozen", "demand",
        "domains", "parts"}


def _merge_value(a: Any, b: Any) -> Any:
    if isinstance(a, bool) or isinstance(b, bool):
        return a or b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a + b
    if isinstance(a, list) and isinstance(b, list):
        return a + b
    if isinstance(a, dict) and isinstance(b, dict):
        out = dict(a)
        for k, v in b.items():
            out[k] = _merge_value(out[k], v) if k in out else v
        return out
    return a


def merged_summary(snap: Snapshot, opts: Options, parts: list[Part], results: dict,
                   placement: dict[str, str], actions: list[Action],
                   bounds: dict[str, int]) -> dict:
    """The whole plan's summary (see the module's docstring); ``bounds``: the lower bound of
    each partitioned domain, computed over the whole domain."""
    planned = [results[i] for i in sorted(results) if results[i].status == "planned"]
    sums = {k: sum(r.summary.get(k, 0) for r in planned)
            for k in ("migrations", "migrated_mib", "pivots")}
    domain_of = {h.name: h.domain for h in snap.hosts}
    by_domain: dict[str, list[Action]] = {}
    for a in actions:
        by_domain.setdefault(domain_of.get(a.src or a.dst or a.host, ""), []).append(a)
    estimate = max((estimate_seconds(acts, opts.bandwidth, opts.parallel)
                    for acts in by_domain.values()), default=0.0)
    summary: dict = {
        "hosts_before": len({v.host for v in snap.vms}),
        "hosts_after": len(set(placement.values())),
        "hosts_lower_bound": _bound(parts, results, bounds),
        **sums,
        "estimated_seconds": estimate,
        "estimate_assumes": {"bandwidth_mbit_s": opts.bandwidth, "parallel": opts.parallel},
    }
    for key in ("worst_cpu_before", "worst_cpu_after", "worst_mem_before", "worst_mem_after"):
        summary[key] = max((r.summary.get(key, 0.0) for r in planned), default=0.0)
    extra: dict = {}
    for r in planned:
        for k, v in r.summary.items():
            if k not in _OWN:
                extra[k] = _merge_value(extra[k], v) if k in extra else v
    summary.update(extra)
    summary["frozen"] = [f for r in planned for f in r.summary.get("frozen", [])]
    if planned and "demand" in planned[0].summary:
        summary["demand"] = planned[0].summary["demand"]
    on: dict[str, list[str]] = {}
    for v in snap.vms:
        on.setdefault(v.host, []).append(v.name)
    summary["parts"] = [_part_entry(p, results.get(i), placement, on)
                        for i, p in enumerate(parts)]
    return summary


def _bound(parts: list[Part], results: dict, bounds: dict[str, int]) -> int:
    """The sum over the domains of each one's bound: its part's, or for a partitioned domain
    the one computed over it whole; a part not planned counts one host if it has guests."""
    total = sum(bounds.values())
    for i, p in enumerate(parts):
        if p.domain in bounds and p.name != p.domain:
            continue
        r = results.get(i)
        if r is not None and r.status == "planned":
            total += int(r.summary.get("hosts_lower_bound") or 0)
        else:
            total += 1 if p.guests else 0
    return total


def _part_entry(part: Part, r: Any, placement: dict[str, str],
                on: dict[str, list[str]]) -> dict:
    guests = [v for h in part.hosts for v in on.get(h, ())]
    out: dict = {"name": part.name, "domain": part.domain, "hosts": len(part.hosts),
                 "guests": len(guests), "status": r.status if r is not None else "timeout",
                 "seconds": round(r.seconds, 2) if r is not None else 0.0,
                 "hosts_used_before": sum(1 for h in part.hosts if on.get(h)),
                 "hosts_used_after": len({placement[v] for v in guests})}
    if r is not None and r.status == "planned":
        out.update(solver_status=r.solver.get("status"), method=r.solver.get("method", ""),
                   migrations=r.summary.get("migrations", 0),
                   hosts_lower_bound=r.summary.get("hosts_lower_bound"))
    elif r is not None and r.status == "failed":
        out["error"] = r.error
    if out["status"] != "planned":
        out["left"] = "as it is: nothing of it moves"
    return out


def merged_solver(opts: Options, parts: list[Part], results: dict, status: str,
                  seconds: float, jobs: int, summary: dict) -> dict:
    planned = [results[i] for i in sorted(results) if results[i].status == "planned"]
    not_planned = len(parts) - len(planned)
    domains = len({p.domain for p in parts})
    what = f"{len(parts)} parts ({domains} migration domain{'s' if domains != 1 else ''}" \
        f"{', partitioned' if len(parts) > domains else ''}) in {jobs} process" \
        f"{'es' if jobs > 1 else ''}"
    if not_planned:
        what += f", {not_planned} left as they are (failed or out of time)"
    methods = sorted({r.solver.get("method", "") for r in planned} - {""})
    if methods:
        what += ": " + "; ".join(methods[:3]) + ("; ..." if len(methods) > 3 else "")
    bound = summary["hosts_lower_bound"]
    after = summary["hosts_after"]
    out = {"name": next((r.solver.get("name") for r in planned), opts.solver),
           "status": status, "seconds": round(seconds, 2),
           "build_seconds": round(sum(r.solver.get("build_seconds", 0) for r in planned), 2),
           "solve_seconds": round(sum(r.solver.get("solve_seconds", 0) for r in planned), 2),
           "order_seconds": round(sum(r.solver.get("order_seconds", 0) for r in planned), 3),
           "gap": None, "hosts_lower_bound": bound, "method": what,
           "parts": len(parts), "jobs": jobs,
           "workers": len({r.pid for r in results.values()} - {os.getpid()}),
           "worker_peak_mib": _peak(results) if jobs > 1 else None}
    if opts.objective == "consolidate":
        out.update(hosts_method=f"{len(parts)} parts", hosts_proven=after <= bound,
                   bound_method="the domains' bounds added up")
        if after > bound:
            out["gap"] = round((after - bound) / max(1, after), 4)
    return out


def _peak(results: dict) -> float:
    """The memory the worker processes held at their peak, added up (MiB)."""
    per: dict[int, float] = {}
    for r in results.values():
        per[r.pid] = max(per.get(r.pid, 0.0), r.peak_mib)
    return round(sum(per.values()), 1)


__all__ = ["merged_summary", "merged_solver"]
