"""The replay checker: is a plan safe to run in ANY order that respects its ``after`` links?

Independent of the solver and of the scheduler that made the plan; vm-apply runs it again
before executing anything. :func:`check_plan` raises :class:`~vmtools.errors.DataError`
(exit 65) naming the action, host and rule that fail, or returns None.

What "safe" means (vmtools(7), SAFETY; vmtools-formats(5), PLAN):

* action ids are unique, ``after`` names existing actions, the links have no cycle;
* each action migrates a known guest (never Domain-0) between two known hosts, never to an
  offline host; the actions of one guest are totally ordered by ``after`` and chain from
  where the guest is in the origin snapshot; the last one lands where ``placement`` says;
  every guest is placed;
* capacity at every moment of every execution: a migrating guest counts on its source and
  its destination from the moment it starts until it lands. For one host and resource the
  worst moment is a *maximum-weight closure* over the events "action a started" (weight
  +demand if a comes in) and "action a finished" (-demand if a leaves), where a start needs
  the finish of every ``after`` action and a finish needs its own start. We solve it exactly
  with a min cut on the graph of the host's incoming actions and their ancestors.
  The limit is the capacity (times any ``capacity`` rule), or the initial use when that is
  already higher: a plan never makes an existing overload worse. ``max_vms`` is the same
  closure with weight 1 per guest;
* power actions (:mod:`vmtools.rules.power_check`): a host is switched off only once every
  guest has left it for good, a guest enters a standby host only after its ``power-on``;
* rules at every moment: no guest ever set foot on a host it is banned or fenced from, or on a
  host in maintenance; pinned guests have no action; spread guests are never on one host at
  the same time (their stays must be ordered by ``after``); gather holds in the target.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Iterable, Sequence

from vmtools.errors import DataError
from vmtools.model import VM, Action, Plan, Snapshot
from vmtools.rules.capacity import EPS, capacity, demand, initial_use
from vmtools.rules.constraints import Constraints, fence_domains, parse_rules
from vmtools.rules.kinds import KINDS
from vmtools.rules.power_check import check_power
from vmtools.rules.precedence import Replay, action_label, replay_plan
from vmtools.xen import DOM0_NAMES


# --------------------------------------------------------------------------- helpers for vm-apply

def runnable(plan: Plan, finished: Iterable[int], running: Iterable[int] = ()) -> list[Action]:
    """Actions not yet started whose ``after`` actions have all finished."""
    done, busy = set(finished), set(running)
    return [a for a in plan.actions
            if a.id not in done and a.id not in busy and all(p in done for p in a.after)]


def placement_after(plan: Plan, finished: Iterable[int]) -> dict[str, str]:
    """Where each guest of the origin is once the ``finished`` actions have landed."""
    where = plan.origin.guest_hosts()
    done = set(finished)
    replay = replay_plan(plan)
    for aid in replay.order:
        a = replay.actions[aid]
        if aid in done and not a.is_power and a.op != "checkpoint":
            if a.dst:
                where[a.vm] = a.dst
            else:                       # suspended: on no host
                where.pop(a.vm, None)
    return where


def stale_guests(plan: Plan, current: Snapshot | dict[str, str],
                 finished: Iterable[int] = ()) -> list[str]:
    """Guests the plan moves that are not (or no longer) where it expects them: where its
    origin says, or where the ``finished`` actions have taken them."""
    now = current if isinstance(current, dict) else current.guest_hosts()
    done = set(finished)
    expected = placement_after(plan, done) if done else plan.origin.guest_hosts()
    return sorted({a.vm for a in plan.actions
                   if not a.is_power and now.get(a.vm) != expected.get(a.vm)})


# --------------------------------------------------------------------------- max closure

class _FlowGraph:
    """Dinic's max flow on a small graph (a few hundred nodes at most in practice)."""

    def __init__(self, n: int):
        self.n = n
        self.adj: list[list[int]] = [[] for _ in range(n)]
        self.to: list[int] = []
        self.cap: list[float] = []

    def add(self, u: int, v: int, c: float) -> None:
        self.adj[u].append(len(self.to))
        self.to.append(v)
        self.cap.append(c)
        self.adj[v].append(len(self.to))
        self.to.append(u)
        self.cap.append(0.0)

    def max_flow(self, s: int, t: int) -> float:
        flow = 0.0
        while True:
            level = [-1] * self.n
            level[s] = 0
            q = deque([s])
            while q:
                u = q.popleft()
                for e in self.adj[u]:
                    if self.cap[e] > EPS and level[self.to[e]] < 0:
                        level[self.to[e]] = level[u] + 1
                        q.append(self.to[e])
            if level[t] < 0:
                return flow
            it = [0] * self.n
            while True:
                pushed = self._push(s, t, float("inf"), level, it)
                if pushed <= EPS:
                    break
                flow += pushed

    def _push(self, s: int, t: int, limit: float, level: list[int], it: list[int]) -> float:
        # Iterative DFS along the level graph; returns the flow pushed on one path.
        path: list[int] = []
        u = s
        while True:
            if u == t:
                f = min([limit] + [self.cap[e] for e in path])
                for e in path:
                    self.cap[e] -= f
                    self.cap[e ^ 1] += f
                return f
            advanced = False
            while it[u] < len(self.adj[u]):
                e = self.adj[u][it[u]]
                v = self.to[e]
                if self.cap[e] > EPS and level[v] == level[u] + 1:
                    path.append(e)
                    u = v
                    advanced = True
                    break
                it[u] += 1
            if not advanced:
                if not path:
                    return 0.0
                level[u] = -1          # dead end: never visit again in this phase
                e = path.pop()
                u = self.to[e ^ 1]
                it[u] += 1

    def source_side(self, s: int) -> set[int]:
        seen = {s}
        q = deque([s])
        while q:
            u = q.popleft()
            for e in self.adj[u]:
                if self.cap[e] > EPS and self.to[e] not in seen:
                    seen.add(self.to[e])
                    q.append(self.to[e])
        return seen


def worst_moment(replay: Replay, incoming: dict[int, float], outgoing: dict[int, float]
                 ) -> tuple[float, list[int], list[int]]:
    """The largest amount a host can hold above its initial use, over every execution.

    ``incoming``/``outgoing`` map action ids to the demand they bring/take away. Returns
    (extra, started incoming ids, finished outgoing ids) of a worst moment.
    """
    if not incoming:
        return 0.0, [], []
    # The events that matter: incoming actions and all their ancestors.
    nodes: set[int] = set()
    stack = list(incoming)
    while stack:
        aid = stack.pop()
        if aid in nodes:
            continue
        nodes.add(aid)
        stack.extend(replay.actions[aid].after)
    if not any(o in nodes for o in outgoing):
        # Nothing leaves before the last arrival could start: all may arrive together.
        return sum(incoming.values()), sorted(incoming), []
    ids = sorted(nodes)
    pos = {aid: i for i, aid in enumerate(ids)}
    n = len(ids)
    s, t = 2 * n, 2 * n + 1          # node 2i = start of ids[i], 2i+1 = its finish
    g = _FlowGraph(2 * n + 2)
    inf = sum(incoming.values()) + sum(outgoing.values()) + 1.0
    total_pos = 0.0
    for aid in ids:
        i = pos[aid]
        g.add(2 * i + 1, 2 * i, inf)                     # finish needs start
        for p in replay.actions[aid].after:
            g.add(2 * i, 2 * pos[p] + 1, inf)            # start needs the finish of p
        if incoming.get(aid, 0.0) > 0:
            g.add(s, 2 * i, incoming[aid])
            total_pos += incoming[aid]
        if outgoing.get(aid, 0.0) > 0:
            g.add(2 * i + 1, t, outgoing[aid])
    cut = g.max_flow(s, t)
    side = g.source_side(s)
    started = sorted(aid for aid in ids if 2 * pos[aid] in side and aid in incoming)
    finished = sorted(aid for aid in ids if 2 * pos[aid] + 1 in side and aid in outgoing)
    return total_pos - cut, started, finished


# --------------------------------------------------------------------------- the checker

def arriving_guests(plan: Plan) -> dict[str, VM]:
    """The guests a plan starts that its origin does not run (resumed from an image or
    created), as the first such action describes them, on its host."""
    known = {v.name for v in plan.origin.vms}
    out: dict[str, VM] = {}
    for a in plan.actions:
        if a.starts_guest and a.vm not in known and a.vm not in out:
            out[a.vm] = VM(name=a.vm, host=a.dst, vcpus=a.vcpus, cpu=a.cpu, mem_mib=a.mem_mib)
    return out


def universe(plan: Plan) -> Snapshot:
    """The origin plus the guests the plan starts: every guest a plan's rules may name."""
    new = arriving_guests(plan)
    if not new:
        return plan.origin
    return Snapshot(hosts=plan.origin.hosts, vms=list(plan.origin.vms) + list(new.values()),
                    source=plan.origin.source, created=plan.origin.created)


def _constraints_of(plan: Plan, constraints: object) -> Constraints:
    if isinstance(constraints, Constraints):
        return constraints
    items = plan.constraints if constraints is None else constraints
    try:
        return parse_rules(list(items), universe(plan))  # type: ignore[arg-type]
    except DataError as exc:
        raise DataError(exc.message, f"plan.constraints: {exc.where}" if exc.where
                        else "plan.constraints") from None


def crosses_domains(plan: Plan) -> bool:
    """Whether the plan was made with moves between migration domains allowed (vm-plan
    --cross-domain: the plan's summary says ``cross_domain``)."""
    return plan.summary.get("cross_domain") is True


def _fmt(x: float, unit: str) -> str:
    return f"{x:.0f} {unit}" if unit in ("MiB", "guests") else f"{x:.2f} {unit}"


def check_plan(plan: Plan, constraints: Constraints | Sequence[dict] | None = None) -> None:
    """Raise :class:`DataError` unless ``plan`` is safe to run in any order its ``after``
    links allow. ``constraints`` defaults to the rules echoed in the plan."""
    origin = plan.origin
    cons = _constraints_of(plan, constraints)
    if not cons.domains_decided and not crosses_domains(plan):
        # guests stay in their migration domain unless the plan says vm-plan was told the
        # platform moves them across (cross_domain): whoever built the rules
        fence_domains(cons, universe(plan))
    hosts, vms = {h.name: h for h in origin.hosts}, {v.name: v for v in origin.vms}
    for v in origin.vms:
        if v.host not in hosts:
            raise DataError(f"guest {v.name} sits on unknown host {v.host}", "plan.origin")

    # Actions one by one (power actions: vmtools.rules.power_check).
    woken = {a.host for a in plan.actions if a.op == "power-on"}
    arriving = arriving_guests(plan)
    for a in plan.actions:
        if a.is_power:
            continue
        if a.is_lifecycle:
            _check_lifecycle(a, hosts, vms, arriving, woken, cons)
            continue
        _check_migration(a, hosts, vms, arriving, woken, cons)

    replay = replay_plan(plan)
    check_power(plan, replay)
    _check_images(plan, replay)

    final = _final_placement(plan, replay, vms, arriving)

    # Rules in the target: only a guest a ban, fence or domain names, or in maintenance
    named = cons.banned.keys() | cons.fenced.keys() | cons.vm_domain.keys()
    for name in (final if cons.maintenance else filter(named.__contains__, final)):  # in C
        host = final[name]
        if name not in named and host not in cons.maintenance:
            continue
        bad = cons.forbidden_by(name, host)
        if bad is not None:
            raise DataError(f"{name} ends on {host}, which {bad.label} forbids",
                            "plan.placement")
    for rule in cons.rules:
        KINDS[rule.rule].check_target(rule, final)

    for rule in cons.rules:
        KINDS[rule.rule].check_moments(rule, plan, replay)
    _check_capacity(plan, replay, cons)


# Each dimension of rules.capacity, with its unit and its name in an error message.
_DIMENSIONS = (("mem", "MiB", "memory"), ("cpu", "CPUs", "CPU"), ("net", "Mbit/s", "network"),
               ("count", "guests", "guests"))


def _check_capacity(plan: Plan, replay: Replay, cons: Constraints) -> None:
    origin = plan.origin
    # A migration counts on both hosts until it lands; a suspend frees its host when it ends,
    # a resume or create claims its host when it starts; a checkpoint changes nothing.
    incoming: dict[str, list[Action]] = {}
    outgoing: dict[str, list[Action]] = {}
    for a in plan.actions:
        if a.is_power or a.op == "checkpoint":
            continue
        if a.dst:
            incoming.setdefault(a.dst, []).append(a)
        if a.src:
            outgoing.setdefault(a.src, []).append(a)
    if not incoming:
        return              # no host receives anything: no use can grow
    vms = {v.name: v for v in origin.vms} | arriving_guests(plan)
    initial = initial_use(origin)
    # what the guests that act need (every guest's figures made a dict each: 150,000 of them)
    needs = {a.vm: demand(vms[a.vm]) for acts in incoming.values() for a in acts}
    needs.update((a.vm, demand(vms[a.vm])) for acts in outgoing.values() for a in acts)
    for h in origin.hosts:
        if h.name not in incoming:
            continue
        caps = capacity(h, cons)
        for key, unit, what in _DIMENSIONS:
            cap = caps[key]
            if math.isinf(cap):
                continue          # a dimension the host does not publish, or no max_vms rule
            inc = {a.id: needs[a.vm][key] for a in incoming[h.name] if needs[a.vm][key] > 0}
            out = {a.id: needs[a.vm][key] for a in outgoing.get(h.name, [])
                   if needs[a.vm][key] > 0}
            start = initial[h.name][key]
            limit = max(cap, start)
            if start + sum(inc.values()) <= limit + EPS:
                continue
            extra, started, finished = worst_moment(replay, inc, out)
            if start + extra > limit + EPS:
                rule = ""
                if key == "count":
                    rule = f" ({cons.max_vms[h.name][1].label})"
                elif key == "mem" and h.name in cons.mem_cap:
                    rule = f" ({cons.mem_cap[h.name][1].label})"
                elif key == "cpu" and h.name in cons.cpu_cap:
                    rule = f" ({cons.cpu_cap[h.name][1].label})"
                still = ""
                if finished:
                    still = f" once actions {', '.join(map(str, finished))} have finished"
                raise DataError(
                    f"host {h.name}: {what} use may reach {_fmt(start + extra, unit)} of "
                    f"{_fmt(limit, unit)}{rule} while actions "
                    f"{', '.join(map(str, started))} run together{still}; add after "
                    "dependencies so they cannot", "plan.actions")


def _check_lifecycle(a: Action, hosts: dict, vms: dict, arriving: dict, woken: set,
                     cons: Constraints) -> None:
    """One suspend, resume, create or checkpoint on its own (chains and capacity are checked
    with the migrations)."""
    where = "plan.actions"
    label = action_label(a)
    if a.vm in DOM0_NAMES:
        raise DataError(f"{label}: Domain-0 is never suspended, resumed or created", where)
    if a.where not in hosts:
        raise DataError(f"{label}: unknown host {a.where}", where)
    if a.starts_guest:
        state = hosts[a.dst].state
        if state != "online" and not (state == "standby" and a.dst in woken):
            raise DataError(f"{label}: {a.dst} is {state}", where)
        if a.mem_mib <= 0:
            raise DataError(f"{label}: mem_mib must be more than 0", where)
        bad = cons.forbidden_by(a.vm, a.dst)
        if bad is not None:
            raise DataError(f"{label}: {bad.label} forbids {a.vm} on {a.dst}", where)
        if a.vm in vms and vms[a.vm].mem_mib != a.mem_mib:
            raise DataError(f"{label}: mem_mib {a.mem_mib} differs from the guest's "
                            f"{vms[a.vm].mem_mib} MiB in the origin", where)
    else:
        if a.vm not in vms and a.vm not in arriving:
            raise DataError(f"{label}: unknown guest {a.vm}", where)
        size = vms[a.vm].mem_mib if a.vm in vms else arriving[a.vm].mem_mib
        if a.mem_mib != size:
            raise DataError(f"{label}: mem_mib {a.mem_mib} differs from the guest's {size} MiB",
                            where)
    if a.op != "checkpoint" and a.vm in cons.pinned:
        raise DataError(f"{label}: {a.vm} is pinned by {cons.pinned[a.vm].label}", where)


def _check_images(plan: Plan, replay: Replay) -> None:
    """An image is written by one action of the plan at most; a resume of a guest the plan
    suspends reads the image that suspend wrote, after it."""
    writer: dict[str, Action] = {}
    for a in plan.actions:
        if a.op in ("suspend", "checkpoint"):
            if a.image in writer:
                raise DataError(f"{action_label(a)} writes {a.image}, which "
                                f"{action_label(writer[a.image])} writes too", "plan.actions")
            writer[a.image] = a
    for vm, acts in replay.by_vm.items():
        saved = None
        for a in acts:
            if a.op == "suspend":
                saved = a
            elif a.op == "resume":
                if saved is not None and a.image != saved.image:
                    raise DataError(f"{action_label(a)} reads {a.image}, but "
                                    f"{action_label(saved)} saved {vm} to {saved.image}",
                                    "plan.actions")
                w = writer.get(a.image)
                if w is not None and w.vm != vm:
                    raise DataError(f"{action_label(a)} reads {a.image}, which "
                                    f"{action_label(w)} writes for {w.vm}", "plan.actions")
                saved = None


def _check_migration(a, hosts: dict, vms: dict, arriving: dict, woken: set[str],
                     cons: Constraints) -> None:
    """One migration on its own: a known guest (not Domain-0) between two known, different
    hosts, to one online (or woken by the plan), at the guest's size, not pinned, not where a
    rule forbids it even for a moment."""
    if a.op != "migrate":
        raise DataError(f"action {a.id}: op {a.op!r} is not supported by this vmtools",
                        "plan.actions")
    if a.vm in DOM0_NAMES:
        raise DataError(f"{action_label(a)}: Domain-0 never moves", "plan.actions")
    if a.vm not in vms and a.vm not in arriving:
        raise DataError(f"{action_label(a)}: unknown guest {a.vm}", "plan.actions")
    for end in (a.src, a.dst):
        if end not in hosts:
            raise DataError(f"{action_label(a)}: unknown host {end}", "plan.actions")
    if a.src == a.dst:
        raise DataError(f"{action_label(a)}: source and destination are the same",
                        "plan.actions")
    if hosts[a.dst].state != "online" and not (hosts[a.dst].state == "standby"
                                               and a.dst in woken):
        raise DataError(f"{action_label(a)}: destination {a.dst} is {hosts[a.dst].state}",
                        "plan.actions")
    size = vms[a.vm].mem_mib if a.vm in vms else arriving[a.vm].mem_mib
    if a.mem_mib != size:
        raise DataError(f"{action_label(a)}: mem_mib {a.mem_mib} differs from the guest's "
                        f"{size} MiB in the origin", "plan.actions")
    if a.vm in cons.pinned:
        raise DataError(f"{action_label(a)}: {a.vm} is pinned by {cons.pinned[a.vm].label}",
                        "plan.actions")
    bad = cons.forbidden_by(a.vm, a.dst)
    if bad is not None:
        raise DataError(f"{action_label(a)}: {bad.label} forbids {a.vm} on {a.dst}, even "
                        "for a moment", "plan.actions")


def _final_placement(plan: Plan, replay, vms: dict, arriving: dict) -> dict[str, str]:
    """Each guest's chain of actions followed from the origin (every action starts where the
    guest is at that point), and the placement it ends in, which must be the plan's (a
    suspended guest is on no host and not placed)."""
    final: dict[str, str | None] = dict(replay.start)     # the origin's placement
    for vm, acts in replay.by_vm.items():
        where = final.get(vm)
        for a in acts:
            if a.starts_guest:
                if where is not None:
                    raise DataError(f"{action_label(a)}: {vm} already runs on {where} at that "
                                    "point", "plan.actions")
                if a.op == "create" and (vm in vms or a is not acts[0]):
                    raise DataError(f"{action_label(a)}: {vm} exists already (a create starts "
                                    "a new guest)", "plan.actions")
                where = a.dst
                continue
            if where is None:
                raise DataError(f"{action_label(a)}: {vm} runs on no host at that point "
                                "(suspended, or not started yet)", "plan.actions")
            if a.src != where:
                raise DataError(f"{action_label(a)}: {vm} is on {where} at that point, not on "
                                f"{a.src}", "plan.actions")
            if a.op == "migrate":
                where = a.dst
            elif a.op == "suspend":
                where = None
        final[vm] = where
    running = final if None not in final.values() else {
        vm: host for vm, host in final.items() if host is not None}
    if running == plan.placement:         # in C; then nothing below can fail
        return running
    for name in plan.placement:
        if name not in vms and name not in arriving:
            raise DataError(f"unknown guest {name}", "plan.placement")
    for name, host in running.items():
        if name not in plan.placement:
            raise DataError(f"{name} is not placed", "plan.placement")
        if plan.placement[name] != host:
            raise DataError(f"{name}: the actions leave it on {host}, the placement says "
                            f"{plan.placement[name]}", "plan.placement")
    for name in plan.placement:
        if name not in running:
            raise DataError(f"{name}: the actions leave it suspended, the placement says "
                            f"{plan.placement[name]} (a suspended guest is not placed)",
                            "plan.placement")
    return running
