"""What a replay reads, whatever its source: the hosts, where each guest starts, and samples of
every guest's demand over time.

A :class:`Trace` holds:

* ``hosts``: capacity of each host (:class:`~vmtools.model.Host`, all ``online``);
* ``placement``: guest -> host at the first sample (the replay's own placement from then on);
* ``samples``: sorted by time; each maps every guest present at that time to its
  :class:`Demand` and, where the source says, the host the source saw it on (used only to place
  a guest that appears mid-way);
* ``step``: the usual time between two samples (their median spacing), which the last sample
  also lasts;
* ``notes``: what the reading decided about odd input (gaps, guests arriving or leaving), for
  the document and stderr.

How odd input is handled (documented in vm-replay(1)):

* a guest missing from some samples but present again later is a *gap*: its last demand holds;
* a guest absent from every later sample has *left* (shut down) at the first sample without it;
* a guest first seen after the first sample *arrives* then, on the host the source names if it
  has the memory, else on the running host with the most free memory;
* samples further apart than three times ``step`` are a gap in time: demand holds meanwhile.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

from vmtools.errors import OptionError
from vmtools.model import Host, epoch_to_iso


@dataclass(frozen=True)
class Demand:
    cpu: float                       # physical CPUs
    mem_mib: int
    net_mbps: float | None = None
    vcpus: int = 1


@dataclass
class Sample:
    time: float                                  # epoch seconds
    vms: dict[str, Demand]
    seen_on: dict[str, str] = field(default_factory=dict)   # guest -> host, where known
    # What monitoring could not vouch for at this time (a recorded snapshot's problems), and
    # the guests those problems name that the snapshot did not list: they still run (at their
    # last known demand) but the tick's snapshot leaves them out, as vm-snapshot did.
    problems: list = field(default_factory=list)
    hidden: set[str] = field(default_factory=set)
    # Where each guest's row came from, for messages: the file and, for a CSV trace, the line.
    file: str = ""
    lines: dict[str, int] = field(default_factory=dict)

    def origin(self, vm: str) -> str:
        """``file:line`` of ``vm``'s row (``file`` alone, or "" when unknown)."""
        line = self.lines.get(vm)
        return f"{self.file}:{line}" if line and self.file else self.file


@dataclass
class Trace:
    source: str
    hosts: list[Host]
    placement: dict[str, str]
    samples: list[Sample]
    step: float
    notes: list[str] = field(default_factory=list)

    @property
    def start(self) -> float:
        return self.samples[0].time

    @property
    def end(self) -> float:
        return self.samples[-1].time + self.step

    def repeated(self, times: int) -> "Trace":
        """The trace played ``times`` times back to back: each repetition starts where the
        previous one ends (its samples shifted by the trace's span), the guests keep their
        names, and the placement is the first repetition's."""
        if times <= 1:
            return self
        rows = sum(len(s.vms) for s in self.samples)
        if rows * times > MAX_REPEATED_ROWS:
            raise OptionError("repeat", f"{times}: {rows:,} rows played {times:,} times is more "
                              f"than {MAX_REPEATED_ROWS:,} rows to hold in memory")
        span = self.end - self.start
        samples = list(self.samples)
        for k in range(1, times):
            samples += [Sample(s.time + k * span, dict(s.vms), dict(s.seen_on),
                               list(s.problems), set(s.hidden), s.file, s.lines)
                        for s in self.samples]
        notes = list(self.notes) + [f"the trace is played {times} times back to back, "
                                    f"{span / 3600:g} h each"]
        return Trace(f"{self.source} x{times}", self.hosts, dict(self.placement), samples,
                     self.step, notes)


# Rows (a guest at a time) a repeated trace may hold: about 500 MiB of samples. The tick limit
# of the engine (MAX_TICKS) bounds the replay's length; this bounds what --repeat builds first.
MAX_REPEATED_ROWS = 5_000_000


def sample_step(times: list[float], default: float = 300.0) -> float:
    """The median spacing of ``times`` (``default`` for a single sample)."""
    gaps = [b - a for a, b in zip(times, times[1:]) if b > a]
    return float(statistics.median(gaps)) if gaps else default


def finish(trace: Trace) -> Trace:
    """Fill the gaps of ``trace`` (a guest's last demand holds until it is seen again) and add
    notes on gaps, arrivals and departures. Samples must be sorted by time."""
    samples = trace.samples
    last_seen: dict[str, int] = {}
    for i, s in enumerate(samples):
        for vm in s.vms:
            last_seen[vm] = i
    current: dict[str, Demand] = {}
    gaps: dict[str, int] = {}
    left: dict[str, float] = {}
    arrived: list[str] = []
    for i, s in enumerate(samples):
        for vm, d in s.vms.items():
            if vm not in current and i > 0:
                arrived.append(vm)
            current[vm] = d
        for vm in list(current):
            if vm in s.vms:
                continue
            if vm in s.hidden:                    # a problem names it: it runs, unseen
                s.vms[vm] = current[vm]
                continue
            if last_seen[vm] > i:                 # seen again later: a gap, the value holds
                s.vms[vm] = current[vm]
                gaps[vm] = gaps.get(vm, 0) + 1
            else:
                left[vm] = s.time
                del current[vm]
    for vm in sorted(gaps):
        trace.notes.append(f"guest {vm} has no sample at {gaps[vm]} time(s) before it is seen "
                           "again: its last demand holds meanwhile")
    for vm in sorted(arrived):
        first = next(s.time for s in samples if vm in s.vms)
        trace.notes.append(f"guest {vm} appears at {epoch_to_iso(first)}: placed then")
    for vm in sorted(left):
        trace.notes.append(f"guest {vm} is gone from {epoch_to_iso(left[vm])}: it leaves then")
    for a, b in zip(samples, samples[1:]):
        if b.time - a.time > 3 * trace.step:
            trace.notes.append(f"no sample between {epoch_to_iso(a.time)} and "
                               f"{epoch_to_iso(b.time)}: demand holds at its last value")
    return trace
