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

from dataclasses import dataclass, field
from typing import Any

from vmtools.drivers.hostmap import HostEntry
from vmtools.errors import DataError
from vmtools.model import Plan, Snapshot
from vmtools.planner.demand import parse_demand
from vmtools.planner.options import Options
from vmtools.planner.plan import plan_with_memory
from vmtools.planner.power import PowerOptions
from vmtools.planner.settings import as_dict, hotspot_window, settings_from
from vmtools.power_model import PowerModel
from vmtools.rules.constraints import Constraints, parse_constraints
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
                   cpu_threshold=s.cpu_threshold, mem_threshold=s.mem_threshold,
                   min_gain=s.min_gain, cpu_demand=s.cpu_demand,
                   allow_problems=s.allow_problems, require_optimal=s.require_optimal,
                   bandwidth=s.bandwidth, parallel=s.parallel, explain=s.explain,
                   threads=s.threads, seed=s.seed, max_migrations=s.max_migrations,
                   max_moved_gib=s.max_moved, max_duration_min=s.max_duration,
                   demand=parse_demand(s.demand), demand_window=s.demand_window)


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
    if docs.constraints is None:
        return Constraints([])
    name = docs.constraints_name
    try:
        return parse_constraints(docs.constraints, docs.snapshot, strict=strict,
                                 skipped=skipped)
    except DataError as exc:
        raise DataError(exc.message, f"{name}: {exc.where}" if exc.where else name,
                        settings=exc.settings) from None


def plan_run(docs: Documents, settings: Any, state: State | None = None) -> Result:
    """Plan for ``docs`` under ``settings``; ``state`` is the memory of earlier runs (None:
    none, as vm-plan without ``--state``). Raises the errors of vmtools.errors (a DataError
    for an incoherent snapshot or constraints, TemporaryFailure, OperationFailed...)."""
    settings = settings_from(as_dict(settings))          # a hand-built one is checked too
    skipped: list[dict] = []
    cons = constraints_of(docs, settings.strict_rules, skipped)
    plan = plan_with_memory(docs.snapshot, cons, options_of(settings), state,
                            hotspot_window(settings), settings.hold, settings.cooldown,
                            power=power_options(settings, docs.hosts, docs.power_model))
    plan.rules_skipped = skipped
    return Result(plan, state, skipped)


__all__ = ["Documents", "Result", "plan_run", "options_of", "power_options", "constraints_of"]
