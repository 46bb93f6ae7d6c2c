"""Rule kinds as objects: each kind of a ``vmtools.constraints`` rule knows its fields, how
to validate itself, what it adds to the lookups every part reads, what is left of a rule when
the snapshot lacks some of its names (``prune``), when its rules cannot hold at all
(``contradictions``, before any planning), and how the replay checker verifies it
(BtrPlace-style: a constraint carries its own checker).

What the planner obeys it reads from :class:`~vmtools.rules.constraints.Constraints` in a few
primitives that every kind is expressed in (:class:`~vmtools.rules.primitives.Primitives`):

- hosts a guest may never set foot on (``forbidden_by``): ban, fence, maintenance;
- guests that never move (``pinned``): pin;
- per-host limits (``max_vms``, ``cpu_factor``/``mem_factor``, :mod:`vmtools.rules.capacity`):
  max_vms, capacity;
- groups kept apart at every moment (``spread``) or together in the target (``gather``).

So a new kind that these primitives express is one class here, added to :data:`KINDS`; the
instance builder, the MILP, the heuristics, the scheduler and the checker need no change. A
kind that needs a new primitive adds it to ``Primitives`` and to the planner's model parts.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from vmtools.errors import DataError
from vmtools.model import Plan, Reader
from vmtools.rules.precedence import Replay
from vmtools.rules.primitives import Primitives, Rule


class RuleKind:
    """One kind of rule. Subclasses set :attr:`name` and :attr:`fields` and override what
    applies to them; the defaults do nothing."""

    name = ""
    # Which keys a rule of this kind needs (True) or may have (False), besides "rule".
    fields: dict[str, bool] = {}

    def parse(self, rule: Rule, r: Reader, label: str) -> None:
        """Read and validate the kind's own values (beyond ``vms`` and ``hosts``)."""

    def index(self, cons: Primitives, rule: Rule) -> None:
        """Add ``rule`` to the primitives the planner reads (a ``Constraints`` being built)."""

    def check_target(self, rule: Rule, final: dict[str, str]) -> None:
        """Raise DataError when the plan's final placement ``final`` breaks ``rule``."""

    def check_moments(self, rule: Rule, plan: Plan, replay: Replay) -> None:
        """Raise DataError when some execution order of ``plan`` breaks ``rule`` on the way."""

    # A rule of this kind keeps a meaning with this many of its guests left (see prune).
    min_vms = 1

    def prune(self, rule: Rule, left_vms: list[str], left_hosts: list[str]
              ) -> tuple[str, Rule | None]:
        """What is left of ``rule`` once the guests and hosts the snapshot lacks are left
        out: ("narrowed", the rule on what is left), ("dropped", None) when nothing that means
        something is left, or ("pinned", a pin rule)."""
        if ("vms" in self.fields and len(left_vms) < self.min_vms) or \
                ("hosts" in self.fields and not left_hosts):
            return "dropped", None
        return "narrowed", replace(rule, vms=left_vms, hosts=left_hosts)

    def contradictions(self, cons: Primitives, where: dict[str, str], usable: set[str]
                       ) -> None:
        """Raise DataError when this kind's rules in ``cons`` cannot hold together with the
        others or the snapshot (``where``: each guest's host; ``usable``: the online hosts),
        before any planning."""

    def to_dict(self, rule: Rule) -> dict[str, Any]:
        d: dict[str, Any] = {"rule": self.name}
        if "vms" in self.fields:
            d["vms"] = list(rule.vms)
        if "hosts" in self.fields:
            d["hosts"] = list(rule.hosts)
        for key in ("count", "cpu", "mem"):
            if getattr(rule, key) is not None:
                d[key] = getattr(rule, key)
        return d


class Ban(RuleKind):
    """``vms`` never on ``hosts``, not even for a moment (no pivot there)."""

    name = "ban"
    fields = {"vms": True, "hosts": True}

    def index(self, cons, rule):
        for v in rule.vms:
            cons.banned.setdefault(v, set()).update(rule.hosts)
            for h in rule.hosts:
                cons.ban_rule.setdefault((v, h), rule)


class Fence(RuleKind):
    """``vms`` only on ``hosts`` (several fences of one guest intersect)."""

    name = "fence"
    fields = {"vms": True, "hosts": True}

    def prune(self, rule, left_vms, left_hosts):
        # a fenced guest never goes anywhere the operator did not allow: with none of its
        # hosts left, it stays where it is
        if left_vms and not left_hosts:
            return "pinned", Rule(rule="pin", vms=left_vms, index=rule.index)
        return super().prune(rule, left_vms, left_hosts)

    def index(self, cons, rule):
        hosts = frozenset(rule.hosts)       # one set per rule, its guests share it
        for v in rule.vms:
            cur = cons.fenced.get(v)
            cons.fenced[v] = hosts if cur is None else cur & hosts
            cons.fence_rule[v] = rule


class Pin(RuleKind):
    """``vms`` never move."""

    name = "pin"
    fields = {"vms": True}

    def index(self, cons, rule):
        for v in rule.vms:
            cons.pinned.setdefault(v, rule)


class Group(RuleKind):
    """Rules over a group of at least two guests."""

    fields = {"vms": True}
    min_vms = 2

    def parse(self, rule, r, label):
        if len(rule.vms) < 2:
            raise DataError("needs at least two guests", label)


class Spread(Group):
    """``vms`` on distinct hosts, at every moment."""

    name = "spread"

    def index(self, cons, rule):
        cons.spread.append(rule)

    def contradictions(self, cons, where, usable):
        for s in cons.spread:
            seen: dict[str, str] = {}
            for v in s.vms:
                if v in cons.pinned:
                    h = where[v]
                    if h in seen:
                        raise DataError(f"spreads {seen[h]} and {v}, pinned together on {h}",
                                        s.label)
                    seen[h] = v
            if len(s.vms) > len(usable):
                raise DataError(f"spreads {len(s.vms)} guests over {len(usable)} online hosts",
                                s.label)

    def check_target(self, rule, final):
        seen: dict[str, str] = {}
        for v in rule.vms:
            if v not in final:
                continue          # suspended at the end of the plan: on no host
            if final[v] in seen:
                raise DataError(f"{rule.label}: {seen[final[v]]} and {v} both end on "
                                f"{final[v]}", "plan.placement")
            seen[final[v]] = v

    def check_moments(self, rule, plan, replay):
        where = replay.start        # once per plan: a dict per rule was 150 s at 150,000
        stays = {v: _stays(v, where.get(v, ""), replay) for v in rule.vms}
        for i, u in enumerate(rule.vms):
            for v in rule.vms[i + 1:]:
                for hu, su, eu in stays[u]:
                    for hv, sv, ev in stays[v]:
                        if hu != hv or (su is None and sv is None):
                            continue      # different hosts, or both there before the plan
                        # The stays are disjoint iff one ends (lands elsewhere) before the
                        # other starts.
                        u_first = eu is not None and sv is not None and \
                            (eu == sv or replay.precedes(eu, sv))
                        v_first = ev is not None and su is not None and \
                            (ev == su or replay.precedes(ev, su))
                        if not (u_first or v_first):
                            by = [x for x in (su, sv) if x is not None]
                            raise DataError(
                                f"{rule.label}: {u} and {v} may be on {hu} at the same time "
                                f"(action {by[0]}); order their moves with after",
                                "plan.actions")


class Gather(Group):
    """``vms`` on one host, in the target placement."""

    name = "gather"

    def index(self, cons, rule):
        cons.gather.append(rule)

    def contradictions(self, cons, where, usable):
        spreads: dict[str, list] = {}
        for s in cons.spread:
            for v in s.vms:
                spreads.setdefault(v, []).append(s)
        for g in cons.gather:
            pinned_hosts = {where[v] for v in g.vms if v in cons.pinned}
            if len(pinned_hosts) > 1:
                raise DataError(f"gathers guests pinned on different hosts "
                                f"({', '.join(sorted(pinned_hosts))})", g.label)
            common = usable     # read only: a guest no rule limits leaves it as it is
            for v in g.vms:
                if cons.maintenance or v in cons.fenced or v in cons.banned \
                        or v in cons.vm_domain:
                    common = cons.allowed_among(v, common)
            if pinned_hosts:
                common = common & pinned_hosts
            if not common:
                raise DataError("no host is allowed for all of these guests", g.label)
            near = {id(s): s for v in g.vms for s in spreads.get(v, ())}
            for s in sorted(near.values(), key=lambda r: r.index):
                both = set(g.vms) & set(s.vms)
                if len(both) >= 2:
                    raise DataError(f"{s.label} spreads {', '.join(sorted(both))}, which this "
                                    "rule gathers", g.label)
            for h, (count, r) in cons.max_vms.items():
                if count < len(g.vms) and common <= {h}:
                    raise DataError(f"gathers {len(g.vms)} guests on {h}, where {r.label} "
                                    f"allows {count}", g.label)

    def check_target(self, rule, final):
        ends = sorted({final[v] for v in rule.vms if v in final})
        if len(ends) > 1:
            raise DataError(f"{rule.label}: its guests end on {', '.join(ends)}, not on one "
                            "host", "plan.placement")


class Maintenance(RuleKind):
    """``hosts`` are evacuated and take nothing new."""

    name = "maintenance"
    fields = {"hosts": True}

    def index(self, cons, rule):
        for h in rule.hosts:
            cons.maintenance.setdefault(h, rule)

    def contradictions(self, cons, where, usable):
        for h, r in cons.maintenance.items():
            pinned_here = sorted(v for v in cons.pinned if where.get(v) == h)
            if pinned_here:
                raise DataError(f"evacuates {h}, where {cons.pinned[pinned_here[0]].label} "
                                f"pins {pinned_here[0]}", r.label)


class MaxVms(RuleKind):
    """At most ``count`` guests on each of ``hosts``, at every moment."""

    name = "max_vms"
    fields = {"hosts": True, "count": True}

    def parse(self, rule, r, label):
        try:
            rule.count = r.int("count", minimum=0)
        except DataError as exc:
            raise DataError(f"{exc.where}: {exc.message}", label) from None

    def index(self, cons, rule):
        for h in rule.hosts:
            if h not in cons.max_vms or rule.count < cons.max_vms[h][0]:
                cons.max_vms[h] = (rule.count, rule)

    def contradictions(self, cons, where, usable):
        for h, (count, r) in cons.max_vms.items():
            pinned_here = [v for v in cons.pinned if where.get(v) == h]
            if len(pinned_here) > count:
                raise DataError(f"allows {count} guests on {h}, where {len(pinned_here)} are "
                                "pinned", r.label)


MIN_FRACTION = 0.01


class Capacity(RuleKind):
    """``hosts`` may use only ``cpu`` / ``mem`` (fractions) of their capacity."""

    name = "capacity"
    fields = {"hosts": True, "cpu": False, "mem": False}

    def parse(self, rule, r, label):
        try:
            rule.cpu = r.num("cpu", False)
            rule.mem = r.num("mem", False)
        except DataError as exc:
            raise DataError(f"{exc.where}: {exc.message}", label) from None
        if rule.cpu is None and rule.mem is None:
            raise DataError("needs cpu or mem (a fraction of the host's capacity)", label)
        # Below 1 % a host holds nothing anyway: a typo (0.00001 for 0.1), not a limit.
        if rule.cpu is not None and not MIN_FRACTION <= rule.cpu <= 4:
            raise DataError(f"cpu must be a fraction from {MIN_FRACTION:g} to 4, got "
                            f"{rule.cpu:g}", label)
        if rule.mem is not None and not MIN_FRACTION <= rule.mem <= 1:
            raise DataError(f"mem must be a fraction from {MIN_FRACTION:g} to 1 (memory is "
                            f"never overcommitted), got {rule.mem:g}", label)

    def index(self, cons, rule):
        for h in rule.hosts:
            if rule.cpu is not None and (h not in cons.cpu_cap or rule.cpu < cons.cpu_cap[h][0]):
                cons.cpu_cap[h] = (rule.cpu, rule)
            if rule.mem is not None and (h not in cons.mem_cap or rule.mem < cons.mem_cap[h][0]):
                cons.mem_cap[h] = (rule.mem, rule)


class Priority(RuleKind):
    """``vms`` have ``priority`` (0-9; higher keeps running longer when vm-plan's context
    switch must suspend guests to end an overload beyond the cluster, and is resumed first);
    ``never_suspend``: these guests are never suspended, by any plan. A guest named by several
    priority rules has the highest they give."""

    name = "priority"
    fields = {"vms": True, "priority": True, "never_suspend": False}

    def parse(self, rule, r, label):
        try:
            rule.priority = r.int("priority", minimum=0, maximum=9)
            rule.never_suspend = r.bool("never_suspend", False, False)
        except DataError as exc:
            raise DataError(f"{exc.where}: {exc.message}", label) from None

    def index(self, cons, rule):
        for v in rule.vms:
            if v not in cons.priority or rule.priority > cons.priority[v][0]:
                cons.priority[v] = (rule.priority, rule)
            if rule.never_suspend:
                cons.never_suspend.setdefault(v, rule)

    def check_moments(self, rule, plan, replay):
        if not rule.never_suspend:
            return
        for a in plan.actions:
            if a.op == "suspend" and a.vm in rule.vms:
                raise DataError(f"action {a.id} suspends {a.vm}, which {rule.label} never "
                                "suspends", "plan.actions")

    def to_dict(self, rule):
        d = {"rule": self.name, "vms": list(rule.vms), "priority": rule.priority}
        if rule.never_suspend:
            d["never_suspend"] = True
        return d


# Every kind, in the order error messages list them.
KINDS: dict[str, RuleKind] = {k.name: k for k in (Ban(), Fence(), Pin(), Spread(), Gather(),
                                                   Maintenance(), MaxVms(), Capacity(),
                                                   Priority())}

# The order the kinds check for contradictions (a file with several is refused for the first
# one met): gather, spread, max_vms and maintenance as they always were, then the others.
_FIRST = ("gather", "spread", "max_vms", "maintenance")
CONTRADICTION_ORDER: list[RuleKind] = [KINDS[n] for n in _FIRST] + \
    [k for k in KINDS.values() if k.name not in _FIRST]


def _stays(vm: str, origin_host: str, replay: Replay
           ) -> list[tuple[str, int | None, int | None]]:
    """The hosts ``vm`` occupies: (host, action that brings it or None for the origin,
    action whose landing ends the stay or None for the end of the plan)."""
    acts = replay.by_vm.get(vm, [])
    stays = []
    host, start = origin_host, None
    for a in acts:
        if a.op == "checkpoint":
            continue              # the guest keeps running where it is
        if host:                  # "": suspended, or not created yet (on no host)
            stays.append((host, start, a.id))
        host, start = a.dst, a.id
    if host:
        stays.append((host, start, None))
    return stays
