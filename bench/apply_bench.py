"""vm-apply benchmark: a 200-migration plan against the simulated cluster (xend HTTP servers
in this process), migration time proportional to memory.

Figures: the makespan against the lower bound that --parallel and --per-host allow
(max of: total migration time / parallel; for each host, the time of the migrations touching
it / per-host; the longest ``after`` chain), and vm-apply's own overhead per action (an
action's wall time minus its simulated transfer time), plus the time before the first
migration starts (checker, lock, asking every host).

    /work/venv/bin/python bench/apply_bench.py [--quick] [--parallel N] [--per-host N]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tabulate import tabulate  # noqa: E402

from vmtools.lab.handmade import (hostmap_text, make_cluster, plan_of,  # noqa: E402
                                  snapshot_of, start_xends)
from vmtools.apply import ApplyOptions, apply_plan  # noqa: E402
from vmtools.drivers.hostmap import parse_hostmap  # noqa: E402
from vmtools.lab.cluster import migration_seconds  # noqa: E402
from vmtools.model import iso_to_epoch  # noqa: E402


def build(directory: Path, n_actions: int, n_hosts: int, mib_per_s: float, seed: int):
    rng = random.Random(seed)
    hosts = {f"h{i:02d}": {"mem_mib": 1 << 20, "domains": {}} for i in range(n_hosts)}
    names = sorted(hosts)
    n_chained = n_actions // 10          # guests that move twice (an ``after`` link)
    n_guests = n_actions - n_chained
    for g in range(n_guests):
        hosts[rng.choice(names)]["domains"][f"vm{g:03d}"] = {
            "mem_mib": rng.choice([512, 1024, 1536, 2048, 3072, 4096])}
    state = make_cluster(directory, hosts, mib_per_s=mib_per_s, min_seconds=0.05)
    snap = snapshot_of(state, "xen")
    where = {v.name: v.host for v in snap.vms}
    moves: list[tuple] = []
    first_move: dict[str, int] = {}
    for vm in sorted(where):
        dst = rng.choice([h for h in names if h != where[vm]])
        moves.append((vm, dst))
        first_move[vm] = len(moves)
        where[vm] = dst
    for vm in rng.sample(sorted(where), n_chained):
        dst = rng.choice([h for h in names if h != where[vm]])
        moves.append((vm, dst, [first_move[vm]]))
        where[vm] = dst
    return state, plan_of(snap, moves)


def lower_bound(plan, state, parallel: int, per_host: int) -> tuple[float, dict]:
    st = state.read()
    t = {a.id: migration_seconds(st, a.mem_mib) for a in plan.actions}
    per = defaultdict(float)
    for a in plan.actions:
        per[a.src] += t[a.id]
        per[a.dst] += t[a.id]
    chain: dict[int, float] = {}
    for a in plan.actions:                      # ids are in a topological order here
        chain[a.id] = t[a.id] + max((chain[p] for p in a.after), default=0.0)
    parts = {"total/parallel": sum(t.values()) / parallel,
             "busiest host/per-host": max(per.values()) / per_host,
             "longest chain": max(chain.values())}
    return max(parts.values()), parts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="60 migrations instead of 200")
    ap.add_argument("--parallel", type=int, default=8)
    ap.add_argument("--per-host", type=int, default=1)
    ap.add_argument("--hosts", type=int, default=20)
    ap.add_argument("--mib-per-s", type=float, default=4096.0,
                    help="simulated migration speed (scales the run's length)")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    n = 60 if args.quick else 200
    with tempfile.TemporaryDirectory(prefix="vmtools-apply-bench-") as tmp:
        directory = Path(tmp)
        state, plan = build(directory, n, args.hosts, args.mib_per_s, args.seed)
        labs = start_xends(state)
        try:
            opts = ApplyOptions(parallel=args.parallel, per_host=args.per_host,
                                hosts=parse_hostmap(hostmap_text(labs)),
                                state_dir=str(directory / "state"))
            t0 = time.time()
            report = apply_plan(plan, opts)
            wall = time.time() - t0
            st_t = {a.id: migration_seconds(state.read(), a.mem_mib) for a in plan.actions}
            lb, parts = lower_bound(plan, state, args.parallel, args.per_host)
        finally:
            for lab in labs.values():
                lab.stop()
    acts = report.actions
    starts = [iso_to_epoch_ms(a["started"]) for a in acts]
    ends = [iso_to_epoch_ms(a["ended"]) for a in acts]
    makespan = max(ends) - min(starts)
    overhead = [a["seconds"] - st_t[a["id"]] for a in acts]
    rows = [["migrations", len(acts)], ["done", report.summary["done"]],
            ["hosts", args.hosts], ["--parallel / --per-host", f"{args.parallel} / {args.per_host}"],
            ["simulated migration time, sum (s)", f"{sum(st_t.values()):.1f}"]]
    rows += [[f"lower bound: {k} (s)", f"{v:.2f}"] for k, v in parts.items()]
    rows += [["makespan, first start to last end (s)", f"{makespan:.2f}"],
             ["makespan / lower bound", f"{makespan / lb:.3f}"],
             ["wall time of apply_plan (s)", f"{wall:.2f}"],
             ["before the first migration (checks, lock, hosts asked) (s)",
              f"{min(starts) - t0:.3f}"],
             ["overhead per action, median (ms)", f"{statistics.median(overhead) * 1000:.1f}"],
             ["overhead per action, p95 (ms)",
              f"{sorted(overhead)[int(len(overhead) * 0.95)] * 1000:.1f}"]]
    print(tabulate(rows, headers=["vm-apply benchmark", "value"], tablefmt="github"))
    if report.summary["done"] != len(acts):
        sys.exit("not every migration succeeded")


def iso_to_epoch_ms(text: str) -> float:
    whole, frac = text.rstrip("Z").split(".")
    return iso_to_epoch(whole + "Z") + int(frac) / 1000


if __name__ == "__main__":
    main()
