"""vm-plan benchmark: seeded realistic clusters, vm-plan against FFD and Sandpiper's greedy.

    /work/venv/bin/python bench/plan_bench.py [--quick] [--sizes 50x250,200x2000] [--solver cbc]
                                              [--rules] [--no-balance] [--planetlab]

Clusters: three host types (30 % 16 CPU / 64 GiB, 40 % 32 / 128, 30 % 64 / 256), guests of
1-16 vCPUs with 2 or 4 GiB per vCPU, CPU use skewed (half idle, a third moderate, the rest
busy), placed spread out (each guest on the first host with room in a shuffled order).
Consolidation: hosts (lower bound, FFD, vm-plan), memory moved (FFD+relabel, vm-plan),
model-build and solve seconds. Balance: a few hosts made hot; hotspots left and migrations
of Sandpiper's greedy against vm-plan.

``--rules`` consolidates under a seeded mix of placement rules, as a production cluster has
them: spread triples over 6 % of the guests, gather pairs over 1 %, 1 % banned from three
hosts each, 1 % pinned, and the first two hosts in maintenance (FFD obeys them too).
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from vmtools.model import VM, Host, Snapshot  # noqa: E402
from vmtools.planner import heuristics as H  # noqa: E402
from vmtools.rules.check import check_plan  # noqa: E402
from vmtools.rules.constraints import Constraints, parse_rules  # noqa: E402
from vmtools.planner.instance import build_instance  # noqa: E402
from vmtools.planner.plan import Options, make_plan  # noqa: E402
from vmtools.render import table  # noqa: E402

HOST_TYPES = [(0.3, 16, 64), (0.4, 32, 128), (0.3, 64, 256)]


def generate(n_hosts: int, n_vms: int, seed: int = 0, hot: int = 0) -> Snapshot:
    rng = random.Random(seed)
    hosts = []
    for i in range(n_hosts):
        r, acc = rng.random(), 0.0
        for p, cpu, gib in HOST_TYPES:
            acc += p
            if r <= acc:
                break
        hosts.append(Host(name=f"node{i:05d}", cluster="bench", cpu=float(cpu),
                          mem_mib=gib * 1024 - 1024, hypervisor="xen-4.17", migration="xl-ssh"))
    vms = []
    for j in range(n_vms):
        vcpus = rng.choices([1, 2, 4, 8, 16], [.30, .30, .20, .15, .05])[0]
        mem = vcpus * rng.choice([2, 4]) * 1024
        kind = rng.random()
        util = rng.uniform(.01, .10) if kind < .5 else (rng.uniform(.1, .5) if kind < .85
                                                        else rng.uniform(.5, 1.0))
        vms.append(VM(name=f"vm{j:06d}", host="", vcpus=vcpus, cpu=round(vcpus * util, 3),
                      mem_mib=mem))
    free = {h.name: [h.cpu, h.mem_mib] for h in hosts}
    names = [h.name for h in hosts]
    placed = []
    for vm in sorted(vms, key=lambda v: -v.mem_mib):
        rng.shuffle(names)
        for n in names:
            if free[n][1] >= vm.mem_mib and free[n][0] >= vm.cpu:
                free[n][0] -= vm.cpu
                free[n][1] -= vm.mem_mib
                vm.host = n
                placed.append(vm)
                break
    # Hot hosts for balance: pile busy guests' CPU onto a few hosts.
    for n in sorted(free)[:hot]:
        host = next(h for h in hosts if h.name == n)
        for vm in placed:
            if vm.host == n:
                vm.cpu = round(vm.vcpus * 0.9, 3)
        del host
    return Snapshot(hosts=hosts, vms=placed, source="bench")


def generate_rules(snap: Snapshot, seed: int) -> Constraints:
    rng = random.Random(seed + 1)
    names = [v.name for v in snap.vms]
    hosts = [h.name for h in snap.hosts]
    rng.shuffle(names)
    n = len(names)
    rules, k = [], 0
    for _ in range(n // 50):
        rules.append({"rule": "spread", "vms": names[k:k + 3]})
        k += 3
    for _ in range(n // 200):
        rules.append({"rule": "gather", "vms": names[k:k + 2]})
        k += 2
    for _ in range(n // 100):
        rules.append({"rule": "ban", "vms": [names[k]], "hosts": rng.sample(hosts, 3)})
        k += 1
    where = {v.name: v.host for v in snap.vms}
    pins = [v for v in names[k:] if where[v] not in hosts[:2]][:n // 100]
    rules.append({"rule": "pin", "vms": pins})
    rules.append({"rule": "maintenance", "hosts": hosts[:2]})
    return parse_rules(rules, snap)


def bench_consolidate(n_hosts: int, n_vms: int, limit: float, solver: str, seed: int,
                      with_rules: bool = False) -> list:
    snap = generate(n_hosts, n_vms, seed)
    cons = generate_rules(snap, seed) if with_rules else Constraints([])
    inst = build_instance(snap, cons, cpu_limit=0.8)
    t0 = time.monotonic()
    lb = H.lower_bound(inst)
    ffd = H.ffd_sum(inst)
    ffd_s = time.monotonic() - t0
    ffd_hosts = H.hosts_used(ffd) if ffd else None
    rel = H.relabel(inst, ffd) if ffd else None
    ffd_mib = H.migrated_mib(inst, ffd) if ffd else None
    rel_mib = H.migrated_mib(inst, rel) if rel else None
    t0 = time.monotonic()
    plan = make_plan(snap, cons, Options(time_limit=limit, solver=solver, seed=seed))
    total = time.monotonic() - t0
    check_plan(plan, cons)
    s = plan.summary
    return [f"{n_hosts}/{n_vms}", lb, ffd_hosts, s["hosts_after"],
            f"{(ffd_mib or 0) / 1024:.0f}", f"{(rel_mib or 0) / 1024:.0f}",
            f"{s['migrated_mib'] / 1024:.0f}", s["migrations"], s["pivots"],
            plan.solver["status"], plan.solver.get("gap"), f"{ffd_s:.1f}",
            plan.solver["build_seconds"], plan.solver["solve_seconds"], f"{total:.1f}"]


def planetlab_snapshot() -> Snapshot:
    """The first 5-minute step of the PlanetLab day (2011-03-03) in CloudSim's set-up, as
    bench/replay_bench.py builds it: 800 hosts of 4,096 MB, 1,052 guests dealt round them."""
    import math
    import replay_bench
    trace = replay_bench.build("cloudsim", 1)
    first = trace.samples[0].vms
    vms = [VM(name=n, host=trace.placement[n], cpu=d.cpu, mem_mib=d.mem_mib,
              vcpus=max(1, math.ceil(d.cpu))) for n, d in first.items()]
    return Snapshot(hosts=trace.hosts, vms=vms, source="planetlab/20110303")


def bench_planetlab(limit: float, solver: str) -> list:
    import math
    snap = planetlab_snapshot()
    mem_bound = math.ceil(sum(v.mem_mib for v in snap.vms) / max(h.mem_mib for h in snap.hosts))
    t0 = time.monotonic()
    plan = make_plan(snap, Constraints([]), Options(objective="consolidate", time_limit=limit,
                                                    solver=solver))
    total = time.monotonic() - t0
    check_plan(plan, Constraints([]))
    s = plan.summary
    print(f"lower bound from: {plan.solver.get('bound_method')}", file=sys.stderr)
    return ["800/1052", mem_bound, s["hosts_lower_bound"], s["hosts_after"],
            f"{s['migrated_mib'] / 1024:.0f}", plan.solver["status"], plan.solver.get("gap"),
            f"{total:.1f}"]


def bench_balance(n_hosts: int, n_vms: int, limit: float, solver: str, seed: int) -> list:
    hot = max(2, n_hosts // 50)
    snap = generate(n_hosts, n_vms, seed, hot=hot)
    thr = 0.75
    inst = build_instance(snap, Constraints([]), cpu_limit=1.0)
    hot_before = H.hotspots(inst, inst.cur, thr, 1.0)
    t0 = time.monotonic()
    greedy = H.sandpiper(inst, thr, 1.0)
    g_s = time.monotonic() - t0
    g_moves = sum(1 for v in range(inst.n_vms) if greedy[v] != inst.cur[v])
    g_left = len(H.hotspots(inst, greedy, thr, 1.0))
    g_worst = max(H.utilisation(inst, greedy))
    t0 = time.monotonic()
    plan = make_plan(snap, Constraints([]), Options(objective="balance", cpu_threshold=thr,
                                                    time_limit=limit, solver=solver, mem_threshold=1.0,
                                                    min_gain=0.0))
    total = time.monotonic() - t0
    place = [inst.hosts.index(plan.placement[v]) for v in inst.vms]
    return [f"{n_hosts}/{n_vms}", len(hot_before), g_left, g_moves, f"{g_worst:.2f}",
            len(H.hotspots(inst, place, thr, 1.0)), plan.summary["migrations"],
            f"{plan.summary['worst_cpu_after']:.2f}", plan.solver["status"], f"{g_s:.1f}",
            f"{total:.1f}"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="only the two smallest sizes")
    ap.add_argument("--sizes", help="comma-separated HOSTSxVMS list")
    ap.add_argument("--solver", default="cbc", help="cbc (default) or highs")
    ap.add_argument("--seed", type=int, default=0, help="generator seed")
    ap.add_argument("--time-limit", type=float, default=None, help="per-run limit (s)")
    ap.add_argument("--rules", action="store_true",
                    help="consolidate under a seeded mix of spread, gather, ban, pin and "
                         "maintenance rules")
    ap.add_argument("--no-balance", action="store_true", help="skip the balance runs")
    ap.add_argument("--planetlab", action="store_true",
                    help="only the PlanetLab day's first step in CloudSim's set-up (800 hosts, "
                         "1,052 guests; --time-limit, default 60)")
    args = ap.parse_args()
    if args.planetlab:
        print(table([bench_planetlab(args.time_limit or 60.0, args.solver)],
                    ["size", "memory bound", "LB", "hosts", "GiB moved", "status", "gap",
                     "total s"], "consolidate, PlanetLab first step"))
        return
    sizes = [(50, 250, 5), (200, 2000, 30), (1000, 10000, 60), (5000, 30000, 180)]
    if args.quick:
        sizes = sizes[:2]
    if args.sizes:
        sizes = []
        for item in args.sizes.split(","):
            h, v = item.lower().split("x")
            sizes.append((int(h), int(v), {50: 5, 200: 30, 1000: 60}.get(int(h), 120)))
    rows = []
    for h, v, limit in sizes:
        rows.append(bench_consolidate(h, v, args.time_limit or limit, args.solver, args.seed,
                                      args.rules))
        print(rows[-1], file=sys.stderr)
    print(table(rows, ["size", "LB", "FFD hosts", "hosts", "FFD GiB", "FFD+relabel GiB",
                       "GiB moved", "moves", "pivots", "status", "gap", "FFD s", "build s",
                       "solve s", "total s"],
                "consolidate, with rules" if args.rules else "consolidate"))
    if args.no_balance:
        return
    rows = []
    for h, v, limit in sizes:
        rows.append(bench_balance(h, v, args.time_limit or limit, args.solver, args.seed))
        print(rows[-1], file=sys.stderr)
    print(table(rows, ["size", "hotspots", "greedy left", "greedy moves", "greedy worst",
                       "left", "moves", "worst", "status", "greedy s", "total s"],
                "balance (threshold 75 % CPU)"))


if __name__ == "__main__":
    main()
