"""The ``vmtools.constraints`` document (vmtools-formats(5), CONSTRAINTS): parse, validate,
detect contradictions.

A document is ``{"format": "vmtools.constraints", "version": "1.0", "rules": [...]}``; each
rule is one of:

==============  =====================================================================
``ban``         ``vms`` never on ``hosts`` (not even for a moment: no pivot there)
``fence``       ``vms`` only on ``hosts``
``pin``         ``vms`` never move
``spread``      ``vms`` on distinct hosts, at every moment
``gather``      ``vms`` on one host, in the target placement
``maintenance`` ``hosts`` are evacuated and take nothing new
``max_vms``     at most ``count`` guests on each of ``hosts``, at every moment
``capacity``    ``hosts`` may use only ``cpu`` / ``mem`` (fractions) of their capacity
``priority``    ``vms`` have ``priority`` 0-9 (who is suspended last); ``never_suspend``
==============  =====================================================================

Each kind is an object of :mod:`vmtools.rules.kinds` (its fields, its validation, what it adds
to the lookups of :class:`Constraints`, its part of the replay checker). Errors are
:class:`~vmtools.errors.DataError` whose ``where`` names the rule (``rules[2] (fence)``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

from vmtools.errors import DataError
from vmtools.model import CONSTRAINTS_FORMAT, Reader, Snapshot, check_envelope
from vmtools.rules.kinds import CONTRADICTION_ORDER, KINDS
from vmtools.rules.primitives import Primitives, Rule

RULE_KINDS = tuple(KINDS)

# Which keys each rule needs (True) or may have (False): each kind says (rules.kinds).


@dataclass
class Constraints(Primitives):
    """The rules of a document and the primitives they come to (each kind adds its part)."""

    rules: list[Rule] = field(default_factory=list)

    def __post_init__(self) -> None:
        Primitives.__init__(self)
        for r in self.rules:
            KINDS[r.rule].index(self, r)

    def to_list(self) -> list[dict]:
        return [KINDS[r.rule].to_dict(r) for r in self.rules]


def _names(r: Reader, key: str, label: str) -> list[str]:
    if key not in r.obj:
        raise DataError(f"needs {key}", label)
    try:
        items = r.list(key)
    except DataError as exc:
        raise DataError(f"{key}: {exc.message}", label) from None
    if not items:
        raise DataError(f"{key} is empty", label)
    out = []
    for path, item in items:
        if not isinstance(item, str) or not item:
            raise DataError(f"{path}: expected a name, got {item!r}", label)
        out.append(item)
    if len(set(out)) != len(out):
        raise DataError(f"{key} names the same one twice", label)
    return out


def parse_rules(items: Iterable[Any], snapshot: Snapshot | None = None, *,
                strict: bool = True, skipped: list[dict] | None = None) -> Constraints:
    """Validate a list of rule objects (a document's ``rules`` or a plan's ``constraints``).

    With ``snapshot``, every guest and host a rule names must exist in it (``strict``), and
    rules are checked against each other and against the snapshot for contradictions.
    Without ``strict``, names the snapshot does not know (a guest deleted since the file was
    written, a host retired) are left out of their rule, see :func:`prune_unknown`, and one
    entry per rule touched is appended to ``skipped``.
    """
    rules: list[Rule] = []
    for i, obj in enumerate(items):
        path = f"rules[{i}]"
        r = Reader(obj, path)
        kind = r.raw("rule")
        if not isinstance(kind, str) or kind not in KINDS:
            raise DataError(f"unknown rule {kind!r}; expected one of {', '.join(KINDS)}",
                            path)
        label = f"{path} ({kind})"
        fields = KINDS[kind].fields
        for key in obj:
            if key != "rule" and key not in fields:
                raise DataError(f"unexpected key {key!r} (a {kind} rule has "
                                f"{', '.join(fields)})", label)
        rule = Rule(rule=kind, index=i)
        if "vms" in fields:
            rule.vms = _names(r, "vms", label)
        if "hosts" in fields:
            rule.hosts = _names(r, "hosts", label)
        KINDS[kind].parse(rule, r, label)
        rules.append(rule)
    if snapshot is not None and not strict:
        rules = prune_unknown(rules, snapshot, skipped if skipped is not None else [])
    c = Constraints(rules)
    if snapshot is not None:
        _check_names(c, snapshot)
        _check_contradictions(c, snapshot)
    return c


def parse_constraints(obj: Any, snapshot: Snapshot | None = None, *, strict: bool = True,
                      skipped: list[dict] | None = None) -> Constraints:
    """Validate a whole ``vmtools.constraints`` document (see :func:`parse_rules`)."""
    r = check_envelope(obj, CONSTRAINTS_FORMAT)
    return parse_rules([item for _, item in r.list("rules")], snapshot, strict=strict,
                       skipped=skipped)


def checked_document(obj: Any) -> Any:
    """``obj`` itself once it is a valid ``vmtools.constraints`` document, for a reader that
    keeps the document (vm-status, vm-web) and must refuse a bad one when it starts, naming
    the file, not at the first page or action."""
    parse_constraints(obj)
    return obj


def prune_unknown(rules: list[Rule], snap: Snapshot, skipped: list[dict]) -> list[Rule]:
    """The rules with the guests and hosts ``snap`` does not know left out.

    A rule is kept as long as it still means something: ``spread``/``gather`` with two guests
    left, any other rule with a guest (or host) left on each side it names. What cannot be kept
    is dropped, except a ``fence`` none of whose hosts exists: its guests are pinned instead
    (a fenced guest never goes anywhere the operator did not allow). Each rule touched adds
    ``{"rule": index, "kind": kind, "unknown_vms": [...], "unknown_hosts": [...],
    "outcome": "narrowed"|"dropped"|"pinned", "message": sentence}`` to ``skipped``.
    """
    vms = {v.name for v in snap.vms}
    hosts = {h.name for h in snap.hosts}
    out: list[Rule] = []
    for r in rules:
        gone_vms = [v for v in r.vms if v not in vms]
        gone_hosts = [h for h in r.hosts if h not in hosts]
        if not gone_vms and not gone_hosts:
            out.append(r)
            continue
        left_vms = [v for v in r.vms if v in vms]
        left_hosts = [h for h in r.hosts if h in hosts]
        outcome, kept = KINDS[r.rule].prune(r, left_vms, left_hosts)
        if kept is not None:
            out.append(kept)
        names = ", ".join([f"guest {v}" for v in gone_vms] + [f"host {h}" for h in gone_hosts])
        did = {"narrowed": "the rest of the rule holds",
               "dropped": "nothing is left of it, so it is skipped",
               "pinned": f"its guests ({', '.join(left_vms)}) stay where they are"}[outcome]
        skipped.append({"rule": r.index, "kind": r.rule, "unknown_vms": gone_vms,
                        "unknown_hosts": gone_hosts, "outcome": outcome,
                        "message": f"{r.label} names {names}, not in the snapshot: {did} "
                                   "(--strict-rules refuses such a file)"})
    return out


def _check_names(c: Constraints, snap: Snapshot) -> None:
    vms = {v.name for v in snap.vms}
    hosts = {h.name for h in snap.hosts}
    for r in c.rules:
        for v in r.vms:
            if v not in vms:
                raise DataError(f"unknown guest {v!r} (not in the snapshot)", r.label)
        for h in r.hosts:
            if h not in hosts:
                raise DataError(f"unknown host {h!r} (not in the snapshot)", r.label)


def _check_contradictions(c: Constraints, snap: Snapshot) -> None:
    where = snap.guest_hosts()
    usable = {h.name for h in snap.hosts if h.state == "online"}
    named = c.pinned.keys() | c.fenced.keys() | c.banned.keys()
    for v in filter(named.__contains__, where):     # the others: nothing to contradict
        if v in c.pinned:
            bad = c.forbidden_by(v, where[v])
            if bad is not None:
                raise DataError(f"{c.pinned[v].label} pins {v} on {where[v]}, where "
                                f"{bad.label} forbids it", bad.label)
            continue
        if not any(c.allowed(v, h) for h in usable):
            r = c.fence_rule.get(v) or c.ban_rule[(v, next(iter(c.banned[v])))]
            raise DataError(f"no online host is left for {v} once ban, fence and maintenance "
                            "rules are applied", r.label)
    # then each kind's own (rules/kinds.py)
    for kind in CONTRADICTION_ORDER:
        kind.contradictions(c, where, usable)


def domains_of(snap: Snapshot) -> dict[str, str]:
    """Each host's migration domain ("" when it has none: a snapshot written before the field
    is one domain)."""
    return {h.name: h.domain for h in snap.hosts}


def fence_domains(cons: Constraints, snap: Snapshot, allow_cross: bool = False) -> Constraints:
    """``cons`` with every guest of ``snap`` kept in its host's migration domain (unless
    ``allow_cross``, or the snapshot is one domain): the planner moves nothing across, and
    the checker refuses a plan that does (:data:`~vmtools.rules.primitives.DOMAINS`)."""
    domain = domains_of(snap)
    cons.domains_decided = True
    if allow_cross or len(set(domain.values())) < 2:
        cons.host_domain, cons.vm_domain = {}, {}
        return cons
    cons.host_domain = domain
    cons.vm_domain = {v.name: domain[v.host] for v in snap.vms if v.host in domain}
    return cons
