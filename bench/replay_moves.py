"""What a vm-plan setting's migrations are for, over replay_bench's PlanetLab days: each planned
migration classed by the step that made it (relieve, consolidate, repair), guests moved more
than once and by which step next, and what became of each host consolidation emptied (switched
off, in the same plan or a later one, or filled again by a consolidation or a relief, and how
many runs later).

    python bench/replay_moves.py [--plan "OPTIONS"] [--day YYYYMMDD] [--repeat N]
                                 [--ticks N] [--variant cpu|cloudsim] [--list]

With ``--repeat 2`` (the default) the first day and the second are classed apart (the second:
the steady state, as replay_bench's ``--repeat 2 --warm-up 1440``). ``--list`` also prints
the last day's actions one by one (run, action, guest and its MiB, source -> destination, the
reason's first 100 characters): a move aside is a consolidation's migration whose source is
not the host its reason empties. The figures of the run
itself are replay_bench's; the classes are of the plans' actions (a migration the replay could
not start, its guest gone, would still count: none did on these days).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from collections import Counter, defaultdict

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from replay_bench import DAYS, POWER, build  # noqa: E402

from vmtools.replay.engine import SimOptions, replay  # noqa: E402


def kind(reason: str) -> str:
    """The step that made a migration, from its reason ("relieve: ...", "consolidate: ...")."""
    return reason.split(":")[0].split(" ")[0] or "?"


def aside(e: tuple) -> bool:
    """A consolidation's migration off another host than the one its reason empties: a guest
    moved aside to make room (policy._make_room)."""
    reason = e[6]
    return reason.startswith("consolidate: empty ") and e[3] != reason.split()[2]


def classify(log: list[tuple], label: str) -> None:
    """``log``: (run, op, guest, source, destination, host, reason) of every planned action."""
    moves = [e for e in log if e[1] == "migrate"]
    by_kind = Counter(kind(e[6]) for e in moves)
    ops = Counter(e[1] for e in log if e[1] != "migrate")
    per_guest: dict[str, list[tuple]] = defaultdict(list)
    for e in moves:
        per_guest[e[2]].append(e)
    again = {g: es for g, es in per_guest.items() if len(es) > 1}
    next_kind: Counter = Counter()
    back = 0
    for es in per_guest.values():
        left: set[str] = set()
        for a, b in zip(es, es[1:]):
            next_kind[f"{kind(a[6])} -> {kind(b[6])}"] += 1
        for e in es:
            back += e[4] in left
            left.add(e[3])
    kinds = ", ".join(f"{k} {n}" for k, n in by_kind.most_common())
    print(f"{label}: {len(moves)} migrations ({kinds}; {sum(map(aside, moves))} of them moved "
          f"aside); power: {dict(ops) or 'none'}")
    print(f"  {len(per_guest)} guests moved, {len(again)} of them more than once "
          f"({sum(len(es) for es in again.values())} migrations); "
          f"{back} back to a host they had left that day")
    print(f"  a guest's next move after one: {dict(next_kind.most_common())}")
    # hosts emptied by consolidation: the next thing that happens to each
    events: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for e in log:
        run, op, _, src, dst, host, reason = e
        if op == "migrate":
            left_by = "gave a guest aside" if aside(e) else "left by " + kind(reason)
            events[src].append((run, left_by))
            events[dst].append((run, "filled by " + kind(reason)))
        else:
            events[host].append((run, op))
    fate: dict[str, list[int]] = defaultdict(list)
    for host, es in events.items():
        for run in sorted({r for r, what in es if what == "left by consolidate"}):
            # a later run's event, or a power operation in the emptying plan itself (with
            # --standby-after 0 a host goes off in the plan that empties it)
            after = [(r, what) for r, what in es if r > run or (
                r == run and not what.startswith(("left by", "filled by", "gave")))]
            if after:
                fate[after[0][1]].append(after[0][0] - run)
            else:
                fate["nothing more"].append(0)
    emptied = sum(len(v) for v in fate.values())
    print(f"  {emptied} hosts emptied by consolidation; next: " + "; ".join(
        f"{what} {len(runs)} (median {statistics.median(runs):g} runs later)"
        for what, runs in sorted(fate.items(), key=lambda kv: -len(kv[1]))))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--plan", default="--state s --power", help="the vm-plan setting")
    ap.add_argument("--day", default="20110303", choices=DAYS)
    ap.add_argument("--variant", default="cpu", choices=["cpu", "cloudsim"])
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--ticks", type=int, default=288)
    ap.add_argument("--list", action="store_true", help="also list the last day's actions")
    args = ap.parse_args()
    from vmtools.cli.vm_replay import vm_plan_setting
    trace = build(args.variant, args.ticks, args.day).repeated(args.repeat)
    day = args.ticks * 300.0
    opts = SimOptions(every_minutes=5, parallel=2, per_host=1, bandwidth=1000.0,
                      cpu_threshold=0.9, power_model=POWER,
                      warm_up=day if args.repeat > 1 else 0.0)
    policy = vm_plan_setting(args.plan, 0, True, False)
    log: list[tuple] = []
    decide, runs = policy.decide, [0]
    start = trace.samples[0].time

    mib: dict[str, int] = {}

    def logged(snap):
        for v in snap.vms:
            mib[v.name] = v.mem_mib
        actions = decide(snap)
        for a in actions:
            log.append((runs[0], a.op, a.vm, a.src, a.dst, a.host, a.reason,
                        snap.created))
        runs[0] += 1
        return actions

    policy.decide = logged
    result = replay(trace, policy, opts)
    from vmtools.model import iso_to_epoch
    parts = [("the whole replay", log)]
    if args.repeat > 1:
        first = [e for e in log if iso_to_epoch(e[7]) < start + day]
        parts = [("first day", first), ("second day", log[len(first):])]
    for label, part in parts:
        classify([e[:7] for e in part], label)
    if args.list:
        for run, op, vm, src, dst, host, reason, _ in parts[-1][1]:
            print(f"  run {run:3d} {op:9s} {vm or '':8s} {mib.get(vm, '')!s:>5s} "
                  f"{src or '':9s} -> {dst or host or '':9s} {reason[:100]}")
    for label, f in (("first day", result.warm_up_figures),
                     ("second day" if args.repeat > 1 else "whole replay", result.figures)):
        if f is not None:
            print(f"figures, {label}: {f['energy_kwh']:.2f} kWh, {f['overload_hours']:.2f} h "
                  f"overloaded, {f['unmet_cpu_share']:.4%} unmet, {f['migrations']} migrations")


if __name__ == "__main__":
    main()
