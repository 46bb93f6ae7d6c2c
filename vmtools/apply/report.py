"""What a vm-apply run reports (vmtools-formats(5), REPORT): each action's outcome, and the
summary of them all."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass

from vmtools.apply.journal import iso
from vmtools.model import Action, Plan, Report, document_digest
from vmtools.text import printable


@dataclass
class Outcome:
    """How one action ended: done, failed, skipped (dry run) or not-run."""

    action: Action
    outcome: str
    started: float | None = None
    ended: float | None = None
    error: str | None = None
    where: str | None = None
    transport: str = ""
    from_journal: bool = False

    def to_dict(self) -> dict:
        a = self.action
        d = {"id": a.id, "op": a.op, "host": a.host} if a.is_power else \
            {"id": a.id, "op": a.op, "vm": a.vm, "src": a.src, "dst": a.dst,
             "mem_mib": a.mem_mib}
        if a.is_lifecycle:
            d["image" if a.op != "create" else "config"] = a.image or a.config
        d.update({"outcome": self.outcome,
                  "started": iso(self.started) if self.started else None,
                  "ended": iso(self.ended) if self.ended else None,
                  "seconds": round(self.ended - self.started, 3)
                  if self.started and self.ended else None,
                  "transport": self.transport,
                  "error": None if self.error is None else printable(self.error),
                  "where": None if self.where is None else printable(self.where)})
        if self.from_journal:
            d["from_journal"] = True
        return d


def make_report(plan: Plan, outcomes: dict[int, Outcome], placement: dict[str, str | None],
                problems: list[str], started: float, parallel: int, per_host: int,
                interrupted: str | None, dry_run: bool, domains: dict[int, str] | None = None,
                stopped: dict[str, str] | None = None) -> Report:
    """The Report of a run that began at ``started``: one entry per action of ``plan``, in
    the plan's order (every action has an outcome by now), and the summary; with
    ``domains`` (each action's migration domain) naming several, the summary's ``domains``
    says per domain what happened (``stopped``: why a domain started nothing new)."""
    entries = [outcomes[a.id].to_dict() for a in plan.actions]
    counts = Counter(e["outcome"] for e in entries)
    done_mib = sum(e.get("mem_mib", 0) for e in entries
                   if e["outcome"] == "done" and e["op"] == "migrate")
    end = time.time()
    summary = {"actions": len(entries), "done": counts["done"], "failed": counts["failed"],
               "skipped": counts["skipped"], "not-run": counts["not-run"],
               "migrated_mib": done_mib, "started": iso(started), "ended": iso(end),
               "seconds": round(end - started, 3), "parallel": parallel,
               "per_host": per_host, "interrupted": interrupted,
               "problems": [printable(p) for p in problems],
               "power_off": sorted(e["host"] for e in entries if e["op"] == "power-off"
                                   and e["outcome"] == "done"),
               "power_on": sorted(e["host"] for e in entries if e["op"] == "power-on"
                                  and e["outcome"] == "done")}
    for op, key in (("suspend", "suspended"), ("resume", "resumed"), ("create", "created"),
                    ("checkpoint", "checkpointed")):
        names = sorted(e["vm"] for e in entries if e["op"] == op and e["outcome"] == "done")
        if names:
            summary[key] = names
    if domains and len(set(domains.values())) > 1:
        summary["domains"] = per_domain(entries, domains, stopped or {})
    return Report(plan_digest=document_digest(plan.to_dict()), actions=entries,
                  placement=placement, summary=summary, dry_run=dry_run)


def per_domain(entries: list[dict], domains: dict[int, str], stopped: dict[str, str]) -> dict:
    """Per migration domain (by name): its actions and how they ended, the MiB migrated, and
    why it started nothing new (``stopped``, else null)."""
    out: dict[str, dict] = {}
    for e in entries:
        d = out.setdefault(domains[e["id"]], {"actions": 0, "done": 0, "failed": 0,
                                              "skipped": 0, "not-run": 0, "migrated_mib": 0})
        d["actions"] += 1
        d[e["outcome"]] += 1
        if e["outcome"] == "done" and e["op"] == "migrate":
            d["migrated_mib"] += e.get("mem_mib", 0)
    for name, d in out.items():
        d["stopped"] = printable(stopped[name]) if name in stopped else None
    return {printable(name): out[name] for name in sorted(out)}
