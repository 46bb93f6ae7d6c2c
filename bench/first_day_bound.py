"""A lower bound on the first day's energy of any policy allowed at most M migrations, on
replay_bench's PlanetLab days (guests dealt round all 800 hosts), CPU-bound (``--variant cpu``) or
CloudSim's memory-bound set-up (``--variant cloudsim``: the bound ignores every host's capacity,
so it holds there too).

Under vm-replay's rules a host stops drawing only once every guest has left it (one migration
each, holding one of vm-apply's two slots for ``migration_seconds``) and its power-off has held
a slot for ``halt_seconds`` (60 s). Granting a policy everything else (no cron, no per-run
budget, the hosts with fewest guests emptied first, each host at the lowest idle draw of
either power curve, the CPU's dynamic power at the lowest slope of either), the energy is at
least the idle watts of each host until its power-off plus that dynamic part. Prints the bound
at M = 10 % of thr-mmt's first-day migrations and the fewest M whose bound is at most
thr-mmt's first-day energy (both passed on the command line, from replay_bench's table).
"""

from __future__ import annotations

import argparse
import collections
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import replay_bench as rb  # noqa: E402
from vmtools.replay.engine import SimOptions  # noqa: E402
from vmtools.rules.load import migration_seconds  # noqa: E402


#: thr-mmt's first day on 2011-03-03 (migrations, kWh), from replay_bench's tables in README.md
THR_MMT_20110303 = {"cpu": (5774, 480.99), "cloudsim": (702, 907.40)}


def bound(day: str, most: int, slots: int = 2, keep: int = 40,
          variant: str = "cpu") -> tuple[int, float]:
    """(hosts switched off, kWh at least) with at most ``most`` migrations on ``day``."""
    trace = rb.build(variant, 288, day)
    on = collections.defaultdict(list)
    for vm, host in trace.placement.items():
        on[host].append(trace.samples[0].vms[vm].mem_mib)
    halt = SimOptions().halt_seconds
    cost = sorted(((len(ms), sum(migration_seconds(m, 1000.0) for m in ms)) for ms in on.values()))
    g4, g5 = rb.HP_ML110_G4, rb.HP_ML110_G5
    idle = min(g4[0], g5[0])
    slope = min(min((c[i + 1] - c[i]) / (2 * mips / 10) for i in range(10))
                for c, mips in ((g4, rb.HOST_MIPS[0]), (g5, rb.HOST_MIPS[1])))
    cpu_hours = sum(sum(d.cpu for d in s.vms.values()) for s in trace.samples) * 300 / 3600
    kwh = cpu_hours * rb.MIPS_PER_CPU * slope / 1000
    moves = clock = 0.0
    off = 0
    for guests, seconds in cost:
        if moves + guests > most or off >= len(trace.hosts) - keep:
            break
        moves += guests
        clock += seconds + halt
        off += 1
        kwh += idle * min(clock / slots, 86400) / 3.6e6
    kwh += (len(trace.hosts) - off) * idle * 86400 / 3.6e6
    return off, kwh


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--day", default="20110303")
    ap.add_argument("--variant", default="cpu", choices=sorted(THR_MMT_20110303))
    ap.add_argument("--thr-migrations", type=int,
                    help="thr-mmt's first-day migrations (2011-03-03: 5,774 CPU-bound, "
                    "702 memory-bound)")
    ap.add_argument("--thr-kwh", type=float,
                    help="thr-mmt's first-day kWh (2011-03-03: 480.99 CPU-bound, "
                    "907.40 memory-bound)")
    a = ap.parse_args()
    if a.thr_migrations is None or a.thr_kwh is None:
        if a.day != "20110303":
            ap.error("--thr-migrations and --thr-kwh are needed with another --day")
        a.thr_migrations, a.thr_kwh = THR_MMT_20110303[a.variant]
    cap = a.thr_migrations // 10
    off, kwh = bound(a.day, cap, variant=a.variant)
    print(f"{a.day}: at most {cap} migrations: at most {off} hosts off, at least {kwh:.1f} kWh "
          f"(thr-mmt {a.thr_kwh:g})")
    for most in range(cap, len(rb.load_traces(a.day)) + 10, 10):
        off, kwh = bound(a.day, most, variant=a.variant)
        if kwh <= a.thr_kwh:
            print(f"  the fewest migrations whose bound is within thr-mmt's energy: about {most} "
                  f"({most / a.thr_migrations:.1%} of its), {off} hosts off, {kwh:.1f} kWh")
            break


if __name__ == "__main__":
    main()
