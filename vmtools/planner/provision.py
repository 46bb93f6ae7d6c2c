"""Provisioning (vm-plan --add FILE): place a group of new guests all or nothing, under the
rules, and turn each into a ``create`` action naming its host.

The group comes as a ``vmtools.guests`` document (vmtools-formats(5), GUESTS)::

    {"format": "vmtools.guests", "version": "1.0",
     "guests": [{"name": "web9", "vcpus": 2, "mem_mib": 4096, "cpu": 0.5,
                 "config": "/etc/xen/web9.cfg"}],
     "rules": [{"rule": "spread", "vms": ["web9", "web10"]}]}

Placement is a depth-first search with backtracking over the guests (the most constrained and
largest first) and the hosts (ordered by the objective: the fullest host that still fits for
consolidate and auto, the emptiest for balance and repair). A host takes a new guest only
within its capacity (``capacity`` rules applied) times --cpu-target and --mem-target, never on
a host the rules forbid, never a second guest of a spread group, all of a gather group on one
host, ``max_vms`` respected. Existing guests stay where they are: no migration is planned to
make room (the migration budget is untouched). When the online hosts cannot take the group,
standby hosts are woken, the fewest that let it fit (most frugal first under a power model,
else the largest): a ``power-on`` action each, the creates on that host after it.

A refusal is an :class:`~vmtools.errors.OperationFailed` (exit 1) saying why: the group's
memory or CPU beyond what the hosts have free, a guest that fits on no host (with each host's
reason), or rules that cannot hold together.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass

from vmtools.errors import DataError, OperationFailed
from vmtools.model import (VM, Action, Plan, Reader, Snapshot, check_envelope, is_reserved_name,
                           is_safe_path, HOST_MAX_CPU, HOST_MAX_MIB)
from vmtools.planner.instance import problem_guests
from vmtools.rules.capacity import EPS, capacity
from vmtools.rules.check import check_plan
from vmtools.rules.constraints import Constraints, parse_rules

GUESTS_FORMAT = "vmtools.guests"


@dataclass
class NewGuest:
    name: str
    vcpus: int
    mem_mib: int
    cpu: float
    config: str
    net_mbps: float | None = None


def parse_guests(obj, snap: Snapshot) -> tuple[list[NewGuest], list[dict]]:
    """A ``vmtools.guests`` document: its guests and its rules (validated later, with the
    snapshot). DataError naming the JSON path of what is wrong, or of a guest that runs
    already."""
    r = check_envelope(obj, GUESTS_FORMAT)
    running = snap.guest_hosts()
    guests: list[NewGuest] = []
    seen: set[str] = set()
    items = r.list("guests")
    if not items:
        raise DataError("no guest to add", r.where("guests"))
    for path, item in items:
        g = Reader(item, path)
        name = g.name("name")
        if is_reserved_name(name):
            raise DataError(f"{name} is a reserved name (Domain-0, or a guest in flight)",
                            g.where("name"))
        if name in seen:
            raise DataError(f"{name} is listed twice", g.where("name"))
        if name in running:
            raise DataError(f"{name} already runs on {running[name]}", g.where("name"))
        seen.add(name)
        vcpus = g.int("vcpus", minimum=1, maximum=HOST_MAX_CPU)
        config = g.str("config")
        if not is_safe_path(config):
            shown = config if len(config) <= 60 else config[:57] + "..."
            raise DataError(f"unsafe path {shown!r}: an absolute path of letters, digits and "
                            "'._+-' between slashes, without '..' (no shell characters)",
                            g.where("config"))
        guests.append(NewGuest(name=name, vcpus=vcpus,
                               mem_mib=g.int("mem_mib", minimum=1, maximum=HOST_MAX_MIB),
                               cpu=g.num("cpu", False, float(vcpus), maximum=HOST_MAX_CPU),
                               config=config, net_mbps=g.num("net_mbps", False)))
    rules = [item for _, item in r.list("rules", False)]
    return guests, rules


def rules_for(guests: list[NewGuest], rules: list[dict], user_rules: list[dict],
              snap: Snapshot) -> Constraints:
    """The group's rules and the user's (--constraints, as objects) together, validated
    against the snapshot and the new guests: either may name them. A pin cannot name a new
    guest (it has no host yet). Names the user's rules give that are in neither are left out
    (as vm-plan always does); the group's own rules must name known guests."""
    new = {g.name for g in guests}
    for i, rule in enumerate(rules):
        if isinstance(rule, dict) and rule.get("rule") == "pin" and \
                new & set(rule.get("vms") or []):
            raise DataError("a new guest cannot be pinned (it has no host yet; a fence rule "
                            "says where it may go)", f"rules[{i}] (pin)")
    universe = Snapshot(hosts=snap.hosts, vms=list(snap.vms) + [
        VM(name=g.name, host="", vcpus=g.vcpus, cpu=g.cpu, mem_mib=g.mem_mib) for g in guests])
    parse_rules(rules, universe)       # the group's own rules, each at its own index
    mine = parse_rules(user_rules, universe, strict=False, skipped=[]).to_list()
    try:
        return parse_rules(mine + rules, universe)
    except DataError as exc:
        raise DataError(f"with the rules of --constraints: {exc.message}", exc.where) from None


class _Search:
    def __init__(self, snap: Snapshot, cons: Constraints, guests: list[NewGuest],
                 hosts: list[str], cpu_target: float, mem_target: float, spread_first: bool,
                 deadline: float):
        self.snap, self.cons, self.guests = snap, cons, guests
        self.hosts = hosts
        self.deadline = deadline
        self.spread_first = spread_first
        byname = {h.name: h for h in snap.hosts}
        self.free: dict[str, dict[str, float]] = {}
        self.count: dict[str, int] = {h: 0 for h in hosts}
        for h in hosts:
            cap = capacity(byname[h], cons)
            self.free[h] = {"mem": cap["mem"] * mem_target, "cpu": cap["cpu"] * cpu_target,
                            "net": cap["net"], "count": cap["count"]}
        for v in snap.vms:
            if v.host in self.free:
                f = self.free[v.host]
                f["mem"] -= v.mem_mib
                f["cpu"] -= v.cpu
                f["net"] -= v.net_mbps or 0.0
                f["count"] -= 1
        self.where = snap.guest_hosts()
        self.nodes = 0
        # per spread and gather rule, the hosts its guests are on (guest counts), so that a
        # check is a lookup, not a walk over the group
        self.groups: dict[str, list[tuple[str, int]]] = {}
        self.on: list[dict[str, int]] = []
        for k, r in enumerate(list(cons.spread) + list(cons.gather)):
            kind = "spread" if k < len(cons.spread) else "gather"
            counts: dict[str, int] = {}
            for v in r.vms:
                self.groups.setdefault(v, []).append((kind, k))
                h = self.where.get(v)
                if h:
                    counts[h] = counts.get(h, 0) + 1
            self.on.append(counts)
        self.rules = list(cons.spread) + list(cons.gather)

    def fits(self, g: NewGuest, h: str) -> str | None:
        """Why ``g`` cannot go on ``h`` now, or None."""
        bad = self.cons.forbidden_by(g.name, h)
        if bad is not None:
            return f"{bad.label} forbids it"
        f = self.free[h]
        if g.mem_mib > f["mem"] + EPS:
            return f"{max(0.0, f['mem']) / 1024:.1f} GiB free within the target, " \
                   f"{g.mem_mib / 1024:.1f} needed"
        if g.cpu > f["cpu"] + EPS:
            return f"{max(0.0, f['cpu']):.2f} CPUs free within the target, {g.cpu:.2f} needed"
        if (g.net_mbps or 0.0) > f["net"] + EPS:
            return "not enough network"
        if f["count"] < 1 - EPS:
            return f"{self.cons.max_vms[h][1].label} allows no more guests"
        for kind, k in self.groups.get(g.name, ()):
            counts = self.on[k]
            rule = self.rules[k]
            if kind == "spread" and counts.get(h):
                other = next(v for v in rule.vms if v != g.name and self.where.get(v) == h)
                return f"{rule.label} keeps it apart from {other}"
            if kind == "gather" and counts and h not in counts:
                return f"{rule.label} gathers it with the guests on {next(iter(counts))}"
        return None

    def _take(self, g: NewGuest, h: str, sign: int) -> None:
        f = self.free[h]
        f["mem"] -= sign * g.mem_mib
        f["cpu"] -= sign * g.cpu
        f["net"] -= sign * (g.net_mbps or 0.0)
        f["count"] -= sign
        for _, k in self.groups.get(g.name, ()):
            counts = self.on[k]
            counts[h] = counts.get(h, 0) + sign
            if not counts[h]:
                del counts[h]
        if sign > 0:
            self.where[g.name] = h
        else:
            self.where.pop(g.name, None)

    def order(self, g: NewGuest) -> list[str]:
        # consolidate/auto: the fullest host that fits (least CPU left after, then memory);
        # balance/repair: the emptiest
        key = (lambda h: (self.free[h]["cpu"], self.free[h]["mem"], h))
        ranked = sorted(self.hosts, key=key)
        return list(reversed(ranked)) if self.spread_first else ranked

    def run(self, i: int = 0) -> bool:
        if i == len(self.guests):
            return True
        self.nodes += 1
        if self.nodes % 256 == 0 and time.monotonic() > self.deadline:
            raise TimeoutError
        g = self.guests[i]
        for h in self.order(g):
            if self.fits(g, h) is None:
                self._take(g, h, +1)
                if self.run(i + 1):
                    return True
                self._take(g, h, -1)
        return False


def _search_order(guests: list[NewGuest], cons: Constraints) -> list[NewGuest]:
    """The most constrained first: guests of gather and spread groups, then by memory."""
    grouped = {v for r in cons.gather + cons.spread for v in r.vms}
    limited = set(cons.fenced) | set(cons.banned)
    return sorted(guests, key=lambda g: (g.name not in grouped, g.name not in limited,
                                         -g.mem_mib, -g.cpu, g.name))


def add_plan(snap: Snapshot, cons: Constraints, guests: list[NewGuest], objective: str,
             cpu_target: float, mem_target: float, time_limit: float,
             wakeable: set[str] | None = None, frugal: list[str] | None = None) -> Plan:
    """The plan that creates every guest of ``guests`` (see the module docstring).
    ``wakeable``: the standby hosts that may be switched on (None: every standby host);
    ``frugal``: standby hosts in the order to wake them (default: the largest first)."""
    deadline = time.monotonic() + time_limit
    _, frozen = problem_guests(snap)
    online = [h.name for h in snap.hosts
              if h.state == "online" and h.name not in frozen and h.name not in cons.maintenance]
    standby = [h.name for h in snap.hosts if h.state == "standby"
               and h.name not in cons.maintenance and (wakeable is None or h.name in wakeable)]
    if frugal is not None:
        rank = {h: i for i, h in enumerate(frugal)}
        standby.sort(key=lambda h: (rank.get(h, len(rank)), h))
    else:
        size = {h.name: (h.mem_mib, h.cpu) for h in snap.hosts}
        standby.sort(key=lambda h: (-size[h][0], -size[h][1], h))
    ordered = _search_order(guests, cons)
    # What no search can get round is said at once (a spread group over too few able hosts
    # would otherwise cost the search every ordering of its guests before it gave up).
    hopeless = _why_not(snap, cons, ordered, online + standby, cpu_target, mem_target,
                        definite_only=True)
    if hopeless:
        raise OperationFailed(hopeless)
    spread_first = objective in ("balance", "repair")
    found = None
    woken: tuple[str, ...] = ()
    try:
        for k in range(len(standby) + 1):
            for extra in itertools.combinations(standby, k):
                search = _Search(snap, cons, ordered, online + list(extra), cpu_target,
                                 mem_target, spread_first, deadline)
                if search.run():
                    found, woken = search, extra
                    break
            if found is not None:
                break
    except TimeoutError:
        raise OperationFailed(f"no placement of the {len(guests)} new guests found within "
                              f"--time-limit ({time_limit:g} s): nothing is planned") from None
    if found is None:
        raise OperationFailed(_why_not(snap, cons, ordered, online + standby, cpu_target,
                                       mem_target))
    actions: list[Action] = []
    power_id: dict[str, int] = {}
    for h in woken:
        actions.append(Action.power(len(actions) + 1, "power-on", h,
                                    reason=f"provision: room for the new guests on {h}"))
        power_id[h] = actions[-1].id
    placement = snap.guest_hosts()
    for g in sorted(guests, key=lambda g: g.name):
        h = found.where[g.name]
        placement[g.name] = h
        actions.append(Action(id=len(actions) + 1, op="create", vm=g.name, src="", dst=h,
                              mem_mib=g.mem_mib, vcpus=g.vcpus, cpu=g.cpu, config=g.config,
                              after=[power_id[h]] if h in power_id else [],
                              reason=f"provision: {g.name} on {h}"))
    summary = {"created": len(guests), "hosts_woken": list(woken), "migrations": 0,
               "migrated_mib": 0, "hosts_before": len({v.host for v in snap.vms}),
               "hosts_after": len(set(placement.values()))}
    plan = Plan(origin=snap, placement=placement, actions=actions, objective=objective,
                constraints=cons.to_list(), summary=summary,
                solver={"name": "provision", "status": "feasible",
                        "method": f"backtracking search, {found.nodes} nodes, "
                                  f"{'emptiest' if spread_first else 'fullest'} host first"})
    check_plan(plan, cons)
    return plan


def _why_not(snap: Snapshot, cons: Constraints, guests: list[NewGuest], hosts: list[str],
             cpu_target: float, mem_target: float, definite_only: bool = False) -> str | None:
    """Why the group cannot be placed. ``definite_only``: only what makes it impossible
    whatever the search does (None when nothing does)."""
    n = len(guests)
    head = f"the {n} new guests cannot all be placed (nothing is planned): "
    if not hosts:
        return head + "no online or standby host takes new guests"
    probe = _Search(snap, cons, guests, hosts, cpu_target, mem_target, False,
                    time.monotonic() + 5)
    need_mem = sum(g.mem_mib for g in guests)
    need_cpu = sum(g.cpu for g in guests)
    have_mem = sum(max(0.0, f["mem"]) for f in probe.free.values())
    have_cpu = sum(max(0.0, f["cpu"]) for f in probe.free.values())
    if need_mem > have_mem + EPS:
        return head + (f"they need {need_mem / 1024:.1f} GiB of memory; the hosts have "
                       f"{have_mem / 1024:.1f} GiB free within --mem-target {mem_target:g}")
    if need_cpu > have_cpu + EPS:
        return head + (f"they need {need_cpu:.2f} CPUs; the hosts have {have_cpu:.2f} free "
                       f"within --cpu-target {cpu_target:g}")
    named = set(cons.banned) | set(cons.fenced) | set(probe.groups)
    fits_somewhere: dict[tuple, bool] = {}      # guests no rule names: by their size only
    for g in guests:
        key = (g.mem_mib, g.cpu, g.net_mbps)
        if g.name not in named and fits_somewhere.get(key):
            continue
        if any(probe.fits(g, h) is None for h in hosts):
            fits_somewhere[key] = fits_somewhere.get(key, False) or g.name not in named
            continue
        why = {h: probe.fits(g, h) for h in hosts[:5]}
        shown = "; ".join(f"{h}: {w}" for h, w in why.items())
        more = f"; and {len(hosts) - 5} more hosts" if len(hosts) > 5 else ""
        return head + (f"{g.name} ({g.mem_mib / 1024:.1f} GiB, {g.cpu:.2f} CPUs) fits on "
                       f"no host: {shown}{more}")
    for s in cons.spread:
        members = [g for g in guests if g.name in s.vms]
        if members:
            room = []
            for h in hosts:               # enough hosts able to take one of them?
                if any(probe.fits(g, h) is None for g in members):
                    room.append(h)
                    if len(room) >= len(members):
                        break
            if len(members) > len(room):
                return head + (f"{s.label} needs {len(members)} hosts apart for "
                               f"{', '.join(g.name for g in members)}; only "
                               f"{len(room)} can take any of them ({', '.join(room)})")
    if definite_only:
        return None
    return head + ("each fits somewhere, but not all together under the rules and the free "
                   "room (spread, gather, max_vms, memory); free room first, or relax a rule")
