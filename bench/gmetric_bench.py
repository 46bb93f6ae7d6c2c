"""CPU time of one publishing cycle: vm-gmetric (a long-running daemon) versus the shell loop
it replaces (Entropy's sample script, extended to publish the same metrics: one `gmetric`
process per metric), both against the same stand-in toolstack and a loopback UDP socket.

    /work/venv/bin/python bench/gmetric_bench.py [--quick] [--guests N,N...] [--cycles N]

Measured per cycle, in CPU milliseconds (user + system):
- shell: children CPU (RUSAGE_CHILDREN) of `sh cycle.sh`; its toolstack share is measured by
  running the same toolstack commands alone, and the rest is the publishing share (sh, grep,
  cut, awk, cat, gmetric processes);
- vm-gmetric: one Publisher in this process, cycle after cycle as the daemon runs them (no
  interpreter start-up): time.process_time() is its own CPU (parsing, building, XDR encoding,
  sending, sysfs reads); children CPU is its toolstack share (one `xm list`).
The stand-in toolstack is a Python program (~17 ms of CPU a call, most of it the interpreter
starting), heavier than the real xl (C) and lighter than the real xm (Python 2 and xend), so
both the totals and the publishing shares are shown.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tabulate import tabulate

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from vmtools.gmetric.publish import Publisher, Settings  # noqa: E402
from vmtools.ganglia.send import Channel, Sender  # noqa: E402
from vmtools.lab.cluster import ClusterState, new_state  # noqa: E402
from vmtools.lab.standin import install_standins  # noqa: E402

SHELL_CYCLE = r'''#!/bin/sh
# Entropy's Domain-0 sample script (entropy-howto.txt), one cycle: its host metrics as it
# computes them (one `xm info` per metric, Xen version and driver written in), extended to
# publish the guest metrics vm-gmetric publishes, the way that script would.
OPTS="-c $CONF -S $SPOOF"
dom0_memory=`xenstore-read /local/domain/0/memory/target`
gmetric $OPTS -n container.mem_total \
  -v $((`xm info | grep total_memory | cut -d ':' -f 2` * 1024 - $dom0_memory)) \
  -u KB -t uint32 -s zero
gmetric $OPTS -n container.cpu_num -v `xm info | grep nr_cpus | cut -d ':' -f 2` \
  -t uint16 -s zero
gmetric $OPTS -n container.type -v xen-3.3 -t string -s zero
gmetric $OPTS -n container.driver.migration -v xm-ssh -t string -s zero
vms="`xenstore-ls /local/domain | grep "name =" | grep -v Domain-0 | cut -d '"' -f 2`"
gmetric $OPTS -n container.vms -v "`echo $vms`" -t string -s zero
now=`date +%s.%N`
xm list | awk 'NR > 1 && $1 != "Domain-0" { print $1, $2, $3, $4, $6 }' |
while read name id mem vcpus cputime; do
  prev="$STATE/$name"
  if [ -f "$prev" ]; then
    read then_t then_cpu then_net < "$prev"
  else
    then_t=$now; then_cpu=$cputime; then_net=0
  fi
  rx=`cat $SYSFS/sys/class/net/vif$id.0/statistics/rx_bytes`
  tx=`cat $SYSFS/sys/class/net/vif$id.0/statistics/tx_bytes`
  net=$((rx + tx))
  cpu=`awk -v a=$cputime -v b=$then_cpu -v t=$now -v u=$then_t \
       'BEGIN { d = t - u; if (d <= 0) d = 1; printf "%.1f", (a - b) / d * 100 }'`
  rate=`awk -v a=$net -v b=$then_net -v t=$now -v u=$then_t \
       'BEGIN { d = t - u; if (d <= 0) d = 1; printf "%.1f", (a - b) / d }'`
  echo "$now $cputime $net" > "$prev"
  gmetric $OPTS -n container.vm.$name.cpu -v $cpu -t float -u % -g xen
  gmetric $OPTS -n container.vm.$name.mem -v $((mem * 1024)) -t uint32 -u KB -g xen
  gmetric $OPTS -n container.vm.$name.vcpus -v $vcpus -t uint16 -u CPUs -g xen
  gmetric $OPTS -n container.vm.$name.net -v $rate -t float -u bytes/s -g xen
done
'''


def children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def measure(n_guests: int, cycles: int) -> list[list]:
    """One row per publisher: [label, total, toolstack, publishing, gmetric runs, note]."""
    work = Path(tempfile.mkdtemp(prefix="gmetric-bench-"))
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    port = sink.getsockname()[1]
    saved_env = dict(os.environ)
    try:
        guests = {f"guest{i:02d}": {"mem_mib": 512 + 128 * (i % 4), "vcpus": 1 + i % 2,
                                    "load": 0.1 * (1 + i % 5), "net_mbps": float(i)}
                  for i in range(n_guests)}
        state_path = work / "cluster.json"
        ClusterState(state_path).write(new_state({"node-1": {"domains": guests}}))
        bin_dir = install_standins(work / "bin")
        sysfs = work / "sysfs"
        conf = work / "gmond.conf"
        conf.write_text(f"udp_send_channel {{\n  host = 127.0.0.1\n  port = {port}\n}}\n")
        (work / "prev").mkdir()
        (work / "cycle.sh").write_text(SHELL_CYCLE)
        os.environ.update({"PATH": f"{bin_dir}:{os.environ['PATH']}",
                           "VMTOOLS_LAB_STATE": str(state_path), "VMTOOLS_LAB_HOST": "node-1",
                           "VMTOOLS_LAB_SYSFS": str(sysfs), "CONF": str(conf),
                           "SPOOF": "127.0.1.1:node-1", "STATE": str(work / "prev"),
                           "SYSFS": str(sysfs)})

        def drain() -> None:
            sink.setblocking(False)
            try:
                while True:
                    sink.recv(65536)
            except BlockingIOError:
                pass

        # -- the shell loop, one cycle at a time
        subprocess.run(["sh", str(work / "cycle.sh")], check=True)   # warm caches, prev files
        drain()
        before = children_cpu()
        for _ in range(cycles):
            subprocess.run(["sh", str(work / "cycle.sh")], check=True)
            drain()
        shell_total = (children_cpu() - before) / cycles
        calls = [["xenstore-read", "/local/domain/0/memory/target"], ["xm", "info"],
                 ["xm", "info"], ["xenstore-ls", "/local/domain"], ["xm", "list"]]
        before = children_cpu()
        for _ in range(cycles):
            for argv in calls:
                subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
        shell_tool = (children_cpu() - before) / cycles
        rows = [["shell loop + gmetric", shell_total * 1e3, shell_tool * 1e3,
                 (shell_total - shell_tool) * 1e3, 5 + 4 * n_guests,
                 f"sh cycle.sh, {len(calls)} toolstack calls"]]

        # -- vm-gmetric as the daemon runs it
        for label, meta_interval in (("vm-gmetric, metadata every cycle", 0.0),
                                     ("vm-gmetric, metadata every 60 s (default)", 60.0)):
            settings = Settings(toolstack="xm", channels=[Channel("127.0.0.1", port)],
                                spoof="127.0.1.1:node-1", metadata_interval=meta_interval,
                                sysfs_root=str(sysfs))
            with Sender(settings.channels) as sender:
                pub = Publisher(settings, sender=sender)
                pub.reader.detect()
                pub.warm_up()
                pub.cycle()           # first cycle sends all metadata
                drain()
                own = tool = 0.0
                packets = sender.sent
                for _ in range(cycles):
                    c0, p0 = children_cpu(), time.process_time()
                    pub.cycle()
                    own += time.process_time() - p0
                    tool += children_cpu() - c0
                    drain()
                packets = (sender.sent - packets) / cycles
            rows.append([label, (own + tool) / cycles * 1e3, tool / cycles * 1e3,
                         own / cycles * 1e3, 0, f"{packets:.0f} UDP packets, 1 toolstack call"])
        return rows
    finally:
        os.environ.clear()
        os.environ.update(saved_env)
        sink.close()
        shutil.rmtree(work, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer cycles (a smoke run)")
    ap.add_argument("--guests", default="5,10,20,40",
                    help="guests on the Domain-0, a comma-separated list (default 5,10,20,40)")
    ap.add_argument("--cycles", type=int, default=None, help="cycles measured per side")
    opts = ap.parse_args()
    cycles = opts.cycles or (3 if opts.quick else 10)
    try:
        counts = [int(n) for n in opts.guests.split(",")]
    except ValueError:
        ap.error(f"--guests {opts.guests!r}: expected numbers separated by commas")
    if not shutil.which("gmetric"):
        print("gmetric is not installed (apt-get install ganglia-monitor)", file=sys.stderr)
        return 69

    summary = []
    for n in counts:
        rows = measure(n, cycles)
        print(f"\nOne publishing cycle, {n} guests ({5 + 4 * n} metrics), mean of {cycles} "
              f"cycles, CPU ms (user+system)")
        print(tabulate(rows, headers=["publisher", "total", "toolstack (stand-ins)",
                                      "publishing", "gmetric runs", "note"], floatfmt=".2f"))
        default = rows[2]
        summary.append([n, rows[0][1], default[1], rows[0][1] / default[1],
                        rows[0][3], default[3], rows[0][3] / default[3]])
    print("\nShell loop against vm-gmetric (default settings), CPU ms per cycle")
    print(tabulate(summary, headers=["guests", "shell total", "vm-gmetric total", "total ratio",
                                     "shell publishing", "vm-gmetric publishing",
                                     "publishing ratio"], floatfmt=".1f"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
