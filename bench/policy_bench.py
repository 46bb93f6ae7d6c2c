"""vm-plan --objective auto as cron runs it: bounded runs to the target, and the idle run.

    python bench/policy_bench.py [--quick] [--sizes 200x2000,1000x10000] [--seed 0] [--compare]

On plan_bench's seeded clusters (guests placed spread out, a few hosts made hot), ``auto`` with
its default budget runs again and again, each plan applied (the next snapshot is the plan's
target), until a run plans nothing. Reported: how many runs that took, the largest run (its
migrations, GiB and estimated minutes against the budget of 20 / 50 GiB / 4 min), every run's
planning seconds (wall clock and CPU: on a shared machine the wall clock says more about
the neighbours), and the hosts reached; then the idle run at that fixpoint (the median of five),
without and with ``--state`` (a state directory holding the default windows' worth of
five-minute samples).
``--compare`` adds one ``--objective consolidate`` plan of the same cluster (the whole way in
one run, as before).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from dataclasses import replace

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from plan_bench import generate  # noqa: E402

from vmtools.model import epoch_to_iso  # noqa: E402
from vmtools.rules.check import check_plan  # noqa: E402
from vmtools.rules.constraints import Constraints  # noqa: E402
from vmtools.planner.plan import Options, make_plan, plan_with_state, with_placement  # noqa: E402
from vmtools.render import table  # noqa: E402


def runs_to_target(n_hosts: int, n_vms: int, seed: int, compare: bool) -> tuple[list, object]:
    snap = generate(n_hosts, n_vms, seed, hot=max(2, n_hosts // 50))
    cons = Constraints([])
    hosts_before = len({v.host for v in snap.vms})
    seconds, cpu, moves, gib, minutes = [], [], 0, 0.0, []
    biggest = (0, 0.0, 0.0)
    runs = 0
    while runs < 500:
        t0, c0 = time.monotonic(), time.process_time()
        plan = make_plan(snap, cons, Options(objective="auto", seed=seed))
        seconds.append(time.monotonic() - t0)
        cpu.append(time.process_time() - c0)
        check_plan(plan, cons)
        s = plan.summary
        if not plan.actions:
            break
        runs += 1
        moves += s["migrations"]
        gib += s["migrated_mib"] / 1024
        minutes.append(s["estimated_seconds"] / 60)
        biggest = max(biggest, (s["migrations"], s["migrated_mib"] / 1024,
                                s["estimated_seconds"] / 60))
        snap = with_placement(snap, plan.placement)
    row = [f"{n_hosts}/{n_vms}", hosts_before, len({v.host for v in snap.vms}), runs, moves,
           f"{gib:,.0f}", f"{biggest[0]} / {biggest[1]:.0f} / {max(minutes, default=0):.1f}",
           f"{statistics.mean(seconds):.2f} / {statistics.mean(cpu):.2f}",
           f"{max(seconds):.2f} / {max(cpu):.2f}"]
    if compare:
        t0 = time.monotonic()
        full = make_plan(generate(n_hosts, n_vms, seed, hot=max(2, n_hosts // 50)), cons,
                         Options(objective="consolidate", seed=seed,
                                 time_limit=30 if n_hosts <= 200 else 60))
        row += [full.summary["hosts_after"], full.summary["migrations"],
                f"{full.summary['migrated_mib'] / 1024:,.0f}", f"{time.monotonic() - t0:.1f}"]
    return row, snap


def idle(snap, seed: int) -> list:
    cons = Constraints([])
    plain, plain_cpu = [], []
    for _ in range(5):
        t0, c0 = time.monotonic(), time.process_time()
        plan = make_plan(snap, cons, Options(objective="auto", seed=seed))
        plain.append(time.monotonic() - t0)
        plain_cpu.append(time.process_time() - c0)
        assert not plan.actions
    with tempfile.TemporaryDirectory() as state:
        n = int(Options().history_window // 5) + 1  # the default windows of 5-minute samples
        base = time.time() - 300 * n
        for i in range(n):
            s = replace(snap, created=epoch_to_iso(base + 300 * i))
            plan_with_state(s, cons, Options(objective="auto", seed=seed), state)
        timed, timed_cpu = [], []
        for i in range(5):
            s = replace(snap, created=epoch_to_iso(base + 300 * (n + i)))
            t0, c0 = time.monotonic(), time.process_time()
            plan = plan_with_state(s, cons, Options(objective="auto", seed=seed), state)
            timed.append(time.monotonic() - t0)
            timed_cpu.append(time.process_time() - c0)
            assert not plan.actions, plan.summary
    return [f"{len(snap.hosts)}/{len(snap.vms)}",
            f"{statistics.median(plain):.3f} / {statistics.median(plain_cpu):.3f}",
            f"{statistics.median(timed):.3f} / {statistics.median(timed_cpu):.3f}"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="200x2000,1000x10000", help="HOSTSxVMS list")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--compare", action="store_true",
                    help="also one --objective consolidate plan of each cluster")
    ap.add_argument("--quick", action="store_true",
                    help="one small cluster (--sizes 50x250): a check that it runs, in seconds")
    args = ap.parse_args()
    if args.quick:
        args.sizes = "50x250"
    rows, idles = [], []
    for item in args.sizes.split(","):
        h, v = (int(x) for x in item.lower().split("x"))
        row, final = runs_to_target(h, v, args.seed, args.compare)
        rows.append(row)
        print(row, file=sys.stderr)
        idles.append(idle(final, args.seed))
        print(idles[-1], file=sys.stderr)
    headers = ["size", "hosts before", "hosts after", "runs", "migrations", "GiB",
               "largest run (moves / GiB / min)", "plan s mean (wall / CPU)",
               "plan s max (wall / CPU)"]
    if args.compare:
        headers += ["consolidate: hosts", "migrations", "GiB", "s"]
    print(table(rows, headers, "auto with its default budget, run until it plans nothing"))
    print(table(idles, ["size", "idle run s (wall / CPU)", "with --state (wall / CPU)"],
                "the idle run at that fixpoint (median of 5)"))


if __name__ == "__main__":
    main()
