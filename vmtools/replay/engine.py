"""The simulation: one setting (a vm-plan command line or a baseline) over a trace, in simulated
time, and the figures of the replay document (vmtools-formats(5), REPLAY).

Time advances from event to event: a demand sample, a cron tick, an action that ends. Between
two events nothing changes, so every figure is an exact sum over those intervals.

* **Cron tick** every ``every_minutes`` from the start of the trace. The tick builds the
  snapshot of that moment (the replay's own placement, the snapshot's ``created`` = the tick)
  and asks the policy for actions. What demand the snapshot carries is the replay's
  *convention*: by default (``lag``) each guest's CPU and network demand averaged over the
  interval that just ended (``every_minutes`` before the tick), as a monitoring system reports
  it, while the placement is judged on the demand that follows; with ``lookahead`` the demand
  of the latest sample, the one that holds from the tick on (a policy sees the next interval,
  as CloudSim's simulations do). Memory is the guest's allocation at the tick either way (the
  toolstack knows it at once). A guest with no demand in the interval (the first tick of a
  trace, a guest just arrived) carries its latest sample. Planning takes no
  simulated time (its wall-clock time is reported apart, so figures stay deterministic).
  A tick that finds the previous plan still running is *busy* and skipped, as vm-rebalance's
  lock makes a second cron run leave at once.
* **Execution** follows vm-apply's scheduler: the moment a slot frees, the ready action with the
  highest priority starts (the most loaded of its two hosts in MiB, then the longest chain of
  work behind it, then the lowest id); at most ``parallel`` migrations run at once and at most
  ``per_host`` touch one host; an action waits for its ``after`` actions. A migration takes
  ``1 s + memory / bandwidth`` (vm-plan's estimate): the guest runs (uses CPU) on its source
  until it lands and holds its memory on both hosts meanwhile. An action whose guest has left
  (shut down) is not run, nor are the actions after it.
* **Power** (``power-off``/``power-on`` actions): see :class:`PowerHooks`; a host in standby
  draws the power model's standby watts (0 by default) and takes nothing.

Figures (per setting): ``host_hours`` (host-time with at least one guest, resident or arriving);
``energy_kwh`` (every host: its power model's watts at its CPU use, capped at 100 %, idle when
it has no guest, standby watts when switched off); ``overload_hours`` (host-time with CPU demand
above capacity) and ``over_threshold_hours`` (above ``cpu_threshold`` of it);
``unmet_cpu_share`` (CPU demand above capacity over all CPU demand, integrated over time);
``slatah``, ``pdm``, ``slav`` as Beloglazov & Buyya (2012) define them: SLATAH = mean over the
hosts that were active of the share of their active time at 100 % CPU (demand >= capacity);
PDM = mean over the guests of the CPU degradation during their migrations (10 % of their CPU
demand while in flight) over their whole CPU demand; SLAV = SLATAH x PDM;
``memory_over_capacity`` (host-intervals whose memory, in-flight guests counted on both ends,
exceeded capacity: always 0 unless something is wrong); ``migrations`` and ``migrated_gib``
(landed); ``max_migrations_per_tick``; ``ping_pongs`` (migrations to a host the guest left, by
landing elsewhere, at most an hour before); ``plan_seconds_mean``/``plan_seconds_max`` (wall
clock of the planning calls); ``failed_ticks`` (planning raised an error; ``failures`` says
why); ``busy_ticks``. Under vm-plan --context-switch also ``suspended_guest_hours`` per priority,
``suspends`` and ``resumes``: a suspend or resume takes a migration's time (the image saved or
loaded), a resume claims memory when it starts, a suspend frees it when it ends, and a suspended
guest's CPU demand counts as unmet.

Over 500 lines because the simulation is one state machine (demand, placement, actions in
flight, power, the context switch, the figures) whose parts read each other's state every
tick; split, each part would reach into the others' fields.
"""

from __future__ import annotations

import bisect
import contextlib
import logging
import math
import signal
import sys
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Callable, Iterator, Protocol

from vmtools.apply.order import may_start, priorities
from vmtools.errors import EXIT_TEMPFAIL, OperationFailed, OptionError, UsageError, VmtoolsError
from vmtools.model import HOST_STATES, VM, Action, Plan, Snapshot, epoch_to_iso
from vmtools.power_model import DEFAULT, PowerModel
from vmtools.replay.trace import Demand, Sample, Trace
from vmtools.rules.load import FRACTION_EPS, migration_seconds
from vmtools.sources.knowledge import assess

log = logging.getLogger("vmtools.replay")

EPS = FRACTION_EPS            # vmtools.rules.load: the simulation's tolerance
PING_PONG_SECONDS = 3600.0
PDM_SHARE = 0.10              # Beloglazov & Buyya: a migration costs 10 % of the guest's CPU


class Policy(Protocol):
    """A setting under replay: ``decide`` returns the actions of one cron run."""

    name: str
    kind: str                 # "vm-plan" or "baseline"

    def decide(self, snap: Snapshot) -> list[Action]: ...


@dataclass
class SimOptions:
    every_minutes: float = 5.0
    parallel: int = 2
    per_host: int = 1
    bandwidth: float = 1000.0         # Mbit/s per migration
    cpu_threshold: float = 0.9
    power_model: PowerModel = field(default_factory=lambda: DEFAULT)
    boot_seconds: float = 180.0       # power-on until the host takes guests
    halt_seconds: float = 60.0        # power-off until the host draws standby watts
    start: float | None = None        # epoch seconds; default: the trace's
    until: float | None = None
    warm_up: float = 0.0              # seconds run but left out of the figures and series
    lookahead: bool = False           # the tick sees the interval that starts (else: that ended)
    monitoring_loss: float = 0.0      # each guest's metrics, each host's report lost this often
    loss_seed: int = 0                # the losses are drawn from this seed (reproducible)

    @property
    def convention(self) -> str:
        return "lookahead" if self.lookahead else "lag"


@dataclass
class RunResult:
    name: str
    kind: str
    figures: dict
    series: dict
    failures: list[dict] = field(default_factory=list)
    warm_up_figures: dict | None = None     # the warm-up's own figures (bench/replay_bench.py)


def action_host(a: Action) -> str:
    """The host a power action switches (``host``, where the plan carries it)."""
    return getattr(a, "host", None) or a.src or a.dst


class PowerHooks:
    """How power actions play out. ``start`` returns the action's duration; ``finish`` puts
    the host in its new state. Host states: ``on``, ``standby``, ``booting``, ``halting``
    (the last two draw idle watts and take no new guest). Override to model more."""

    def start(self, sim: "Simulation", a: Action, now: float) -> float:
        host = action_host(a)
        if a.op == "power-off":
            sim.power[host] = "halting"
            return sim.opts.halt_seconds
        sim.power[host] = "booting"
        return sim.opts.boot_seconds

    def finish(self, sim: "Simulation", a: Action, now: float) -> None:
        sim.power[action_host(a)] = "standby" if a.op == "power-off" else "on"


class Simulation:
    def __init__(self, trace: Trace, policy: Policy, opts: SimOptions,
                 hooks: PowerHooks | None = None,
                 progress: Callable[[int, int], None] | None = None):
        self.trace = trace
        self.policy = policy
        self.opts = opts
        self.hooks = hooks or PowerHooks()
        self.progress = progress
        self.hosts = {h.name: h for h in trace.hosts}
        self.host_names = sorted(self.hosts)
        self.curves = {h: opts.power_model.for_host(h) for h in self.host_names}
        self.power = {h: "on" for h in self.host_names}
        self.place = dict(trace.placement)          # guest -> host it runs on
        self.demand: dict[str, Demand] = {}
        self.waiting: dict[str, str | None] = {}    # arrived guests no host could take yet
        self.flight: dict[str, int] = {}            # guest -> migrate action id in flight
        # the context switch (vm-plan --context-switch): guests suspended (as vm-apply's
        # ledger has them) and guests being resumed (resume action id; memory claimed)
        self.suspended: dict[str, dict] = {}
        self.starting: dict[str, int] = {}
        self.actions: dict[int, Action] = {}
        self.pending: list[int] = []
        self.running: dict[int, float] = {}         # action id -> end time
        self.done: set[int] = set()
        self.dead: set[int] = set()                 # not run
        self.busy: Counter = Counter()
        self.left: dict[str, dict[str, float]] = {}  # guest -> host -> time it left
        self.now = 0.0
        self.req_since = 0.0
        self.next_sample = 0
        self.h_cpu: dict[str, float] = {}
        self.h_mem: dict[str, float] = {}
        self.h_n: dict[str, int] = {}
        self.sample_times = [s.time for s in trace.samples]
        self.held: set[str] = set()                 # guests whose memory growth was held
        self.warm_up_figures: dict | None = None
        self._reset_figures()

    def _reset_figures(self) -> None:
        """Zero every figure: at the start, and again when the warm-up ends (what the settings
        did meanwhile stays in their placement and state, not in the figures)."""
        self.active_s = 0.0
        self.energy_j = 0.0
        self.overload_s = 0.0
        self.over_thr_s = 0.0
        self.unmet_cpu_s = 0.0
        self.cpu_s = 0.0
        self.t_active: Counter = Counter()
        self.t_full: Counter = Counter()
        self.c_req: Counter = Counter()
        self.c_deg: Counter = Counter()
        self.mem_over = 0
        self.migrations = 0
        self.migrated_mib = 0.0
        self.max_per_tick = 0
        self.ping_pongs = 0
        self.power_actions = Counter()
        self.suspended_s: Counter = Counter()       # priority -> guest-seconds suspended
        self.lifecycle = Counter()                  # suspends and resumes done
        self.plan_seconds: list[float] = []
        self.failures: list[dict] = []
        self.busy_ticks = 0
        self.tick_energy_j = 0.0
        self.tick_migrations = 0
        self.frozen_host_ticks = 0      # hosts a tick's snapshot froze, summed over the ticks
        self.refused_ticks = 0          # ticks vm-plan refused: monitoring broken (exit 75)
        self.onto_frozen = 0            # migrations planned onto a frozen host (never, by rule)
        self.off_frozen = 0             # ... off one (only to end an overload)
        self.lost_guest_metrics = 0
        self.lost_host_reports = 0

    # ------------------------------------------------------------------ demand
    def _apply_samples(self) -> None:
        samples = self.trace.samples
        while self.next_sample < len(samples) and samples[self.next_sample].time <= self.now + EPS:
            s = samples[self.next_sample]
            self.next_sample += 1
            self._flush_requested()
            for vm in list(self.place):
                if vm not in s.vms:
                    self._leave(vm)
            for vm in list(self.suspended):         # shut down while suspended: gone
                if vm not in s.vms and vm not in self.starting:
                    del self.suspended[vm]
            for vm in list(self.waiting):
                if vm not in s.vms:
                    del self.waiting[vm]
            before = self.demand
            self.demand = dict(s.vms)
            self._hold_growth(before, s)
            for vm in sorted(s.vms):
                if vm not in self.place and vm not in self.waiting and \
                        vm not in self.suspended:
                    self.waiting[vm] = s.seen_on.get(vm)
            for vm in sorted(self.waiting):
                self._arrive(vm, self.waiting[vm])
            self._recount()

    def _hold_growth(self, before: dict[str, Demand], sample: Sample) -> None:
        """A guest whose memory grows in the trace beyond what its host has free keeps what it
        can get, as on a real host: Xen cannot balloon a guest past the host's free memory (the
        guest sees its target unmet). Said once per guest on stderr; the replay's figures then
        never show a host over its memory (which would be vmtools' own bug)."""
        use = self._mem_use()
        over = {h for h in use if use[h] > self.hosts[h].mem_mib + EPS}
        if not over:
            return
        where: dict[str, list[str]] = {}
        for vm, h in self.place.items():
            where.setdefault(vm, []).append(h)
        for vm, i in self.flight.items():
            where.setdefault(vm, []).append(self.actions[i].dst)
        for vm in sorted(where):
            old = before.get(vm)
            new = self.demand.get(vm)
            if old is None or new is None or new.mem_mib <= old.mem_mib:
                continue
            hosts = [h for h in where[vm] if h in over]
            if not hosts:
                continue
            cut = min(new.mem_mib - old.mem_mib,
                      max(math.ceil(use[h] - self.hosts[h].mem_mib) for h in hosts))
            if cut <= 0:
                continue
            self.demand[vm] = replace(new, mem_mib=new.mem_mib - cut)
            for h in where[vm]:
                use[h] -= cut
            over = {h for h in use if use[h] > self.hosts[h].mem_mib + EPS}
            if vm not in self.held:
                self.held.add(vm)
                where = sample.origin(vm)
                log.warning("note: %sthe trace grows guest %s to %d MiB at %s, more than host "
                            "%s has free: it gets %d MiB (Xen cannot balloon a guest past its "
                            "host's free memory)", f"{where}: " if where else "", vm,
                            new.mem_mib, epoch_to_iso(self.now), "/".join(hosts),
                            new.mem_mib - cut)
            if not over:
                return

    def _flush_requested(self) -> None:
        """Add each placed guest's CPU demand since the last flush to its PDM denominator
        (demand and the set of placed guests change only when a sample applies)."""
        dt = self.now - self.req_since
        if dt > 0:
            for vm in self.place:
                self.c_req[vm] += self.demand[vm].cpu * dt
        self.req_since = self.now

    def _recount(self) -> None:
        """Each host's CPU (resident guests), memory and guest count (arriving ones too)."""
        self.h_cpu = dict.fromkeys(self.host_names, 0.0)
        self.h_mem = dict.fromkeys(self.host_names, 0.0)
        self.h_n = dict.fromkeys(self.host_names, 0)
        for vm, h in self.place.items():
            d = self.demand[vm]
            self.h_cpu[h] += d.cpu
            self.h_mem[h] += d.mem_mib
            self.h_n[h] += 1
        for vm, i in list(self.flight.items()) + list(self.starting.items()):
            dst = self.actions[i].dst
            self.h_mem[dst] += self.demand[vm].mem_mib
            self.h_n[dst] += 1

    def _mem_use(self) -> Counter:
        use: Counter = Counter()
        for vm, h in self.place.items():
            use[h] += self.demand[vm].mem_mib
        for vm, i in list(self.flight.items()) + list(self.starting.items()):
            use[self.actions[i].dst] += self.demand[vm].mem_mib
        return use

    def _arrive(self, vm: str, hint: str | None) -> None:
        need = self.demand[vm].mem_mib
        use = self._mem_use()
        on = [h for h in self.host_names if self.power[h] == "on"]
        free = {h: self.hosts[h].mem_mib - use[h] for h in on}
        host = hint if hint in free and free[hint] >= need else None
        if host is None:
            best = None
            for h in on:                      # the most free memory; the first name on a tie
                if best is None or free[h] > free[best]:
                    best = h
            host = best if best is not None and free[best] >= need else None
        if host is not None:
            self.place[vm] = host
            del self.waiting[vm]

    def _leave(self, vm: str) -> None:
        del self.place[vm]
        i = self.flight.pop(vm, None)
        if i is not None:                         # shut down in flight: the move is void
            a = self.actions[i]
            del self.running[i]
            self.busy[a.src] -= 1
            self.busy[a.dst] -= 1
            self.dead.add(i)

    # ------------------------------------------------------------------ integration
    def _integrate(self, dt: float) -> None:
        if dt <= 0:
            return
        for vm in self.flight:
            self.c_deg[vm] += PDM_SHARE * self.demand[vm].cpu * dt
        watts = 0.0
        thr = self.opts.cpu_threshold
        n_active = 0
        for h in self.host_names:
            cap = self.hosts[h].cpu
            c = self.h_cpu[h]
            if self.power[h] == "standby":
                watts += self.curves[h].standby_w
            else:
                watts += self.curves[h].watts(c / cap if cap > 0 else 1.0)
            self.cpu_s += c * dt
            if c > cap + EPS:
                self.overload_s += dt
                self.unmet_cpu_s += (c - cap) * dt
            if c > thr * cap + EPS:
                self.over_thr_s += dt
            if self.h_n[h]:
                n_active += 1
                self.t_active[h] += dt
                if c >= cap - EPS:
                    self.t_full[h] += dt
            if self.h_mem[h] > self.hosts[h].mem_mib + EPS:
                self.mem_over += 1
        for vm, entry in self.suspended.items():
            # a suspended guest's demand is demand nobody meets
            want = self.demand[vm].cpu if vm in self.demand else entry["cpu"]
            self.cpu_s += want * dt
            self.unmet_cpu_s += want * dt
            self.suspended_s[entry["priority"]] += dt
        self.active_s += n_active * dt
        self.energy_j += watts * dt
        self.tick_energy_j += watts * dt

    # ------------------------------------------------------------------ execution
    def _finish(self, i: int) -> None:
        a = self.actions[i]
        del self.running[i]
        if a.op == "migrate":
            self.busy[a.src] -= 1
            self.busy[a.dst] -= 1
            del self.flight[a.vm]
            self.place[a.vm] = a.dst
            d = self.demand[a.vm]
            self.h_cpu[a.src] -= d.cpu
            self.h_cpu[a.dst] += d.cpu
            self.h_mem[a.src] -= d.mem_mib
            self.h_n[a.src] -= 1
            self.left.setdefault(a.vm, {})[a.src] = self.now
            self.migrations += 1
            self.migrated_mib += a.mem_mib
        elif a.op == "suspend":
            self.busy[a.src] -= 1
            d = self.demand[a.vm]
            del self.place[a.vm]                      # memory freed when the save ends
            self.h_cpu[a.src] -= d.cpu
            self.h_mem[a.src] -= d.mem_mib
            self.h_n[a.src] -= 1
            self.suspended[a.vm] = {
                "name": a.vm, "host": a.src, "image": a.image, "mem_mib": d.mem_mib,
                "vcpus": d.vcpus, "cpu": d.cpu, "suspended": epoch_to_iso(self.now),
                "priority": self._priority(a.vm)}
            self.lifecycle["suspends"] += 1
        elif a.op == "resume":
            self.busy[a.dst] -= 1
            del self.starting[a.vm]
            self.suspended.pop(a.vm, None)
            self.place[a.vm] = a.dst                  # its memory was claimed at the start
            self.h_cpu[a.dst] += self.demand[a.vm].cpu
            self.lifecycle["resumes"] += 1
        else:
            self.busy[action_host(a)] -= 1
            self.hooks.finish(self, a, self.now)
            self.power_actions[a.op] += 1
        self.done.add(i)

    def _priority(self, vm: str) -> int:
        """A guest's priority under the setting's rules (0 without one)."""
        return int(getattr(self.policy, "priorities", {}).get(vm, 0))

    def _start_ready(self) -> None:
        for i in list(self.pending):
            a = self.actions[i]
            if any(p in self.dead for p in a.after):
                self.pending.remove(i)
                self.dead.add(i)
                continue
            if not all(p in self.done for p in a.after):
                continue
            # vm-apply's rule (vmtools.apply.order): --parallel actions of any kind at once,
            # --per-host on each host an action occupies
            if not may_start(a, len(self.running), self.busy, self.opts.parallel,
                             self.opts.per_host):
                continue
            if a.op == "migrate":
                self.pending.remove(i)
                if self.place.get(a.vm) != a.src or a.vm in self.flight:
                    self.dead.add(i)              # the guest left (shut down) meanwhile
                    continue
                self.busy[a.src] += 1
                self.busy[a.dst] += 1
                self.flight[a.vm] = i
                self.h_mem[a.dst] += self.demand[a.vm].mem_mib
                self.h_n[a.dst] += 1
                if self.now - self.left.get(a.vm, {}).get(a.dst, -math.inf) <= PING_PONG_SECONDS:
                    self.ping_pongs += 1
                self.running[i] = self.now + migration_seconds(a.mem_mib, self.opts.bandwidth)
                self.tick_migrations += 1
            elif a.op in ("suspend", "resume", "create", "checkpoint"):
                host = a.src if a.op in ("suspend", "checkpoint") else a.dst
                self.pending.remove(i)
                ok = (self.place.get(a.vm) == a.src and a.vm not in self.flight) \
                    if a.op in ("suspend", "checkpoint") else \
                    (a.op == "resume" and a.vm in self.suspended and a.vm in self.demand
                     and a.vm not in self.starting)
                if not ok:
                    self.dead.add(i)      # the guest left, or nothing the replay can create
                    continue
                self.busy[host] += 1
                if a.op == "resume":
                    self.starting[a.vm] = i               # memory claimed when it starts
                    self.h_mem[a.dst] += self.demand[a.vm].mem_mib
                    self.h_n[a.dst] += 1
                # saving or loading the memory image, at the migration bandwidth
                self.running[i] = self.now + migration_seconds(a.mem_mib, self.opts.bandwidth)
            else:
                host = action_host(a)
                self.pending.remove(i)
                self.busy[host] += 1
                self.running[i] = self.now + self.hooks.start(self, a, self.now)

    def _next_event(self, limit: float) -> float:
        t = limit
        if self.next_sample < len(self.trace.samples):
            t = min(t, self.trace.samples[self.next_sample].time)
        if self.running:
            t = min(t, min(self.running.values()))
        return t

    def advance(self, to: float) -> None:
        """Run simulated time up to ``to``, handling whatever happens at ``to`` itself."""
        while True:
            t = max(self.now, self._next_event(to))
            self._integrate(t - self.now)
            self.now = t
            self._apply_samples()
            for i in sorted((i for i, end in self.running.items() if end <= self.now + EPS),
                            key=lambda i: (self.running[i], i)):
                self._finish(i)
            self._start_ready()
            if self.now >= to - EPS and not any(
                    end <= self.now + EPS for end in self.running.values()):
                break

    # ------------------------------------------------------------------ ticks
    def lagged(self) -> dict[str, Demand]:
        """Each placed guest's demand as a monitoring system reports it at the tick: CPU and
        network averaged over the ``every_minutes`` that just ended (the trace's samples as
        step functions, over the part of the interval the guest was there); its memory and
        vCPUs now. A guest with no sample in the interval carries its latest one."""
        t1 = self.now
        t0 = t1 - self.opts.every_minutes * 60.0
        samples = self.trace.samples
        i = max(0, bisect.bisect_right(self.sample_times, t0 + EPS) - 1)
        parts = []
        while i < len(samples) and samples[i].time < t1 - EPS:
            s = samples[i]
            end = samples[i + 1].time if i + 1 < len(samples) else s.time + self.trace.step
            lo, hi = max(s.time, t0), min(end, t1)
            if hi > lo + EPS:
                parts.append((s.vms, hi - lo))
            i += 1
        out = {}
        for vm in self.place:
            now = self.demand[vm]
            covered = cpu = net = 0.0
            for vms, dt in parts:
                d = vms.get(vm)
                if d is not None:
                    covered += dt
                    cpu += d.cpu * dt
                    net += (d.net_mbps or 0.0) * dt
            if covered <= EPS:
                out[vm] = now
            else:
                out[vm] = replace(now, cpu=round(cpu / covered, 6),
                                  net_mbps=None if now.net_mbps is None
                                  else round(net / covered, 6))
        return out

    def snapshot(self) -> Snapshot:
        hosts = []
        for name in self.host_names:
            h = self.hosts[name]
            state = self.power[name]
            if state == "on":
                hosts.append(h)
            else:       # standby, or switching: the planner must not count on it
                hosts.append(replace(h, state="standby" if "standby" in HOST_STATES
                                     else "offline"))
        vms = []
        seen = self.demand if self.opts.lookahead else self.lagged()
        for vm in sorted(self.place):
            d = seen[vm]
            vms.append(VM(name=vm, host=self.place[vm], vcpus=d.vcpus, cpu=d.cpu,
                          mem_mib=d.mem_mib, net_mbps=d.net_mbps))
        problems = []
        if self.next_sample > 0:        # what the recorded snapshot of this time could not see
            sample = self.trace.samples[self.next_sample - 1]
            problems = list(sample.problems)
            if sample.hidden:
                vms = [v for v in vms if v.name not in sample.hidden]
        if self.opts.monitoring_loss > 0:
            vms, lost = self._lose(hosts, vms)
            problems += lost
        return Snapshot(hosts=hosts, vms=vms, source=self.trace.source,
                        created=epoch_to_iso(self.now), generator="vm-replay",
                        problems=problems)

    def _lose(self, hosts: list, vms: list) -> tuple[list, list]:
        """--monitoring-loss: each online host's report and each guest's metrics lost with
        that chance, drawn from the seed and the tick's time (the same losses for every
        setting). A lost host report is a ``stale-host`` problem (gmond serves its last
        figures), a guest's lost metrics a ``no-data`` problem (vm-snapshot leaves it out)."""
        import random
        from vmtools.model import Problem
        rng = random.Random(f"{self.opts.loss_seed}:{self.now:.3f}")
        p = self.opts.monitoring_loss
        problems = []
        for h in hosts:
            if h.state == "online" and rng.random() < p:
                self.lost_host_reports += 1
                problems.append(Problem("stale-host", f"host {h.name}: its report was lost "
                                        "(vm-replay --monitoring-loss); its figures are old",
                                        host=h.name))
        kept = []
        for v in vms:
            if rng.random() < p:
                self.lost_guest_metrics += 1
                problems.append(Problem("no-data", f"host {v.host} lists guest {v.name} but its "
                                        "metrics were lost (vm-replay --monitoring-loss); it is "
                                        "left out", host=v.host, vm=v.name))
            else:
                kept.append(v)
        return kept, problems

    def tick(self) -> None:
        if self.pending or self.running:
            self.busy_ticks += 1
            return
        snap = self.snapshot()
        frozen = set(assess(snap).frozen) if snap.problems else set()
        self.frozen_host_ticks += len(frozen & set(self.host_names))
        if hasattr(self.policy, "suspended"):
            self.policy.suspended = {vm: {k: v for k, v in e.items() if k != "priority"}
                                     for vm, e in self.suspended.items()}
        t0 = time.perf_counter()
        try:
            actions = self.policy.decide(snap)
        except VmtoolsError as exc:
            if str(exc).startswith(f"(exit {EXIT_TEMPFAIL})") and frozen:
                # monitoring broken rather than partial: vm-plan planned nothing, as cron would
                self.refused_ticks += 1
            else:
                self.failures.append({"time": snap.created, "why": str(exc)})
            log.info("%s: %s: planning failed: %s", self.policy.name, snap.created, exc)
            actions = []
        self.plan_seconds.append(time.perf_counter() - t0)
        for a in actions:
            if a.op == "migrate":
                self.onto_frozen += a.dst in frozen
                self.off_frozen += a.src in frozen
        self.actions = {a.id: a for a in actions}
        self.done.clear()
        self.dead.clear()
        prio = priorities(self.actions)
        self.pending = sorted(self.actions, key=lambda i: prio[i], reverse=True)
        self.max_per_tick = max(self.max_per_tick,
                                sum(1 for a in actions if a.op == "migrate"))
        self._start_ready()

    def run(self) -> RunResult:
        trace, opts = self.trace, self.opts
        start, end, n_ticks = window(trace, opts)
        every = opts.every_minutes * 60.0
        # demand at the start: the latest sample at or before it
        self.now = start
        first = trace.samples[0]
        self.demand = dict(first.vms)
        self.next_sample = 1
        while self.next_sample < len(trace.samples) \
                and trace.samples[self.next_sample].time <= start + EPS:
            self.next_sample += 1
        self.demand = dict(trace.samples[self.next_sample - 1].vms)
        for vm in list(self.place):
            if vm not in self.demand:
                del self.place[vm]
        for vm in sorted(self.demand):
            if vm not in self.place:
                self.waiting[vm] = trace.samples[self.next_sample - 1].seen_on.get(vm)
                self._arrive(vm, self.waiting[vm])
        self.req_since = start
        self._recount()
        times, active, overloaded, migrations, watts, host_cpu = [], [], [], [], [], []
        host_off: list[list[int]] = []
        warm = warm_up_ticks(opts, n_ticks)
        for k in range(n_ticks):
            t = start + k * every
            self.advance(t)
            if k:
                self._close_tick(migrations, watts, t - (start + (k - 1) * every))
            if k == warm and warm:
                # the warm-up ends: the figures and the series start from here
                self._flush_requested()
                self.warm_up_figures = self.figures(warm)
                self._reset_figures()
                for series in (times, active, overloaded, migrations, watts, host_cpu,
                               host_off):
                    series.clear()
            cpu: Counter = Counter()
            occupied = set(self.place.values()) | {self.actions[i].dst
                                                    for i in self.flight.values()}
            for vm, h in self.place.items():
                cpu[h] += self.demand[vm].cpu
            times.append(epoch_to_iso(t))
            active.append(len(occupied))
            overloaded.append(sum(1 for h in self.host_names if cpu[h] > self.hosts[h].cpu + EPS))
            host_cpu.append([round(cpu[h] / self.hosts[h].cpu, 3) if self.hosts[h].cpu else 0.0
                             for h in self.host_names])
            host_off.append([i for i, h in enumerate(self.host_names) if self.power[h] != "on"])
            self.tick()
            if self.progress:
                self.progress(k + 1, n_ticks)
        self.advance(end)
        self._flush_requested()
        self._close_tick(migrations, watts, end - (start + (n_ticks - 1) * every))
        series = {"time": times, "active_hosts": active, "overloaded_hosts": overloaded,
                  "migrations": migrations, "watts": watts, "hosts": list(self.host_names),
                  "host_cpu": host_cpu, "host_off": host_off}
        return RunResult(self.policy.name, self.policy.kind, self.figures(n_ticks - warm),
                         series, list(self.failures), self.warm_up_figures)

    def _close_tick(self, migrations: list, watts: list, dt: float) -> None:
        migrations.append(self.tick_migrations)
        watts.append(round(self.tick_energy_j / dt, 1) if dt > 0 else 0.0)
        self.tick_migrations = 0
        self.tick_energy_j = 0.0

    def figures(self, n_ticks: int) -> dict:
        ratios = [self.t_full[h] / self.t_active[h] for h in self.host_names
                  if self.t_active[h] > 0]
        slatah = sum(ratios) / len(ratios) if ratios else 0.0
        guests = [vm for vm, c in self.c_req.items() if c > 0]
        pdm = sum(self.c_deg[vm] / self.c_req[vm] for vm in guests) / len(guests) \
            if guests else 0.0
        ps = self.plan_seconds
        return {
            "host_hours": round(self.active_s / 3600, 4),
            "energy_kwh": round(self.energy_j / 3.6e6, 4),
            "overload_hours": round(self.overload_s / 3600, 4),
            "over_threshold_hours": round(self.over_thr_s / 3600, 4),
            "unmet_cpu_share": round(self.unmet_cpu_s / self.cpu_s, 6) if self.cpu_s else 0.0,
            "slatah": round(slatah, 6),
            "pdm": round(pdm, 8),
            "slav": round(slatah * pdm, 10),
            "memory_over_capacity": self.mem_over,
            "migrations": self.migrations,
            "migrated_gib": round(self.migrated_mib / 1024, 3),
            "max_migrations_per_tick": self.max_per_tick,
            "ping_pongs": self.ping_pongs,
            "plan_seconds_mean": round(sum(ps) / len(ps), 4) if ps else 0.0,
            "plan_seconds_max": round(max(ps), 4) if ps else 0.0,
            "failed_ticks": len(self.failures),
            "busy_ticks": self.busy_ticks,
            "ticks": n_ticks,
            "power_offs": self.power_actions["power-off"],
            "power_ons": self.power_actions["power-on"],
            "frozen_host_ticks": self.frozen_host_ticks,
            "refused_ticks": self.refused_ticks,
            "migrations_onto_frozen": self.onto_frozen,
            "migrations_off_frozen": self.off_frozen,
            "lost_host_reports": self.lost_host_reports,
            "lost_guest_metrics": self.lost_guest_metrics,
            **self._switch_figures(),
        }

    def _switch_figures(self) -> dict:
        """Under vm-plan --context-switch only: suspended guest-hours per priority (a guest's
        priority when it was suspended), suspends and resumes done."""
        if not (self.lifecycle or self.suspended_s):
            return {}
        return {"suspended_guest_hours": {str(p): round(s / 3600, 4)
                                          for p, s in sorted(self.suspended_s.items())},
                "suspends": self.lifecycle["suspends"], "resumes": self.lifecycle["resumes"]}


# A replay of more ticks than this is a mistake (a mistyped time in a trace, --every in
# seconds, --repeat of millions): two years of 5-minute cron runs. Each tick keeps its series.
MAX_TICKS = 210_000
# The shortest interval between two cron ticks.
MIN_EVERY_SECONDS = 1.0


def window(trace: Trace, opts: SimOptions) -> tuple[float, float, int]:
    """(start, end, number of ticks) of a replay: the trace's span, clipped to ``start`` and
    ``until``; ticks at start, start + every, ... before the end. More than
    :data:`MAX_TICKS` is a usage error saying what makes them (before any tick runs)."""
    start = trace.start if opts.start is None else max(opts.start, trace.start)
    end = trace.end if opts.until is None else min(opts.until, trace.end)
    if end <= start:
        raise UsageError(f"nothing to replay between {epoch_to_iso(start)} and "
                         f"{epoch_to_iso(end)} (the trace runs from "
                         f"{epoch_to_iso(trace.start)} to {epoch_to_iso(trace.end)})")
    every = opts.every_minutes * 60.0
    if not every >= MIN_EVERY_SECONDS:
        raise OptionError("every", f"{opts.every_minutes:g}: the replay ticks at most "
                          f"once a second ({MIN_EVERY_SECONDS / 60:.4f} min)")
    ticks = (end - start) / every
    if ticks > MAX_TICKS:
        raise OptionError("every", f"{opts.every_minutes:g} gives {ticks:,.0f} ticks "
                          f"from {epoch_to_iso(start)} to {epoch_to_iso(end)}, more than "
                          f"{MAX_TICKS:,}: replay a shorter window ({{start}}, {{until}}), "
                          "fewer repetitions, or check the trace for a mistyped time",
                          settings=("start", "until"))
    return start, end, max(1, math.ceil(ticks - EPS))


def warm_up_ticks(opts: SimOptions, n_ticks: int) -> int:
    """How many of the replay's ``n_ticks`` ticks the warm-up takes (they run, uncounted)."""
    if opts.warm_up <= 0:
        return 0
    warm = math.ceil(opts.warm_up / (opts.every_minutes * 60.0) - EPS)
    if warm >= n_ticks:
        raise UsageError(f"a warm-up of {opts.warm_up / 60:g} min leaves nothing to measure: "
                         f"the replay has {n_ticks} ticks of {opts.every_minutes:g} min")
    return warm


def replay(trace: Trace, policy: Policy, opts: SimOptions | None = None,
           hooks: PowerHooks | None = None,
           progress: Callable[[int, int], None] | None = None) -> RunResult:
    """Replay ``trace`` through ``policy``; the figures and per-tick series of one run."""
    return Simulation(trace, policy, opts or SimOptions(), hooks, progress).run()


def _exit_on(signum: int, frame) -> None:  # noqa: ARG001 - a signal handler's signature
    raise SystemExit(128 + signum)


@contextlib.contextmanager
def stop_on_signals(prog: str = "vm-replay") -> Iterator[None]:
    """SIGTERM and SIGHUP end the replay through its ``finally`` blocks (the solver's
    processes and files are removed), with one line and exit 128 + the signal."""
    previous = {}
    for sig in (signal.SIGTERM, signal.SIGHUP):
        with contextlib.suppress(ValueError, OSError):   # not the main thread: leave it
            previous[sig] = signal.signal(sig, _exit_on)
    try:
        yield
    except SystemExit as exc:
        if isinstance(exc.code, int) and exc.code > 128:
            print(f"{prog}: error: stopped by {signal.Signals(exc.code - 128).name}",
                  file=sys.stderr)
        raise
    finally:
        for sig, handler in previous.items():
            with contextlib.suppress(ValueError, OSError):
                signal.signal(sig, handler)


class VmPlanSetting:
    """A vm-plan setting (``text``: its options as vm-plan's command line takes them; checked
    ``settings`` and the ``documents`` they name, read once), planned through the planner's
    front door (:func:`vmtools.planner.front.plan_run`) on each tick's snapshot.

    A setting with a ``state`` keeps its memory in the replay, from a fresh start, instead of
    the directory it names (the real one is never read or touched), so cooldown and hotspot
    windows run on the replay's clock. Under ``context_switch`` the simulation says which
    guests are suspended (``suspended``: the ledger the planner reads, in memory) and the
    setting learns each guest's priority from the rules of the last plan (``priorities``). A
    tick whose planning fails is a failed tick; its why reads as vm-plan would say it,
    ``(exit 65) ...``. The planner's log lines show with ``show_log`` only.
    """

    kind = "vm-plan"

    def __init__(self, text: str, settings, documents, show_log: bool = False):
        from vmtools.state import State
        self.text = text
        self.name = text.strip() or "vm-plan (defaults)"
        self.settings = settings
        self.documents = documents
        self.show_log = show_log
        self.context_switch = bool(settings.context_switch)
        self.suspended: dict[str, dict] = {}
        self.priorities: dict[str, int] = {}
        self.state = State() if settings.state is not None or self.context_switch else None

    def plan(self, snap: Snapshot) -> Plan:
        from vmtools.model import iso_to_epoch, parse_suspended, suspended_document
        from vmtools.planner.front import plan_run
        from vmtools.planner.scratch import solver_guard
        docs = replace(self.documents, snapshot=snap)
        if self.context_switch:
            # the simulation's suspended guests, as vm-apply's ledger would hold them
            docs.suspended = parse_suspended(suspended_document(self.suspended))
            docs.suspended_path = "(the replay's)"
        planner_log = logging.getLogger("vmtools.planner")
        level = planner_log.level
        if not self.show_log:
            planner_log.setLevel(logging.CRITICAL + 1)
        try:
            with solver_guard(every_child=False, announce=False):
                return plan_run(docs, self.settings, self.state,
                                now=iso_to_epoch(snap.created)).plan
        except VmtoolsError as exc:
            raise OperationFailed(f"(exit {exc.exit_code}) {exc.on_command_line()}") from None
        finally:
            planner_log.setLevel(level)

    def decide(self, snap: Snapshot) -> list[Action]:
        plan = self.plan(snap)
        if self.context_switch:
            for rule in plan.constraints:
                if isinstance(rule, dict) and rule.get("rule") == "priority":
                    for vm in rule.get("vms", []):
                        self.priorities[vm] = max(self.priorities.get(vm, 0),
                                                  int(rule.get("priority", 0)))
        return list(plan.actions)
