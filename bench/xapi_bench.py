"""vm-snapshot --xapi against the simulated pool master (vmtools.lab.xapi) on loopback: a
generated pool of HOSTS hosts and GUESTS guests, every host's /rrd_updates on its own
127.0.1.N. Prints vm-snapshot's wall and CPU seconds (the child's own), the snapshot's size and
the calls it made; then vm-plan --objective balance --demand max on it (its CPU samples).

    python bench/xapi_bench.py [--sizes 20x200,100x1000] [--repeat N] [--window SECONDS]
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from vmtools.lab.cluster import ClusterState  # noqa: E402
from vmtools.lab.scenario import state_from_scenario  # noqa: E402
from vmtools.lab.xapi import XapiLab  # noqa: E402

BIN = Path(sys.executable).parent


def scenario(hosts: int, guests: int, seed: int = 7) -> dict:
    rnd = random.Random(seed)
    names = [f"xcp-{i:03d}" for i in range(1, hosts + 1)]
    spec = {n: {"cpus": 32, "mem_mib": 262144, "dom0_mib": 4096} for n in names}
    gs = {}
    for j in range(guests):
        gs[f"vm-{j:05d}"] = {"host": names[j % hosts], "mem_mib": rnd.choice([1024, 2048, 4096]),
                             "vcpus": rnd.choice([1, 2, 4]), "load": round(rnd.random(), 2),
                             "net_mbps": round(rnd.random() * 20, 1)}
    return {"name": "bench", "hosts": spec, "guests": gs}


def child_run(argv: list[str], stdin: bytes | None = None) -> tuple[float, float, bytes, bytes,
                                                                     int]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(argv, input=stdin, capture_output=True, env={
        **{k: v for k, v in os.environ.items() if not k.startswith("VMTOOLS_")},
        "XDG_CONFIG_HOME": "/nonexistent"})
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, proc.stdout, proc.stderr, proc.returncode


def bench(hosts: int, guests: int, repeat: int, window: float) -> None:
    d = Path(tempfile.mkdtemp(prefix="xapi-bench-"))
    st = state_from_scenario(scenario(hosts, guests))
    for name, host in st["hosts"].items():
        host.update(enabled=True, power_on_mode="wake-on-lan")
    cs = ClusterState(d / "cluster.json")
    cs.write(st)
    lab = XapiLab(cs, {}, d / "xapi").start()
    try:
        time.sleep(min(window, 6) + 1)
        calls = {"n": 0}
        dispatch = lab.pool.dispatch

        def counted(method, params):
            calls["n"] += 1
            return dispatch(method, params)
        lab.pool.dispatch = counted
        argv = [str(BIN / "vm-snapshot"), "--xapi", lab.url, "--xapi-ca", str(lab.ca),
                "--xapi-credentials", str(lab.credentials), "--xapi-window", str(window),
                "--timeout", "60"]
        best = None
        for _ in range(repeat):
            calls["n"] = 0
            wall, cpu, out, err, rc = child_run(argv)
            if rc != 0:
                raise SystemExit(f"vm-snapshot exited {rc}: {err.decode()[-500:]}")
            if best is None or wall < best[0]:
                best = (wall, cpu, out, calls["n"])
        wall, cpu, out, n = best
        pwall, pcpu, _, perr, prc = child_run(
            [str(BIN / "vm-plan"), "--objective", "balance", "--demand", "max",
             "--time-limit", "20"], out)
        print(f"{hosts:>5} hosts {guests:>6} guests | vm-snapshot {wall:6.2f} s wall "
              f"{cpu:6.2f} s CPU, {len(out) / 1e6:5.1f} MB, {n} XML-RPC calls + {hosts} "
              f"/rrd_updates | vm-plan --demand max: exit {prc}, {pwall:5.1f} s wall")
    finally:
        lab.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="20x200,100x1000")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--window", type=float, default=30.0)
    args = ap.parse_args()
    for size in args.sizes.split(","):
        h, g = (int(x) for x in size.split("x"))
        bench(h, g, args.repeat, args.window)


if __name__ == "__main__":
    main()
