"""Per-host use while auto's steps are planned (:class:`Load`): what each host holds, its CPU
demand from its guests' summed samples, and the fit tests against auto's targets that every
step of :mod:`vmtools.planner.policy` (and the greedy repair of :mod:`vmtools.planner.mend`)
places through."""

from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Iterator

from vmtools.planner.demand import planning
from vmtools.planner.fullest import FullestFirst, target_room
from vmtools.planner.instance import Instance
from vmtools.rules.capacity import EPS


class Load:
    """Per-host use while steps are planned; fit tests against the targets.

    With ``series`` (each guest's CPU samples, aligned in time; the newest ``recent`` of them,
    all when None, over the demand window), a host's CPU demand is the statistic ``how`` of
    its guests' *summed* samples over the demand window, never below what they use now:
    guests whose peaks come at different times share headroom, and a host is only as full as
    the window says it was; with ``margin`` (``--forecast``) at least the forecast of the
    summed samples' next interval, so guests whose swings coincide need the headroom of
    their joint swing. Within :meth:`looking_back` (consolidation) the room a host has for
    more guests is judged over the whole series as well. Without series, a host's CPU demand
    is the sum of its guests' planning demands."""

    def __init__(self, inst: Instance, placement: list[int], last_cpu: list[float],
                 series: list[list[float]] | None = None, how: str = "max",
                 margin: float = 0.0, recent: int | None = None):
        self.inst = inst
        self.place = list(placement)
        self.last = last_cpu
        self.series = series
        self.how = how
        self.margin = margin
        self.recent = recent if series and recent and recent < len(series[0]) else None
        self.whole: float | None = None       # within looking_back(): its fraction
        n = inst.n_hosts
        self.use = {d: [0.0] * n for d in inst.dims}
        self.sums = [[0.0] * len(series[0]) for _ in range(n)] if series else None
        self.cached: dict[int, float] = {}
        self.recent_left: dict[str, str] = {}
        self.host_index = {name: i for i, name in enumerate(inst.hosts)}
        self.last_use = [0.0] * n
        self.count = [0] * n
        self.on: list[set[int]] = [set() for _ in range(n)]
        self.fracs: tuple[float, float] | None = None     # auto's targets (CPU, memory)
        self.most: tuple | None = None      # consolidation's most room left (_no_room)
        self.fullest = FullestFirst(n, lambda h: (self.count[h] == 0, -max(self.util(h)),
                                                  inst.hosts[h], h), lambda h: target_room(self, h))
        self._fill()
        self.spread_of: dict[int, list[int]] = {}
        for gi, group in enumerate(inst.spread):
            for v in group:
                self.spread_of.setdefault(v, []).append(gi)

    def _fill(self) -> None:
        """Every guest added where it is, as :meth:`_add` adds them one by one (the same
        sums, in the same order), without a call per guest."""
        for d in self.inst.dims:
            use, dem = self.use[d], self.inst.dem[d]
            for v, h in enumerate(self.place):
                use[h] += dem[v]
        last_use, last, count, on = self.last_use, self.last, self.count, self.on
        for v, h in enumerate(self.place):
            last_use[h] += last[v]
            count[h] += 1
            on[h].add(v)
        if self.sums is not None:
            for v, h in enumerate(self.place):
                row = self.sums[h]
                for i, x in enumerate(self.series[v]):
                    row[i] += x

    def _add(self, v: int, h: int, sign: int = 1) -> None:
        for d in self.inst.dims:
            self.use[d][h] += sign * self.inst.dem[d][v]
        self.last_use[h] += sign * self.last[v]
        self.cached.pop(h, None)
        if self.sums is not None:
            row = self.sums[h]
            for i, x in enumerate(self.series[v]):
                row[i] += sign * x
        self.count[h] += sign
        (self.on[h].add if sign > 0 else self.on[h].discard)(v)
        self.fullest.touch(h)
        if self.most is not None:
            for m in self.most:
                m.touch(h)

    def move(self, v: int, h: int) -> None:
        self._add(v, self.place[v], -1)
        self.place[v] = h
        self._add(v, h)

    def cpu(self, h: int, unit: list[int] = (), row: list[float] | None = None) -> float:
        """CPU demand of host ``h`` (with ``unit`` added) over the demand window; ``row``:
        :meth:`_row`'s, when the caller has it."""
        if self.sums is None:
            return self.use["cpu"][h] + sum(self.inst.dem["cpu"][v] for v in unit)
        if not unit:
            if h not in self.cached:
                self.cached[h] = max(self._planning(self.sums[h]), self.last_use[h])
            return self.cached[h]
        return max(self._planning(row if row is not None else self._row(h, unit)),
                   self.last_use[h] + sum(self.last[v] for v in unit))

    def _row(self, h: int, unit: list[int]) -> list[float]:
        """Host ``h``'s summed samples with ``unit`` added."""
        row = list(self.sums[h])
        for v in unit:
            for i, x in enumerate(self.series[v]):
                row[i] += x
        return row

    def _planning(self, row: list[float]) -> float:
        return planning(row[-self.recent:] if self.recent else row, self.how, self.margin)

    def cpu_all_along(self, h: int, unit: list[int], row: list[float] | None = None) -> float:
        """CPU demand of host ``h`` with ``unit`` added over the whole series."""
        return planning(row if row is not None else self._row(h, unit), self.how, self.margin)

    @contextmanager
    def looking_back(self, fraction: float) -> Iterator[None]:
        """Consolidation's fit tests: a host must also stay under ``fraction`` of its CPUs
        over the whole series (``--consolidate-window``), not only under its target over
        the demand window."""
        self.whole = fraction if self.recent else None
        try:
            yield
        finally:
            self.whole = None

    def util(self, h: int) -> tuple[float, float]:
        cap = self.inst.hard_cap
        return (ratio(self.cpu(h), cap["cpu"][h]), ratio(self.use["mem"][h], cap["mem"][h]))

    def totals(self, unit: list[int]) -> tuple[float, float, float]:
        """What ``unit`` adds to a host: (CPU now, memory, network)."""
        dem = self.inst.dem
        return (sum(self.last[v] for v in unit), sum(dem["mem"][v] for v in unit),
                sum(dem["net"][v] for v in unit) if "net" in dem else 0.0)

    def fits(self, unit: list[int], h: int, cpu_frac: float, mem_frac: float,
             totals: tuple[float, float, float] | None = None) -> bool:
        inst = self.inst
        if self.count[h] + len(unit) > inst.count_cap[h]:
            return False
        for v in unit:
            if h not in inst.allowed_set(v):
                return False
        cap = inst.hard_cap
        last, mem, net = totals or self.totals(unit)
        if self.last_use[h] + last > cpu_frac * cap["cpu"][h] + EPS:
            return False          # the window's demand is never below the use now
        if self.use["mem"][h] + mem > min(mem_frac * cap["mem"][h], inst.cap["mem"][h]) + EPS:
            return False
        if net and self.use["net"][h] + net > inst.cap["net"][h] + EPS:
            return False
        for v in unit:
            for g in self.spread_of.get(v, ()):
                if any(p in self.on[h] for p in inst.spread[g] if p != v):
                    return False
        whole = self.whole
        row = self._row(h, unit) if whole is not None else None    # both windows read it
        if self.cpu(h, unit, row) > cpu_frac * cap["cpu"][h] + EPS:
            return False
        return whole is None or self.cpu_all_along(h, unit, row) <= whole * cap["cpu"][h] + EPS


def ratio(use: float, cap: float) -> float:
    return use / cap if cap > 0 else (math.inf if use > 0 else 0.0)
