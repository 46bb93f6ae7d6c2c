"""What a vm-plan setting leaves online in replay_bench's PlanetLab replay: each run's hosts
before and after and migrations (one JSON line per run in DIR/runs.jsonl), the snapshot of
every 48th run and of the last (DIR/snapNNN.json, for vm-plan --explain), and at the end the
online hosts grouped by the memory of the guests they hold.

    python bench/replay_hosts.py DIR [--plan "OPTIONS"] [--day YYYYMMDD] [--ticks N]
                                     [--variant cpu|cloudsim]

One day from the dealt start (the first day of replay_bench's ``--repeat 2``). Written for
issue 26's memory-bound 2011-03-22, where auto kept about 39 more hosts online than thr-mmt.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter, defaultdict

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from replay_bench import DAYS, POWER, build  # noqa: E402

from vmtools.replay.engine import SimOptions, replay  # noqa: E402

PLAN = ("--state s --power --power-model bench/data/planetlab/power.json --mem-target 1")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dir")
    ap.add_argument("--plan", default=PLAN, help="the vm-plan setting")
    ap.add_argument("--day", default="20110322", choices=DAYS)
    ap.add_argument("--variant", default="cloudsim", choices=["cpu", "cloudsim"])
    ap.add_argument("--ticks", type=int, default=288)
    args = ap.parse_args()
    from vmtools.cli.vm_replay import vm_plan_setting
    os.makedirs(args.dir, exist_ok=True)
    trace = build(args.variant, args.ticks, args.day)
    opts = SimOptions(every_minutes=5, parallel=2, per_host=1, bandwidth=1000.0,
                      cpu_threshold=0.9, power_model=POWER)
    policy = vm_plan_setting(args.plan, 0, True, False)
    plan, runs, last = policy.plan, [0], [None]
    log = open(os.path.join(args.dir, "runs.jsonl"), "w", encoding="utf-8")

    def logged(snap):
        p = plan(snap)
        s = p.summary
        log.write(json.dumps({"run": runs[0], "created": snap.created,
                              "hosts_before": s.get("hosts_before"),
                              "hosts_after": s.get("hosts_after"),
                              "migrations": s.get("migrations")}) + "\n")
        if runs[0] % 48 == 47:
            with open(os.path.join(args.dir, f"snap{runs[0]:03d}.json"), "w") as fh:
                json.dump(snap.to_dict(), fh)
        last[0] = snap
        runs[0] += 1
        return p

    policy.plan = logged
    f = replay(trace, policy, opts).figures
    log.close()
    with open(os.path.join(args.dir, f"snap{runs[0] - 1:03d}.json"), "w") as fh:
        json.dump(last[0].to_dict(), fh)
    print(f"{runs[0]} runs; {f['energy_kwh']:.2f} kWh, {f['overload_hours']:.2f} h overloaded, "
          f"{f['migrations']} migrations; the last run's snapshot:")
    on: dict[str, list[int]] = defaultdict(list)
    for v in last[0].vms:
        on[v.host].append(v.mem_mib)
    mem = {h.name: h.mem_mib for h in last[0].hosts}
    groups = Counter(tuple(sorted(m, reverse=True)) for m in on.values())
    print(f"{len(on)} hosts hold guests")
    for k, n in groups.most_common():
        h = next(h for h, m in on.items() if tuple(sorted(m, reverse=True)) == k)
        print(f"  {n:4d} hosts: {' + '.join(map(str, k))} MiB, {mem[h] - sum(k)} MiB left")


if __name__ == "__main__":
    main()
