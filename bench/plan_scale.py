"""vm-plan at the largest sizes: does ``--time-limit`` hold for the whole run, and what memory.

    python bench/plan_scale.py [--hosts 1000] [--vms 100000] [--time-limit 60]
                               [--objectives consolidate,balance,repair] [--seed 0]
                               [--domains N [--cross-domain]]

Generates a cluster of many small guests (about 100 per host: 0.5 to 4 GiB, mostly idle, some
hot hosts), writes the snapshot (about 10 MB at 100,000 guests), and runs the installed
``vm-plan`` on it once per objective as a separate process. Prints, per objective: exit code,
wall seconds against the limit and the run's own CPU seconds (a loaded machine stretches the
wall time, not the CPU time), the plan's own solver status and method, migrations, and peak
memory (the largest resident set among vm-plan and its solver, from the kernel's rusage of
each child).

With ``--domains N`` the hosts are dealt round-robin into N migration domains (a grid of N
clusters, as vm-snapshot tags several gmetads' hosts): each run also prints the moves that
cross a domain (0 unless ``--cross-domain`` is passed on to vm-plan) and the hosts each domain
uses after the plan.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent


def generate(n_hosts: int, n_vms: int, seed: int, domains: int = 1) -> dict:
    rng = random.Random(seed)
    hosts = [{"name": f"node{i:05d}", "cluster": "scale", "state": "online",
              "cpu": float(rng.choice([32, 48, 64])), "mem_mib": rng.choice([256, 384]) * 1024,
              "hypervisor": "xen-4.17", "migration": "xl-ssh"} for i in range(n_hosts)]
    if domains > 1:
        for i, h in enumerate(hosts):
            h["cluster"] = h["domain"] = f"site{i % domains}"
    free = {h["name"]: [h["cpu"], h["mem_mib"]] for h in hosts}
    names = list(free)
    vms = []
    hot = set(names[: max(1, n_hosts // 50)])
    for j in range(n_vms):
        vcpus = rng.choice([1, 1, 2, 2, 4])
        mem = rng.choice([512, 1024, 1024, 2048, 4096])
        for _ in range(50):
            host = rng.choice(names)
            util = rng.uniform(0.5, 0.95) if host in hot else rng.uniform(0.01, 0.3)
            cpu = round(vcpus * util, 3)
            if free[host][1] >= mem and free[host][0] >= cpu:
                free[host][0] -= cpu
                free[host][1] -= mem
                vms.append({"name": f"vm{j:06d}", "host": host, "state": "running",
                            "vcpus": vcpus, "cpu": cpu, "mem_mib": mem})
                break
    return {"format": "vmtools.snapshot", "version": "1.0", "generator": "plan_scale",
            "created": "2026-11-22T01:30:00Z", "source": "bench", "hosts": hosts, "vms": vms,
            "problems": []}


def run(snapshot: Path, objective: str, limit: float, extra: tuple[str, ...] = ()) -> dict:
    """One vm-plan run; its wall time and its own CPU time (user + system, the solver
    included: ``wait4`` counts the children vm-plan waited for), so a loaded machine's
    figures can be read against an idle one's."""
    with tempfile.TemporaryFile() as out_f, tempfile.TemporaryFile() as err_f:
        t0 = time.monotonic()
        child = subprocess.Popen([str(BIN / "vm-plan"), "--objective", objective,
                                  "--time-limit", str(limit), *extra, str(snapshot)],
                                 stdout=out_f, stderr=err_f,
                                 env=dict(os.environ, XDG_CONFIG_HOME="/nonexistent"))
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
        wall = time.monotonic() - t0
        out_f.seek(0)
        err_f.seek(0)
        proc = subprocess.CompletedProcess(child.args, child.returncode, out_f.read(),
                                           err_f.read())
    out = {"objective": objective, "rc": proc.returncode, "wall": wall,
           "cpu": usage.ru_utime + usage.ru_stime, "peak_mib": usage.ru_maxrss / 1024}
    if proc.returncode == 0:
        plan = json.loads(proc.stdout)
        out.update(status=plan["solver"]["status"], method=plan["solver"].get("method", ""),
                   migrations=plan["summary"]["migrations"],
                   hosts=f'{plan["summary"]["hosts_before"]}->{plan["summary"]["hosts_after"]}')
        domain = {h["name"]: h.get("domain", "") for h in plan["origin"]["hosts"]}
        if len(set(domain.values())) > 1:
            out["crossing"] = sum(1 for a in plan["actions"] if a["op"] == "migrate"
                                  and domain[a["src"]] != domain[a["dst"]])
            out["per_domain"] = {d: s["hosts_used_after"] for d, s in
                                 plan["summary"].get("domains", {}).items()}
    else:
        out["error"] = proc.stderr.decode(errors="replace").strip().splitlines()[-1:]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hosts", type=int, default=1000)
    ap.add_argument("--vms", type=int, default=100000)
    ap.add_argument("--time-limit", type=float, default=60.0)
    ap.add_argument("--objectives", default="consolidate,balance,repair")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--domains", type=int, default=1)
    ap.add_argument("--cross-domain", action="store_true")
    args = ap.parse_args()
    doc = generate(args.hosts, args.vms, args.seed, args.domains)
    extra = ("--cross-domain",) if args.cross_domain else ()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "snapshot.json"
        path.write_text(json.dumps(doc))
        print(f"{len(doc['hosts'])} hosts, {len(doc['vms'])} guests, "
              f"{path.stat().st_size / 1e6:.1f} MB snapshot, --time-limit {args.time_limit:g}, "
              f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
        for objective in args.objectives.split(","):
            r = run(path, objective, args.time_limit, extra)
            peak = f"{r['peak_mib']:.0f} MiB"
            tail = (f"{r.get('status')} ({r.get('method')}), {r.get('migrations')} migrations, "
                    f"hosts {r.get('hosts')}") if r["rc"] == 0 else r.get("error")
            print(f"  {objective:<12} exit {r['rc']}  {r['wall']:6.1f} s wall  "
                  f"{r['cpu']:6.1f} s CPU  peak {peak}  {tail}", flush=True)
            if "crossing" in r:
                print(f"  {'':<12} {r['crossing']} moves across domains; hosts used after, "
                      f"per domain: {r['per_domain']}", flush=True)


if __name__ == "__main__":
    main()
