"""Planning in sub-problems: each migration domain (and each partition of a large one, see
:mod:`vmtools.planner.parts`) planned on its own, in ``jobs`` worker processes, the plans merged
into one and that one checked whole by the replay checker before it is returned.

Time: the parts share what the run's deadline leaves (:meth:`Deadline.for_run`: the reserve
for merging, checking and writing the whole plan is kept back). The parts are dealt to
``jobs`` lanes, largest first, each lane to the one with the fewest guests so far; in its
lane a part gets the time left in proportion to its guests among the lane's parts not yet
planned. A part that fails (its plan raises: no placement, a rule it cannot hold) or is not
back by the deadline (plus a grace: :data:`GRACE_FRACTION` of the limit, at least
:data:`GRACE_SECONDS`; its process is then stopped) leaves its hosts and guests as they are,
and the summary says so; the other parts keep their plans.

Budget (auto's ``max_migrations``, ``max_moved``, ``max_duration``): each migration domain
has all of it, as its migrations run side by side with the other domains' (vm-apply runs and
locks each domain apart); auto is never partitioned inside a domain.

``jobs`` 1 plans the parts one after the other in this process; more starts that many
processes (forked: the snapshot is not copied), never more than there are parts. The same
parts get the same shares either way, so a plan found within its share is the same.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import queue as queue_mod
import resource
import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable

from vmtools.errors import (DataError, InternalError, OperationFailed, TemporaryFailure,
                           Unavailable, UsageError, VmtoolsError)
from vmtools.model import Action, Plan, Snapshot
from vmtools.planner import scratch
from vmtools.planner.deadline import Deadline
from vmtools.planner.options import Options
from vmtools.planner.merge import merged_solver, merged_summary
from vmtools.planner.plan import lower_bound_of, precheck
from vmtools.planner.parts import Part, split_parts, sub_constraints, sub_snapshot
from vmtools.rules.check import check_plan
from vmtools.rules.constraints import Constraints

log = logging.getLogger("vmtools.planner")

# A part is given this much of its share of the time left in its lane: what a part does
# past its search (its instance, ordering its moves, its summary) overran the share by
# seconds on a loaded machine, and the lane's last part then came back after the deadline.
SHARE = 0.75
GRACE_FRACTION = 0.05
GRACE_SECONDS = 1.0
RANK = {"optimal": 0, "feasible": 1, "heuristic": 2}


@dataclass
class PartResult:
    """What one part's planning gave: ``status`` planned, failed or timeout; its plan's
    placement, actions, solver and summary (planned), or the error (failed)."""

    index: int
    status: str = "timeout"
    placement: dict[str, str] = field(default_factory=dict)
    actions: list[Action] = field(default_factory=list)
    solver: dict = field(default_factory=dict)
    summary: dict = field(default_factory=dict)
    explain: dict | None = None
    error: str = ""
    error_raw: str = ""                 # the message with its settings as {name}
    error_settings: tuple[str, ...] = ()
    exit_code: int = 0
    seconds: float = 0.0
    pid: int = 0
    peak_mib: float = 0.0

    def failed_with(self, exc: VmtoolsError) -> None:
        self.status, self.error, self.exit_code = "failed", str(exc), exc.exit_code
        self.error_raw, self.error_settings = Exception.__str__(exc), exc.settings

    def raise_error(self) -> None:
        """The part's error again (its exit code, its settings shown as flags)."""
        kind = next((k for k in (DataError, TemporaryFailure, OperationFailed, Unavailable,
                                 UsageError) if k.exit_code == self.exit_code), InternalError)
        exc = kind.__new__(kind)
        VmtoolsError.__init__(exc, self.error_raw, settings=self.error_settings)
        if isinstance(exc, DataError):
            exc.message, exc.where = self.error_raw, None
        raise exc


def lanes(parts: list[Part], jobs: int) -> list[list[int]]:
    """Part indexes dealt to at most ``jobs`` lanes: largest first, each to the lane with the
    fewest guests so far (ties: the first lane)."""
    n = max(1, min(jobs, len(parts)))
    out: list[list[int]] = [[] for _ in range(n)]
    load = [0] * n
    for i in sorted(range(len(parts)), key=lambda i: (-parts[i].guests, i)):
        k = min(range(n), key=lambda j: (load[j], j))
        out[k].append(i)
        load[k] += max(1, parts[i].guests)
    return [lane for lane in out if lane]


def plan_parts(snap: Snapshot, cons: Constraints, opts: Options, jobs: int,
               make: Callable[[Snapshot, Constraints, Options], Plan]) -> Plan:
    """``make``'s plan for ``snap``, by parts when it splits (:func:`split_parts`), else
    ``make(snap, cons, opts)`` itself."""
    parts = split_parts(snap, cons, opts.objective)
    if len(parts) < 2:
        return make(snap, cons, opts)
    from vmtools.planner.solve import check_solver
    started = time.monotonic()
    precheck(snap, opts)            # on the whole snapshot, as one model would
    check_solver(opts.solver)
    deadline = Deadline.for_run(opts.time_limit, len(snap.vms), opts.facts.started)
    work = _Work(snap, cons, opts, parts, make, deadline)
    bounds: dict[str, int] = {}
    results = work.run(lanes(parts, jobs), lambda: bounds.update(_domain_bounds(work)))
    plan = merge(snap, cons, opts, parts, results, bounds, time.monotonic() - started,
                 min(jobs, len(parts)))
    return plan


def _domain_bounds(work: "_Work") -> dict[str, int]:
    """The host lower bound of each partitioned domain, over the whole domain (the
    partitions' bounds added up are no bound: a guest could go to another partition)."""
    out = {}
    cut = sorted({p.domain for p in work.parts if p.name != p.domain})
    for domain in cut:
        hosts = [h for p in work.parts if p.domain == domain for h in p.hosts]
        sub = sub_snapshot(work.snap, hosts) if len(cut) > 1 or \
            len(hosts) < len(work.snap.hosts) else work.snap
        try:
            out[domain] = lower_bound_of(sub, sub_constraints(work.cons, sub)
                                         if sub is not work.snap else work.cons,
                                         work.opts, 1.0)
        except VmtoolsError as exc:        # the parts say why; the bound is then theirs
            log.info("no lower bound for domain %s: %s", domain or "(none)", exc)
    return out


class _Work:
    """The parts of one run and how to plan each (in this process or a forked one)."""

    def __init__(self, snap, cons, opts, parts, make, deadline: Deadline):
        self.snap, self.cons, self.opts, self.parts = snap, cons, opts, parts
        self.make, self.deadline = make, deadline

    def one(self, i: int, share: float) -> PartResult:
        part = self.parts[i]
        t0 = time.monotonic()
        out = PartResult(index=i, pid=os.getpid())
        try:
            sub = sub_snapshot(self.snap, part.hosts)
            cons = sub_constraints(self.cons, sub)
            # broken monitoring was judged on the whole snapshot (plan_parts' caller): a
            # part holding most of the frozen hosts is not refused for it
            opts = replace(self.opts, time_limit=max(share, 0.1), max_frozen=1.0,
                           facts=replace(self.opts.facts, started=t0))
            if part.name != part.domain:         # a partition is sized to be one model,
                # and its plan is checked once merged (each of 15 partitions of 10,000
                # guests checked, then the whole: about 5 s of CPU more than the whole)
                opts = replace(opts, group_size=max(opts.group_size, len(part.hosts)),
                               group_guests=max(opts.group_guests, part.guests), check=False)
            plan = self.make(sub, cons, opts)
        except VmtoolsError as exc:
            log.warning("%s: not planned, left as it is: %s", _label(part), exc)
            out.failed_with(exc)
        except Exception as exc:                       # noqa: BLE001 - one part's bug
            log.exception("%s failed", _label(part))
            out.failed_with(InternalError(f"internal error: {exc}"))
        else:
            out.status, out.placement, out.actions = "planned", plan.placement, plan.actions
            out.solver, out.summary, out.explain = plan.solver, plan.summary, plan.explain
        out.seconds = time.monotonic() - t0
        log.info("%s (%d guests on %d hosts): %s in %.1f s of %.1f", _label(part), part.guests,
                 len(part.hosts), out.status, out.seconds, share)
        out.peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        return out

    def lane(self, lane: list[int], put: Callable[[PartResult], None]) -> None:
        left = sum(max(1, self.parts[i].guests) for i in lane)
        for i in lane:
            weight = max(1, self.parts[i].guests)
            if self.deadline.passed():
                put(PartResult(index=i, status="timeout", pid=os.getpid()))
            else:
                put(self.one(i, SHARE * self.deadline.left() * weight / left))
            left -= weight

    def run(self, plan_lanes: list[list[int]], meanwhile: Callable[[], None]
            ) -> dict[int, PartResult]:
        """Each part's result, by index (a part missing was not back in time);
        ``meanwhile`` runs in this process while the workers plan."""
        results: dict[int, PartResult] = {}
        if len(plan_lanes) == 1:
            self.lane(plan_lanes[0], lambda r: results.__setitem__(r.index, r))
            meanwhile()
            return results
        ctx = multiprocessing.get_context("fork")
        q = ctx.Queue()
        procs = [ctx.Process(target=_lane_main, args=(self, lane, q), daemon=True)
                 for lane in plan_lanes]
        for p in procs:
            p.start()
        meanwhile()
        limit = self.opts.time_limit
        hard = self.deadline.at + max(GRACE_SECONDS, GRACE_FRACTION * limit)
        want = sum(len(lane) for lane in plan_lanes)
        while len(results) < want:
            wait = hard - time.monotonic()
            if wait <= 0:
                break
            try:
                r = q.get(timeout=min(wait, 1.0))
            except queue_mod.Empty:
                if not any(p.is_alive() for p in procs) and q.empty():
                    break
                continue
            results[r.index] = r
        for p in procs:
            if p.is_alive():
                p.terminate()
            p.join(timeout=5)
        return results


def _label(part: Part) -> str:
    return f"domain {part.name}" if part.name == part.domain else f"partition {part.name}"


def _lane_main(work: _Work, lane: list[int], q: Any) -> None:
    """A worker process: plan its lane's parts, each result onto the queue as it is ready;
    its solver's files in a directory of its own, removed (and its solver killed) when it
    ends or is stopped."""
    scratch.in_worker()
    try:
        work.lane(lane, q.put)
    finally:
        scratch.cleanup()


def merge(snap: Snapshot, cons: Constraints, opts: Options, parts: list[Part],
          results: dict[int, PartResult], bounds: dict[str, int], seconds: float,
          jobs: int) -> Plan:
    """One plan from the parts' (a part not planned stays as it is), checked whole."""
    placement = snap.guest_hosts()
    actions: list[Action] = []
    explain: dict | None = {} if opts.explain else None
    status = "optimal"
    for i, part in enumerate(parts):
        r = results.get(i) or PartResult(index=i)
        if r.status != "planned":
            status = "heuristic"
            continue
        placement.update(r.placement)
        offset = len(actions)
        renum = {a.id: offset + k + 1 for k, a in enumerate(r.actions)}
        actions += [replace(a, id=renum[a.id], after=[renum[x] for x in a.after])
                    for a in r.actions]
        if RANK.get(r.solver.get("status"), 2) > RANK[status]:
            status = r.solver.get("status", "heuristic")
        if explain is not None and r.explain:
            explain.update(r.explain)
    summary = merged_summary(snap, opts, parts, results, placement, actions, bounds)
    solver = merged_solver(opts, parts, results, status, seconds, jobs, summary)
    plan = Plan(origin=snap, placement=placement, actions=actions, objective=opts.objective,
                constraints=cons.to_list(), solver=solver, summary=summary, explain=explain)
    t0 = time.monotonic()
    try:
        check_plan(plan, cons)
        log.info("the plan of %d parts merged, checked whole in %.1f s", len(parts),
                 time.monotonic() - t0)
    except DataError as exc:
        # a part left as it is breaks a rule the whole plan must hold
        failed = [results[i] for i in sorted(results) if results[i].status == "failed"]
        if failed:
            failed[0].raise_error()              # its own error, as one model would
        late = [parts[i].name for i in range(len(parts))
                if i not in results or results[i].status != "planned"]
        if late:
            raise TemporaryFailure(f"out of time: {', '.join(late[:3])} not planned within "
                                   f"{{time_limit}}, and as it is it breaks a rule the plan "
                                   f"must keep ({exc.message}); give it more time",
                                   settings=("time_limit",)) from None
        raise InternalError(f"the plan merged from {len(parts)} parts failed vm-plan's own "
                            f"safety check and is not printed (a bug, please report it with "
                            f"the snapshot): {exc}") from None
    return plan


__all__ = ["plan_parts", "lanes", "merge", "PartResult"]
