"""vm-rebalance over several migration domains (DOMAINS): the wall time of one cron run with
-j 1 (one domain after the other) against -j 2 and -j N (N domains at once).

Two kinds of domain, each run through the real script and commands:

- ``wait``: a source that answers nothing until vm-snapshot's --timeout (a TCP listener on
  127.0.0.1 that never replies): the domain's run is waiting, as on a slow gmetad or pool;
- ``plan``: the shipped lab dump (vm-snapshot --input, vm-plan auto): the domain's run is the
  commands' own CPU (Python start-up, reading, planning).

    python bench/rebalance_bench.py [--domains 4] [--timeout 3] [--jobs 1,2,4]
"""

from __future__ import annotations

import argparse
import os
import shlex
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REBALANCE = ROOT / "shell" / "vm-rebalance"


def conf_text(kind: str, archive: Path, names: list[str], port: int, timeout: float) -> str:
    if kind == "wait":
        source = f"(--gmetad 127.0.0.1:{port} --timeout {timeout:g})"
    else:
        source = f"(--input {shlex.quote(str(ROOT / 'vmtools/examples/lab-gmetad.xml'))})"
    return (f"ARCHIVE={shlex.quote(str(archive))}\nDOMAINS=({' '.join(names)})\n"
            f"SNAPSHOT_ARGS={source}\nPLAN_ARGS=(--max-migrations 1)\n")


def one_run(conf: Path, jobs: int) -> tuple[float, int]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VMTOOLS_")}
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '/usr/bin:/bin')}"
    t0 = time.monotonic()
    proc = subprocess.run(["bash", str(REBALANCE), "-c", str(conf), "-j", str(jobs), "-q"],
                          capture_output=True, text=True, env=env, timeout=600)
    return time.monotonic() - t0, proc.returncode


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--domains", type=int, default=4)
    ap.add_argument("--timeout", type=float, default=3.0, help="the waiting source's wait")
    ap.add_argument("--jobs", default="1,2,4")
    args = ap.parse_args()
    names = [f"d{i}" for i in range(1, args.domains + 1)]
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(64)                      # accepts connections, never answers
    print(f"{args.domains} domains; os.cpu_count() = {os.cpu_count()}, load average "
          f"{os.getloadavg()[0]:.1f}")
    print(f"{'kind':<6} {'jobs':>4} {'seconds':>8} {'exit':>4}")
    with tempfile.TemporaryDirectory() as tmp:
        for kind in ("wait", "plan"):
            for jobs in (int(j) for j in args.jobs.split(",")):
                conf = Path(tmp) / f"{kind}-{jobs}.conf"
                conf.write_text(conf_text(kind, Path(tmp) / f"runs-{kind}-{jobs}", names,
                                          silent.getsockname()[1], args.timeout))
                seconds, code = one_run(conf, jobs)
                print(f"{kind:<6} {jobs:>4} {seconds:>8.1f} {code:>4}")
    silent.close()


if __name__ == "__main__":
    main()
