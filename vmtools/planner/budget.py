"""The budget of one cron run (``--max-migrations``, ``--max-moved``, ``--max-duration``) and
the prefix of the policy's steps that fits it.

Steps come in priority order (:mod:`vmtools.planner.policy`). A repair is always taken (a
plan's target must obey the rules; the repair step keeps its overload repairs within the
budget itself, :func:`vmtools.planner.policy._repair`). Every other step is taken while
the totals stay within the budget; a step that does not fit is deferred, and so is every
later step that touches a host a deferred step touches, since that later step was computed
on the placement the deferred one leaves. What is taken is therefore a placement the steps'
own computation saw, and the next run carries on from wherever the cluster then is.

The duration is estimated as vm-plan's summary does (:func:`~vmtools.planner.schedule.
estimate_seconds`): each migration takes a second plus its memory over ``--bandwidth``,
``--parallel`` at a time. Before the moves are ordered that is approximated without their
``after`` links; :func:`fit_duration` then trims steps from the end while the ordered plan
is still too long.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from vmtools.rules.load import migration_seconds


@dataclass
class Step:
    """One step of the policy's way to its target (:mod:`vmtools.planner.policy`): the
    budget takes or defers steps whole."""
    kind: str                     # repair, relieve, consolidate
    label: str                    # what a person reads: "empty node7"
    moves: dict[int, int]         # guest -> destination host
    mib: float
    hosts: set[int]               # every host the step touches
    reason: str                   # the reason each of its actions carries
    urgent: set[int] = field(default_factory=set)   # guests whose move ends an overload now


@dataclass
class Budget:
    max_migrations: int | None = 40
    max_moved_mib: float | None = 50 * 1024
    max_seconds: float | None = 240.0
    bandwidth: float = 1000.0
    parallel: int = 2

    def to_dict(self) -> dict:
        return {"max_migrations": self.max_migrations,
                "max_moved_mib": None if self.max_moved_mib is None else round(self.max_moved_mib),
                "max_seconds": self.max_seconds}

    def over(self, mibs: list[float]) -> str | None:
        """Which limit moves of these sizes break, all in one run, or None."""
        if self.max_migrations is not None and len(mibs) > self.max_migrations:
            return f"--max-migrations {self.max_migrations}"
        if self.max_moved_mib is not None and sum(mibs) > self.max_moved_mib + 1e-6:
            return f"--max-moved {self.max_moved_mib / 1024:g} GiB"
        if self.max_seconds is not None and self.seconds(mibs) > self.max_seconds:
            return f"--max-duration {self.max_seconds / 60:g} min"
        return None

    def seconds(self, mibs: list[float]) -> float:
        """Duration of moves of these sizes, ``parallel`` at a time, longest first."""
        workers = [0.0] * max(1, self.parallel)
        for mib in sorted(mibs, reverse=True):
            i = min(range(len(workers)), key=lambda k: workers[k])
            workers[i] += migration_seconds(mib, self.bandwidth)
        return max(workers) if mibs else 0.0


@dataclass
class Choice:
    taken: list[Step] = field(default_factory=list)
    deferred: list[Step] = field(default_factory=list)
    why: dict[int, str] = field(default_factory=dict)      # id(step) -> why deferred

    def summary(self) -> dict:
        return {"steps": len(self.deferred),
                "migrations": sum(len(s.moves) for s in self.deferred),
                "migrated_mib": round(sum(s.mib for s in self.deferred))}


def choose(steps: list[Step], budget: Budget, mem: dict[int, float]) -> Choice:
    """The steps of ``steps`` that one run takes (see the module docstring). ``mem``: each
    guest's memory in MiB."""
    out = Choice()
    sizes: list[float] = []
    blocked: set[int] = set()
    for s in steps:
        if s.kind == "repair":
            out.taken.append(s)
            sizes += [mem[v] for v in s.moves]
            continue
        if s.hosts & blocked:
            out.deferred.append(s)
            out.why[id(s)] = "waits for a deferred step on the same hosts"
            blocked |= s.hosts
            continue
        new_sizes = sizes + [mem[v] for v in s.moves]
        over = budget.over(new_sizes)
        if over is not None:
            out.deferred.append(s)
            out.why[id(s)] = f"budget spent ({over})"
            blocked |= s.hosts
            continue
        out.taken.append(s)
        sizes = new_sizes
    return out


def fit_duration(choice: Choice, too_long: bool) -> bool:
    """Defer the last non-repair step taken when the ordered plan ran over ``--max-duration``;
    False when there is nothing left to defer."""
    if not too_long:
        return False
    for i in range(len(choice.taken) - 1, -1, -1):
        s = choice.taken[i]
        if s.kind != "repair":
            del choice.taken[i]
            choice.deferred.insert(0, s)
            choice.why[id(s)] = "budget spent (--max-duration, once ordered)"
            return True
    return False


def unlimited(value: float | None) -> float | None:
    """0 (or less) on the command line means no limit."""
    return None if value is None or value <= 0 or math.isinf(value) else value
