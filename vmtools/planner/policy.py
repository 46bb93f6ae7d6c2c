"""``--objective auto``, the cron policy: one plan that repairs what breaks a hard rule,
relieves persistent hotspots (CPU or memory), then consolidates what is worth it.

The way from the current placement to the target is a list of **steps**, computed one after
the other on the placement the earlier ones leave:

1. ``repair``: every guest a rule forbids where it is, spread or gather groups broken, hosts
   over their memory, guest-count or capacity-rule limits (a MILP over the guests involved,
   least memory moved). A plan's target must obey the rules, so a repair is never deferred.
2. ``relieve``: per persistent hotspot (CPU above ``--cpu-threshold`` or memory above
   ``--mem-threshold``, worst first), guests leave until the host is back under its targets
   (``--cpu-target``, ``--mem-target``) in the dimensions that were hot; the most relief per
   MiB moved first, each to the fullest host that stays under its targets. A relief that
   does not lower the worst utilisation (of any dimension) by ``--min-gain`` is left.
3. ``consolidate``: hosts emptied whole, the least memory first (one host freed per step:
   the best gain per GiB; with ``--power --power-model`` where memory binds,
   ``opts.facts.host_cost``, the hosts that draw most first), their guests best-fit onto the
   other active hosts under ``--consolidate-target`` (below ``--cpu-target``: a hysteresis
   band, so a host consolidation fills has room to grow before a relief must empty part of
   it) and ``--mem-target`` (with ``--consolidate-window``, also under ``--cpu-target`` over
   that window, longer than the ``--demand-window`` hotspots and reliefs look at), never onto
   a host this run's reliefs opened (that would trade one host for another at the price of
   the guests moved). A host is emptied only when all
   its guests fit; never half. A guest that no active host has the memory for may go where
   one smaller guest is moved aside to a third active host (memory fragmented by guests of
   unequal sizes; :func:`_make_room`); the step's moves include that one.

Demand is the planning estimate of :mod:`vmtools.planner.demand` (never below the last
sample). The run's budget (:mod:`vmtools.planner.budget`) then takes the steps in that order,
skipping a step that does not fit and any later step that touches a host it touches, so the
steps taken are exactly a placement the earlier computation saw. Nothing here solves a MILP
unless a rule is broken: an idle run costs a scan of the hosts.

Over 500 lines because auto's three parts (repair, relieve, consolidate) choose among each
other's steps under one budget and one load ledger.
"""

from __future__ import annotations

import logging
import math
import random
from dataclasses import dataclass, field
from typing import Callable

from vmtools.planner import candidates as C
from vmtools.planner import heuristics as H
from vmtools.planner import mend as M
from vmtools.planner.budget import Budget, Step, choose, fit_duration, unlimited
from vmtools.planner.deadline import Deadline
from vmtools.planner.fullest import MostLeft
from vmtools.planner.hostload import Load
from vmtools.planner.instance import Instance, diagnose, violations
from vmtools.rules.load import FRACTION_EPS
from vmtools.planner.options import Options
from vmtools.rules.capacity import EPS

log = logging.getLogger("vmtools.planner")

# Action priorities (vm-apply starts the highest first): CPU demand over capacity right now is
# guests starved of CPU, relieved before anything else; then rule repairs, then hotspots,
# then consolidation.
PRIORITY = {"overload": 3, "repair": 2, "relieve": 1, "consolidate": 0}
LEFT_SHOWN = 20          # hosts not emptied listed in the summary, least memory first


@dataclass
class Auto:
    steps: list[Step] = field(default_factory=list)
    hotspots: list[dict] = field(default_factory=list)
    consolidation: dict = field(default_factory=dict)
    repair_how: str = ""
    repair_left: list[dict] = field(default_factory=list)   # overloads the greedy repair left
    solve_seconds: float = 0.0
    left: list[dict] = field(default_factory=list)    # active hosts not emptied, and why


def _pct(x: float) -> str:
    return f"{x:.0%}"


# --------------------------------------------------------------------------- repair

def rule_breakers(inst: Instance, place: list[int]) -> tuple[set[int], list[str]]:
    """Guests that must or may move because a hard rule is broken (not CPU load: that is a
    hotspot, relieved in its turn), and why."""
    return violations(inst, place, dims=("mem",), cap=inst.hard_cap)


def _repair(inst: Instance, load: Load, opts: Options, deadline: Deadline,
            auto: Auto, budget=None, unit_of=None) -> Step | None:
    """Least memory moved to obey every rule, CPU within capacity on every host that takes
    a guest (a host already over it takes none). Above ``opts.greedy_repair_pairs`` guests x
    hosts, when the MILP finds nothing in its share, or when the MILP's repair is more than
    the run's ``budget``, greedily within the budget (:func:`_mend`: every broken rule, then
    the overloads the budget allows); exit 1 with why only when neither repairs the rules."""
    from dataclasses import replace as dc_replace

    from vmtools.errors import OperationFailed
    from vmtools.planner import milp
    from vmtools.planner.solve import solve_model
    movable, why = rule_breakers(inst, load.place)
    if not movable:
        return None
    greedy_first = inst.n_vms * len(inst.usable_hosts()) > opts.greedy_repair_pairs
    if greedy_first:
        step = _mend(inst, load, opts, deadline, auto, budget, unit_of)
        if step is not None:
            return step
    cpu_cap = inst.hard_cap["cpu"]
    over = {h for h in range(inst.n_hosts) if load.use["cpu"][h] > cpu_cap[h] + EPS}
    cap = dict(inst.cap)
    cap["cpu"] = [max(c, load.use["cpu"][h]) for h, c in enumerate(cpu_cap)]
    cap["mem"] = list(inst.hard_cap["mem"])
    rinst = dc_replace(inst, cap=cap)
    pool = sorted(inst.usable_hosts() - over)
    rng = random.Random(opts.seed)
    k = len(pool) if inst.n_vms * len(pool) <= opts.all_hosts_pairs else opts.candidates
    use, dem = load.use, inst.dem

    def fits(v: int, h: int) -> bool:
        return (use["mem"][h] + dem["mem"][v] <= cap["mem"][h] + EPS
                and use["cpu"][h] + dem["cpu"][v] <= cap["cpu"][h] + EPS)
    for widen in (False, True):
        if widen and deadline.passed():
            break                     # no time left to let other guests make room
        mv = movable if not widen else C.room_makers(inst, load.place, pool, movable, k, rng)
        cands = C.candidates(inst, load.place, pool, mv, k, rng, fits)
        for group in inst.gather:
            common = set.intersection(*(set(cands[v]) for v in group))
            if not common:
                common = set(pool).intersection(*(inst.allowed_set(v) for v in group))
            for v in group:
                cands[v] = sorted(common) or cands[v]
        model = milp.build_moves(rinst, cands)
        rinst_cur = dc_replace(rinst, cur=list(load.place))
        place, res = solve_model(model, rinst_cur, opts, deadline.share(1 / (2 - widen)), None)
        auto.solve_seconds += res.seconds
        if place is not None:
            moves = {v: h for v, h in enumerate(place) if h != load.place[v]}
            over_budget = budget is not None and \
                budget.over([inst.dem["mem"][v] for v in moves]) is not None
            if over_budget and not greedy_first:
                # Overloads wait for the budget, as the greedy repair's do; rules do not.
                step = _mend(inst, load, opts, deadline, auto, budget, unit_of)
                if step is not None:
                    auto.repair_how = "greedy (the MILP's repair was over the run's budget)"
                    return step
            step = Step("repair", "repair: " + "; ".join(why[:3]) +
                        (f" (and {len(why) - 3} more)" if len(why) > 3 else ""),
                        moves, sum(inst.dem["mem"][v] for v in moves),
                        set(moves.values()) | {load.place[v] for v in moves}, "")
            auto.repair_how = f"milp ({res.status})"
            return step
    if not greedy_first:
        step = _mend(inst, load, opts, deadline, auto, budget, unit_of)
        if step is not None:
            auto.repair_how = "greedy after the MILP found nothing"
            return step
    raise OperationFailed(diagnose(inst))


def _mend(inst: Instance, load: Load, opts: Options, deadline: Deadline, auto: Auto,
          budget, unit_of) -> Step | None:
    """The greedy repair (:mod:`vmtools.planner.mend`) as auto's repair step, its moves made
    on ``load``, each guest to the fullest host under the targets (as a relief's), else
    within capacity; None (nothing moved) when it cannot repair every broken rule."""
    place = _placer(load, ((opts.cpu_target, opts.mem_target, True, False),
                           (opts.cpu_target, opts.mem_target, False, True),
                           (1.0, 1.0, False, False)))
    done = M.mend(inst, load, budget or Budget(None, None, None), place,
                  unit_of if unit_of is not None else H.unit_of(inst), deadline)
    if done.broken:
        log.info("auto: the greedy repair cannot repair %s", "; ".join(done.broken[:3]))
        return None
    auto.repair_how, auto.repair_left = "greedy", done.left
    return M.step(inst, done)


def repair_greedily(inst: Instance, opts: Options,
                    deadline: Deadline) -> tuple[list[int], list[dict]] | None:
    """``--objective repair``'s greedy (:mod:`vmtools.planner.mend`, no budget): each guest
    to the fullest host that stays under the hotspot thresholds (it makes none), else within
    capacity; the placement and the overloads left, or None when a broken rule cannot be
    repaired so."""
    load = Load(inst, inst.cur, inst.dem["cpu"])
    load.fracs = (opts.cpu_threshold, opts.mem_threshold)
    place = _placer(load, ((*load.fracs, True, False), (*load.fracs, False, True),
                           (1.0, 1.0, False, False)))
    done = M.mend(inst, load, Budget(None, None, None), place, H.unit_of(inst), deadline)
    return None if done.broken else (load.place, done.left)


# --------------------------------------------------------------------------- relieve

def _placer(load: Load, tries: tuple) -> Callable[[list[int], int, set[int]], int]:
    """``place(unit, src, avoid)``: the first host :func:`_destination` finds, trying each
    (CPU fraction, memory fraction, active only, empty only) of ``tries`` in turn, or -1."""
    return lambda u, src, avoid: next((d for c, m, a, e in tries if (
        d := _destination(load, u, src, avoid, c, m, a, e)) >= 0), -1)


def _destination(load: Load, unit: list[int], src: int, avoid: set[int], cpu_frac: float,
                 mem_frac: float, active_only: bool, empty_only: bool = False) -> int:
    """The fullest host (by its worse dimension) that takes ``unit`` under the targets: the
    first that fits, fullest first (``empty_only``: of the empty hosts; :class:`~vmtools.planner.fullest.FullestFirst`)."""
    inst = load.inst
    totals = load.totals(unit)
    # Never back to a host a guest left within the hour (the state's record): no ping-pong.
    left = {load.host_index[x] for v in unit
            if (x := load.recent_left.get(inst.vms[v])) in load.host_index}
    # the room under auto's targets bounds the room under lower ones (consolidation's)
    need = (totals[1], totals[0]) if load.fracs is not None and cpu_frac <= load.fracs[0] \
        and mem_frac <= load.fracs[1] else ()
    for h in load.fullest.walk(*need, active_only=active_only, empty_only=empty_only):
        if h == src or h in avoid or h in left:
            continue
        if load.fits(unit, h, cpu_frac, mem_frac, totals):
            return h
    return -1


def _relieve(inst: Instance, load: Load, h: int, hot_dims: list[str], opts: Options,
             unit_of: dict[int, list[int]], avoid: set[int],
             budget) -> tuple[Step | None, str, str]:
    """Move guests off hot host ``h`` until it is under its targets in ``hot_dims``."""
    targets = {"cpu": opts.cpu_target, "mem": opts.mem_target}
    units = [u for u in M.units_on(inst, load, h, unit_of) if not any(inst.fixed[v] for v in u)]
    if not units:
        return (None, *_why_none_may_move(inst, load, h, opts))
    before = max(load.util(h))
    cap = inst.hard_cap

    def excess(d: str) -> float:
        return (load.cpu(h) if d == "cpu" else load.use[d][h]) - targets[d] * cap[d][h]

    moves: dict[int, int] = {}
    urgent: set[int] = set()
    tried_rooms = False
    too_big = None
    cpu_cap = cap["cpu"][h]

    # an active host under --relief-target, else --cpu-target, else the fullest empty one
    place = _placer(load, ((opts.relief_fill, opts.mem_target, True, False),
                           (opts.cpu_target, opts.mem_target, True, False),
                           (opts.cpu_target, opts.mem_target, False, True)))

    def take(u: list[int], dst: int) -> None:
        if load.last_use[h] > cpu_cap + EPS:        # over capacity now: this move ends it
            urgent.update(u)
        for v in u:
            load.move(v, dst)
            moves[v] = dst
        units.remove(u)

    if load.last_use[h] > cpu_cap + EPS:
        # Guests are starved of CPU now: first the one move that ends it soonest (the least
        # memory among the guests whose departure alone brings the host within capacity).
        need = load.last_use[h] - cpu_cap
        for u in sorted(units, key=lambda u: (sum(inst.dem["mem"][v] for v in u), min(u))):
            if sum(load.last[v] for v in u) < need - EPS or \
                    budget.over([inst.dem["mem"][v] for v in u]) is not None:
                continue
            dst = place(u, h, avoid)
            tried_rooms = True
            if dst >= 0:
                take(u, dst)
                break
    while any(excess(d) > EPS for d in hot_dims) and units:
        left = {d: excess(d) for d in hot_dims}
        units.sort(key=lambda u: (-_relief(inst, u, left, cap, h), min(u)))
        placed = False
        for u in list(units):
            if _relief(inst, u, left, cap, h) <= 0:
                break
            over = budget.over([inst.dem["mem"][v] for v in list(moves) + u])
            if over is not None:
                too_big = too_big or over
                continue
            dst = place(u, h, avoid)
            tried_rooms = True
            if dst < 0:
                continue
            take(u, dst)
            placed = True
            break
        if not placed:
            break
    if not moves:
        return (None, *_why_nothing_moved(inst, units, opts, too_big, tried_rooms))
    after = max([max(load.util(h))] + [max(load.util(d)) for d in set(moves.values())])
    gain = before - after
    if gain < opts.min_gain - FRACTION_EPS:
        for v in moves:
            load.move(v, h)
        return None, "min-gain", (f"gain {gain:.3f} below --min-gain {opts.min_gain:g} "
                                  f"(worst dimension), moving {', '.join(inst.vms[v] for v in moves)}")
    mib = sum(inst.dem["mem"][v] for v in moves)
    dims = " and ".join({"cpu": "CPU", "mem": "memory"}[d] for d in hot_dims)
    label = f"relieve {inst.hosts[h]} ({dims}, worst {_pct(before)} -> {_pct(after)})"
    return Step("relieve", label, moves, mib, {h} | set(moves.values()),
                f"relieve: {inst.hosts[h]} is a {dims} hotspot ({_pct(before)})", urgent), "", ""


def _relief(inst: Instance, u: list[int], excess: dict[str, float], cap, h: int) -> float:
    """Most relief first: what moving ``u`` off ``h`` takes of each hot dimension's excess
    (normalised, capped at the excess), per MiB moved."""
    gain = sum(min(sum(inst.dem[d][v] for v in u), max(0.0, e)) / cap[d][h]
               for d, e in excess.items() if cap[d][h] > 0)
    return gain / max(1.0, sum(inst.dem["mem"][v] for v in u))


def _why_none_may_move(inst: Instance, load: Load, h: int, opts: Options) -> tuple[str, str]:
    """Why hot host ``h`` has no guest that may leave: frozen, cooling down or pinned."""
    if h in inst.frozen_hosts:
        return "frozen", ("it is frozen (a snapshot problem names it): its guests stay unless "
                          "its known guests alone overload it")
    cooling = sorted(inst.vms[v] for v in load.on[h] if inst.vms[v] in opts.facts.fixed_vms)
    if cooling:
        return "cooldown", (f"its guests are cooling down after a recent move: "
                            f"{_moved(opts, cooling)} (--cooldown {opts.cooldown:g} min)")
    return "pinned", ("none of its guests may move (pinned, or held by a rule): "
                      + ", ".join(sorted(inst.vms[v] for v in load.on[h])))


def _why_nothing_moved(inst: Instance, units: list[list[int]], opts: Options,
                       too_big: str | None, tried_rooms: bool) -> tuple[str, str]:
    """Why a hot host's movable guests all stayed: the budget, no room, or no gain."""
    if too_big and not tried_rooms:
        return "budget", f"its guests are larger than one run's budget ({too_big})"
    if tried_rooms:
        return "no-room", (f"no room anywhere under the targets (--cpu-target "
                           f"{opts.cpu_target:g}, --mem-target {opts.mem_target:g}) for any of "
                           f"{', '.join(_names(inst, units))}")
    return "no-gain", "no guest's move would lower it"


# --------------------------------------------------------------------------- consolidate

def _names(inst: Instance, units: list[list[int]], most: int = 6) -> list[str]:
    names = [inst.vms[v] for u in units for v in u]
    return names[:most] + ([f"{len(names) - most} more"] if len(names) > most else [])


def _moved(opts: Options, names: list[str]) -> str:
    """``names`` with how long ago each was seen to move (from --state)."""
    ago = opts.facts.moved_ago
    return ", ".join(f"{n} ({ago[n]:.0f} min ago)" if n in ago else n for n in names)


def _no_room(inst: Instance, load: Load, u: list[int], h: int, avoid: set[int],
             opts: Options) -> str:
    """Why ``u`` fits on no other active host: what it needs and the most any has left."""
    cap = inst.hard_cap
    last, mem, _ = load.totals(u)
    if load.most is None:       # kept as guests move (Load._add touches them)
        fill, mem_frac = opts.fill_target, opts.mem_target
        load.most = (MostLeft(inst.n_hosts, lambda d: fill * cap["cpu"][d] - load.cpu(d)),
                     MostLeft(inst.n_hosts, lambda d: min(mem_frac * cap["mem"][d],
                                                          inst.cap["mem"][d]) - load.use["mem"][d]))

    def gone(d: int) -> bool:   # the hosts avoided but h only grow as consolidation goes on
        return d in avoid or load.count[d] == 0 or d in inst.frozen_hosts   # frozen: no room
    best_cpu, best_mem = (m.best(gone, h) for m in load.most)
    name = inst.vms[u[0]] + (f" (+{len(u) - 1} gathered)" if len(u) > 1 else "")
    need_cpu = sum(inst.dem["cpu"][v] for v in u)
    if load.series is not None:
        need_cpu = max(need_cpu, last)
    text = (f"{name} fits on no other active host under --consolidate-target "
            f"{opts.fill_target:g} / --mem-target {opts.mem_target:g}: it needs "
            f"{need_cpu:.2f} CPUs and "
            f"{mem / 1024:.1f} GiB")
    if best_cpu is not None:
        text += (f"; the most left is {max(best_cpu[0], 0):.2f} CPUs ({inst.hosts[best_cpu[1]]})"
                 f" and {max(best_mem[0], 0) / 1024:.1f} GiB ({inst.hosts[best_mem[1]]})")
        if load.whole is not None and best_cpu[0] >= need_cpu - EPS and best_mem[0] >= mem - EPS:
            text += (f", but with it a host with that room would have gone over --cpu-target "
                     f"{load.whole:g} in the last {opts.history_window:g} min "
                     f"(--consolidate-window)")
    return text


def _empty(inst: Instance, load: Load, h: int, unit_of: dict[int, list[int]],
           closed: set[int], opts: Options, room: dict | None = None,
           ) -> tuple[dict[int, int] | None, str, str, list[str]]:
    """Every guest of ``h`` onto the other active hosts under the targets, or why not:
    (moves, reason code, why, the guests it names). With ``room`` (:func:`_make_room`'s
    bounds), a guest no host has the memory for may go where a smaller guest is moved aside
    to a third host; the moves then include that guest's."""
    units = M.units_on(inst, load, h, unit_of)
    if len(units) != len({unit_of[v][0] for v in load.on[h]}):
        return None, "rule", "a gather group spans it and another host", []
    names = [inst.vms[v] for u in units for v in u]
    cooling = sorted(n for n in names if n in opts.facts.fixed_vms)
    if cooling:
        return None, "cooldown", (f"{_moved(opts, cooling)} cool{'s' if len(cooling) == 1 else ''}"
                                  f" down after a move (--cooldown "
                                  f"{opts.cooldown:g} min)"), cooling
    fixed = sorted(inst.vms[v] for u in units for v in u if inst.fixed[v])
    if fixed:
        return None, "pinned", f"{', '.join(fixed)} may not move (pinned, or a problem)", fixed
    settling = sorted(n for n in names if n in opts.facts.settling_vms)
    if settling:
        return None, "settle", (f"{_moved(opts, settling)} settle{'s' if len(settling) == 1 else ''}"
                                f" after a move (--settle {opts.settle:g} min: "
                                "consolidation moves no guest twice within it)"), settling
    units.sort(key=lambda u: (-H.size_key(inst, u), min(u)))
    done: list[tuple[list[int], int]] = []
    back: list[tuple[int, int]] = []        # (guest, the host it was on) of each move, in order
    for u in units:
        dst = _destination(load, u, h, closed, opts.fill_target, opts.mem_target, True)
        if dst < 0:
            why = _no_room(inst, load, u, h, closed, opts)
            aside = None if room is None else _make_room(inst, load, u, h, closed, opts,
                                                         unit_of, room, back)
            if aside is None:
                ours = sum(1 for _, d in back if d == h)
                if ours:
                    why += (f" (once {ours} larger guest{'s' if ours > 1 else ''} of "
                            f"{inst.hosts[h]} had gone first)")
                for v, was in reversed(back):
                    load.move(v, was)
                return None, "no-room", why, [inst.vms[v] for v in u]
            w, e, dst = aside
            done.append((w, e))
        for v in u:
            back.append((v, h))
            load.move(v, dst)
        done.append((u, dst))
    return {v: dst for u, dst in done for v in u}, "", "", []


ASIDE_TRIES = 8          # guests per run given room by moving a smaller guest aside
ASIDE_HOSTS = 128        # hosts looked at for one guest's room that way
ASIDE_CANDIDATES = 4     # of them, the hosts tried


def _make_room(inst: Instance, load: Load, u: list[int], h: int, closed: set[int],
               opts: Options, unit_of: dict[int, list[int]], room: dict,
               back: list[tuple[int, int]]) -> tuple[list[int], int, int] | None:
    """Room for ``u`` (leaving ``h``) where memory is what no active host has left for it:
    an active host ``d`` that takes it once one of its own units, smaller in memory, moves
    to a third active host. Guests of unequal sizes fragment memory: hosts each holding one
    large and one middle guest have room for neither another large guest nor to be emptied,
    though two of them together would free one. Returns (that unit, its new host, ``d``)
    with the unit moved (recorded in ``back``), or None. At most ``ASIDE_TRIES`` searches
    a run (``room["tries"]``), each over at most ``ASIDE_HOSTS`` hosts and trying the first
    ``ASIDE_CANDIDATES`` that could take it (an idle run costs little more). The plan must
    stay orderable: a host that gave a unit aside (``room["lost"]``) takes none aside, one
    that took one (``room["gained"]``) gives none, and neither is emptied later in the run,
    so a move waits at most for one move aside, which waits for nothing; never for a unit
    that arrived this run (its move is an earlier step's, which the budget could take without
    this one's move aside); a unit moved aside
    is none that moved this run (``room["busy"]``), cools down, settles or may not move,
    and no host a relief or repair touched or a hotspot (``room["keep"]``) gives one."""
    mem_of = inst.dem["mem"]
    mem = sum(mem_of[v] for v in u)
    cpu = load.totals(u)[0]
    if room["tries"] <= 0 or any(mem >= m and cpu >= c for m, c in room["failed"]) \
            or any(v in room["busy"] for v in u):     # arrived this run: see the docstring
        return None
    room["tries"] -= 1
    if room["sizes"] is None:       # the units' sizes, made once and only when asked
        room["sizes"] = sorted({sum(mem_of[x] for x in unit_of[v]) for v in range(inst.n_vms)})
    fill, mem_frac = opts.fill_target, opts.mem_target
    cap = inst.hard_cap

    def free(d: int) -> float:
        return min(mem_frac * cap["mem"][d], inst.cap["mem"][d]) - load.use["mem"][d]

    def movable(w: list[int]) -> bool:
        return all(not inst.fixed[v] and v not in room["busy"]
                   and inst.vms[v] not in opts.facts.fixed_vms
                   and inst.vms[v] not in opts.facts.settling_vms for v in w)

    recent = {load.host_index[x] for v in u
              if (x := load.recent_left.get(inst.vms[v])) in load.host_index}
    smaller = [m for m in room["sizes"] if m < mem - EPS]
    candidates: list[tuple[int, list[int]]] = []
    looked = 0
    for d in load.fullest.walk(mem - smaller[-1] if smaller else math.inf, active_only=True):
        if d == h or d in closed or d in recent or d in room["keep"] \
                or d in room["gained"] or d in inst.frozen_hosts:
            continue
        looked += 1
        if looked > ASIDE_HOSTS:
            break
        left = free(d)
        if left + EPS >= mem or not smaller or left + smaller[-1] + EPS < mem:
            continue                # memory is not what keeps u off d, or nothing can help
        ws = [w for w in M.units_on(inst, load, d, unit_of)
              if sum(mem_of[v] for v in w) < mem - EPS
              and left + sum(mem_of[v] for v in w) + EPS >= mem and movable(w)]
        if ws:
            candidates.append((d, min(ws, key=lambda w: (sum(mem_of[v] for v in w), min(w)))))
            if len(candidates) >= ASIDE_CANDIDATES:
                break
    for d, w in candidates:
        e = _destination(load, w, d, closed | {h} | room["lost"], fill, mem_frac, True)
        if e < 0:
            continue
        for v in w:
            back.append((v, d))
            load.move(v, e)
        if d not in recent and load.fits(u, d, fill, mem_frac):
            room["lost"].add(d)
            room["gained"].add(e)
            return w, e, d
        for v in reversed(w):
            back.pop()
            load.move(v, d)
    room["failed"].append((mem, cpu))
    return None


# --------------------------------------------------------------------------- the steps

def plan_steps(inst: Instance, last_cpu: list[float], opts: Options, deadline: Deadline | float,
               budget, series: list[list[float]] | None = None) -> Auto:
    """Every step of the way to the target, in priority order (see the module docstring).
    ``opts.facts.hot_filter``: the hotspots persistent enough to act on (None: all)."""
    deadline = Deadline.of(deadline)
    auto = Auto()
    load = Load(inst, inst.cur, last_cpu, series, opts.demand, opts.forecast,
                opts.facts.cpu_recent)
    load.recent_left = opts.facts.recent_left or {}
    load.fracs = (opts.cpu_target, opts.mem_target)
    unit_of = H.unit_of(inst)
    empty_before = {h for h in range(inst.n_hosts) if load.count[h] == 0}
    step = _repair(inst, load, opts, deadline, auto, budget, unit_of)
    if step is not None:
        if not auto.repair_how.startswith("greedy"):   # the greedy moved them already
            for v, h in step.moves.items():
                load.move(v, h)
        if step.moves:
            auto.steps.append(step)

    touched, hot_hosts = _relieve_hotspots(inst, load, opts, deadline, budget, auto, unit_of)
    # A host this run's repair or reliefs opened takes no consolidation: emptying another
    # host onto it trades one host for another at the price of every guest moved.
    opened = {h for h in empty_before if load.count[h] > 0}
    with load.looking_back(opts.cpu_target):
        _consolidate_hosts(inst, load, opts, deadline, budget, auto, unit_of, touched,
                           hot_hosts, opened)
    return auto


def _relieve_hotspots(inst: Instance, load: Load, opts: Options, deadline: Deadline, budget,
                      auto: Auto, unit_of: dict) -> tuple[set[int], set[int]]:
    """Auto's reliefs, on the placement the repair leaves, the worst hotspot first (each
    noted in ``auto.hotspots``, acted on or left with its reason). Returns the hosts the
    reliefs touched and the hot hosts."""
    touched: set[int] = set()
    hot = []
    for h in range(inst.n_hosts):
        c, m = load.util(h)
        dims = [d for d, u, t in (("cpu", c, opts.cpu_threshold), ("mem", m, opts.mem_threshold))
                if u > t + EPS]
        if dims:
            hot.append((max(c, m), h, dims, c, m))
    hot.sort(key=lambda t: (-t[0], inst.hosts[t[1]]))
    hot_hosts = {t[1] for t in hot}
    for worst, h, dims, c, m in hot:
        name = inst.hosts[h]
        entry = {"host": name, "cpu": round(c, 3), "mem": round(m, 3),
                 "dims": dims, "acted": False, "why": ""}
        auto.hotspots.append(entry)
        # CPU demand over capacity right now goes unserved: no waiting for persistence.
        overloaded = load.last_use[h] > inst.hard_cap["cpu"][h] + EPS
        hot_filter = opts.facts.hot_filter
        if hot_filter is not None and name not in hot_filter and not overloaded:
            entry["reason"] = "hold"
            entry["why"] = ("not persistent yet (--hotspot-window"
                            + (", --hold" if opts.hold else "") + ")")
            continue
        if deadline.passed():
            entry["reason"], entry["why"] = "time-limit", "out of --time-limit"
            continue
        step, code, why = _relieve(inst, load, h, dims, opts, unit_of, hot_hosts - {h}, budget)
        if step is None:
            entry["reason"], entry["why"] = code, why
            continue
        entry["acted"] = True
        entry["step"] = len(auto.steps)
        touched |= step.hosts
        auto.steps.append(step)
    return touched, hot_hosts


def _consolidate_hosts(inst: Instance, load: Load, opts: Options, deadline: Deadline, budget,
                       auto: Auto, unit_of: dict, touched: set[int], hot_hosts: set[int],
                       opened: set[int] = frozenset()) -> None:
    """Auto's consolidation steps, and what it left (``auto.left``, ``auto.consolidation``)."""
    # Consolidation: hosts emptied whole, least memory first, each onto the active hosts.
    # A host that took guests of an earlier step may be emptied in its turn: those guests
    # then go straight to their final host (their first step's move is rewritten), so no
    # guest moves twice and the plan leaves nothing the next run would empty (a fixpoint).
    freed: list[str] = []
    closed: set[int] = set(opened)
    left: list[dict] = []
    moved_by: dict[int, Step] = {}
    # A hotspot is relieved in its turn or left for a reason; consolidation leaves it alone.
    sources = [h for h in range(inst.n_hosts) if load.count[h] > 0 and h not in touched
               and h not in inst.frozen_hosts and h not in hot_hosts]
    for h in range(inst.n_hosts):       # the others (no `in` of the list: 20,000 x 6,658)
        if load.count[h] > 0 and (h in touched or h in inst.frozen_hosts or h in hot_hosts):
            why = ("a hotspot" if h in hot_hosts else "touched by a relief or repair this run"
                   if h in touched else "a snapshot problem names it; its guests stay")
            left.append({"host": inst.hosts[h], "guests": load.count[h],
                         "mem_mib": round(load.use["mem"][h]),
                         "reason": "hotspot" if h in hot_hosts else
                         "touched" if h in touched else "frozen", "why": why, "names": []})
    # moving a smaller guest aside to make room (_make_room): the guest sizes, bounds
    room = {"tries": ASIDE_TRIES, "failed": [], "busy": moved_by,
            "keep": set(touched) | set(hot_hosts), "lost": set(), "gained": set(),
            "sizes": None}
    cost = opts.facts.host_cost
    sources.sort(key=lambda h: (-round(cost.get(inst.hosts[h], 0.0), 1), load.use["mem"][h],
                                load.count[h], inst.hosts[h]))
    for i, h in enumerate(sources):
        own = [v for v in load.on[h] if v not in moved_by]
        entry = {"host": inst.hosts[h], "guests": load.count[h],
                 "mem_mib": round(load.use["mem"][h])}
        if deadline.passed():
            for g in sources[i:]:
                left.append({"host": inst.hosts[g], "guests": load.count[g],
                             "mem_mib": round(load.use["mem"][g]), "reason": "time-limit",
                             "why": "out of --time-limit", "names": []})
            break
        if h in room["lost"] or h in room["gained"]:   # emptied, the plan could not be ordered
            left.append({**entry, "reason": "touched", "names": [],
                         "why": "a guest was moved aside to or from it this run"})
            continue
        over = budget.over([inst.dem["mem"][v] for v in own])
        if over is not None:       # a step no run could take: leave its host as it is
            left.append({**entry, "reason": "budget", "names": [],
                         "why": f"emptying it is more than one run's budget ({over})"})
            continue
        moves, code, why, names = _empty(inst, load, h, unit_of, closed | {h}, opts, room)
        if moves is None:
            left.append({**entry, "reason": code, "why": why, "names": names})
            continue
        closed.add(h)
        mine = {}
        for v, dst in moves.items():
            first = moved_by.get(v)
            if first is None:
                mine[v] = dst
            else:                  # arrived this run: straight to its final host
                first.moves[v] = dst
                first.hosts.add(dst)
        dsts = set(mine.values())
        touched |= dsts | {h}
        freed.append(inst.hosts[h])
        step = Step("consolidate", f"empty {inst.hosts[h]}", mine,
                    sum(inst.dem["mem"][v] for v in mine), {h} | dsts,
                    f"consolidate: empty {inst.hosts[h]}")
        for v in mine:
            moved_by[v] = step
        auto.steps.append(step)
    best_left = None
    for e in left:
        if e["reason"] not in ("hotspot", "touched", "frozen"):
            best_left = {k: e[k] for k in ("host", "guests", "mem_mib", "why") if k in e}
            break
    auto.left = left
    auto.consolidation = {"hosts_freed": freed, "best_left": best_left}
    auto.consolidation["left"] = [
        {k: e[k] for k in ("host", "reason", "why", "names")} for e in left[:LEFT_SHOWN]]
    if len(left) > LEFT_SHOWN:
        auto.consolidation["left_more"] = len(left) - LEFT_SHOWN


# --------------------------------------------------------------------------- one run

@dataclass
class AutoRun:
    """The steps of one ``auto`` run, the budget's choice among them, and what the plan's
    summary and actions say about them."""
    inst: Instance
    auto: Auto
    choice: object                     # budget.Choice
    budget: object                     # budget.Budget

    def placement(self) -> list[int]:
        place = list(self.inst.cur)
        for s in self.choice.taken:
            for v, h in s.moves.items():
                place[v] = h
        return place

    def reasons(self) -> dict[str, str]:
        out = {}
        for s in self.choice.taken:
            for v in s.moves:
                out[self.inst.vms[v]] = s.reason or s.label
        return out

    def priorities(self) -> dict[str, int]:
        """Each moving guest's action priority (:data:`PRIORITY`)."""
        out = {}
        for s in self.choice.taken:
            for v in s.moves:
                kind = "overload" if v in s.urgent else s.kind
                out[self.inst.vms[v]] = PRIORITY[kind]
        return out

    def explain_left(self) -> dict[str, str]:
        """--explain's entries for what this run left: each hotspot not relieved and each
        active host not emptied, with why (the guests and hosts it concerns)."""
        out = {}
        summary = self.summary()
        for h in summary["hotspots"]:
            if not h["acted"]:
                out[f"hotspot {h['host']}"] = f"left ({h.get('reason', '')}): {h['why']}"
        for e in summary["consolidation"].get("left", []):
            if e["reason"] in ("hotspot", "touched"):
                continue
            out[f"not emptied {e['host']}"] = f"{e['reason']}: {e['why']}"
        out.update(M.explain(self.auto.repair_left))
        return out

    def trim(self) -> bool:
        return fit_duration(self.choice, True)

    def summary(self) -> dict:
        choice = self.choice
        why = {id(s): choice.why.get(id(s), "") for s in choice.deferred}
        step_of = {i: s for i, s in enumerate(self.auto.steps)}
        hotspots = []
        for h in self.auto.hotspots:
            h = dict(h)
            i = h.pop("step", None)
            if i is not None and step_of[i] in choice.deferred:
                h["acted"], h["why"] = False, why[id(step_of[i])]
                h["reason"] = "budget"
            hotspots.append(h)
        cons = dict(self.auto.consolidation)
        taken = {s.label.removeprefix("empty ") for s in choice.taken if s.kind == "consolidate"}
        cons["hosts_freed"] = [h for h in cons.get("hosts_freed", []) if h in taken]
        cons_deferred = [s for s in choice.deferred if s.kind == "consolidate"]
        if cons_deferred:
            first = cons_deferred[0]
            cons["deferred"] = {"hosts": len(cons_deferred), "next": first.label.removeprefix(
                "empty "), "why": why[id(first)]}
        deferred_left = [{"host": d.label.removeprefix("empty "), "reason": "budget",
                          "why": why[id(d)],
                          "names": sorted(self.inst.vms[v] for v in d.moves)[:6]}
                         for d in cons_deferred]
        cons["left"] = (deferred_left + list(cons.get("left", [])))[:LEFT_SHOWN]
        out = {"deferred": choice.summary(), "budget": self.budget.to_dict(),
                "steps": [{"kind": s.kind, "what": s.label, "migrations": len(s.moves),
                           "migrated_mib": round(s.mib)} for s in choice.taken],
                "hotspots": hotspots, "consolidation": cons}
        if self.auto.repair_how.startswith("greedy"):   # what the greedy repair left, and why
            out["repair"] = M.summary(self.auto.repair_left)
        return out


def run_auto(inst: Instance, last_cpu: list[float], opts: Options, deadline: Deadline | float,
             series: list[list[float]] | None = None) -> AutoRun:
    budget = Budget(max_migrations=int(m) if (m := unlimited(opts.max_migrations)) else None,
                    max_moved_mib=(g * 1024) if (g := unlimited(opts.max_moved_gib)) else None,
                    max_seconds=(t * 60) if (t := unlimited(opts.max_duration_min)) else None,
                    bandwidth=opts.bandwidth, parallel=opts.parallel)
    auto = plan_steps(inst, last_cpu, opts, deadline, budget, series)
    choice = choose(auto.steps, budget, {v: inst.dem["mem"][v] for v in range(inst.n_vms)})
    return AutoRun(inst, auto, choice, budget)
