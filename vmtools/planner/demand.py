"""Demand from history: each guest's recent CPU samples (kept in ``--state``, or carried by the
snapshot itself when its source keeps history: Prometheus) and the robust estimate vm-plan
plans on (``--demand last|mean|pNN|max`` over ``--demand-window MINUTES``), and the forecast
of the next interval (``--forecast K``): an exponentially weighted mean of the samples plus K
times the weighted mean of its one-step errors, computed from the samples alone, oldest first,
so that only the past enters it.

Samples are ``{guest: [[epoch seconds, cpu], ...]}``, oldest first, one per snapshot time;
a guest's samples older than the window are dropped, and so is a guest no snapshot shows any
more. Memory is what a guest is allocated and needs no estimate.
"""

from __future__ import annotations

import math
import re

from vmtools.errors import OptionError
from vmtools.model import Snapshot
from vmtools.planner.options import Options

DEMANDS = "last, mean, max or pNN (1 <= NN <= 99)"


def parse_demand(text: str) -> str:
    """``last``, ``mean``, ``max`` or ``pNN``; raises OptionError otherwise."""
    t = text.strip().lower()
    if t in ("last", "mean", "max"):
        return t
    m = re.fullmatch(r"p(\d{1,2}(?:\.\d+)?)", t)
    if m and 1 <= float(m.group(1)) <= 99:
        return t
    raise OptionError("demand", f"{text}: expected {DEMANDS}")


def merge(samples: dict[str, list], carried: dict[str, list] | None) -> None:
    """Add the samples a snapshot carries (``snapshot.samples``, from a source that keeps
    history) to ``samples``: per guest, the union by time, the snapshot's figure where both
    have one (the source saw it; the state only remembers an earlier snapshot's)."""
    for name, rows in (carried or {}).items():
        have = {r[0]: r[1] for r in samples.get(name, ())}
        have.update({t: c for t, c in rows})
        samples[name] = [[t, round(c, 4)] for t, c in sorted(have.items())]


def record(samples: dict[str, list], snap: Snapshot, now: float,
           window_minutes: float) -> None:
    """Add this snapshot's CPU use of every guest; forget what left the window (a guest the
    snapshot lacks keeps its samples of the window)."""
    horizon = now - window_minutes * 60
    seen = set()
    for vm in snap.vms:
        seen.add(vm.name)
        rows = samples.setdefault(vm.name, [])
        if rows and rows[-1][0] >= now:       # the same snapshot again: replace
            rows[-1] = [now, round(vm.cpu, 4)]
        else:
            rows.append([now, round(vm.cpu, 4)])
        # Keep at least the newest sample, whatever the window.
        while len(rows) > 1 and rows[0][0] < horizon:
            rows.pop(0)
    # A guest this snapshot does not show (its metrics lost or late, or gone) keeps what it
    # had within the window: one missed sample must not wipe two hours of history (the guest
    # would be planned on its last sample alone, and packed too tight).
    for name in [n for n in samples if n not in seen]:
        rows = [r for r in samples[name] if r[0] >= horizon]
        if rows:
            samples[name] = rows
        else:
            del samples[name]


def estimate(values: list[float], how: str) -> float:
    """The statistic ``how`` of ``values`` (percentiles interpolate linearly)."""
    if not values:
        return 0.0
    if how == "last":
        return values[-1]
    if how == "max":
        return max(values)
    if how == "mean":
        return sum(values) / len(values)
    q = float(how[1:]) / 100.0
    xs = sorted(values)
    pos = q * (len(xs) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


# The forecast's smoothing: the weight of the newest sample in the level and in the error
# (tuning, chosen by replays of the tuning days: bench/README.md, "Forecasting").
FORECAST_ALPHA = 0.3


def forecast(values: list[float], margin: float, alpha: float = FORECAST_ALPHA) -> float:
    """The next interval's demand from ``values`` (oldest first): the exponentially weighted
    level plus ``margin`` times the exponentially weighted mean of the absolute error each
    sample made against the level before it (how far the next sample may stray). Only
    ``values`` enter: what comes after them cannot change it."""
    if not values:
        return 0.0
    level, error = values[0], 0.0
    for x in values[1:]:
        miss = x - level
        error += alpha * (abs(miss) - error)
        level += alpha * miss
    return level + margin * error


def planning(values: list[float], how: str, margin: float = 0.0) -> float:
    """The planning demand of a series (a guest's, or a host's guests' summed): ``how`` over
    the window, and with ``margin`` > 0 at least the forecast of the next interval."""
    value = estimate(values, how)
    if margin > 0 and len(values) > 1:
        value = max(value, forecast(values, margin))
    return value


def estimates(samples: dict[str, list], snap: Snapshot, how: str,
              margin: float = 0.0, since: float = -math.inf) -> dict[str, float]:
    """Each guest's planning demand: the estimate over its samples taken at or after
    ``since`` (:func:`planning`), never below its last sample (a plan must hold for the load
    the hosts carry now: the replay checker counts it, and so do the guests)."""
    out = {}
    for vm in snap.vms:
        rows = [r for r in samples.get(vm.name, ()) if r[0] >= since] or [[0, vm.cpu]]
        out[vm.name] = max(vm.cpu, planning([r[1] for r in rows], how, margin))
    return out


def recent(samples: dict[str, list], snap: Snapshot, since: float) -> int:
    """How many of :func:`history`'s sample times are at or after ``since``."""
    return len({r[0] for vm in snap.vms for r in samples.get(vm.name, ()) if r[0] >= since})


def history(samples: dict[str, list], snap: Snapshot) -> dict[str, list[float]]:
    """Each guest's CPU at every sample time of the window, aligned (a guest not sampled at
    some time holds its nearest earlier value, or its first one), so that a host's demand
    can be summed over its guests time by time. Empty with fewer than two sample times."""
    times = sorted({r[0] for vm in snap.vms for r in samples.get(vm.name, ())})
    if len(times) < 2:
        return {}
    out = {}
    for vm in snap.vms:
        rows = samples.get(vm.name) or [[times[-1], vm.cpu]]
        at = {r[0]: r[1] for r in rows}
        value = rows[0][1]
        values = []
        for t in times:
            value = at.get(t, value)
            values.append(value)
        out[vm.name] = values
    return out


def run_facts(samples: dict[str, list], snap: Snapshot, now: float, opts: Options) -> dict:
    """A run's facts (:class:`vmtools.planner.options.RunFacts`) from the CPU samples kept
    (over ``opts.history_window``, --consolidate-window's when longer): each guest's planning
    demand over --demand-window, every guest's samples aligned, and how many of the newest of
    them are --demand-window's."""
    since = now - opts.demand_window * 60
    return {"cpu_estimate": estimates(samples, snap, opts.demand, opts.forecast, since),
            "cpu_history": history(samples, snap), "cpu_recent": recent(samples, snap, since)}
