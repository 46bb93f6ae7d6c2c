"""vm-snapshot --prometheus at scale: a fake Prometheus API on 127.0.0.1 (tests/prometheus_fake)
answering a generated cluster of HOSTS hosts and VMS guests, with the guests' CPU over a
120-minute window every 60 s (121 samples each); the wall and CPU time of vm-snapshot, the
bytes Prometheus sent and the snapshot's size, and vm-plan reading its samples
(--demand max, no --state).

    python bench/prometheus_bench.py [--sizes 200x2000,1000x10000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.prometheus_fake import Q, FakePrometheus, vec  # noqa: E402

BIN = Path(sys.executable).parent


def cluster(hosts: int, vms: int, now: float) -> tuple[dict, dict]:
    answers: dict = {}
    hs = [{"host": f"node-{i:04d}"} for i in range(hosts)]
    gs = [({**hs[j % hosts], "vm": f"vm-{j:05d}"}) for j in range(vms)]
    per_host: dict[str, int] = {}
    for g in gs:
        per_host[g["host"]] = per_host.get(g["host"], 0) + 1
    answers[Q["host_memory_bytes"]] = vec(*[(h, str(256 * 2**30)) for h in hs])
    answers[Q["host_cpus"]] = vec(*[(h, "32") for h in hs])
    answers[Q["host_info"]] = vec(*[({**h, "hypervisor": "xen-4.17", "migration": "xl-ssh"}, "1")
                                    for h in hs])
    answers[Q["host_complete"]] = vec(*[(h, "1") for h in hs])
    answers[Q["host_guests"]] = vec(*[(h, str(per_host.get(h["host"], 0))) for h in hs])
    answers[Q["host_last_seen"]] = vec(*[(h, str(now - 5)) for h in hs])
    answers[Q["guest_memory_bytes"]] = vec(*[(g, str(2 * 2**30)) for g in gs])
    answers[Q["guest_vcpus"]] = vec(*[(g, "2") for g in gs])
    answers[Q["guest_cpu"]] = vec(*[(g, f"{(j % 17) / 10:.2f}") for j, g in enumerate(gs)])
    answers[Q["guest_net_bytes_per_second"]] = vec(*[(g, "1000") for g in gs])
    start = int(now) - 7200
    matrix = {"status": "success", "data": {"resultType": "matrix", "result": [
        {"metric": g, "values": [[start + 60 * k, f"{((j + k) % 23) / 10:.2f}"]
                                 for k in range(121)]} for j, g in enumerate(gs)]}}
    return answers, matrix


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="200x2000")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print("| hosts x guests | answers (MB) | vm-snapshot wall s | CPU s | snapshot MB | "
          "vm-plan --demand max wall s |")
    print("| --- | --- | --- | --- | --- | --- |")
    for size in args.sizes.split(","):
        hosts, vms = map(int, size.split("x"))
        answers, matrix = cluster(hosts, vms, time.time())
        fake = FakePrometheus({q: json.dumps(a).encode() for q, a in answers.items()})
        fake.range_answer = json.dumps(matrix).encode()
        sent = sum(len(a) for a in fake.answers.values()) + len(fake.range_answer)
        walls, cpus, out = [], [], b""
        try:
            for _ in range(args.repeat):
                before = resource.getrusage(resource.RUSAGE_CHILDREN)
                t = time.monotonic()
                proc = subprocess.run([str(BIN / "vm-snapshot"), "--prometheus", fake.url,
                                       "--timeout", "120"], capture_output=True,
                                      env={**os.environ, "XDG_CONFIG_HOME": "/nonexistent"})
                walls.append(time.monotonic() - t)
                after = resource.getrusage(resource.RUSAGE_CHILDREN)
                cpus.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
                if proc.returncode != 0:
                    print(proc.stderr.decode()[-500:], file=sys.stderr)
                    return 1
                out = proc.stdout
        finally:
            fake.close()
        t = time.monotonic()
        plan = subprocess.run([str(BIN / "vm-plan"), "--objective", "balance", "--demand", "max",
                               "--time-limit", "60"], input=out, capture_output=True)
        plan_wall = time.monotonic() - t
        if plan.returncode != 0:
            print(plan.stderr.decode()[-500:], file=sys.stderr)
            return 1
        print(f"| {hosts} x {vms} | {sent / 1e6:.1f} | {min(walls):.2f} | {min(cpus):.2f} | "
              f"{len(out) / 1e6:.1f} | {plan_wall:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
