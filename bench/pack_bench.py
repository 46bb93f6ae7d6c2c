"""vm-plan against public vector-packing instances with known optima.

    python bench/pack_bench.py [--classes 1,2,C] [--sizes 20,40] [--index 5]
                               [--time-limit 30] [--solver cbc] [--jobs 1] [--csv FILE]
                               [--portfolio SECONDS]

Each instance of ``bench/vectorpack/`` (3 dimensions, see its README) becomes a snapshot:
one host per bin of first-fit decreasing and one spare empty host (capacities ``cpu``,
``mem_mib``, ``net_mbps`` = the bin's three capacities), one guest per item (its three
sizes), placed as first-fit decreasing (key: sum of the sizes) placed them.
``vm-plan --objective consolidate --cpu-target 1.0`` (the whole bin) then consolidates it;
the plan must pass vm-plan's own replay check (it does, or vm-plan exits 70, which this
script reports as an error).

Per instance: items, hosts at the start (FFD), hosts found, the published lower bound and
optimum (``-`` when unknown), the best result of the study's heuristics, vm-plan's status,
the host lower bound it reports, the method it names, the seconds vm-plan reports
(``solver.seconds``) and those of the whole process (Python's start and imports included).
``claim`` (for plans whose status is ``optimal``) is ``LIE`` when the count is above the known
optimum (or, optimum unknown, above the published lower bound while the plan's own bound is
lower than the count), ``unproven`` when the count is right but the plan's own
``hosts_lower_bound`` is below it (the plan claims what it did not prove), else ``ok``.
Totals at the end; the exit status is 1 on a wrong claim or a failed run.

``--portfolio SECONDS`` runs only vm-plan's packing heuristics (``best_packing``: the
constructions and the local searches, no MILP, no memory stage) in this process for SECONDS
per instance: a quick look at many instances; its ``optimal`` means the heuristic met the
lower bound it was given.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import csv
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "vectorpack")
sys.path.insert(0, os.path.join(HERE, ".."))

from vmtools.render import table  # noqa: E402


def read_vbp(path: str) -> tuple[list[int], list[list[int]]]:
    with open(path, encoding="ascii") as fh:
        nums = [[int(x) for x in line.split()] for line in fh if line.strip()]
    dim = nums[0][0]
    cap = nums[1]
    n = nums[2][0]
    items = []
    for row in nums[3:3 + n]:
        items.extend([row[:dim]] * row[dim])
    return cap, items


def first_fit_decreasing(cap: list[int], items: list[list[int]]) -> list[int]:
    order = sorted(range(len(items)), key=lambda i: (-sum(a / c for a, c in zip(items[i], cap)),
                                                     i))
    free: list[list[int]] = []
    where = [0] * len(items)
    for i in order:
        for b, room in enumerate(free):
            if all(a <= r for a, r in zip(items[i], room)):
                break
        else:
            free.append(list(cap))
            b = len(free) - 1
        free[b] = [r - a for r, a in zip(free[b], items[i])]
        where[i] = b
    return where


def snapshot(name: str, cap: list[int], items: list[list[int]]) -> dict:
    where = first_fit_decreasing(cap, items)
    n_bins = max(where) + 1 + SPARE
    hosts = [{"name": f"bin{b:03d}", "cluster": name, "state": "online", "cpu": float(cap[0]),
              "mem_mib": cap[1], "net_mbps": float(cap[2]), "hypervisor": "xen-4.17",
              "migration": "xl-ssh"} for b in range(n_bins)]
    vms = [{"name": f"item{i:03d}", "host": f"bin{where[i]:03d}", "state": "running",
            "vcpus": max(1, it[0]), "cpu": float(it[0]), "mem_mib": it[1],
            "net_mbps": float(it[2])} for i, it in enumerate(items)]
    return {"format": "vmtools.snapshot", "version": "1.0", "generator": "pack_bench",
            "created": "2026-01-01T00:00:00Z", "source": f"vectorpack:{name}",
            "hosts": hosts, "vms": vms, "problems": []}


# One empty host more than first-fit's bins: a live cluster must order the migrations, and
# swapping guests between full hosts needs room to park one (without it vm-plan reports
# that the moves cannot be ordered). It is empty at the start and never counted.
SPARE = 1


def known() -> dict[str, dict[str, int]]:
    out = {}
    with open(os.path.join(DATA, "known.tsv"), encoding="ascii") as fh:
        for row in csv.DictReader(fh, delimiter="\t"):
            out[row["instance_name"]] = {k: int(v) for k, v in row.items()
                                         if k != "instance_name"}
    return out


def vm_plan() -> list[str]:
    """vm-plan of the tree this script is in (not whatever is installed)."""
    return [sys.executable, "-c", "import sys; sys.argv[0] = 'vm-plan'; "
            "from vmtools.cli.vm_plan import main; main()"]


def run_one(path: str, time_limit: float, solver: str) -> dict:
    name = os.path.basename(path)[:-4]
    cap, items = read_vbp(path)
    snap = snapshot(name, cap, items)
    start_hosts = len(snap["hosts"]) - SPARE
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as fh:
        json.dump(snap, fh)
    try:
        t0 = time.monotonic()
        env = dict(os.environ, PYTHONPATH=os.path.join(HERE, ".."))
        args = [fh.name, "--objective", "consolidate", "--cpu-target", "1.0",
                "--time-limit", str(time_limit), "--solver", solver]
        proc = subprocess.run(vm_plan() + args, capture_output=True, text=True, env=env)
        seconds = time.monotonic() - t0
    finally:
        os.unlink(fh.name)
    row = {"instance": name, "items": len(items), "start": start_hosts, "seconds": seconds}
    if proc.returncode != 0:
        row.update(found=None, status=f"exit {proc.returncode}", method=proc.stderr.strip()[-80:],
                   plan_lb=None)
        return row
    try:
        plan = json.loads(proc.stdout)
    except ValueError:
        row.update(found=None, status="bad JSON", method=proc.stdout[:80], plan_lb=None)
        return row
    row.update(found=plan["summary"]["hosts_after"], status=plan["solver"]["status"],
               plan_seconds=plan["solver"].get("seconds"),
               method=plan["solver"].get("method", ""),
               plan_lb=plan["summary"].get("hosts_lower_bound"))
    return row


def run_portfolio(path: str, seconds: float) -> dict:
    """The packing heuristics alone (no MILP, no memory stage), in this process: what
    vm-plan's first stage finds in ``seconds``."""
    from vmtools.planner import bounds, packing
    from vmtools.planner.instance import build_instance
    from vmtools.model import Snapshot
    from vmtools.rules.constraints import Constraints
    name = os.path.basename(path)[:-4]
    cap, items = read_vbp(path)
    snap = Snapshot.from_dict(snapshot(name, cap, items))
    t0 = time.monotonic()
    inst = build_instance(snap, Constraints([]), cpu_limit=1.0)
    lower, _ = bounds.host_lower_bound(inst, t0 + 0.05 * seconds)
    place, label = packing.best_packing(inst, lower, time.monotonic() + seconds)
    found = len(set(place)) if place is not None else None
    took = time.monotonic() - t0
    return {"instance": name, "items": len(items), "start": len(snap.hosts) - SPARE,
            "seconds": took, "found": found, "plan_seconds": round(took, 2),
            "status": "heuristic" if found is None or found > lower else "optimal",
            "method": label, "plan_lb": lower}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--classes", help="comma-separated classes (1-9 Panigrahy, C Caprara-Toth, "
                    "F Falkenauer); default all")
    ap.add_argument("--sizes", help="comma-separated item counts (20,40,60,120,249,250,500,501)")
    ap.add_argument("--index", help="comma-separated instance numbers (5-9); default all")
    ap.add_argument("--time-limit", type=float, default=30.0)
    ap.add_argument("--solver", default="cbc")
    ap.add_argument("--jobs", type=int, default=1, help="instances run at once")
    ap.add_argument("--csv", help="also write the rows here")
    ap.add_argument("--portfolio", type=float, metavar="SECONDS",
                    help="run only the packing heuristics, in-process, for SECONDS each (no "
                         "MILP): a quick check of the first stage on many instances")
    args = ap.parse_args()
    classes = set(args.classes.split(",")) if args.classes else None
    sizes = set(args.sizes.split(",")) if args.sizes else None
    index = set(args.index.split(",")) if args.index else None
    ref = known()
    paths = []
    for fname in sorted(os.listdir(os.path.join(DATA, "instances"))):
        cls, n, _dim, idx = fname[:-4].split("_")
        if classes and cls.removeprefix("class") not in classes:
            continue
        if (sizes and n not in sizes) or (index and idx not in index):
            continue
        paths.append((cls, int(n), int(idx), os.path.join(DATA, "instances", fname)))
    paths.sort()
    if args.portfolio:
        executor = concurrent.futures.ProcessPoolExecutor(max_workers=args.jobs)
        run, arg = run_portfolio, (args.portfolio,)
    else:
        executor = concurrent.futures.ThreadPoolExecutor(max_workers=args.jobs)
        run, arg = run_one, (args.time_limit, args.solver)
    with executor as pool:
        futures = [pool.submit(run, p, *arg) for *_, p in paths]
        rows = []
        for fut in futures:
            row = fut.result()
            rows.append(row)
            print(f"  {row['instance']}: {row['found']} hosts, {row['status']}, "
                  f"{row['seconds']:.1f} s", file=sys.stderr, flush=True)
    out, tot = [], {"n": 0, "opt_known": 0, "at_opt": 0, "at_lb": 0, "le_best": 0,
                    "lt_best": 0, "gt_best": 0, "optimal_claims": 0, "lies": 0, "unproven": 0,
                    "errors": 0, "found": 0, "opt_or_lb": 0, "best": 0, "seconds": 0.0}
    for row in rows:
        k = ref.get(row["instance"], {})
        opt = k.get("OPT", -1)
        lb, best = k.get("LB"), k.get("best_overall")
        found = row["found"]
        tot["n"] += 1
        tot["seconds"] += row["seconds"]
        claim = ""
        if found is None:
            tot["errors"] += 1
            claim = "ERROR"
        else:
            tot["found"] += found
            tot["opt_or_lb"] += opt if opt > 0 else lb
            tot["best"] += best
            tot["opt_known"] += opt > 0
            tot["at_opt"] += opt > 0 and found == opt
            tot["at_lb"] += found == lb
            tot["le_best"] += found <= best
            tot["lt_best"] += found < best
            tot["gt_best"] += found > best
            if row["status"] == "optimal":
                tot["optimal_claims"] += 1
                if (found > opt) if opt > 0 else (found > lb and (row["plan_lb"] or 0) < found):
                    tot["lies"] += 1
                    claim = "LIE"
                elif row["plan_lb"] is None or row["plan_lb"] < found:
                    tot["unproven"] += 1
                    claim = "unproven"
                else:
                    claim = "ok"
        out.append([row["instance"], row["items"], row["start"], found, lb,
                    opt if opt > 0 else "-", best, row["status"], row["plan_lb"],
                    claim, row["method"][:40], row.get("plan_seconds"), f"{row['seconds']:.1f}"])
    print(table(out, ["instance", "items", "start", "found", "LB", "OPT", "best heur", "status",
                      "plan LB", "claim", "method", "plan s", "s"]))
    print()
    print(f"instances {tot['n']} (optimum known for {tot['opt_known']}), errors {tot['errors']}")
    print(f"hosts found {tot['found']}, optimum (or LB where unknown) {tot['opt_or_lb']}, "
          f"best published heuristic {tot['best']}")
    print(f"at the known optimum {tot['at_opt']}/{tot['opt_known']}; at the published LB "
          f"{tot['at_lb']}/{tot['n']}")
    print(f"vs best published heuristic: better {tot['lt_best']}, equal "
          f"{tot['le_best'] - tot['lt_best']}, worse {tot['gt_best']}")
    print(f"status optimal on {tot['optimal_claims']} plans: wrong {tot['lies']}, right but "
          f"not proven by the plan's own bound {tot['unproven']}")
    print(f"time {tot['seconds']:.0f} s in all, {tot['seconds'] / max(1, tot['n']):.1f} s "
          "per instance")
    if args.csv:
        with open(args.csv, "w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            w.writerow(["instance", "items", "start", "found", "LB", "OPT", "best", "status",
                        "plan_lb", "claim", "method", "plan_seconds", "seconds"])
            w.writerows(out)
    return 1 if tot["lies"] or tot["unproven"] or tot["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
