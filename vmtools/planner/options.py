"""What the planner's algorithms read: :class:`Options` (the user's settings as the planner
takes them, and its tuning) and :class:`RunFacts` (what a run works out on the way from the
state: never a setting).

Every module of the planner that takes ``opts`` takes an :class:`Options`; this module imports
nothing of the planner, so each of them can name the type.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from vmtools.sources.knowledge import DEFAULT_MAX_FROZEN

OBJECTIVES = ("auto", "consolidate", "balance", "repair")

# auto's consolidation fills hosts this much below --cpu-target (--consolidate-target's
# default): chosen by replays of three tuning days with --standby-after 0, bench/README.md
# ("Hysteresis" and "Switching off at once").
HYSTERESIS = 0.15
# A relief puts a guest first on a host that stays this much below --cpu-target
# (--relief-target's default), so the host it fills is not the next hotspot: chosen by replays
# of the three tuning days, bench/README.md ("Room after a relief").
RELIEF_ROOM = 0.1


@dataclass
class RunFacts:
    """Derived during a run from vm-plan's state (``--state``), not chosen by the user."""

    fixed_vms: set[str] = field(default_factory=set)         # cooldown
    hot_filter: set[str] | None = None                        # hosts allowed to count as hot
    cpu_estimate: dict[str, float] | None = None              # guest -> planning CPU demand
    cpu_history: dict[str, list[float]] | None = None         # guest -> window's samples
    # how many of cpu_history's newest samples lie within --demand-window (None: all); the
    # older ones are there for auto's consolidation alone (--consolidate-window)
    cpu_recent: int | None = None
    recent_left: dict[str, str] = field(default_factory=dict)  # guest -> host left < 1 h ago
    known_sizes: dict[str, int] = field(default_factory=dict)  # guest -> last MiB seen
    # auto: guests seen to move less than --settle minutes ago, which consolidation leaves
    # where they are; how many minutes ago each guest was seen to move (for the reasons)
    settling_vms: set[str] = field(default_factory=set)
    # with --power and --power-model: each online host's watts per unit of the capacity that
    # binds (lower is more frugal); auto's consolidation empties the hungriest hosts first
    host_cost: dict[str, float] = field(default_factory=dict)
    moved_ago: dict[str, float] = field(default_factory=dict)
    # when the run began (time.monotonic()): --time-limit counts from there, reading included
    started: float | None = None


def under_cpu_target(chosen: float | None, cpu_target: float, below: float) -> float:
    """A target under --cpu-target: the one ``chosen``, never above --cpu-target; by default
    ``below`` under it, and at least half of it."""
    if chosen is not None:
        return min(chosen, cpu_target)
    return max(cpu_target - below, cpu_target / 2)


@dataclass
class Options:
    objective: str = "consolidate"
    solver: str = "cbc"
    time_limit: float = 60.0
    cpu_target: float = 0.8
    mem_target: float | None = None    # None: 0.9 under auto, 1.0 (none) under consolidate
    consolidate_target: float | None = None   # auto's consolidation; None: cpu_target - 0.15
    relief_target: float | None = None        # auto's reliefs first; None: cpu_target - 0.1
    cpu_threshold: float = 0.9
    mem_threshold: float = 0.95
    min_gain: float = 0.05
    cpu_demand: str = "usage"
    refuse_problems: bool = False      # the old refusal: any problem is exit 65
    max_frozen: float = DEFAULT_MAX_FROZEN   # more hosts or guests frozen: exit 75
    require_optimal: bool = False
    bandwidth: float = 1000.0
    parallel: int = 2
    explain: bool = False
    threads: int = 1
    seed: int = 0
    # auto's budget per run (None or 0: no limit) and demand from history (--state)
    max_migrations: int | None = 40
    max_moved_gib: float | None = 50.0
    max_duration_min: float | None = 4.0
    demand: str = "max"
    demand_window: float = 120.0
    # auto's consolidation keeps hosts under --cpu-target over this many minutes too (None:
    # --demand-window, off; never fewer): bench/README.md, "Looking further back"
    consolidate_window: float | None = None
    forecast: float = 0.0              # --forecast: margin of errors over the EWMA (0: off)
    # with --state: hotspot persistence, cooldown and settling (minutes)
    hold: float = 0.0
    cooldown: float = 30.0
    settle: float = 60.0
    # tuning (no setting): measured, see the comments
    candidates: int = 10
    group_size: int = 500
    group_guests: int = 10_000      # and at most about this many guests in a group
    whole_heuristic_pairs: int = 20_000_000    # guests x hosts below which grouping is checked
    # guests x hosts up to which a MILP may put each guest on every host it is allowed on
    # (above: a few candidate hosts per guest; CBC cannot be interrupted in the root of the
    # large fewest-hosts model, measured 440 s for a 12 s limit at 200 hosts / 2000 guests)
    all_hosts_pairs: int = 60_000
    full_model_pairs: int = 5000               # ... below which stage 2 may use any host
    cool_hosts: int = 20                       # balance: the coolest hosts guests may go to
    # guests x usable hosts above which auto repairs greedily first (planner/mend.py): the
    # repair MILP found nothing in its share at 150,000 x 20,000 (bench/grid_bench.py hot)
    greedy_repair_pairs: int = 250_000_000
    check: bool = True          # False: the caller checks the plan (a partition's, merged)

    @property
    def fill_target(self) -> float:
        """auto's consolidation target (``--consolidate-target``; :func:`under_cpu_target`,
        by default :data:`HYSTERESIS` below --cpu-target)."""
        return under_cpu_target(self.consolidate_target, self.cpu_target, HYSTERESIS)

    @property
    def relief_fill(self) -> float:
        """Where auto's reliefs look first (``--relief-target``; :func:`under_cpu_target`, by
        default :data:`RELIEF_ROOM` below --cpu-target)."""
        return under_cpu_target(self.relief_target, self.cpu_target, RELIEF_ROOM)

    @property
    def history_window(self) -> float:
        """How many minutes of samples the state keeps: the longer of the two windows."""
        return max(self.demand_window, self.consolidate_window or 0.0)

    facts: RunFacts = field(default_factory=RunFacts)


__all__ = ["Options", "RunFacts", "OBJECTIVES"]
