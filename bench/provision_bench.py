"""Provisioning (vm-plan --add) and the context switch on large synthetic clusters, in process.

    python bench/provision_bench.py [--hosts 200] [--guests 2000] [--group 50] [--spread 20]
                                    [--repeat 3] [--seed 1]

A cluster of HOSTS hosts (16 CPUs, 64 GiB; one in ten in standby) running GUESTS guests of 1-8
GiB and 0.1-2 CPUs, dealt first-fit at random; a group of GROUP new guests (2-4 GiB, 0.5 CPU)
of which the first SPREAD are spread; then the same cluster loaded beyond its CPUs (every
guest's demand doubled until it is) with priorities 0-9 at random. Prints, for each, the
seconds (best of REPEAT) of ``add_plan`` and ``context_switch`` including the replay checker's
check of the plan, and what they did (guests placed, standby hosts woken; guests suspended).
A group that cannot fit is reported as refused with the seconds the refusal took.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from vmtools.errors import OperationFailed  # noqa: E402
from vmtools.model import VM, Host, Snapshot  # noqa: E402
from vmtools.planner.context import SwitchSettings, context_switch  # noqa: E402
from vmtools.planner.provision import NewGuest, add_plan, rules_for  # noqa: E402
from vmtools.rules.constraints import parse_rules  # noqa: E402


def cluster(n_hosts: int, n_guests: int, rng: random.Random) -> Snapshot:
    hosts = [Host(name=f"h{i:04d}", cpu=16.0, mem_mib=65536,
                  state="standby" if i % 10 == 9 else "online") for i in range(n_hosts)]
    online = [h for h in hosts if h.state == "online"]
    free = {h.name: [h.cpu, h.mem_mib] for h in online}
    vms = []
    for i in range(n_guests):
        mem, cpu = rng.choice((1024, 2048, 4096, 8192)), round(rng.uniform(0.1, 2.0), 2)
        for h in rng.sample(online, len(online)):
            if free[h.name][0] >= cpu and free[h.name][1] >= mem:
                free[h.name][0] -= cpu
                free[h.name][1] -= mem
                vms.append(VM(name=f"g{i:05d}", host=h.name, cpu=cpu, mem_mib=mem))
                break
    return Snapshot(hosts=hosts, vms=vms)


def best(fn, repeat: int):
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        try:
            out = fn()
        except OperationFailed as exc:
            out = exc
        times.append(time.perf_counter() - t0)
    return min(times), out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hosts", type=int, default=200)
    ap.add_argument("--guests", type=int, default=2000)
    ap.add_argument("--group", type=int, default=50)
    ap.add_argument("--spread", type=int, default=20)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    snap = cluster(args.hosts, args.guests, rng)
    group = [NewGuest(name=f"new{i:03d}", vcpus=2, mem_mib=rng.choice((2048, 4096)), cpu=0.5,
                      config=f"/etc/xen/new{i:03d}.cfg") for i in range(args.group)]
    rules = [{"rule": "spread", "vms": [g.name for g in group[:args.spread]]}] \
        if args.spread >= 2 else []
    cons = rules_for(group, rules, [], snap)
    seconds, plan = best(lambda: add_plan(snap, cons, group, "auto", 0.8, 0.9, 60), args.repeat)
    print(f"cluster: {len(snap.hosts)} hosts ({sum(h.state == 'standby' for h in snap.hosts)} "
          f"standby), {len(snap.vms)} guests")
    if isinstance(plan, OperationFailed):
        print(f"--add {args.group} guests ({args.spread} spread): refused in {seconds:.3f} s: "
              f"{plan}")
    else:
        print(f"--add {args.group} guests ({args.spread} spread): {seconds:.3f} s, "
              f"{plan.summary['created']} placed on {len({a.dst for a in plan.actions if a.dst})}"
              f" hosts, woken {plan.summary['hosts_woken'] or 'none'}; "
              f"{plan.solver['method']}")
    total = sum(h.cpu for h in snap.hosts)
    while sum(v.cpu for v in snap.vms) <= total:
        for v in snap.vms:
            v.cpu = round(v.cpu * 2, 2)
    prio = [{"rule": "priority", "vms": [v.name for v in snap.vms if int(v.name[1:]) % 10 == p],
             "priority": p} for p in range(10)]
    prio = [r for r in prio if r["vms"]]
    pcons = parse_rules(prio, snap)
    seconds, plan = best(lambda: context_switch(snap, pcons, {}, SwitchSettings(
        image_dir="/var/lib/xen/save"), time.time()), args.repeat)
    print(f"--context-switch, demand {sum(v.cpu for v in snap.vms):.0f} of {total:.0f} CPUs: "
          f"{seconds:.3f} s, {len(plan.actions) if plan else 0} guests suspended")
    return 0


if __name__ == "__main__":
    sys.exit(main())
