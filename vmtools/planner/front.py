"""The planner's front door: one call from the documents, the settings and the state to a plan
and the new state.

:func:`plan_run` is what vm-plan's command line and vm-replay both call. It reads no file,
writes no file and starts no process of its own (the solver it runs excepted): the command
reads the documents (:class:`Documents`) and the state (:func:`vmtools.state.read_state`),
and writes the plan and the state afterwards. The settings are a checked
:class:`~vmtools.planner.settings.PlanSettings` (:func:`~vmtools.planner.settings.settings_from`).

The state is updated in place and also returned: what a run observed (hot hosts, moves, CPU
samples, hosts found off) stays observed even when the run then fails, so a command saves it
in a ``finally``.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any

from vmtools.drivers.hostmap import HostEntry
from vmtools.errors import DataError, OptionError
from vmtools.model import CONSTRAINTS_FORMAT, VM, Plan, Snapshot, check_envelope
from vmtools.planner.demand import parse_demand
from vmtools.planner.options import Options
from vmtools.planner.plan import make_plan, plan_with_memory
from vmtools.planner.split import plan_parts
from vmtools.planner.power import PowerOptions
from vmtools.planner.settings import as_dict, hotspot_window, manual_operation, settings_from
from vmtools.power_model import PowerModel
from vmtools.maintenance import maintenance_rules
from vmtools.planner.domains import note_domains
from vmtools.planner.loads import note_loads
from vmtools.rules.constraints import (Constraints, fence_domains, parse_constraints,
                                       parse_rules)
from vmtools.state import State


@dataclass
class Documents:
    """What a run plans from, as read: the snapshot; the vmtools.constraints document (its
    JSON, parsed against each snapshot; None: no rules) and the name it came from; the host
    map (None: none given); the power model (None: none)."""

    snapshot: Snapshot
    constraints: Any = None
    constraints_name: str = "constraints"
    hosts: dict[str, HostEntry] | None = None
    power_model: PowerModel | None = None
    guests: Any = None                  # --add: the vmtools.guests document's JSON
    guests_name: str = "guests"
    suspended: dict | None = None       # --resume, --context-switch: vm-apply's ledger
    suspended_path: str = ""
    maintenance: dict[str, str] = field(default_factory=dict)   # --state DIR's hosts in it

    def standing_rules(self) -> list:
        """The rules that stand apart from the operator's document: the platform's (the
        snapshot's, a XAPI pool's) and the hosts in maintenance (DIR/maintenance.json), these
        only for the hosts the snapshot has and the platform does not already hold."""
        items = list(self.snapshot.rules)
        held = {h for r in items if isinstance(r, dict) and r.get("rule") == "maintenance"
                for h in (r.get("hosts") or []) if isinstance(h, str)}
        known = {h.name for h in self.snapshot.hosts} - held
        return items + maintenance_rules(self.maintenance, known)

    @property
    def rules_name(self) -> str:
        """Where the rules come from, for messages: the constraints file, or the
        snapshot's own (a XAPI pool's)."""
        return self.constraints_name if self.constraints is not None else "snapshot.rules"

    def rule_items(self) -> list:
        """The platform's rules then the operator's, as objects (checked when parsed against
        the guests they may name)."""
        items = self.standing_rules()
        if self.constraints is not None:
            try:
                items += [item for _, item in check_envelope(
                    self.constraints, CONSTRAINTS_FORMAT).list("rules")]
            except DataError as exc:
                raise DataError(exc.message, self._where(exc)) from None
        return items

    def _where(self, exc: DataError) -> str:
        name = self.rules_name
        return f"{name}: {exc.where}" if exc.where else name


@dataclass
class Result:
    plan: Plan
    state: State | None
    rules_skipped: list[dict] = field(default_factory=list)


def options_of(settings: Any) -> Options:
    """The planner's :class:`Options` for ``settings`` (the user's settings only)."""
    s = settings
    return Options(objective=s.objective, solver=s.solver, time_limit=s.time_limit,
                   cpu_target=s.cpu_target, mem_target=s.mem_target,
                   consolidate_target=s.consolidate_target, relief_target=s.relief_target,
                   cpu_threshold=s.cpu_threshold, mem_threshold=s.mem_threshold,
                   min_gain=s.min_gain, cpu_demand=s.cpu_demand,
                   require_optimal=s.require_optimal,
                   bandwidth=s.bandwidth, parallel=s.parallel, explain=s.explain,
                   threads=s.threads, seed=s.seed, max_migrations=s.max_migrations,
                   max_moved_gib=s.max_moved, max_duration_min=s.max_duration,
                   demand=parse_demand(s.demand), demand_window=s.demand_window,
                   consolidate_window=s.consolidate_window, forecast=s.forecast,
                   refuse_problems=s.refuse_problems, max_frozen=s.max_frozen, hold=s.hold,
                   cooldown=s.cooldown, settle=s.settle)


def jobs_of(settings: Any) -> int:
    """The worker processes of a plan made in parts: ``jobs``, 0 meaning one per CPU."""
    return settings.jobs or os.cpu_count() or 1


def power_options(settings: Any, hosts: dict[str, HostEntry] | None,
                  model: PowerModel | None) -> PowerOptions | None:
    """The :class:`PowerOptions` of a run, or None when it switches no host.

    Hosts are switched with ``power``, or under ``auto`` as soon as the host map gives some
    host a power method (ipmi or wol). Otherwise a power ``model`` still ranks hosts by their
    watts under consolidate and auto (no host is switched)."""
    s = settings
    methods = {name: e.power for name, e in hosts.items()} if hosts is not None else None
    enabled = s.power or (s.objective == "auto" and methods is not None
                          and any(m != "none" for m in methods.values()))
    limits = dict(standby_after=s.standby_after, min_hosts=s.min_hosts, reserve=s.reserve,
                  boot_timeout=s.boot_timeout, model=model)
    if not enabled:
        if model is not None and s.objective in ("consolidate", "auto"):
            return PowerOptions(methods={}, **limits)
        return None
    return PowerOptions(methods=methods, **limits)


def constraints_of(docs: Documents, strict: bool, skipped: list[dict]) -> Constraints:
    """The rules of a run: the platform's own (a XAPI pool's anti-affinity groups, its
    disabled hosts, carried in the snapshot) first, then the operator's: one set, checked
    together against the snapshot."""
    platform = docs.standing_rules()
    if docs.constraints is None and not platform:
        return Constraints([])
    try:
        if docs.constraints is None:
            return parse_rules(platform, docs.snapshot, strict=strict, skipped=skipped)
        obj = docs.constraints
        if platform and isinstance(obj, dict) and isinstance(obj.get("rules"), list):
            obj = dict(obj, rules=platform + obj["rules"])
        return parse_constraints(obj, docs.snapshot, strict=strict, skipped=skipped)
    except DataError as exc:
        raise DataError(exc.message, docs._where(exc), settings=exc.settings) from None


def plan_run(docs: Documents, settings: Any, state: State | None = None,
             now: float | None = None, started: float | None = None) -> Result:
    """Plan for ``docs`` under ``settings``; ``state`` is the memory of earlier runs (None:
    none, as vm-plan without ``--state``); ``now`` the clock of the context switch (None: the
    time of day; vm-replay: the snapshot's); ``started`` the :func:`time.monotonic` time
the command began (``--time-limit`` counts from there, reading included; None: now). Raises the errors of vmtools.errors (a DataError
    for an incoherent snapshot or constraints, TemporaryFailure, OperationFailed...)."""
    settings = settings_from(as_dict(settings))          # a hand-built one is checked too
    skipped: list[dict] = []
    # --add, --resume and --context-switch read the rules again with the guests they start:
    # a rule naming one of those is no unknown name, even under --strict-rules
    again = bool(settings.add or settings.resume or settings.context_switch)
    cons = constraints_of(docs, settings.strict_rules and not again, skipped)
    fence_domains(cons, docs.snapshot, settings.cross_domain)
    _check_gathers(cons)
    skipped[:] = _not_elsewhere(skipped, docs, settings)
    if settings.strict_rules and again and skipped:
        e = skipped[0]
        names = ", ".join([f"guest {v!r}" for v in e["unknown_vms"]]
                          + [f"host {h!r}" for h in e["unknown_hosts"]])
        raise DataError(f"rules[{e['rule']}] ({e['kind']}): unknown {names} (not in the "
                        "snapshot, nor among the guests this run starts)", docs.rules_name)
    if settings.context_switch:
        switched = context_switch_plan(docs, settings, time.time() if now is None else now)
        if switched is not None:
            switched.rules_skipped = skipped
            note_domains(switched, settings.cross_domain)
            note_loads(switched, cons, settings.cpu_threshold, settings.mem_threshold)
            return Result(switched, state, skipped)
    manual = manual_operation(settings)
    if manual is not None:
        plan = manual_plan(manual, docs, cons, settings, started)
    else:
        opts = options_of(settings)
        opts.facts.started = started
        plan = plan_with_memory(docs.snapshot, cons, opts, state,
                                hotspot_window(settings),
                                power=power_options(settings, docs.hosts, docs.power_model),
                                make=partial(plan_parts, jobs=jobs_of(settings),
                                             make=make_plan))
    plan.rules_skipped = skipped
    note_domains(plan, settings.cross_domain, cons, settings.cpu_threshold,
                 settings.mem_threshold)
    note_loads(plan, cons, settings.cpu_threshold, settings.mem_threshold)
    return Result(plan, state, skipped)


def _check_gathers(cons: Constraints) -> None:
    """A gather rule whose guests sit in different migration domains cannot hold without a
    move between them: refused (65) rather than planned around."""
    if not cons.vm_domain:
        return
    for r in cons.gather:
        homes = sorted({cons.vm_domain[v] for v in r.vms if v in cons.vm_domain})
        if len(homes) > 1:
            raise DataError(f"gathers guests of different migration domains "
                            f"({', '.join(repr(d) for d in homes)}), and {{cross_domain}} is "
                            "off", r.label, settings=("cross_domain",))


def _not_elsewhere(skipped: list[dict], docs: Documents, settings: Any) -> list[dict]:
    """The rules left out for names not in the snapshot, less those whose only unknown names
    are guests this run reads the rules again for (a group to add, the suspended guests of
    --resume and --context-switch): for them nothing is left out, nothing is to warn about."""
    known: set[str] = set()
    if settings.context_switch or settings.resume:
        known |= set(docs.suspended or {})
    if settings.add and isinstance(docs.guests, dict) and \
            isinstance(docs.guests.get("guests"), list):
        known |= {g.get("name") for g in docs.guests["guests"] if isinstance(g, dict)}
    return [e for e in skipped
            if e.get("unknown_hosts") or not set(e.get("unknown_vms", [])) <= known]


def resumes_only_where_saved(docs: Documents, host: str) -> bool:
    """Whether a guest suspended on ``host`` resumes only there: its transport (the host
    map's, else the snapshot's migration field) keeps images on the host that made them."""
    from vmtools.drivers.registry import images_local
    entry = (docs.hosts or {}).get(host)
    if entry is not None and entry.transport:
        return images_local(entry.transport)
    return images_local(next((h.migration for h in docs.snapshot.hosts if h.name == host), ""))


def context_switch_plan(docs: Documents, settings: Any, now: float) -> Plan | None:
    """vmtools.planner.context: a plan that suspends or resumes guests, or None (the run then
    plans as usual). The suspended guests are vm-apply's ledger (``docs.suspended``)."""
    from vmtools.model import is_safe_path
    from vmtools.planner.context import SwitchSettings, context_switch
    snap, image_dir = docs.snapshot, settings.image_dir
    if not is_safe_path(image_dir.rstrip("/") or "/"):
        raise OptionError("image_dir", f"{image_dir!r}: expected an absolute path of letters, "
                          "digits and '._+-' between slashes, without '..'")
    ledger = docs.suspended or {}
    running = {v.name for v in snap.vms}
    universe = Snapshot(hosts=snap.hosts, vms=list(snap.vms) + [
        VM(name=e["name"], host=e["host"], vcpus=e["vcpus"], cpu=e["cpu"], mem_mib=e["mem_mib"])
        for e in ledger.values() if e["name"] not in running], source=snap.source)
    skipped: list[dict] = []
    try:
        # the platform's own rules first, then the operator's, as the planner reads them
        cons = parse_rules(docs.rule_items(), universe, strict=settings.strict_rules,
                           skipped=skipped)
    except DataError as exc:
        raise DataError(exc.message, docs._where(exc)) from None
    fence_domains(cons, universe, settings.cross_domain)
    for entry in skipped:
        if entry["kind"] == "priority":
            raise DataError(f"rules[{entry['rule']}] (priority) names "
                            f"{', '.join(entry['unknown_vms'])}, neither running nor "
                            "suspended: with --context-switch a priority must name known "
                            "guests (a misspelt name would lose its protection)",
                            docs.rules_name)
    saved_here = frozenset(name for name, e in ledger.items()
                           if resumes_only_where_saved(docs, e["host"]))
    return context_switch(snap, cons, ledger,
                          SwitchSettings(image_dir=image_dir, saved_here=saved_here,
                                         suspend_above=settings.suspend_above,
                                         resume_below=settings.resume_below,
                                         resume_after=settings.resume_after,
                                         cpu_target=settings.cpu_target), now)


def manual_plan(manual: tuple[str, str, str | None], docs: Documents, cons: Constraints,
                settings: Any, started: float | None = None) -> Plan:
    """A plan of one manual operation (:mod:`vmtools.planner.manual`), or of a group of
    guests to add (:mod:`vmtools.planner.provision`); no objective runs, no state is used."""
    from vmtools.model import is_safe_path
    from vmtools.planner import manual as M
    op, first, second = manual
    snap, image_dir = docs.snapshot, settings.image_dir
    if not is_safe_path(image_dir.rstrip("/") or "/"):
        raise OptionError("image_dir", f"{image_dir!r}: expected an absolute path of letters, "
                          "digits and '._+-' between slashes, without '..'")
    if op == "migrate":
        return M.migrate_plan(snap, cons, first, second)
    if op in ("suspend", "checkpoint"):
        return M.suspend_plan(snap, cons, first, image_dir, checkpoint=op == "checkpoint")
    if op == "resume":
        ledger = dict(docs.suspended or {})
        platform = next((e for e in snap.stopped if e["name"] == first
                         and e["state"] == "suspended"), None)
        if first not in ledger and platform is not None:
            # suspended outside vmtools (the platform keeps it: a XAPI pool's Suspended VM);
            # its CPU demand is not known: its vCPUs are planned for, as for a new guest
            ledger[first] = {"name": first, "host": platform.get("host") or "",
                             "image": M.image_path(image_dir, first),
                             "mem_mib": platform["mem_mib"], "vcpus": platform["vcpus"],
                             "cpu": float(platform["vcpus"]), "suspended": ""}
        if first not in ledger:
            running = next((v.host for v in snap.vms if v.name == first), None)
            if running is not None:
                raise DataError(f"{first} already runs on {running}; only a suspended guest is "
                                "resumed", "--resume")
            raise DataError(f"{first} is not in the suspended-guests ledger "
                            f"{docs.suspended_path} (vm-apply records the guests it suspends; "
                            "pass --suspended FILE for another) nor suspended in the "
                            "snapshot", "--resume")
        entry = ledger[first]
        if resumes_only_where_saved(docs, entry["host"]):
            if second is not None and second != entry["host"]:
                raise DataError(f"{first} was suspended on {entry['host']}, whose platform "
                                "keeps the image there (libvirt's managed save): it resumes "
                                f"on {entry['host']} or nowhere, not on {second}", "--resume")
            second = entry["host"]
        if docs.constraints is not None or snap.rules:
            # the rules again, with the guest to resume among those they may name
            universe = Snapshot(hosts=snap.hosts, vms=list(snap.vms) + [VM(
                name=first, host=entry["host"], vcpus=entry["vcpus"], cpu=entry["cpu"],
                mem_mib=entry["mem_mib"])])
            items = docs.rule_items()
            try:
                cons = parse_rules(items, universe, strict=False, skipped=[])
            except DataError as exc:
                raise DataError(exc.message, docs._where(exc)) from None
        fence_domains(cons, universe if docs.constraints is not None or snap.rules else snap,
                      settings.cross_domain)
        return M.resume_plan(snap, cons, entry, second, image_dir)
    opts = options_of(settings)
    opts.facts.started = started
    if op == "evacuate":
        from vmtools.planner.plan import make_plan
        rules = fence_domains(parse_rules(M.evacuate_rules(cons, snap, first), snap), snap,
                              settings.cross_domain)
        plan = make_plan(snap, rules, replace(opts, objective="repair"))
        plan.summary["manual"] = f"evacuate {first}"
        return plan
    from vmtools.planner.provision import add_plan, parse_guests, rules_for
    name = docs.guests_name
    try:
        guests, rules = parse_guests(docs.guests, snap)
    except DataError as exc:
        raise DataError(exc.message, f"{name}: {exc.where}" if exc.where else name) from None
    items = docs.rule_items()
    try:
        both = rules_for(guests, rules, items, snap)
    except DataError as exc:
        raise DataError(exc.message, f"{name}: {exc.where}" if exc.where else name) from None
    wakeable = None
    if docs.hosts is not None:
        wakeable = {n for n, e in docs.hosts.items() if e.power in ("ipmi", "wol")}
    mem_target = opts.mem_target if opts.mem_target is not None else \
        (0.9 if opts.objective == "auto" else 1.0)
    return add_plan(snap, both, guests, opts.objective, opts.cpu_target, mem_target,
                    opts.time_limit, wakeable)


__all__ = ["Documents", "Result", "plan_run", "options_of", "power_options", "constraints_of",
           "manual_plan", "context_switch_plan"]
