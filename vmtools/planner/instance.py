"""A snapshot and its rules as flat arrays the heuristics and MILP models work on.

Hosts and guests are numbered; ``cap[d][h]`` is what a target placement may use of host
``h`` in dimension ``d`` (``cpu``, ``mem``, ``net`` when the snapshot has it), ``dem[d][v]``
what guest ``v`` needs. ``allowed[v]`` lists the hosts a guest may be placed on (ban, fence,
maintenance, offline and frozen hosts removed); ``fixed[v]`` is set for guests that must not
move (pin rules, guests named in the snapshot's problems, guests in cooldown, guests of a
frozen host). A frozen host (:mod:`vmtools.knowledge`) keeps its guests, except those
``leaving[v]`` it: the fewest that end an overload its known guests alone already cause.
"""

from __future__ import annotations

import bisect
import functools
import itertools
import math
from collections.abc import Iterable, Iterator, Sequence, Set as AbstractSet
from dataclasses import dataclass, field
from operator import attrgetter

from vmtools.model import Snapshot
from vmtools.rules.capacity import EPS
from vmtools.rules.constraints import Constraints
from vmtools.rules.load import host_capacity
from vmtools.sources.knowledge import assess

_NAME, _HOST, _CPU, _MEM = (attrgetter(f) for f in ("name", "host", "cpu", "mem_mib"))


@dataclass
class Instance:
    snapshot: Snapshot
    constraints: Constraints
    hosts: list[str]
    vms: list[str]
    dims: list[str]
    cap: dict[str, list[float]]
    dem: dict[str, list[float]]
    count_cap: list[float]
    cur: list[int]
    allowed: list[list[int]]
    fixed: list[bool]
    frozen_hosts: set[int]                 # take nothing new (problems)
    spread: list[list[int]] = field(default_factory=list)
    gather: list[list[int]] = field(default_factory=list)
    hard_cap: dict[str, list[float]] = field(default_factory=dict)
    leaving: dict[int, str] = field(default_factory=dict)   # guest -> why it leaves a frozen host

    @functools.cached_property
    def scale(self) -> dict[str, float]:
        """Per dimension, a typical host's capacity (the mean of the finite ones): a demand
        divided by it compares across dimensions (the heuristics' sort keys)."""
        out = {}
        for d in self.dims:
            finite = [c for c in self.cap[d] if math.isfinite(c) and c > 0]
            out[d] = (sum(finite) / len(finite)) if finite else 1.0
        return out

    @property
    def n_hosts(self) -> int:
        return len(self.hosts)

    @property
    def n_vms(self) -> int:
        return len(self.vms)

    def used(self, placement: list[int]) -> dict[str, list[float]]:
        use = {d: [0.0] * self.n_hosts for d in self.dims}
        for v, h in enumerate(placement):
            for d in self.dims:
                use[d][h] += self.dem[d][v]
        return use

    def valid(self, placement: list[int], eps: float = EPS, hard: bool = False) -> bool:
        """True when ``placement`` meets every capacity and rule of a target (``hard``: the
        hosts' real capacities instead of the targets, e.g. --cpu-target)."""
        use = self.used(placement)
        caps = {d: (self.hard_cap.get(d) or self.cap[d]) if hard else self.cap[d]
                for d in self.dims}
        counts = [0] * self.n_hosts
        for v, h in enumerate(placement):
            counts[h] += 1
            if h not in self.allowed_set(v):
                return False
        for h in range(self.n_hosts):
            if counts[h] > self.count_cap[h]:
                return False
            if any(use[d][h] > caps[d][h] + eps for d in self.dims):
                return False
        for group in self.spread:
            if len({placement[v] for v in group}) < len(group):
                return False
        for group in self.gather:
            if len({placement[v] for v in group}) > 1:
                return False
        return True

    def usable_hosts(self) -> set[int]:
        """Every host some guest may use: the union of the allowed lists, each distinct list
        read once (unconstrained guests share one list; 100,000 guests x 1,000 hosts read
        guest by guest cost 11 s a call)."""
        seen: dict[int, list[int]] = {}
        for a in self.allowed:
            seen.setdefault(id(a), a)
        # a list less a few bans adds nothing to its base's, when some guest has that
        return {h for a in seen.values()
                if not (isinstance(a, _Without) and id(a.base) in seen) for h in a}

    def allowed_set(self, v: int) -> AbstractSet[int]:
        """The hosts guest ``v`` may use, as a set to test membership in (read only)."""
        return self.allowed_sets()[v]

    def allowed_sets(self) -> list[AbstractSet[int]]:
        """:meth:`allowed_set` of every guest, by guest (read only)."""
        if not hasattr(self, "_allowed_sets"):
            # Guests with the same list share its set (one set per guest was 6 GB at 5,000
            # hosts / 30,000 guests); a guest banned from a few hosts gets its list's base
            # set less those few, never a set of its own (1,500 such guests of 20,000 hosts
            # took 3.1 GB).
            shared: dict[int, AbstractSet[int]] = {}
            sets: list[AbstractSet[int]] = []
            for a in self.allowed:
                s = shared.get(id(a))
                if s is None:
                    if isinstance(a, _Without):
                        base = shared.get(id(a.base))
                        if base is None:
                            base = shared[id(a.base)] = set(a.base)
                        s = shared[id(a)] = Except(base, a.gone)
                    else:
                        s = shared[id(a)] = set(a)
                sets.append(s)
            self._allowed_sets = sets
        return self._allowed_sets


class Except(AbstractSet[int]):
    """A set ``base`` less the few elements ``gone``, without a copy of ``base``: read only.
    ``&`` with a set (either side) gives a plain set."""

    __slots__ = ("base", "gone", "_len")

    def __init__(self, base: AbstractSet[int], gone: frozenset[int]):
        self.base, self.gone = base, gone
        self._len = len(base) - sum(1 for h in gone if h in base)

    def __contains__(self, h: object) -> bool:
        return h in self.base and h not in self.gone

    def __iter__(self) -> Iterator[int]:
        gone = self.gone
        return (h for h in self.base if h not in gone)

    def __len__(self) -> int:
        return self._len

    @classmethod
    def _from_iterable(cls, it: Iterable[int]) -> set[int]:
        return set(it)

    def __and__(self, other):
        if isinstance(other, Except):
            out = _intersect(self.base, other.base)
            out -= other.gone
        elif isinstance(other, (set, frozenset)):
            out = _intersect(self.base, other)
        elif isinstance(other, AbstractSet):
            out = {h for h in other if h in self.base}
        else:
            return NotImplemented
        out -= self.gone
        return out

    __rand__ = __and__


def _intersect(a: AbstractSet[int], b: AbstractSet[int]) -> set[int]:
    """``a & b`` as a new plain set, the smaller one walked."""
    if isinstance(a, Except) or isinstance(b, Except):
        return set(a & b)
    small, big = (a, b) if len(a) <= len(b) else (b, a)
    return {h for h in small if h in big}


class _Without(Sequence):
    """``base`` (a shared ascending list) less the few hosts ``gone``, read through
    ``base`` without a copy (1,500 banned guests' copies of 20,000 hosts were 0.4 s and
    240 MB of an idle run): a read-only sequence, equal to the list it stands for;
    ``base`` and ``gone`` kept so :meth:`Instance.allowed_set` shares ``base``'s set."""

    __slots__ = ("base", "gone", "_at")

    def __init__(self, base: list[int], gone: frozenset[int]):
        self.base, self.gone = base, gone
        # where the gone hosts stand in ``base`` (ascending); hosts not in it ignored
        at = []
        for h in sorted(gone):
            i = bisect.bisect_left(base, h)
            if i < len(base) and base[i] == h:
                at.append(i)
        self._at = at

    def __len__(self) -> int:
        return len(self.base) - len(self._at)

    def __iter__(self) -> Iterator[int]:
        if not self._at:
            return iter(self.base)
        return itertools.filterfalse(self.gone.__contains__, self.base)

    def __contains__(self, h: object) -> bool:
        if h in self.gone:
            return False
        i = bisect.bisect_left(self.base, h)
        return i < len(self.base) and self.base[i] == h

    def __getitem__(self, i):
        if isinstance(i, slice):
            return list(self)[i]
        n = len(self)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError("list index out of range")
        for p in self._at:          # the i-th kept element: step over each gone one
            if p <= i:
                i += 1
        return self.base[i]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, _Without):
            return self.base is other.base and self._at == other._at or \
                list(self) == list(other)
        if isinstance(other, (list, tuple)):
            return len(self) == len(other) and list(self) == list(other)
        return NotImplemented

    __hash__ = None                 # type: ignore[assignment]   # as a list's

    def __repr__(self) -> str:
        return repr(list(self))


def _without(hosts: list[int], gone: set[int]) -> _Without:
    """``hosts`` (ascending) without ``gone``, without a copy of ``hosts``."""
    return _Without(hosts, frozenset(gone))


def build_instance(snap: Snapshot, cons: Constraints, *, cpu_limit: float = 0.8,
                   cpu_demand: str = "usage", fixed_vms: set[str] | None = None,
                   frozen_hosts: set[str] | None = None, mem_limit: float = 1.0,
                   frozen_hot: dict[str, float] | None = None) -> Instance:
    """A frozen host's guests stay, except when its known guests alone use more than its
    capacity (the fewest that end it leave), or, with ``frozen_hot`` (a fraction of the capacity
    per dimension: the hotspot thresholds of auto and balance), more than that fraction (then
    any of them may leave, and the objective's relief picks which).
``cpu_limit`` is the fraction of each host's CPU a target may use (``--cpu-target``
    for consolidate, ``--cpu-threshold`` for balance, 1.0 for repair); ``mem_limit`` the
    fraction of its memory (``--mem-target`` for consolidate). ``hard_cap`` keeps the whole."""
    hosts = sorted(h.name for h in snap.hosts)
    hidx = {h: i for i, h in enumerate(hosts)}
    byname = {h.name: h for h in snap.hosts}
    # the guests in the order of their names (unique), their figures read in C
    ordered = sorted(snap.vms, key=_NAME)
    vms = list(map(_NAME, ordered))
    has_net = any(h.net_mbps for h in snap.hosts) and any(v.net_mbps for v in snap.vms)
    dims = ["cpu", "mem"] + (["net"] if has_net else [])
    dem = {"cpu": [float(vm.vcpus) for vm in ordered] if cpu_demand == "vcpus"
           else list(map(_CPU, ordered)), "mem": list(map(float, map(_MEM, ordered)))}
    if has_net:
        dem["net"] = [vm.net_mbps or 0.0 for vm in ordered]
    # What each host gives under the rules (vmtools.rules.load): within the target
    # fractions (cap) and whole (hard_cap).
    targets = [host_capacity(byname[h], cons, cpu_limit, mem_limit) for h in hosts]
    whole = [host_capacity(byname[h], cons) for h in hosts]
    cap = {"cpu": [c for c, _ in targets], "mem": [m for _, m in targets]}
    hard = {"cpu": [c for c, _ in whole], "mem": [m for _, m in whole]}
    if has_net:
        cap["net"] = [byname[h].net_mbps or math.inf for h in hosts]
        hard["net"] = list(cap["net"])
    count_cap = [float(cons.max_vms[h][0]) if h in cons.max_vms else math.inf for h in hosts]
    cur = list(map(hidx.__getitem__, map(_HOST, ordered)))
    frozen = {hidx[h] for h in (frozen_hosts or set()) if h in hidx}
    usable = [i for i, h in enumerate(hosts)
              if byname[h].state == "online" and h not in cons.maintenance and i not in frozen]
    fixed_names = set(cons.pinned) | set(fixed_vms or ())
    fixed = [v in fixed_names for v in vms]
    leaving = _leaving(frozen, cur, fixed, dem, hard, hosts,
                       {v for r in cons.gather for v in r.vms}, vms, frozen_hot) \
        if frozen else {}
    for i in range(len(vms)):
        if cur[i] in frozen and i not in leaving:
            fixed[i] = True
    allowed = _allowed_lists(cons, hosts, hidx, vms, usable, fixed, cur, leaving)
    # Guests that stay put keep their host usable for what they use now.
    for d in dims:
        fixed_load = [0.0] * len(hosts)
        for i in range(len(vms)):
            if fixed[i]:
                fixed_load[cur[i]] += dem[d][i]
        cap[d] = [max(c, f) for c, f in zip(cap[d], fixed_load)]
    vidx = {v: i for i, v in enumerate(vms)}
    return Instance(snapshot=snap, constraints=cons, hosts=hosts, vms=vms, dims=dims, cap=cap,
                    dem=dem, count_cap=count_cap, cur=cur, allowed=allowed, fixed=fixed,
                    frozen_hosts=frozen, leaving=leaving,
                    spread=[[vidx[v] for v in r.vms] for r in cons.spread],
                    gather=[[vidx[v] for v in r.vms] for r in cons.gather], hard_cap=hard)


def _allowed_lists(cons: Constraints, hosts: list[str], hidx: dict[str, int], vms: list[str],
                   usable: list[int], fixed: list[bool], cur: list[int],
                   leaving: dict[int, str]) -> list[list[int]]:
    """Each guest's allowed hosts (:attr:`Instance.allowed`), lists shared where guests
    share them."""
    allowed: list[list[int]] = []
    usable_names = {hosts[i] for i in usable}
    # one list per migration domain, shared by its guests (a guest limited by nothing else
    # may go to any usable host of its domain)
    in_domain: dict[str, list[int]] = {}
    if cons.vm_domain:
        for i in usable:
            in_domain.setdefault(cons.host_domain.get(hosts[i], ""), []).append(i)
    fenced_lists: dict[tuple, list[int]] = {}
    # the guests some rule limits (the others, most of them, take the shared list)
    limited = {v for v, f in cons.fenced.items() if f} | cons.banned.keys() | \
        cons.vm_domain.keys()
    for i, v in enumerate(vms):
        if fixed[i]:
            allowed.append([cur[i]])
            continue
        if v not in limited and i not in leaving:
            allowed.append(usable)
        elif i in leaving:        # may stay too: the target's capacity says how many go
            allowed.append(sorted({cur[i]} | {h for h in usable if cons.allowed(v, hosts[h])}))
        elif not cons.fenced.get(v) and v not in cons.banned and v not in cons.vm_domain:
            allowed.append(usable)
        elif not cons.fenced.get(v) and v not in cons.banned:
            allowed.append(in_domain.get(cons.vm_domain[v], []))
        elif not cons.fenced.get(v):
            # banned from a few hosts: its domain's (or every) usable host but those (host
            # by host through the rules, 4,500 such guests of 20,000 hosts took 120 s)
            base = in_domain.get(cons.vm_domain[v], []) if v in cons.vm_domain else usable
            allowed.append(_without(base, {hidx[h] for h in cons.banned[v] if h in hidx}))
        else:           # fenced: guests of one fence (and the same bans) share a list
            key = (frozenset(cons.fenced[v]), frozenset(cons.banned.get(v, ())),
                   cons.vm_domain.get(v))
            mine = fenced_lists.get(key)
            if mine is None:
                mine = fenced_lists[key] = sorted(hidx[h] for h in
                                                  cons.allowed_among(v, usable_names))
            allowed.append(mine)
    return allowed


_WORDS = {"cpu": "CPU", "mem": "memory", "net": "network"}


def _leaving(frozen: set[int], cur: list[int], fixed: list[bool], dem: dict[str, list[float]],
             hard: dict[str, list[float]], hosts: list[str], gathered: set[str],
             vms: list[str], hot: dict[str, float] | None = None) -> dict[int, str]:
    """Per frozen host whose known guests alone use more than its capacity (CPU or memory),
    the guests that leave it: the most relief per MiB first, until the overload ends (or no
    guest that may move is left). With ``hot``, every guest that may move of a frozen host
    whose known guests alone are above those fractions (a hotspot): the relief chooses.
    Nothing else leaves a frozen host."""
    on: dict[int, list[int]] = {h: [] for h in frozen}
    for v, h in enumerate(cur):
        if h in on:
            on[h].append(v)
    out: dict[int, str] = {}
    for h, guests in sorted(on.items()):
        use = {d: sum(dem[d][v] for v in guests) for d in ("cpu", "mem")}
        excess = {d: use[d] - hard[d][h] for d in use if use[d] > hard[d][h] + EPS}
        if not excess and hot:
            warm = [d for d in use if use[d] > hot.get(d, 1.0) * hard[d][h] + EPS]
            if warm:
                shown = ", ".join(f"{_WORDS[d]} {use[d] / hard[d][h]:.0%}" for d in warm)
                why = f"its known guests alone make it a hotspot ({shown})"
                out.update({v: why for v in guests
                            if not fixed[v] and vms[v] not in gathered})
            continue
        if not excess:
            continue
        shown = ", ".join(f"{_WORDS[d]} {use[d] / hard[d][h]:.0%}" if hard[d][h] > 0 else
                          _WORDS[d] for d in excess)
        why = f"its known guests alone overload it ({shown})"
        free = [v for v in guests if not fixed[v] and vms[v] not in gathered]

        def relief(v: int) -> float:
            gain = sum(min(dem[d][v], max(0.0, excess[d])) / max(hard[d][h], EPS)
                       for d in excess)
            return gain / max(1.0, dem["mem"][v])
        while any(x > EPS for x in excess.values()) and free:
            free.sort(key=lambda v: (-relief(v), vms[v]))
            v = free.pop(0)
            if relief(v) <= 0:
                break
            out[v] = why
            for d in excess:
                excess[d] -= dem[d][v]
    return out


def violations(inst: Instance, placement: list[int], dims: list[str] | tuple[str, ...] | None = None,
               cap: dict[str, list[float]] | None = None) -> tuple[set[int], list[str]]:
    """What ``placement`` breaks, and the guests that must or may move to repair it: a guest on
    a host a rule forbids, spread guests together, gather guests apart, a guest-count limit, and
    use above ``cap`` (default: the targets) in ``dims`` (default: every dimension). Pinned
    guests are never movable."""
    dims = inst.dims if dims is None else dims
    cap = inst.cap if cap is None else cap
    why: list[str] = []
    movable: set[int] = set()
    use = inst.used(placement)
    counts = [0] * inst.n_hosts
    for h in placement:
        counts[h] += 1
    sets, fixed = inst.allowed_sets(), inst.fixed
    for v, h in enumerate(placement):
        if h not in sets[v] and not fixed[v]:
            movable.add(v)
            why.append(f"{inst.vms[v]} may not stay on {inst.hosts[h]}")
    for h in range(inst.n_hosts):
        over = [_WORDS.get(d, d) for d in dims if use[d][h] > cap[d][h] + EPS]
        if counts[h] > inst.count_cap[h]:
            over.append("guest count")
        if over:
            movable.update(v for v in range(inst.n_vms) if placement[v] == h)
            why.append(f"{inst.hosts[h]} is over its {', '.join(over)} limit")
    for group in inst.spread:
        if len({placement[v] for v in group}) < len(group):
            movable.update(group)
            why.append(f"spread guests {', '.join(inst.vms[v] for v in group)} share a host")
    for group in inst.gather:
        if len({placement[v] for v in group}) > 1:
            movable.update(group)
            why.append(f"gather guests {', '.join(inst.vms[v] for v in group)} are apart")
    return {v for v in movable if not inst.fixed[v]}, why


# --------------------------------------------------------------------------- diagnosis

def gib(mib: float) -> str:
    """Memory for a person: '12 GiB', '1.5 GiB'."""
    return f"{mib / 1024:.0f} GiB" if mib >= 10240 else f"{mib / 1024:.1f} GiB"


def diagnose(inst: Instance) -> str:
    """A reason a person can act on, for a placement problem nothing could solve."""
    cons = inst.constraints
    usable = inst.usable_hosts()
    for h_name in sorted(cons.maintenance):
        here = [v for v in range(inst.n_vms) if inst.hosts[inst.cur[v]] == h_name]
        need = sum(inst.dem["mem"][v] for v in here)
        use = inst.used(inst.cur)
        free = sum(max(0.0, inst.cap["mem"][h] - use["mem"][h]) for h in usable)
        if need > free:
            return (f"evacuating {h_name} needs {gib(need)}; the other hosts have "
                    f"{gib(free)} free")
    for d, unit in (("mem", "memory"), ("cpu", "CPU")):
        need = sum(inst.dem[d])
        have = sum(inst.cap[d][h] for h in usable)
        if need > have + EPS:
            shown = (gib(need), gib(have)) if d == "mem" else (f"{need:.1f} CPUs",
                                                                  f"{have:.1f} CPUs")
            hint = " (raise --cpu-target or use --cpu-demand usage)" if d == "cpu" else ""
            return (f"the guests need {shown[0]} of {unit}; the usable hosts offer "
                    f"{shown[1]}{hint}")
    largest: dict[int, float] = {}      # by allowed list: guests share them (150,000 x
    for v in range(inst.n_vms):         # 20,000 hosts read guest by guest took minutes)
        if not inst.allowed[v]:
            return f"{inst.vms[v]} has no usable host left (ban, fence, maintenance, offline)"
        key = id(inst.allowed[v])
        if key not in largest:
            largest[key] = max((inst.cap["mem"][h] for h in inst.allowed[v]), default=0)
        big = largest[key]
        if inst.dem["mem"][v] > big:
            return (f"{inst.vms[v]} needs {gib(inst.dem['mem'][v])}; the largest host it "
                    f"may use offers {gib(big)}")
    return ("no placement satisfies the rules and capacities together (try fewer rules, a "
            "higher --cpu-target, or a longer --time-limit)")


def problem_guests(snap: Snapshot) -> tuple[set[str], set[str]]:
    """The guests of ``snap`` its problems name, and its frozen hosts
    (:func:`vmtools.knowledge.assess`): the guests stay, the hosts take nothing new."""
    know = assess(snap)
    return {v.name for v in snap.vms if v.name in know.unknown_vms}, set(know.frozen)
