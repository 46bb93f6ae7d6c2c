"""Auto's repair without a solver (:func:`mend`), where the repair MILP cannot finish.

At 20,000 hosts and 150,000 guests the repair MILP of :func:`vmtools.planner.policy._repair`
found nothing within its share of ``--time-limit`` (bench/README.md, "When the repair cannot
finish"), and a run that cannot repair plans nothing at all: an operator with 30 hosts over
their memory got one line and exit 1. Above ``Options.greedy_repair_pairs`` (guests x usable
hosts) auto repairs greedily first, and below it when the MILP returns nothing in its share:

1. what a rule forbids, every time (a plan's target must obey the rules, and the replay
   checker refuses one that does not): a guest on a host a ban, fence, migration domain or
   maintenance forbids goes to another host; gather groups apart are brought together on
   one of their hosts (or moved whole); spread guests sharing a host are split; a host over
   its guest-count limit sheds its smallest guests. If one of these cannot be done the
   greedy gives up (nothing moves) and the caller decides (the MILP, or exit 1 with why);
2. capacity, within the run's budget (``--max-migrations``, ``--max-moved``,
   ``--max-duration``): hosts over their memory (a hard rule broken), then those whose CPU
   demand now is over their CPUs (what a relief would end first), each the worst first (by
   how far over capacity it is). A CPU overload the budget leaves is still the relief's
   (:func:`vmtools.planner.policy._relieve_hotspots`) if the budget has room for it.
   Each is cleared by one move where one suffices (the guest with the least memory among
   those whose departure alone ends it), else by the largest guests first (the fewest
   moves). What the budget, the rules or the room cannot clear is left as it is and said
   (:attr:`Mended.left`): never claimed repaired. The replay checker accepts a host left
   over capacity (a plan never makes an overload worse), not a broken rule.

A guest moves only as a whole gather group and only if no rule fixes it (pinned, unknown to
the snapshot, on a frozen host, cooling down: ``Instance.fixed``), and only to a host it is
allowed on (``Instance.allowed``: never a frozen, offline or maintenance host, nor one a ban,
fence or domain forbids), under spread and the hosts' guest-count limits. The destination is
the caller's (``place``): auto's, the fullest host that fits under its targets
(:class:`vmtools.planner.fullest.FullestFirst`), else the fullest under the hosts' whole
capacity.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from vmtools.planner.budget import Step
from vmtools.planner.instance import Instance
from vmtools.rules.capacity import EPS

# place(unit, source host, hosts to avoid) -> destination host, or -1 when none takes it
Place = Callable[[list[int], int, set[int]], int]
LEFT_SHOWN = 20          # overloads left listed in the plan, worst first


@dataclass
class Mended:
    moves: dict[int, int] = field(default_factory=dict)     # guest -> its final host
    urgent: set[int] = field(default_factory=set)            # moves that end a CPU overload
    done: list[str] = field(default_factory=list)            # what was repaired, for a person
    left: list[dict] = field(default_factory=list)           # overloads left: host, dims, why
    broken: list[str] = field(default_factory=list)          # rules it could not repair


def mend(inst: Instance, load, budget, place: Place, unit_of, deadline) -> Mended:
    """Repair ``load``'s placement (auto's :class:`~vmtools.planner.hostload.Load`, moved in
    place) as the module says. With :attr:`Mended.broken` set, every move is undone."""
    out = Mended()
    origin = list(load.place)
    journal: list[tuple[int, int]] = []          # (guest, where it was), to undo

    def move(u: list[int], dst: int) -> None:
        for v in u:
            journal.append((v, load.place[v]))
            load.move(v, dst)
            if dst == origin[v]:
                out.moves.pop(v, None)
            else:
                out.moves[v] = dst

    def undo(upto: int) -> None:
        while len(journal) > upto:
            v, h = journal.pop()
            load.move(v, h)
            if h == origin[v]:
                out.moves.pop(v, None)
            else:
                out.moves[v] = h

    _rules(inst, load, place, unit_of, move, out)
    if out.broken:
        undo(0)
        out.moves.clear()
        return out
    _capacity(inst, load, budget, place, unit_of, deadline, move, undo, journal, out)
    return out


# --------------------------------------------------------------------------- the rules

def _rules(inst: Instance, load, place: Place, unit_of, move, out: Mended) -> None:
    """What a rule forbids, repaired (or named in ``out.broken``)."""
    fixed, sets = inst.fixed, inst.allowed_sets()
    for v in range(inst.n_vms):
        h = load.place[v]
        if fixed[v] or h in sets[v]:
            continue
        u = unit_of[v]
        if any(fixed[x] for x in u):
            out.broken.append(f"{inst.vms[v]} may not stay on {inst.hosts[h]} and its gather "
                              "group may not move")
            continue
        dst = place(u, h, {load.place[x] for x in u})
        if dst < 0:
            out.broken.append(f"{inst.vms[v]} may not stay on {inst.hosts[h]} and no other "
                              "host takes it")
            continue
        move(u, dst)
        out.done.append(f"{inst.vms[v]} may not stay on {inst.hosts[h]}")
    for group in inst.gather:
        _gather(inst, load, group, place, unit_of, move, out)
    for group in inst.spread:
        _spread(inst, load, group, place, unit_of, move, out)
    for h in range(inst.n_hosts):
        if load.count[h] <= inst.count_cap[h]:
            continue
        units = sorted(units_on(inst, load, h, unit_of),
                       key=lambda u: (sum(inst.dem["mem"][v] for v in u), min(u)))
        for u in units:
            if load.count[h] <= inst.count_cap[h]:
                break
            dst = place(u, h, set())
            if dst >= 0:
                move(u, dst)
        if load.count[h] > inst.count_cap[h]:
            out.broken.append(f"{inst.hosts[h]} is over its guest-count limit and no guest "
                              "of it can go elsewhere")
        else:
            out.done.append(f"{inst.hosts[h]} was over its guest-count limit")


def _gather(inst: Instance, load, group: list[int], place: Place, unit_of, move,
            out: Mended) -> None:
    """A gather group apart: its guests onto the host of a fixed one, else onto the host
    holding most of its memory that takes the rest, else all of it onto another host."""
    where = {load.place[v] for v in group}
    if len(where) <= 1:
        return
    names = ", ".join(inst.vms[v] for v in group)
    u = unit_of[group[0]]
    pinned = {load.place[v] for v in u if inst.fixed[v]}
    if len(pinned) > 1:
        out.broken.append(f"gather guests {names} are apart on hosts they may not leave")
        return
    mem = {h: sum(inst.dem["mem"][v] for v in u if load.place[v] == h)
           for h in {load.place[v] for v in u}}
    order = sorted(pinned) if pinned else sorted(mem, key=lambda h: (-mem[h], h))
    for h in order:
        rest = [v for v in u if load.place[v] != h]
        if load.fits(rest, h, 1.0, 1.0):
            move(rest, h)
            out.done.append(f"gather guests {names} were apart")
            return
    if not pinned:
        dst = place(u, -1, set(mem))
        if dst >= 0:
            move(u, dst)
            out.done.append(f"gather guests {names} were apart")
            return
    out.broken.append(f"gather guests {names} are apart and no host takes them together")


def _spread(inst: Instance, load, group: list[int], place: Place, unit_of, move,
            out: Mended) -> None:
    """Spread guests sharing a host: all but one of them elsewhere (a fixed one stays, else
    the one with the most memory: the least moved)."""
    on: dict[int, list[int]] = {}
    for v in group:
        on.setdefault(load.place[v], []).append(v)
    for h, vs in sorted(on.items()):
        if len(vs) < 2:
            continue
        vs.sort(key=lambda v: (not inst.fixed[v], -inst.dem["mem"][v], v))
        for v in vs[1:]:
            u = unit_of[v]
            dst = -1 if any(inst.fixed[x] for x in u) else place(u, h, set())
            if dst < 0:
                out.broken.append(f"spread guests {', '.join(inst.vms[x] for x in group)} "
                                  f"share {inst.hosts[h]} and {inst.vms[v]} may go nowhere else")
                return
            move(u, dst)
        out.done.append(f"spread guests {', '.join(inst.vms[x] for x in group)} shared a host")


# --------------------------------------------------------------------------- capacity

def overloads(inst: Instance, load) -> list[tuple[float, int, str]]:
    """Every (use / capacity, host, dimension) over its whole capacity in ``load``: memory
    (a broken hard rule), then CPU in use now; each the worst first (then by host name)."""
    hard = inst.hard_cap
    out = []
    for h in range(inst.n_hosts):
        for rank, d, use in ((0, "mem", load.use["mem"][h]), (1, "cpu", load.last_use[h])):
            cap = hard[d][h]
            if use > cap + EPS:
                out.append((use / cap if cap > 0 else float("inf"), rank, h, d))
    out.sort(key=lambda t: (t[1], -t[0], inst.hosts[t[2]]))
    return [(r, h, d) for r, _, h, d in out]


def _use(load, d: str, h: int) -> float:
    return load.use["mem"][h] if d == "mem" else load.last_use[h]


def _capacity(inst: Instance, load, budget, place: Place, unit_of, deadline, move, undo,
              journal: list, out: Mended) -> None:
    """The overloads, worst first, each cleared whole within the budget or left and said."""
    mem, last, hard = inst.dem["mem"], load.last, inst.hard_cap
    over = overloads(inst, load)
    hot = {h for _, h, _ in over}
    word = {"mem": "memory", "cpu": "CPU"}
    for ratio, h, d in over:
        name = inst.hosts[h]
        excess = _use(load, d, h) - hard[d][h]
        if excess <= EPS:
            continue                    # an earlier move (its other dimension) ended it
        entry = {"host": name, "dim": d, "use": round(_use(load, d, h) / hard[d][h], 3)
                 if hard[d][h] > 0 else None}
        if deadline.passed():
            out.left.append({**entry, "reason": "time-limit", "why": "out of --time-limit"})
            continue

        def measure(u: list[int]) -> float:
            return sum(mem[v] for v in u) if d == "mem" else sum(last[v] for v in u)

        units = [u for u in units_on(inst, load, h, unit_of)
                 if not any(inst.fixed[v] for v in u) and measure(u) > 0]
        if not units:
            why = ("it is frozen (a snapshot problem names it): its guests stay"
                   if h in inst.frozen_hosts else
                   "none of its guests may move (pinned, unknown, cooling down or held by a rule)")
            out.left.append({**entry, "reason": "pinned", "why": why})
            continue
        mark, too_big, cleared = len(journal), None, False
        avoid = hot - {h}

        def fits_budget(u: list[int]) -> bool:
            nonlocal too_big
            over_by = budget.over([mem[v] for v in out.moves if v not in u] +
                                  [mem[v] for v in u])
            too_big = too_big or over_by
            return over_by is None

        def moved(u: list[int]) -> bool:
            """``u`` moved off ``h`` when the budget and some host's room allow it."""
            if not fits_budget(u):
                return False
            dst = place(u, h, avoid)
            if dst >= 0:
                move(u, dst)
            return dst >= 0
        # one move where one suffices: the least memory among the guests that end it alone
        for u in sorted((u for u in units if measure(u) >= excess - EPS),
                        key=lambda u: (sum(mem[v] for v in u), min(u))):
            if deadline.passed():       # each failed search may walk every host
                break
            if moved(u):
                cleared = True
                break
        if not cleared:                 # else the largest first: the fewest moves
            for u in sorted(units, key=lambda u: (-measure(u), sum(mem[v] for v in u), min(u))):
                if _use(load, d, h) - hard[d][h] <= EPS or deadline.passed():
                    break
                moved(u)
            cleared = _use(load, d, h) - hard[d][h] <= EPS
        if not cleared:
            undo(mark)
            if deadline.passed():
                out.left.append({**entry, "reason": "time-limit", "why": "out of --time-limit"})
            elif too_big:
                out.left.append({**entry, "reason": "budget", "why": (
                    f"clearing it needs more than the run's budget left ({too_big}) once "
                    "the overloads before it (memory first, the worst first) were cleared")})
            else:
                out.left.append({**entry, "reason": "no-room", "why": (
                    f"no host it is allowed on has room for the guests whose move would bring "
                    f"its {word[d]} within capacity")})
            continue
        moved = [v for v, _ in journal[mark:]]
        if d == "cpu":
            out.urgent.update(moved)
        out.done.append(f"{name} was over its {word[d]} ({ratio:.0%}), "
                        f"{len(set(moved))} guest{'s' if len(set(moved)) > 1 else ''} moved")


# --------------------------------------------------------------------------- the plan

def step(inst: Instance, done: Mended) -> Step:
    """Auto's repair step of ``done`` (its moves are made already), which the budget takes
    first (:func:`vmtools.planner.budget.choose`); without moves it changes nothing."""
    moves, what = dict(done.moves), done.done
    label = "repair: " + ("; ".join(what[:3]) + (f" (and {len(what) - 3} more)"
                                                 if len(what) > 3 else "")
                          if moves else "nothing could be repaired")
    return Step("repair", label, moves, sum(inst.dem["mem"][v] for v in moves),
                set(moves.values()) | {inst.cur[v] for v in moves}, "",
                set(done.urgent) & set(moves))


def summary(left: list[dict]) -> dict:
    """The plan's ``summary.repair``: how, and the overloads left (worst first)."""
    out = {"how": "greedy", "left": left[:LEFT_SHOWN]}
    if len(left) > LEFT_SHOWN:
        out["left_more"] = len(left) - LEFT_SHOWN
    return out


def summary_of(left: list[dict] | None) -> dict:
    """``{"repair": summary(left)}`` after a greedy repair (``left`` not None), else {}."""
    return {} if left is None else {"repair": summary(left)}


def explain(left: list[dict] | None) -> dict[str, str]:
    """--explain's "overload HOST" entries: each overload left, and why."""
    out = {}
    for e in left or ():
        what = {"mem": "memory", "cpu": "CPU"}[e["dim"]]
        use = f" ({e['use']:.0%})" if e["use"] is not None else ""
        key, text = f"overload {e['host']}", (f"left over its {what} capacity{use} "
                                              f"({e['reason']}): {e['why']}")
        out[key] = f"{out[key]}; {text}" if key in out else text
    return out


def units_on(inst: Instance, load, h: int, unit_of) -> list[list[int]]:
    """The units (a guest, or its gather group) wholly on host ``h``."""
    seen: set[int] = set()
    out = []
    for v in sorted(load.on[h]):
        u = unit_of[v]
        if u[0] in seen:
            continue
        seen.add(u[0])
        if all(load.place[x] == h for x in u):
            out.append(u)
    return out


__all__ = ["Mended", "mend", "overloads", "step", "summary", "summary_of", "explain",
           "LEFT_SHOWN"]
