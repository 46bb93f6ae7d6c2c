"""vm-web's actions: one-action plans built as vm-plan builds them, run as vm-apply runs them.

Every action is a plan of the manual operations (:mod:`vmtools.planner.manual`; an evacuation
is the planner's repair objective under a maintenance rule on the host, as vm-plan --evacuate),
checked by the replay checker under the rules, then executed by :func:`vmtools.apply.apply_plan`
with vm-apply's options. A :class:`Job` runs it in a thread and keeps its progress lines and
its report for the page.
"""

from __future__ import annotations

import itertools
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Callable

from vmtools.errors import DataError, OperationFailed, VmtoolsError
from vmtools.model import Action, Host, Plan, Snapshot, domain_of
from vmtools.rules.check import check_plan
from vmtools.rules.constraints import Constraints

# op -> (what the form asks, one line for the page)
OPS = {
    "migrate": "Live-migrate a guest to another host",
    "suspend": "Suspend a guest to its image (its memory is freed)",
    "resume": "Resume a suspended guest",
    "evacuate": "Evacuate a host once: move every guest off it (later plans may use it "
                "again)",
    "maintenance": "Put a host in maintenance: move every guest off it, and vm-plan "
                   "(vm-rebalance) sends it nothing until the maintenance ends",
    "end-maintenance": "End a host's maintenance: vm-plan may place guests on it again",
    "power-off": "Switch an empty host off",
    "power-on": "Switch a standby host on",
}
GUEST_OPS = ("migrate", "suspend")
HOST_OPS = ("evacuate", "maintenance", "end-maintenance", "power-off", "power-on")


@dataclass
class PlanSettings:
    """What vm-plan would be told: the rules (a vmtools.constraints document already read),
    the image directory, the suspended-guests ledger and vm-plan's state directory."""

    constraints: dict | None = None
    image_dir: str = "/var/lib/xen/save"
    ledger: Callable[[], dict] = dict         # name -> entry (vm-apply's ledger, read now)
    # name -> vm-plan's standby record (its state), of the snapshot's domains
    standby: Callable[[Snapshot], dict] = lambda snap: {}
    # host -> since: the hosts in maintenance, of the snapshot's domains
    maintenance: Callable[[Snapshot], dict] = lambda snap: {}
    # vm-plan's --state (where maintenance is kept; a host of a domain with its own
    # directory there, STATE_DIR/NAME, in that one: :func:`host_state_dir`)
    state_dir: str | None = None
    time_limit: float = 30.0


def build_plan(snap: Snapshot, settings: PlanSettings, op: str, target: str,
               dst: str | None = None) -> Plan:
    """The one-action plan of ``op`` on ``target`` (a guest or a host), checked. A guest's
    operations and an evacuation go through the planner's front door as vm-plan's manual
    operations (``--migrate``, ``--suspend``, ``--resume``, ``--evacuate``); switching a host
    off or on is one power action checked by the same checker. DataError or OperationFailed,
    with the checker's reason, when it cannot be."""
    from vmtools.planner.front import Documents, constraints_of, plan_run
    from vmtools.planner.scratch import solver_guard
    from vmtools.planner.settings import settings_from
    docs = Documents(snapshot=snap, constraints=settings.constraints,
                     constraints_name="the rules (--constraints)",
                     maintenance=settings.maintenance(snap))
    if op in ("maintenance", "end-maintenance"):
        if not settings.state_dir:
            raise OperationFailed("vm-web has no vm-plan state directory (see vm-web(1)): "
                                  "nowhere to keep the hosts in maintenance")
        if not any(h.name == target for h in snap.hosts):
            raise DataError(f"no host {target} in the snapshot", target)
        if op == "end-maintenance":
            return _end_maintenance_plan(snap, docs, target)
        if target in docs.maintenance:
            raise OperationFailed(f"{target} is already in maintenance")
        docs.maintenance = dict(docs.maintenance, **{target: ""})
    if op in ("power-off", "power-on"):
        return _power_plan(snap, constraints_of(docs, False, []), settings, op, target)
    if op == "migrate":
        if not dst:
            raise DataError("choose the host to migrate to", "dst")
        manual = {"migrate": f"{target}:{dst}"}
    elif op == "resume":
        docs.suspended, docs.suspended_path = settings.ledger(), "vm-apply's ledger"
        manual = {"resume": f"{target}:{dst}" if dst else target}
    elif op in ("suspend", "evacuate"):
        manual = {op: target}
    elif op == "maintenance":
        manual = {"evacuate": target}
    else:
        raise DataError(f"unknown action {op!r}", "op")
    if op == "maintenance" and not any(v.host == target for v in snap.vms):
        plan = _empty_plan(snap, constraints_of(docs, False, []), f"put {target} in "
                           "maintenance (it runs no guest: nothing moves)")
    else:
        with solver_guard(every_child=False):
            plan = plan_run(docs, settings_from(manual, image_dir=settings.image_dir,
                                                time_limit=settings.time_limit)).plan
        if not plan.actions:
            raise OperationFailed(f"cannot {op} {target}: the planner found nothing to do")
    if op == "maintenance":
        plan.summary["manual"] = f"put {target} in maintenance"
        plan.summary["maintenance"] = {"host": target, "on": True}
    return plan


def _empty_plan(snap: Snapshot, cons: Constraints, what: str) -> Plan:
    return Plan(origin=snap, placement=snap.guest_hosts(), actions=[],
                objective="manual", constraints=cons.to_list(),
                summary={"manual": what, "actions": 0, "migrations": 0, "migrated_mib": 0},
                solver={"name": "manual", "status": "feasible", "method": what})


def _end_maintenance_plan(snap: Snapshot, docs, host: str) -> Plan:
    """Nothing moves: the host leaves DIR/maintenance.json when it runs (and, on a XAPI
    pool, is enabled again). A host the platform holds disabled by itself is the platform's."""
    from vmtools.planner.front import constraints_of
    if host not in docs.maintenance:
        raise OperationFailed(f"{host} is not in maintenance (vm-plan's state directory "
                              "has no record of it)")
    docs.maintenance = {h: s for h, s in docs.maintenance.items() if h != host}
    plan = _empty_plan(snap, constraints_of(docs, False, []), f"end the maintenance of {host}")
    plan.summary["maintenance"] = {"host": host, "on": False}
    return plan


def _power_plan(snap: Snapshot, cons: Constraints, settings: PlanSettings, op: str,
                host: str) -> Plan:
    what = f"switch {host} {'off' if op == 'power-off' else 'on'}"
    origin = snap
    if op == "power-on":
        standby = settings.standby(snap)
        if host not in standby:
            raise OperationFailed(f"cannot {what}: vm-plan's state does not have it in standby")
        if any(h.name == host for h in snap.hosts if h.state == "online"):
            raise OperationFailed(f"cannot {what}: it is online")
        rec = standby[host]
        if not rec.get("cpu") or not rec.get("mem_mib"):
            raise OperationFailed(f"cannot {what}: its size is not recorded")
        # the host as vm-plan recorded it when it went off (its transport included)
        origin = replace(snap, hosts=[h for h in snap.hosts if h.name != host] + [Host(
            name=host, cluster=rec.get("cluster") or "", domain=domain_of(rec),
            state="standby", cpu=rec["cpu"],
            mem_mib=int(rec["mem_mib"]), net_mbps=rec.get("net_mbps"),
            hypervisor=rec.get("hypervisor") or "", migration=rec.get("migration") or "")])
    elif not any(h.name == host for h in snap.hosts):
        raise DataError(f"no host {host} in the snapshot", host)
    elif any(v.host == host for v in snap.vms):
        raise OperationFailed(f"cannot {what}: it runs guests (evacuate it first)")
    placement = origin.guest_hosts()
    plan = Plan(origin=origin, placement=placement,
                actions=[Action(id=1, op=op, vm="", src="", dst="", mem_mib=0, host=host,
                                reason=f"manual: {what}")],
                objective="manual", constraints=cons.to_list(),
                summary={"manual": what, "actions": 1, "migrations": 0, "migrated_mib": 0},
                solver={"name": "manual", "status": "feasible", "method": what})
    try:
        check_plan(plan, cons)
    except DataError as exc:
        raise OperationFailed(f"cannot {what}: {exc.message}") from None
    return plan


@dataclass
class Job:
    """One plan: pending (shown, not confirmed), then running, then done (with its report)."""

    id: int
    plan: Plan
    what: str
    created: float = field(default_factory=time.time)
    state: str = "pending"            # pending, running, done, failed, cancelled
    lines: list[str] = field(default_factory=list)
    report: dict | None = None
    error: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def progress(self, line: str) -> None:
        with self.lock:
            self.lines.append(line)
            del self.lines[:-500]

    def view(self) -> dict:
        with self.lock:
            return {"id": self.id, "state": self.state, "what": self.what,
                    "lines": list(self.lines), "error": self.error,
                    "report": self.report}

    def moving(self) -> dict[str, str]:
        """guest -> destination, for the migrations of a running job."""
        if self.state != "running":
            return {}
        return {a.vm: a.dst for a in self.plan.actions if a.op == "migrate"}


class Jobs:
    """The plans vm-web made, newest last (at most ``keep``); one runs at a time."""

    def __init__(self, execute: Callable[[Plan, Callable[[str], None]], dict], keep: int = 50):
        self._execute = execute
        self._ids = itertools.count(1)
        self._keep = keep
        self._lock = threading.Lock()
        self.jobs: dict[int, Job] = {}

    def add(self, plan: Plan) -> Job:
        with self._lock:
            job = Job(next(self._ids), plan, str(plan.summary.get("manual") or "plan"))
            self.jobs[job.id] = job
            for old in sorted(self.jobs)[:-self._keep]:
                if self.jobs[old].state != "running":
                    del self.jobs[old]
            return job

    def get(self, job_id: int) -> Job | None:
        return self.jobs.get(job_id)

    def running(self) -> list[Job]:
        return [j for j in list(self.jobs.values()) if j.state == "running"]

    def start(self, job: Job) -> None:
        """Run ``job`` now (OperationFailed when another runs or it is no longer pending)."""
        with self._lock:
            if job.state != "pending":
                raise OperationFailed(f"plan {job.id} is {job.state}; it runs only once")
            if self.running():
                raise OperationFailed("another plan is running; wait for its report")
            job.state = "running"
        threading.Thread(target=self._run, args=(job,), name=f"vm-web job {job.id}",
                         daemon=True).start()

    def _run(self, job: Job) -> None:
        try:
            report = self._execute(job.plan, job.progress)
            failed = report.get("summary", {}).get("failed") or \
                report.get("summary", {}).get("not-run")
            with job.lock:
                job.report = report
                job.state = "failed" if failed else "done"
        except VmtoolsError as exc:
            with job.lock:
                job.error, job.state = str(exc), "failed"
        except Exception as exc:        # a bug must not leave the job "running" for ever
            with job.lock:
                job.error, job.state = f"internal error: {type(exc).__name__}: {exc}", "failed"


def host_state_dir(state_dir: str, plan: Plan, host: str) -> str:
    """Where vm-plan of ``host``'s migration domain keeps its state: STATE_DIR/NAME when
    that domain has its own directory (vm-rebalance with DOMAINS), else STATE_DIR."""
    from vmtools.state import domain_dirs
    domain = next((h.domain for h in plan.origin.hosts if h.name == host), "")
    return domain_dirs(state_dir, [domain]).get(domain, state_dir)


def record_power(state_dir: str | None, plan: Plan, report: dict,
                 now: float | None = None) -> list[str]:
    """After a run: a host the page switched off is standby in vm-plan's state (with its
    capacity, as vm-plan records its own), so vm-plan and vm-status know it is off on
    purpose and the page can switch it on again; a host switched on is waking until it
    reports. Only actions the report says are done count. Returns the hosts recorded."""
    done = {a.get("id") for a in report.get("actions", []) if a.get("outcome") == "done"}
    power = [a for a in plan.actions if a.is_power and a.id in done]
    if not state_dir or not power:
        return []
    from vmtools.state import state_lock
    mine: dict[str, list] = {}          # each host in its own domain's state
    for a in power:
        mine.setdefault(host_state_dir(state_dir, plan, a.host), []).append(a)
    for where, actions in sorted(mine.items()):
        with state_lock(where):         # a vm-plan run meanwhile keeps what it read
            _record_power(where, plan, actions, time.time() if now is None else now)
    return [a.host for a in power]


def _record_power(state_dir: str, plan: Plan, power: list, now: float) -> None:
    from vmtools.state import read_state, write_state
    state = read_state(state_dir)
    hosts = {h.name: h for h in plan.origin.hosts}
    for a in power:
        h = hosts[a.host]
        if a.op == "power-off":
            state.power.standby[a.host] = {
                "cluster": h.cluster, "domain": h.domain, "cpu": h.cpu, "mem_mib": h.mem_mib,
                "net_mbps": h.net_mbps, "hypervisor": h.hypervisor,
                "migration": h.migration, "since": now}
            state.power.empty_since.pop(a.host, None)
        else:
            rec = state.power.standby.pop(a.host, None) or {
                "cluster": h.cluster, "domain": h.domain, "cpu": h.cpu,
                "mem_mib": h.mem_mib}
            state.power.waking[a.host] = {**rec, "since": now}
    write_state(state_dir, state)


def record_maintenance(state_dir: str | None, plan: Plan, progress: Callable[[str], None],
                       platform: Callable[[str, bool], str] | None = None) -> None:
    """A maintenance plan's lasting part: before its evacuation runs, the host goes into
    ``DIR/maintenance.json`` (so no vm-rebalance run meanwhile sends a guest back, and it
    stays so whatever the evacuation's outcome: vm-plan carries it on); ending it takes the
    host out. ``platform(host, on)`` (a XAPI pool: ``host.disable``, ``host.enable``) tells the
    platform too; its failure is a warning line (the record stands)."""
    what = plan.summary.get("maintenance")
    if not isinstance(what, dict) or not state_dir:
        return
    import os
    from vmtools.maintenance import MAINTENANCE_FILE, set_maintenance
    host, on = what["host"], bool(what["on"])
    state_dir = host_state_dir(state_dir, plan, host)
    os.makedirs(state_dir, exist_ok=True)
    set_maintenance(state_dir, host, on)
    where = os.path.join(state_dir, MAINTENANCE_FILE)
    if on:
        progress(f"{host}: in maintenance, recorded in {where} (vm-plan --state obeys it)")
    else:
        progress(f"{host}: maintenance ended, removed from {where}")
    if platform is not None:
        try:
            progress(f"{host}: {platform(host, on)}")
        except VmtoolsError as exc:
            progress(f"warning: {host}: {'host.disable' if on else 'host.enable'} failed: "
                     f"{exc}")
