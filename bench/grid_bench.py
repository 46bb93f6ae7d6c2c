"""vm-plan on a grid: one large domain planned in partitions, and several domains side by side.

    python bench/grid_bench.py large [--hosts 20000] [--vms 150000] [--time-limit 60]
                                     [--jobs N] [--no-rules] [--no-idle] [--seed 0]
    python bench/grid_bench.py idle [--hosts 20000] [--vms 150000] [--repeat N] [--keep DIR]
                                    [--no-rules] [--seed 0]
    python bench/grid_bench.py hot [--hosts 20000] [--vms 150000] [--mem-overloads 30]
                                   [--cpu-hotspots 8] [--runs N] [--no-budget] [--keep DIR]
                                   [--no-rules] [--seed 0]
    python bench/grid_bench.py grid [--hosts 600] [--vms 6000] [--domains 3]
                                    [--time-limit 30] [--seed 0]

``large``: one migration domain of ``--hosts`` hosts (three types: 16 CPUs / 64 GiB, 32 / 128,
64 / 256) and ``--vms`` guests (1-8 vCPUs, 1-3 GiB per vCPU, CPU use skewed: half nearly
idle, a third moderate, the rest busier: memory binds, as on most virtualised clusters),
dealt at random over all the hosts (at most 70 % of each), under a mix of
rules as a production cluster has them (unless ``--no-rules``: spread triples over 3 % of
the guests, gather pairs over 1 %, 1 % banned from three hosts each, 0.5 % in four licence
pools each fenced to a tenth of the hosts, 0.5 % pinned).
``vm-plan --objective consolidate --time-limit 60`` runs on it as its own
process: wall and CPU seconds, the hosts used against the plan's own lower bound and the
issue's target (1.02 x bound + 1), peak resident memory (the largest of vm-plan and its
children, from the kernel's rusage) and the workers' peaks added up (the plan's
``solver.worker_peak_mib``). Then (unless
``--no-idle``) the idle ``auto`` run: the same cluster at the consolidated placement, which
auto leaves nearly as it is; its wall time.

``idle``: the cron run where there is nothing to do, ``vm-plan --objective auto`` on a
settled cluster of ``--hosts`` hosts (the same types, guests and rules as ``large``): every
used host between auto's memory target and its hotspot threshold, so no hotspot, no broken
rule and no host auto can empty (:func:`generate_idle`); wall and CPU seconds and peak
memory of the run, ``--repeat`` times (``--keep DIR`` keeps the snapshot and rules for
profiling).

``hot``: the idle cluster with real trouble, ``vm-plan --objective auto`` as cron runs it:
``--mem-overloads`` used hosts (30) have their guests' memory raised so each host holds 2-8 %
more than it has (a repair: memory over capacity breaks a hard rule), and ``--cpu-hotspots``
others (8) their guests' CPU raised so each host wants 0.95-1.3 x its CPUs (a guest at most its
vCPUs): CPU hotspots, most of them over capacity. Wall and CPU seconds, peak memory, exit code, the hosts over capacity
(memory, CPU) and above the hotspot thresholds before and after the plan, the migrations and
what the plan says it left (``--runs N``: up to N cron runs, each plan's placement applied
before the next, until no host is over capacity; ``--no-budget``: auto without its per-run
budget; ``--keep DIR`` keeps the first snapshot and the rules).

``grid``: ``--domains`` migration domains (hosts dealt round-robin, as vm-snapshot tags several
gmetads' hosts), consolidated with ``--jobs 1`` and ``--jobs 2``: wall time of each, the
hosts used per domain, and whether both plans are the same.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent
HOST_TYPES = [(0.3, 16, 64), (0.4, 32, 128), (0.3, 64, 256)]


def _hosts(n: int, rng: random.Random, domains: int) -> list[dict]:
    out = []
    for i in range(n):
        r, acc = rng.random(), 0.0
        for p, cpu, gib in HOST_TYPES:
            acc += p
            if r <= acc:
                break
        host = {"name": f"node{i:05d}", "cluster": "bench", "state": "online",
                "cpu": float(cpu), "mem_mib": gib * 1024 - 1024, "hypervisor": "xen-4.17",
                "migration": "xl-ssh"}
        if domains > 1:
            host["cluster"] = host["domain"] = f"site{i % domains}"
        out.append(host)
    return out


def _guest(j: int, rng: random.Random) -> dict:
    vcpus = rng.choice([1, 1, 2, 2, 4, 8])
    mem = vcpus * rng.choice([1, 2, 2, 3]) * 1024
    kind = rng.random()
    util = rng.uniform(.01, .10) if kind < .5 else (rng.uniform(.1, .3) if kind < .85
                                                    else rng.uniform(.3, .6))
    return {"name": f"vm{j:06d}", "host": "", "state": "running", "vcpus": vcpus,
            "cpu": round(vcpus * util, 3), "mem_mib": mem}


def generate(n_hosts: int, n_vms: int, seed: int = 0, domains: int = 1,
             rules: bool = True) -> tuple[dict, dict | None]:
    """The snapshot and its constraints document (None without rules)."""
    rng = random.Random(seed)
    hosts = _hosts(n_hosts, rng, domains)
    free = {h["name"]: [h["cpu"] * 0.7, h["mem_mib"] * 0.7] for h in hosts}
    names = list(free)
    vms = []
    for j in range(n_vms):
        vm = _guest(j, rng)
        for _ in range(50):
            host = rng.choice(names)
            if free[host][1] >= vm["mem_mib"] and free[host][0] >= vm["cpu"]:
                free[host][0] -= vm["cpu"]
                free[host][1] -= vm["mem_mib"]
                vm["host"] = host
                vms.append(vm)
                break
    snap = {"format": "vmtools.snapshot", "version": "1.0", "generator": "grid_bench",
            "created": "2026-12-07T09:00:00Z", "source": "bench", "hosts": hosts, "vms": vms,
            "problems": []}
    return snap, (_rules(snap, rng) if rules else None)


def generate_idle(n_hosts: int, n_vms: int, seed: int = 0,
                  rules: bool = True) -> tuple[dict, dict | None]:
    """A cluster where auto has nothing to do (its cron run on a settled cluster): guests
    packed host after host (hosts in random order) until each used host's memory is between
    auto's target and its hotspot threshold (0.9 and 0.95 of it), CPU under 0.7 of it; the
    other hosts online and empty. No hotspot, no rule broken, and no used host that can be
    emptied under the targets (the few hosts left below 0.9 at the end are topped up with
    1 GiB guests, so there may be a few guests more than ``n_vms``)."""
    rng = random.Random(seed)
    hosts = _hosts(n_hosts, rng, 1)
    order = [h["name"] for h in hosts]
    rng.shuffle(order)
    cap = {h["name"]: (h["cpu"], h["mem_mib"]) for h in hosts}
    use = {h: [0.0, 0.0] for h in order}
    nxt, open_hosts, vms = 0, [], []

    def fits(h: str, vm: dict) -> bool:
        c, m = cap[h]
        return use[h][1] + vm["mem_mib"] <= 0.95 * m and use[h][0] + vm["cpu"] <= 0.7 * c

    def put(h: str, vm: dict) -> None:
        vm["host"] = h
        use[h][0] += vm["cpu"]
        use[h][1] += vm["mem_mib"]
        vms.append(vm)
        if use[h][1] >= 0.9 * cap[h][1]:
            open_hosts.remove(h)

    for j in range(n_vms):
        vm = _guest(j, rng)
        h = next((h for h in open_hosts if fits(h, vm)), None)
        if h is None:
            if nxt == len(order):
                raise SystemExit(f"{n_vms} guests do not fit {n_hosts} hosts at 0.95")
            h = order[nxt]
            nxt += 1
            open_hosts.append(h)
        put(h, vm)
    j = n_vms
    for h in list(open_hosts):          # top up the last hosts opened
        while h in open_hosts:
            put(h, {"name": f"vm{j:06d}", "host": "", "state": "running", "vcpus": 1,
                    "cpu": 0.05, "mem_mib": 1024})
            j += 1
    snap = {"format": "vmtools.snapshot", "version": "1.0", "generator": "grid_bench",
            "created": "2026-12-07T09:00:00Z", "source": "bench", "hosts": hosts, "vms": vms,
            "problems": []}
    return snap, (_rules(snap, rng) if rules else None)


def _rules(snap: dict, rng: random.Random) -> dict:
    """Rules among guests of one domain (a gather or spread across domains is refused), all
    kept by the placement as it is (a running cluster's): gather pairs are guests that share
    a host now (4 % of the guests are drawn for them, about 1 % end in a pair)."""
    domain = {h["name"]: h.get("domain", "") for h in snap["hosts"]}
    by_domain: dict[str, list[dict]] = {}
    for v in snap["vms"]:
        by_domain.setdefault(domain[v["host"]], []).append(v)
    hosts_of: dict[str, list[str]] = {}
    for h, d in domain.items():
        hosts_of.setdefault(d, []).append(h)
    out = []
    for d, vms in sorted(by_domain.items()):
        pool = list(vms)
        rng.shuffle(pool)
        n = len(pool)
        cut = [0, n * 3 // 100, n * 7 // 100, n * 8 // 100, n * 17 // 200, n * 9 // 100]
        spread, gather, banned, fenced, pinned = (pool[a:b] for a, b in zip(cut, cut[1:]))
        for i in range(0, len(spread) - 2, 3):
            if len({v["host"] for v in spread[i:i + 3]}) == 3:    # as they run now
                out.append({"rule": "spread", "vms": [v["name"] for v in spread[i:i + 3]]})
        together: dict[str, list[dict]] = {}
        for v in gather:
            together.setdefault(v["host"], []).append(v)
        for vs in together.values():
            for i in range(0, len(vs) - 1, 2):
                out.append({"rule": "gather", "vms": [v["name"] for v in vs[i:i + 2]]})
        for v in banned:
            others = [h for h in rng.sample(hosts_of[d], 4) if h != v["host"]][:3]
            out.append({"rule": "ban", "vms": [v["name"]], "hosts": others})
        pools = 4           # licence pools: a few guests each fenced to a tenth of the hosts
        for i in range(pools):
            group = fenced[i::pools]
            if group:
                chosen = set(rng.sample(hosts_of[d], max(1, len(hosts_of[d]) // 10)))
                chosen |= {v["host"] for v in group}        # where they run now
                out.append({"rule": "fence", "vms": [v["name"] for v in group],
                            "hosts": sorted(chosen)})
        for v in pinned:
            out.append({"rule": "pin", "vms": [v["name"]]})
    return {"format": "vmtools.constraints", "version": "1.0", "rules": out}


def run(snapshot: Path, args: list[str]) -> dict:
    """One vm-plan run: wall and CPU seconds (its children's included), peak memory."""
    with tempfile.TemporaryFile() as out_f, tempfile.TemporaryFile() as err_f:
        t0 = time.monotonic()
        child = subprocess.Popen([str(BIN / "vm-plan"), *args, str(snapshot)],
                                 stdout=out_f, stderr=err_f,
                                 env=dict(os.environ, XDG_CONFIG_HOME="/nonexistent"))
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.monotonic() - t0
        out_f.seek(0)
        err_f.seek(0)
        stdout, stderr = out_f.read(), err_f.read()
    out = {"rc": os.waitstatus_to_exitcode(status), "wall": wall,
           "cpu": usage.ru_utime + usage.ru_stime, "peak_mib": usage.ru_maxrss / 1024}
    if out["rc"] == 0:
        out["plan"] = json.loads(stdout)
    else:
        out["error"] = stderr.decode(errors="replace").strip().splitlines()[-1:]
    return out


def _describe(r: dict) -> str:
    head = f"exit {r['rc']}  {r['wall']:6.1f} s wall  {r['cpu']:6.1f} s CPU  " \
           f"peak {r['peak_mib']:.0f} MiB"
    if r["rc"] != 0:
        return f"{head}  {r.get('error')}"
    plan = r["plan"]
    s, solver = plan["summary"], plan["solver"]
    bound = s.get("hosts_lower_bound") or 0
    target = 1.02 * bound + 1
    workers = f", the workers' peaks added up {solver['worker_peak_mib']:.0f} MiB" \
        if solver.get("worker_peak_mib") else ""
    return (f"{head}{workers}\n    {solver['status']} ({solver.get('method', '')}), "
            f"{s['migrations']} migrations, hosts {s['hosts_before']} -> {s['hosts_after']}, "
            f"bound {bound} (target {target:.0f}: "
            f"{'met' if s['hosts_after'] <= target else 'NOT met'})")


def _write_case(tmp: Path, snap: dict, rules: dict | None, keep: Path | None = None
                ) -> tuple[Path, list[str]]:
    """The snapshot (and rules) written in ``tmp`` (and copied into ``keep`` when given): its
    path, and vm-plan's --constraints."""
    path = tmp / "snapshot.json"
    path.write_text(json.dumps(snap))
    extra = []
    if rules is not None:
        (tmp / "rules.json").write_text(json.dumps(rules))
        extra = ["--constraints", str(tmp / "rules.json")]
    if keep:
        keep.mkdir(parents=True, exist_ok=True)
        for f in tmp.iterdir():
            (keep / f.name).write_bytes(f.read_bytes())
    return path, extra


def large(a: argparse.Namespace) -> None:
    snap, rules = generate(a.hosts, a.vms, a.seed, rules=not a.no_rules)
    jobs = ["--jobs", str(a.jobs)] if a.jobs else []
    with tempfile.TemporaryDirectory() as tmp:
        path, extra = _write_case(Path(tmp), snap, rules)
        print(f"{len(snap['hosts'])} hosts, {len(snap['vms'])} guests, "
              f"{len(rules['rules']) if rules else 0} rules, "
              f"{path.stat().st_size / 1e6:.1f} MB snapshot, load average "
              f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs", flush=True)
        r = run(path, ["--objective", "consolidate", "--time-limit", str(a.time_limit),
                       *jobs, *extra])
        print(f"  consolidate --time-limit {a.time_limit:g}: {_describe(r)}", flush=True)
        if a.no_idle or r["rc"] != 0:
            return
        for v in snap["vms"]:
            v["host"] = r["plan"]["placement"][v["name"]]
        path.write_text(json.dumps(snap))
        idle = run(path, ["--objective", "auto", *jobs, *extra])
        print(f"  auto at the consolidated placement: {_describe(idle)}", flush=True)


def idle(a: argparse.Namespace) -> None:
    snap, rules = generate_idle(a.hosts, a.vms, a.seed, rules=not a.no_rules)
    used = len({v["host"] for v in snap["vms"]})
    with tempfile.TemporaryDirectory() as tmp:
        path, extra = _write_case(Path(tmp), snap, rules, a.keep)
        print(f"{len(snap['hosts'])} hosts ({used} in use), {len(snap['vms'])} guests, "
              f"{len(rules['rules']) if rules else 0} rules, "
              f"{path.stat().st_size / 1e6:.1f} MB snapshot", flush=True)
        for _ in range(a.repeat):
            load = os.getloadavg()[0]
            r = run(path, ["--objective", "auto", *extra])
            head = f"exit {r['rc']}  {r['wall']:6.1f} s wall  {r['cpu']:6.1f} s CPU  " \
                   f"peak {r['peak_mib']:.0f} MiB"
            print(f"  auto (load average {load:.1f} on {os.cpu_count()} CPUs): {head}",
                  flush=True)
            if r["rc"] != 0:
                print(f"    {r.get('error')}", flush=True)
                continue
            s = r["plan"]["summary"]
            print(f"    {r['plan']['solver']['status']}, {s['migrations']} migrations, "
                  f"{len(s.get('hotspots') or [])} hotspots, hosts {s['hosts_before']} -> "
                  f"{s['hosts_after']}", flush=True)


def make_hot(snap: dict, n_mem: int, n_cpu: int, seed: int = 0) -> tuple[list[str], list[str]]:
    """Overload ``n_mem`` used hosts' memory (2-8 % over) and make ``n_cpu`` others CPU
    hotspots, in place (see ``hot``): the hosts chosen, memory then CPU."""
    rng = random.Random(seed + 1)
    hosts = {h["name"]: h for h in snap["hosts"]}
    on: dict[str, list[dict]] = {}
    for v in snap["vms"]:
        on.setdefault(v["host"], []).append(v)
    used = sorted(on)
    mem_hosts = sorted(rng.sample(used, n_mem))
    # CPU hotspots among hosts whose guests' vCPUs can want 1.3 x the host's CPUs
    able = [h for h in used if h not in mem_hosts
            and sum(v["vcpus"] for v in on[h]) >= 1.3 * hosts[h]["cpu"]]
    cpu_hosts = sorted(rng.sample(able, n_cpu))
    for h in mem_hosts:
        use = sum(v["mem_mib"] for v in on[h])
        f = rng.uniform(1.02, 1.08) * hosts[h]["mem_mib"] / use
        for v in on[h]:
            v["mem_mib"] = math.ceil(v["mem_mib"] * f)
    for h in cpu_hosts:
        want = rng.uniform(0.95, 1.3) * hosts[h]["cpu"]
        for _ in range(10):         # raised in proportion, a guest at most its vCPUs
            free = [v for v in on[h] if v["cpu"] < v["vcpus"]]
            short = want - sum(v["cpu"] for v in on[h])
            if short <= 0.01 or not free:
                break
            f = 1 + short / max(sum(v["cpu"] for v in free), 1e-3)
            for v in free:
                v["cpu"] = round(min(float(v["vcpus"]), max(v["cpu"], 0.01) * f), 3)
    return mem_hosts, cpu_hosts


def trouble(snap: dict, placement: dict[str, str] | None = None) -> dict[str, int]:
    """Hosts over capacity (memory, CPU) and above auto's default hotspot thresholds (0.95 of
    memory, 0.9 of CPU) in ``snap``, or at ``placement`` (guest -> host)."""
    use = {h["name"]: [0.0, 0.0] for h in snap["hosts"]}
    for v in snap["vms"]:
        u = use[placement.get(v["name"], v["host"]) if placement else v["host"]]
        u[0] += v["cpu"]
        u[1] += v["mem_mib"]
    out = {"mem_over": 0, "cpu_over": 0, "mem_hot": 0, "cpu_hot": 0}
    for h in snap["hosts"]:
        c, m = use[h["name"]]
        out["mem_over"] += m > h["mem_mib"]
        out["cpu_over"] += c > h["cpu"] + 1e-9
        out["mem_hot"] += m > 0.95 * h["mem_mib"]
        out["cpu_hot"] += c > 0.9 * h["cpu"] + 1e-9
    return out


def hot(a: argparse.Namespace) -> None:
    snap, rules = generate_idle(a.hosts, a.vms, a.seed, rules=not a.no_rules)
    make_hot(snap, a.mem_overloads, a.cpu_hotspots, a.seed)
    before = trouble(snap)
    with tempfile.TemporaryDirectory() as tmp:
        path, extra = _write_case(Path(tmp), snap, rules, a.keep)
        print(f"{len(snap['hosts'])} hosts, {len(snap['vms'])} guests, "
              f"{len(rules['rules']) if rules else 0} rules, before: {before}", flush=True)
        unlimited = ["--max-migrations", "0", "--max-moved", "0", "--max-duration", "0"] \
            if a.no_budget else []
        for n in range(1, a.runs + 1):
            load = os.getloadavg()[0]
            r = run(path, ["--objective", "auto", "--explain", *unlimited, *extra])
            print(f"  run {n}: auto (load average {load:.1f} on {os.cpu_count()} CPUs): exit "
                  f"{r['rc']}  {r['wall']:6.1f} s wall  {r['cpu']:6.1f} s CPU  peak "
                  f"{r['peak_mib']:.0f} MiB", flush=True)
            if r["rc"] != 0:
                print(f"    {r.get('error')}", flush=True)
                return
            plan = r["plan"]
            _report_hot(snap, plan)
            after = trouble(snap, plan["placement"])
            if not plan["actions"] or not after["mem_over"] + after["cpu_over"]:
                return
            for v in snap["vms"]:           # applied: the next cron run starts there
                v["host"] = plan["placement"][v["name"]]
            path.write_text(json.dumps(snap))


def _report_hot(snap: dict, plan: dict) -> None:
    s = plan["summary"]
    kinds: dict[str, int] = {}
    for st in s.get("steps", []):
        kinds[st["kind"]] = kinds.get(st["kind"], 0) + st["migrations"]
    print(f"    after: {trouble(snap, plan['placement'])}", flush=True)
    print(f"    {plan['solver']['status']} ({plan['solver']['method']}), "
          f"{s['migrations']} migrations {kinds}, deferred {s.get('deferred')}", flush=True)
    rep = s.get("repair") or {}
    left = rep.get("left", [])
    if left:
        reasons: dict[str, int] = {}
        for e in left:
            key = f"{e['dim']} {e['reason']}"
            reasons[key] = reasons.get(key, 0) + 1
        print(f"    the repair left {len(left) + rep.get('left_more', 0)} overloads (the first "
              f"{len(left)}: {reasons}); first: {left[0]['host']}: {left[0]['why']}",
              flush=True)


def grid(a: argparse.Namespace) -> None:
    snap, rules = generate(a.hosts, a.vms, a.seed, domains=a.domains, rules=not a.no_rules)
    with tempfile.TemporaryDirectory() as tmp:
        path, extra = _write_case(Path(tmp), snap, rules)
        print(f"{len(snap['hosts'])} hosts, {len(snap['vms'])} guests in {a.domains} domains, "
              f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs", flush=True)
        plans = {}
        for jobs in (1, 2):
            r = run(path, ["--objective", "consolidate", "--time-limit", str(a.time_limit),
                           "--jobs", str(jobs), *extra])
            print(f"  --jobs {jobs}: {_describe(r)}", flush=True)
            if r["rc"] == 0:
                plans[jobs] = r["plan"]
                per = {d: (s["hosts_used_before"], s["hosts_used_after"], s.get("status"))
                       for d, s in r["plan"]["summary"].get("domains", {}).items()}
                print(f"    per domain (hosts before, after, status): {per}", flush=True)
        if len(plans) == 2:
            same = plans[1]["placement"] == plans[2]["placement"]
            print(f"  same placement with --jobs 1 and 2: {same}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="case", required=True)
    lg = sub.add_parser("large")
    lg.add_argument("--hosts", type=int, default=20000)
    lg.add_argument("--vms", type=int, default=150000)
    lg.add_argument("--time-limit", type=float, default=60.0)
    lg.add_argument("--jobs", type=int, default=0, help="vm-plan --jobs (0: its default)")
    lg.add_argument("--no-idle", action="store_true")
    idl = sub.add_parser("idle")
    idl.add_argument("--hosts", type=int, default=20000)
    idl.add_argument("--vms", type=int, default=150000)
    idl.add_argument("--repeat", type=int, default=1)
    idl.add_argument("--keep", type=Path, default=None,
                     help="also write snapshot.json and rules.json into this directory")
    ht = sub.add_parser("hot")
    ht.add_argument("--hosts", type=int, default=20000)
    ht.add_argument("--vms", type=int, default=150000)
    ht.add_argument("--mem-overloads", type=int, default=30)
    ht.add_argument("--cpu-hotspots", type=int, default=8)
    ht.add_argument("--runs", type=int, default=1,
                    help="cron runs, each plan applied before the next, until no overload")
    ht.add_argument("--no-budget", action="store_true",
                    help="auto with --max-migrations 0 --max-moved 0 --max-duration 0")
    ht.add_argument("--keep", type=Path, default=None,
                    help="also write snapshot.json and rules.json into this directory")
    gr = sub.add_parser("grid")
    gr.add_argument("--hosts", type=int, default=600)
    gr.add_argument("--vms", type=int, default=6000)
    gr.add_argument("--domains", type=int, default=3)
    gr.add_argument("--time-limit", type=float, default=30.0)
    for p in (lg, gr, idl, ht):
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--no-rules", action="store_true")
    a = ap.parse_args()
    {"large": large, "grid": grid, "idle": idle, "hot": hot}[a.case](a)


if __name__ == "__main__":
    main()
