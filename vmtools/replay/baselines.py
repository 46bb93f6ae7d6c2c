"""Built-in settings to compare vm-plan with, each from its published description.

``--baseline NAME`` or ``NAME:key=value,...`` (parameters below). Each baseline sees the same
snapshot at every tick as a vm-plan setting does, decides a target placement, and its moves are
ordered by vm-plan's own ordering (:func:`vmtools.planner.schedule.order_moves`: every host
within capacity at every moment) and executed like any plan.

* ``none``: never migrate.
* ``threshold``: the mcollective Xen balancer (rottenbytes.info, "Mcollective & Xen: naughty
  things", 2010). A host whose load stayed above ``load_threshold`` for ``max_over`` minutes
  sends a guest away to the least loaded host that has fewer than ``max_vm_per_host`` guests
  and a load under ``max_load_candidate``. Load is the host's CPU demand over its CPUs (a load
  average per CPU); the guest moved is the busiest one that fits somewhere; one guest per hot
  host per run. Defaults: load_threshold=0.9, max_over=10, max_vm_per_host=64,
  max_load_candidate=0.7.
* ``sandpiper``: Wood et al., "Black-box and Gray-box Strategies for Virtual Machine Migration"
  (NSDI 2007). A hotspot is a host above ``cpu`` (or ``mem``) of its capacity in at least ``k``
  of the last ``n`` observations whose next value, predicted by an AR(1) model of those
  observations, is above it too. Hot hosts by decreasing volume
  ``1/(1-cpu) x 1/(1-mem) x 1/(1-net)``; their guests by decreasing volume-to-size ratio
  (size: memory), each to the least loaded host (lowest volume) that stays under the
  thresholds, until the host is no longer hot. No swaps. Defaults: cpu=0.75, mem=0.95, k=3,
  n=5.
* ``thr-mmt``: Beloglazov & Buyya, "Optimal online deterministic algorithms and adaptive
  heuristics for energy and performance efficient dynamic consolidation of virtual machines in
  Cloud data centers" (CCPE 24(13), 2012), as CloudSim's
  PowerVmAllocationPolicyMigrationStaticThreshold with the minimum-migration-time selection
  implements it. A host above ``threshold`` (0.8) of its CPU is overloaded: its guests with the
  least memory leave one by one until it is not. They are placed by power-aware best fit
  decreasing (by CPU demand, each on the host whose power grows least, never above the
  threshold, never on an overloaded host). Then under-loaded hosts, least used first, are
  emptied when all their guests fit on other running hosts the same way. With ``power=1``
  (the default, as the paper's idle hosts are switched off) running hosts left empty are
  switched off and standby hosts woken for the overloaded hosts' guests; ``power=0`` leaves
  them on (idle).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from vmtools.errors import OperationFailed, OptionError
from vmtools.model import Action, Snapshot
from vmtools.rules.constraints import Constraints
from vmtools.planner.schedule import order_moves
from vmtools.power_model import DEFAULT, PowerModel
from vmtools.rules.load import FRACTION_EPS

EPS = FRACTION_EPS            # vmtools.rules.load
NAMES = ("none", "threshold", "sandpiper", "thr-mmt")


@dataclass
class _View:
    """A snapshot as flat numbers: per host cpu/mem capacity and use, guests per host."""

    hosts: list[str]
    cap_cpu: dict[str, float]
    cap_mem: dict[str, float]
    cap_net: dict[str, float]
    vm_host: dict[str, str]
    vm_cpu: dict[str, float]
    vm_mem: dict[str, float]
    vm_net: dict[str, float]
    cpu: dict[str, float] = field(default_factory=dict)
    mem: dict[str, float] = field(default_factory=dict)
    net: dict[str, float] = field(default_factory=dict)
    guests: dict[str, list[str]] = field(default_factory=dict)

    @classmethod
    def of(cls, snap: Snapshot, standby_too: bool = False) -> "_View":
        states = ("online", "standby") if standby_too else ("online",)
        online = [h for h in snap.hosts if h.state in states]
        v = cls(hosts=sorted(h.name for h in online),
                cap_cpu={h.name: h.cpu for h in online},
                cap_mem={h.name: float(h.mem_mib) for h in online},
                cap_net={h.name: h.net_mbps or 0.0 for h in online},
                vm_host={}, vm_cpu={}, vm_mem={}, vm_net={})
        for h in v.hosts:
            v.cpu[h] = v.mem[h] = v.net[h] = 0.0
            v.guests[h] = []
        for vm in sorted(snap.vms, key=lambda x: x.name):
            if vm.host not in v.cpu:
                continue                       # on a host the baseline may not touch
            v.vm_host[vm.name] = vm.host
            v.vm_cpu[vm.name] = vm.cpu
            v.vm_mem[vm.name] = float(vm.mem_mib)
            v.vm_net[vm.name] = vm.net_mbps or 0.0
            v.cpu[vm.host] += vm.cpu
            v.mem[vm.host] += vm.mem_mib
            v.net[vm.host] += vm.net_mbps or 0.0
            v.guests[vm.host].append(vm.name)
        return v

    def util(self, h: str) -> float:
        return self.cpu[h] / self.cap_cpu[h] if self.cap_cpu[h] > 0 else 1.0

    def take(self, vm: str) -> None:
        """Off its host (still counted as placed there until :meth:`put`)."""
        src = self.vm_host[vm]
        for use, dem in ((self.cpu, self.vm_cpu), (self.mem, self.vm_mem),
                         (self.net, self.vm_net)):
            use[src] -= dem[vm]
        self.guests[src].remove(vm)

    def put(self, vm: str, dst: str) -> None:
        for use, dem in ((self.cpu, self.vm_cpu), (self.mem, self.vm_mem),
                         (self.net, self.vm_net)):
            use[dst] += dem[vm]
        self.guests[dst].append(vm)
        self.vm_host[vm] = dst

    def move(self, vm: str, dst: str) -> None:
        self.take(vm)
        self.put(vm, dst)

    def mem_fits(self, vm: str, h: str) -> bool:
        return self.mem[h] + self.vm_mem[vm] <= self.cap_mem[h] + EPS


def _actions(snap: Snapshot, target: dict[str, str], why: str) -> list[Action]:
    moved = {vm: h for vm, h in target.items()}
    if all(v.host == moved.get(v.name, v.host) for v in snap.vms):
        return []
    full = {v.name: moved.get(v.name, v.host) for v in snap.vms}
    try:
        actions, _ = order_moves(snap, Constraints([]), full,
                                 {vm: why for vm in moved})
    except OperationFailed as exc:
        raise OperationFailed(f"{why}: {exc}") from None
    return actions


def _params(name: str, text: str, defaults: dict[str, float]) -> dict[str, float]:
    out = dict(defaults)
    for item in filter(None, text.split(",")):
        key, sep, value = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or key not in defaults:
            raise OptionError("baseline", f"{name}: unknown parameter {item!r} (known: "
                              f"{', '.join(sorted(defaults))})")
        try:
            out[key] = float(value)
        except ValueError:
            raise OptionError("baseline", f"{name}: {key}={value!r}: expected a number") \
                from None
        if out[key] < 0:
            raise OptionError("baseline", f"{name}: {key} must be >= 0")
    return out


class NoMigration:
    kind = "baseline"

    def __init__(self, name: str = "none", params: str = ""):
        self.name = name
        _params("none", params, {})

    def decide(self, snap: Snapshot) -> list[Action]:
        return []


class Threshold:
    """The mcollective balancer's loop, once per cron tick."""

    kind = "baseline"
    DEFAULTS = {"load_threshold": 0.9, "max_over": 10.0, "max_vm_per_host": 64.0,
                "max_load_candidate": 0.7}

    def __init__(self, name: str = "threshold", params: str = ""):
        self.name = name
        self.p = _params("threshold", params, self.DEFAULTS)
        self.over_since: dict[str, float] = {}

    def decide(self, snap: Snapshot) -> list[Action]:
        from vmtools.model import iso_to_epoch
        now = iso_to_epoch(snap.created)
        v = _View.of(snap)
        p = self.p
        hot = []
        for h in v.hosts:
            if v.util(h) > p["load_threshold"] + EPS:
                since = self.over_since.setdefault(h, now)
                if now - since >= p["max_over"] * 60 - EPS:
                    hot.append(h)
            else:
                self.over_since.pop(h, None)
        target: dict[str, str] = {}
        for h in sorted(hot, key=lambda h: (-v.util(h), h)):
            for vm in sorted(v.guests[h], key=lambda g: (-v.vm_cpu[g], g)):
                cands = [c for c in v.hosts if c != h and len(v.guests[c]) < p["max_vm_per_host"]
                         and v.util(c) < p["max_load_candidate"] and v.mem_fits(vm, c)
                         and v.cpu[c] + v.vm_cpu[vm] <= v.cap_cpu[c] + EPS]
                if cands:
                    dst = min(cands, key=lambda c: (v.util(c), c))
                    v.move(vm, dst)
                    target[vm] = dst
                    self.over_since.pop(h, None)
                    break
        return _actions(snap, target, "threshold: load above load_threshold for max_over")


class Sandpiper:
    kind = "baseline"
    DEFAULTS = {"cpu": 0.75, "mem": 0.95, "net": 0.95, "k": 3.0, "n": 5.0}

    def __init__(self, name: str = "sandpiper", params: str = ""):
        self.name = name
        self.p = _params("sandpiper", params, self.DEFAULTS)
        if not 1 <= self.p["k"] <= self.p["n"]:
            raise OptionError("baseline", "sandpiper: needs 1 <= k <= n")
        self.history: dict[str, list[tuple[float, float, float]]] = {}

    @staticmethod
    def _ar1(xs: list[float]) -> float:
        """The next value of ``xs`` by an AR(1) model fitted to them."""
        if len(xs) < 3:
            return xs[-1]
        mean = sum(xs) / len(xs)
        num = sum((a - mean) * (b - mean) for a, b in zip(xs, xs[1:]))
        den = sum((a - mean) ** 2 for a in xs)
        phi = max(-1.0, min(1.0, num / den)) if den > EPS else 0.0
        return mean + phi * (xs[-1] - mean)

    def decide(self, snap: Snapshot) -> list[Action]:
        v = _View.of(snap)
        p = self.p
        k, n = int(p["k"]), int(p["n"])

        def norm(h: str) -> tuple[float, float, float]:
            net = v.net[h] / v.cap_net[h] if v.cap_net[h] else 0.0
            return (v.util(h), v.mem[h] / v.cap_mem[h] if v.cap_mem[h] else 1.0, net)

        limits = (p["cpu"], p["mem"], p["net"])
        hot = []
        for h in v.hosts:
            obs = self.history.setdefault(h, [])
            obs.append(norm(h))
            del obs[:-n]
            for d in range(3):
                series = [o[d] for o in obs]
                if sum(1 for x in series if x > limits[d] + EPS) >= k \
                        and self._ar1(series) > limits[d] + EPS:
                    hot.append(h)
                    break
        for h in list(self.history):
            if h not in v.cpu:
                del self.history[h]

        def vol(c: float, m: float, nt: float) -> float:
            return 1.0 / ((1 - min(c, 0.999)) * (1 - min(m, 0.999)) * (1 - min(nt, 0.999)))

        def host_vol(h: str) -> float:
            return vol(*norm(h))

        def is_hot(h: str) -> bool:
            return any(x > lim + EPS for x, lim in zip(norm(h), limits))

        target: dict[str, str] = {}
        for h in sorted(hot, key=lambda h: (-host_vol(h), h)):
            def vsr(g: str) -> float:
                cap_net = v.cap_net[h] or math.inf
                return vol(v.vm_cpu[g] / v.cap_cpu[h], v.vm_mem[g] / v.cap_mem[h],
                           v.vm_net[g] / cap_net) / max(v.vm_mem[g], 1.0)
            for g in sorted(v.guests[h], key=lambda g: (-vsr(g), g)):
                if not is_hot(h):
                    break
                fits = [c for c in v.hosts if c != h and v.mem_fits(g, c)
                        and v.cpu[c] + v.vm_cpu[g] <= p["cpu"] * v.cap_cpu[c] + EPS
                        and v.mem[c] + v.vm_mem[g] <= p["mem"] * v.cap_mem[c] + EPS]
                if fits:
                    dst = min(fits, key=lambda c: (host_vol(c), c))
                    v.move(g, dst)
                    target[g] = dst
        return _actions(snap, target, "sandpiper: hotspot")


class ThrMmt:
    kind = "baseline"
    DEFAULTS = {"threshold": 0.8, "power": 1.0}

    def __init__(self, name: str = "thr-mmt", params: str = "",
                 power_model: PowerModel = DEFAULT):
        self.name = name
        self.p = _params("thr-mmt", params, self.DEFAULTS)
        self.power_model = power_model

    def decide(self, snap: Snapshot) -> list[Action]:
        power_on = self.p["power"] > 0
        v = _View.of(snap, standby_too=power_on)
        standby = {h.name for h in snap.hosts if h.state == "standby"} if power_on else set()
        thr = self.p["threshold"]
        curve = {h: self.power_model.for_host(h) for h in v.hosts}

        def power(h: str, util: float) -> float:
            return curve[h].watts(util)

        def find_host(g: str, excluded: set[str]) -> str | None:
            best, best_diff = None, math.inf
            for h in v.hosts:
                if h in excluded or not v.mem_fits(g, h) \
                        or v.cpu[h] + v.vm_cpu[g] > v.cap_cpu[h] + EPS:
                    continue
                after = (v.cpu[h] + v.vm_cpu[g]) / v.cap_cpu[h]
                if v.cpu[h] > EPS and after > thr + EPS:
                    continue
                diff = power(h, after) - power(h, v.util(h))
                if diff < best_diff - EPS:
                    best, best_diff = h, diff
            return best

        overloaded = [h for h in v.hosts if v.util(h) > thr + EPS]
        target: dict[str, str] = {}
        leaving: list[str] = []
        for h in overloaded:
            while v.util(h) > thr + EPS and v.guests[h]:
                g = min(v.guests[h], key=lambda x: (v.vm_mem[x], x))     # minimum migration time
                v.take(g)
                leaving.append(g)
        excluded = set(overloaded)
        for g in sorted(leaving, key=lambda x: (-v.vm_cpu[x], x)):
            dst = find_host(g, excluded)
            v.put(g, dst if dst is not None else v.vm_host[g])
            if dst is not None:
                target[g] = dst
        switched_off = {h for h in v.hosts if not v.guests[h] or h in standby}
        skip_under = set(overloaded) | switched_off
        skip_place = set(overloaded) | switched_off
        while True:
            cands = [h for h in v.hosts if h not in skip_under and 0 < v.util(h) < 1]
            if not cands:
                break
            h = min(cands, key=lambda x: (v.util(x), x))
            skip_under.add(h)
            skip_place.add(h)
            moves: list[tuple[str, str]] = []
            for g in sorted(v.guests[h], key=lambda x: (-v.vm_cpu[x], x)):
                dst = find_host(g, skip_place)
                if dst is None:
                    for g2, _ in reversed(moves):
                        v.move(g2, h)
                    moves = []
                    break
                v.move(g, dst)
                moves.append((g, dst))
            for g, dst in moves:
                target[g] = dst
                skip_under.add(dst)
        actions = _actions(snap, target, "thr-mmt")
        if power_on:
            actions = _with_power(actions, v, standby, "thr-mmt")
        return actions


def _with_power(actions: list[Action], v: _View, standby: set[str], why: str) -> list[Action]:
    """Wake the standby hosts the moves go to (before them) and switch off the running hosts
    left empty (after every move touching them), as Beloglazov & Buyya's idle hosts are."""
    next_id = max((a.id for a in actions), default=0) + 1
    out = list(actions)
    for h in sorted({a.dst for a in actions if a.dst in standby}):
        on = Action.power(next_id, "power-on", h, [], f"{why}: room needed")
        next_id += 1
        out.append(on)
        for a in actions:
            if a.dst == h:
                a.after = sorted(set(a.after) | {on.id})
    for h in v.hosts:
        if h in standby or v.guests[h]:
            continue
        touching = sorted(a.id for a in actions if h in (a.src, a.dst))
        out.append(Action.power(next_id, "power-off", h, touching, f"{why}: idle host"))
        next_id += 1
    return out


def make_baseline(spec: str, power_model: PowerModel = DEFAULT):
    """A baseline from ``NAME`` or ``NAME:key=value,...``."""
    name, _, params = spec.partition(":")
    name = name.strip()
    if name == "none":
        return NoMigration(spec, params)
    if name == "threshold":
        return Threshold(spec, params)
    if name == "sandpiper":
        return Sandpiper(spec, params)
    if name == "thr-mmt":
        return ThrMmt(spec, params, power_model)
    raise OptionError("baseline", f"{spec}: expected one of {', '.join(NAMES)} "
                      "(optionally NAME:key=value,...)")
