"""vm-replay benchmark: a day of real VM CPU traces (PlanetLab, 2011-03-03, as CloudSim ships
them) replayed through vm-plan settings and the built-in baselines.

    python bench/replay_bench.py [--variant cloudsim|cpu|speed|all] [--quick] [--ticks N]
                                 [--repeat N] [--warm-up MINUTES] [--both] [--lookahead]
                                 [--day YYYYMMDD]   (one of CloudSim's ten days)
                                 [--plan "OPTIONS"]... [--baseline NAME]... [--write-csv DIR]
                                 [--monitoring-loss FRACTION [--loss-seed N]]

``--repeat 2 --warm-up 1440`` gives the second day: each setting as it runs once it has brought
the cluster where it keeps it (vm-replay's own --repeat and --warm-up).

``--monitoring-loss 0.02`` replays each setting twice, lossless and with that share of guests'
metrics and hosts' reports lost at random (vm-replay --monitoring-loss, seeded): failed and
refused ticks, frozen host-ticks, migrations onto frozen hosts, and energy and overload against
the lossless run.

Variants (bench/data/planetlab/README.md has the data's source and licence):

* ``cloudsim``: CloudSim's set-up of Beloglazov & Buyya (2012), ``examples/power/Constants.java``
  and ``planetlab/PlanetLabConstants.java``: 800 hosts alternating HP ProLiant ML110 G4
  (2 x 1860 MIPS) and G5 (2 x 2660 MIPS), 4096 MB each; 1,052 VMs, the i-th (files sorted by
  name) of type i // ceil(1052 / 4): 2500, 2000, 1000, 500 MIPS with 870, 1740, 1740, 613 MB.
  CPU demand = the trace's % x the VM's MIPS; 1 CPU = 1000 MIPS here, so a G4 host has 3.72
  CPUs and a G5 5.32. Memory binds (a host takes 2-4 guests by memory, many more by CPU).
  Power: each host type's SPECpower curve (CloudSim's PowerModelSpecPowerHpProLiantMl110G4/G5).
* ``cpu``: the same with 16x the memory per host (65536 MB), so CPU, not memory, binds: the
  guests' memory (1,275 GiB) fills 20 hosts, their CPU demand (157-209 CPUs over the day) needs
  at least 37-50 G5 hosts at 80 %. (With 4x, 16384 MB, memory still bound: 78 hosts full.)
* ``speed``: the issue's size, 200 hosts / 2,000 guests (guest j replays trace j mod 1052,
  types as above over the 2,000), 16384 MB hosts: the speed target (a day in 5 minutes for
  vmtools' settings, baselines in seconds).

vm-plan knows no power model unless a setting names one: ``--power-model
bench/data/planetlab/power.json`` gives it the two SPECpower curves the replay charges.

Guests start dealt round the hosts in order (each to the next host with the memory), as an
unconsolidated cluster holds them; CloudSim starts from its own power-aware placement instead.
Ticks every 5 minutes, the traces' own interval; 288 ticks in a day. Each tick sees the 5 minutes
that ended (vm-replay's lag); ``--lookahead`` gives it the 5 minutes that start, as CloudSim. Migrations at 1 Gbit/s
(CloudSim's host bandwidth), 2 at once, 1 per host (vm-apply's defaults).
"""

from __future__ import annotations

import argparse
import math
import os
import resource
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from vmtools.model import Host, epoch_to_iso, iso_to_epoch  # noqa: E402
from vmtools.power_model import HP_ML110_G4, HP_ML110_G5, HostPower, PowerModel  # noqa: E402
from vmtools.render import set_width, table  # noqa: E402
from vmtools.replay.baselines import make_baseline  # noqa: E402
from vmtools.replay.engine import SimOptions, replay  # noqa: E402
from vmtools.replay.report import COLUMNS  # noqa: E402
from vmtools.replay.sources import _deal  # noqa: E402
from vmtools.replay.trace import Demand, Sample, Trace  # noqa: E402

DATA_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "planetlab")
DATA = os.path.join(DATA_DIR, "20110303")
DAYS = ("20110303", "20110306", "20110309", "20110322", "20110325", "20110403", "20110409",
        "20110411", "20110412", "20110420")     # CloudSim's ten days
HELD_OUT = ("20110322", "20110412")             # never used to choose a setting
START = iso_to_epoch("2011-03-03T00:00:00Z")
VM_MIPS = (2500, 2000, 1000, 500)
VM_RAM = (870, 1740, 1740, 613)
HOST_MIPS = (1860, 2660)          # per core, 2 cores
MIPS_PER_CPU = 1000.0
POWER = PowerModel([HostPower("g4-*", HP_ML110_G4), HostPower("g5-*", HP_ML110_G5)],
                   "HP ProLiant ML110 G4 / G5 (SPECpower, as CloudSim)")

SETTINGS = ["--objective auto --state s --time-limit 20",
            "--objective consolidate --time-limit 20",
            "--objective balance --state s --time-limit 20"]
BASELINES = ["none", "threshold", "sandpiper", "thr-mmt"]


def _cpu() -> float:
    """CPU seconds of this process and its children (CBC runs as a child)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def load_traces(day: str = "20110303") -> list[list[float]]:
    """The day's CPU utilisation (%) per VM, files sorted by name, 288 values each. 20110303 is
    CloudSim's directory as it ships it; the other days are packed, one line per file
    (``name,v1 v2 ... v288``, names sorted, gzip: see bench/data/planetlab/README.md)."""
    out = []
    if day == "20110303":
        for name in sorted(os.listdir(DATA)):
            with open(os.path.join(DATA, name), encoding="ascii") as fh:
                out.append([float(x) for x in fh.read().split()])
        return out
    import gzip
    with gzip.open(os.path.join(DATA_DIR, f"{day}.txt.gz"), "rt", encoding="utf-8") as fh:
        for line in fh:
            _, _, values = line.rstrip("\n").partition(",")
            out.append([float(x) for x in values.split()])
    return out


def build(variant: str, ticks: int, day: str = "20110303") -> Trace:
    traces = load_traces(day)
    if variant == "speed":
        n_hosts, n_vms, mem = 200, 2000, 16384
    else:
        n_hosts, n_vms, mem = 800, len(traces), 4096 if variant == "cloudsim" else 65536
    hosts = [Host(name=f"g{4 + i % 2}-{i:04d}", cluster="planetlab",
                  cpu=2 * HOST_MIPS[i % 2] / MIPS_PER_CPU, mem_mib=mem, net_mbps=None,
                  hypervisor="xen", migration="xen") for i in range(n_hosts)]
    per_type = math.ceil(n_vms / len(VM_MIPS))
    samples = [Sample(START + k * 300.0, {}) for k in range(ticks)]
    for j in range(n_vms):
        kind = j // per_type
        series = traces[j % len(traces)]
        for k in range(ticks):
            util = series[k] / 100.0
            cpu = round(util * VM_MIPS[kind] / MIPS_PER_CPU, 4)
            samples[k].vms[f"vm{j:04d}"] = Demand(cpu, VM_RAM[kind], None, 1)
    placement = _deal(samples[0].vms, hosts, "planetlab")
    return Trace(f"planetlab/{day} ({variant})", hosts, placement, samples, 300.0)


def write_csv(trace: Trace, directory: str) -> None:
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, "hosts.csv"), "w", encoding="ascii") as fh:
        fh.write("name,cpu,mem_mib,cluster\n")
        for h in trace.hosts:
            fh.write(f"{h.name},{h.cpu:g},{h.mem_mib},{h.cluster}\n")
    with open(os.path.join(directory, "trace.csv"), "w", encoding="ascii") as fh:
        fh.write("time,guest,cpu,mem_mib,host\n")
        for i, s in enumerate(trace.samples):
            t = epoch_to_iso(s.time)
            for vm in sorted(s.vms):
                d = s.vms[vm]
                fh.write(f"{t},{vm},{d.cpu:g},{d.mem_mib},{trace.placement[vm] if i == 0 else ''}\n")
    with open(os.path.join(directory, "power.json"), "w", encoding="ascii") as fh:
        fh.write('{"format": "vmtools.power", "version": "1.0", "hosts": [\n'
                 f'  {{"match": "g4-*", "curve_w": {list(HP_ML110_G4)}}},\n'
                 f'  {{"match": "g5-*", "curve_w": {list(HP_ML110_G5)}}}]}}\n')


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--variant", default="all", choices=["cloudsim", "cpu", "speed", "all"])
    ap.add_argument("--day", default="20110303", choices=DAYS,
                    help="the PlanetLab day: one of CloudSim's ten (default 20110303); "
                    f"{' and '.join(HELD_OUT)} are held out of the tuning")
    ap.add_argument("--quick", action="store_true", help="a quarter of the day (72 ticks)")
    ap.add_argument("--ticks", type=int, default=288)
    ap.add_argument("--plan", action="append", help="vm-plan settings (default: auto, "
                    "consolidate, balance, each with --time-limit 20)")
    ap.add_argument("--baseline", action="append", help="baselines (default: all four)")
    ap.add_argument("--baselines-only", action="store_true", help="no vm-plan setting")
    ap.add_argument("--repeat", type=int, default=1, metavar="N",
                    help="play the day N times back to back (vm-replay --repeat)")
    ap.add_argument("--warm-up", type=float, default=0.0, metavar="MINUTES",
                    help="left out of the figures (vm-replay --warm-up); with --repeat 2 "
                    "--warm-up 1440 the figures are the second day's: the steady state")
    ap.add_argument("--both", action="store_true", help="with --warm-up, also a row of the "
                    "warm-up's own figures (with --repeat 2 --warm-up 1440: the first day and "
                    "the second from one run)")
    ap.add_argument("--lookahead", action="store_true", help="each tick sees the interval "
                    "that starts (vm-replay --lookahead, as CloudSim); default: the one that "
                    "ended (lag)")
    ap.add_argument("--monitoring-loss", type=float, default=0.0, metavar="FRACTION",
                    help="also replay each setting with this share of the monitoring lost, and "
                    "compare with the lossless run")
    ap.add_argument("--loss-seed", type=int, default=0, metavar="N")
    ap.add_argument("--write-csv", metavar="DIR", help="also write the trace as vm-replay's "
                    "CSV input (trace.csv, hosts.csv, power.json) and stop")
    args = ap.parse_args()
    set_width(None)                  # a bench table is as wide as its cells
    ticks = 72 if args.quick else args.ticks
    from vmtools.cli.vm_replay import vm_plan_setting
    variants = ["cloudsim", "cpu", "speed"] if args.variant == "all" else [args.variant]
    opts = SimOptions(every_minutes=5, parallel=2, per_host=1, bandwidth=1000.0,
                      cpu_threshold=0.9, power_model=POWER, warm_up=args.warm_up * 60,
                      lookahead=args.lookahead)
    for variant in variants:
        trace = build(variant, ticks, args.day).repeated(args.repeat)
        if args.write_csv:
            write_csv(trace, os.path.join(args.write_csv, variant))
            print(f"wrote {args.write_csv}/{variant}/trace.csv, hosts.csv, power.json")
            continue
        if args.monitoring_loss > 0:
            loss_comparison(trace, args, opts, vm_plan_setting)
            continue
        rows = []
        settings = [vm_plan_setting(s, 0, True, False)
                    for s in ([] if args.baselines_only else args.plan or SETTINGS)]
        settings += [make_baseline(b, POWER) for b in (args.baseline or BASELINES)]
        for policy in settings:
            t0, c0 = time.perf_counter(), _cpu()
            r = replay(trace, policy, opts)
            wall, cpu = time.perf_counter() - t0, _cpu() - c0
            if hasattr(policy, "close"):
                policy.close()
            if r.warm_up_figures is not None and args.both:
                f = r.warm_up_figures
                rows.append([r.name + " (warm-up)", "", ""]
                            + [fmt.format(f[key]) for key, _, fmt in COLUMNS])
            f = r.figures
            rows.append([r.name, f"{wall:.1f}", f"{cpu:.1f}"]
                        + [fmt.format(f[key]) for key, _, fmt in COLUMNS])
            print(f"  {variant}: {r.name}: {wall:.1f} s, {cpu:.1f} s CPU", file=sys.stderr,
                  flush=True)
            for row in rows[-2 if r.warm_up_figures is not None and args.both else -1:]:
                print("  " + " | ".join(row), file=sys.stderr, flush=True)
        n_vms = len(trace.samples[0].vms)
        print(table(rows, ["setting", "wall s", "CPU s"] + [h for _, h, _ in COLUMNS],
                    f"{trace.source}: {len(trace.hosts)} hosts, {n_vms} guests, {ticks * args.repeat} ticks "
                    f"of 5 min, {opts.convention}"))


def loss_comparison(trace: Trace, args, opts: SimOptions, vm_plan_setting) -> None:
    """Each vm-plan setting lossless and with --monitoring-loss: the issue's figure (no failed
    tick, no migration onto a frozen host, energy and overload within 10 %)."""
    from dataclasses import replace
    lossy = replace(opts, monitoring_loss=args.monitoring_loss, loss_seed=args.loss_seed)
    rows = []
    for text in args.plan or SETTINGS[:1]:
        got = {}
        for name, o in (("lossless", opts), (f"loss {args.monitoring_loss:g}", lossy)):
            policy = vm_plan_setting(text, 0, True, False)
            t0 = time.perf_counter()
            r = replay(trace, policy, o)
            if hasattr(policy, "close"):
                policy.close()
            got[name] = r.figures
            f = r.figures
            print(f"  {text}: {name}: {time.perf_counter() - t0:.1f} s", file=sys.stderr,
                  flush=True)
            rows.append([text, name, f"{f['energy_kwh']:.2f}", f"{f['overload_hours']:.2f}",
                         f"{f['unmet_cpu_share']:.4%}", f["migrations"], f["failed_ticks"],
                         f["refused_ticks"], f["frozen_host_ticks"],
                         f["migrations_onto_frozen"], f["migrations_off_frozen"],
                         f["lost_host_reports"], f["lost_guest_metrics"]])
        base, lost = got["lossless"], got[f"loss {args.monitoring_loss:g}"]

        def rel(key: str) -> str:
            b, x = base[key], lost[key]
            return f"{(x - b) / b:+.1%}" if b else ("0" if x == b else f"+{x:g} (from 0)")
        rows.append([text, "loss vs lossless", rel("energy_kwh"), rel("overload_hours"),
                     rel("unmet_cpu_share"), rel("migrations"), "", "", "", "", "", "", ""])
    print(table(rows, ["setting", "run", "kWh", "overload h", "unmet CPU", "migr.", "failed",
                       "refused", "frozen host-ticks", "onto frozen", "off frozen",
                       "lost hosts", "lost guests"],
                f"{trace.source}: {len(trace.hosts)} hosts, {len(trace.samples[0].vms)} guests, "
                f"{len(trace.samples)} samples, --monitoring-loss {args.monitoring_loss:g} "
                f"(seed {args.loss_seed}), {opts.convention}"))


if __name__ == "__main__":
    main()
