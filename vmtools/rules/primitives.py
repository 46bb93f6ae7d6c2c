"""A rule as read, and the few primitives every rule kind is expressed in: what the planner
and the checker read, whatever kinds of rule produced them (:mod:`vmtools.rules.kinds` says
what each kind adds; :class:`~vmtools.rules.constraints.Constraints` holds both).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Rule:
    """One rule of a ``vmtools.constraints`` document; its kind says which fields it has."""

    rule: str
    vms: list[str] = field(default_factory=list)
    hosts: list[str] = field(default_factory=list)
    count: int | None = None
    cpu: float | None = None
    mem: float | None = None
    priority: int | None = None          # priority: 0-9, higher keeps running longer
    never_suspend: bool = False          # priority: these guests are never suspended
    index: int = 0

    @property
    def label(self) -> str:
        """How messages name the rule: ``rules[2] (fence)``."""
        return f"rules[{self.index}] ({self.rule})"


class DomainRule(Rule):
    """The migration domains (not a rule of any document): a guest moves only between hosts
    of its own domain (vmtools-formats(5), the hosts' ``domain``)."""

    @property
    def label(self) -> str:
        return "the migration domains (cross_domain is off)"


DOMAINS = DomainRule(rule="domain", index=-1)


class Primitives:
    """Hosts a guest may never set foot on, guests that never move, per-host limits, groups
    kept apart or together; each with the rule that asks for it (for messages)."""

    def __init__(self) -> None:
        self.banned: dict[str, set[str]] = {}
        self.fenced: dict[str, frozenset[str]] = {}     # shared by a fence's guests
        self.fence_rule: dict[str, Rule] = {}
        self.ban_rule: dict[tuple[str, str], Rule] = {}
        self.pinned: dict[str, Rule] = {}
        self.maintenance: dict[str, Rule] = {}
        self.max_vms: dict[str, tuple[int, Rule]] = {}
        self.cpu_cap: dict[str, tuple[float, Rule]] = {}
        self.mem_cap: dict[str, tuple[float, Rule]] = {}
        self.spread: list[Rule] = []
        self.gather: list[Rule] = []
        # the context switch (vm-plan --context-switch): who is suspended last, and never
        self.priority: dict[str, tuple[int, Rule]] = {}
        self.never_suspend: dict[str, Rule] = {}
        # the migration domains, when a snapshot has several and moves between them are not
        # allowed: each host's domain and each guest's (its host's); empty: no such limit
        self.host_domain: dict[str, str] = {}
        self.vm_domain: dict[str, str] = {}
        self.domains_decided = False     # fence_domains ran (allowing moves across or not)

    def forbidden_by(self, vm: str, host: str) -> Rule | None:
        """The rule that forbids ``vm`` from ever setting foot on ``host``, or None."""
        if host in self.maintenance:
            return self.maintenance[host]
        if host in self.banned.get(vm, ()):
            return self.ban_rule[(vm, host)]
        allowed = self.fenced.get(vm)
        if allowed is not None and host not in allowed:
            return self.fence_rule[vm]
        home = self.vm_domain.get(vm)
        if home is not None and self.host_domain.get(host, "") != home:
            return DOMAINS
        return None

    def allowed(self, vm: str, host: str) -> bool:
        return self.forbidden_by(vm, host) is None

    def allowed_among(self, vm: str, hosts: set[str]) -> set[str]:
        """The hosts of ``hosts`` that ``vm`` may use (:meth:`allowed` of each, by set
        operations: a gather's check over 20,000 hosts host by host took seconds)."""
        fence = self.fenced.get(vm)
        out = hosts & fence if fence is not None else set(hosts)
        if self.maintenance:
            out -= self.maintenance.keys()
        ban = self.banned.get(vm)
        if ban:
            out -= ban
        home = self.vm_domain.get(vm)
        if home is not None:
            out = {h for h in out if self.host_domain.get(h, "") == home}
        return out

    def priority_of(self, vm: str) -> int:
        """A guest's priority (0 when no rule gives one): higher keeps running longer."""
        return self.priority[vm][0] if vm in self.priority else 0

    def cpu_factor(self, host: str) -> float:
        return self.cpu_cap[host][0] if host in self.cpu_cap else 1.0

    def mem_factor(self, host: str) -> float:
        return self.mem_cap[host][0] if host in self.mem_cap else 1.0
