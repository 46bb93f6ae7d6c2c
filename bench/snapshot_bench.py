"""vm-snapshot on a large gmetad dump: time and peak memory against lxml alone.

    /work/venv/bin/python bench/snapshot_bench.py [--quick] [--hosts N] [--guests N] [--keep FILE]

Generates a gmetad dump shaped like gmetad 3.7.2's (DTD, GRID > CLUSTER > HOST > METRIC with
EXTRA_DATA): N hosts (default 5000; --quick 500) each with ~40 standard gmond metrics, the
five container.* metrics and 4 container.vm.<name>.* metrics per guest (default 8 guests).
Then, each in a fresh child process (wall time and ru_maxrss from wait4):
  lxml-parse      python -c "lxml.etree.parse(FILE)"       (the whole tree, nothing else)
  lxml-iterparse  python -c "for _ in lxml.etree.iterparse(FILE): pass"
  vm-snapshot     vm-snapshot --input FILE > /dev/null      (parse, interpret, JSON out)
and the same work in-process (no interpreter start-up) for the parse-only comparison.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PY = sys.executable
VM_SNAPSHOT = str(Path(PY).parent / "vm-snapshot")
STANDARD = ["boottime", "bytes_in", "bytes_out", "cpu_aidle", "cpu_idle", "cpu_nice",
            "cpu_num", "cpu_speed", "cpu_steal", "cpu_system", "cpu_user", "cpu_wio",
            "disk_free", "disk_total", "load_fifteen", "load_five", "load_one", "machine_type",
            "mem_buffers", "mem_cached", "mem_free", "mem_shared", "mem_total", "os_name",
            "os_release", "part_max_used", "pkts_in", "pkts_out", "proc_run", "proc_total",
            "swap_free", "swap_total", "cpu_intr", "cpu_sintr", "mem_sreclaimable",
            "tcpext_listendrops", "udp_indatagrams", "udp_outdatagrams", "tcp_attemptfails",
            "sys_clock"]


def metric(name: str, val: object, type_: str, host: str, ip: str) -> str:
    return (f'<METRIC NAME="{name}" VAL="{val}" TYPE="{type_}" UNITS="" TN="3" TMAX="60" '
            f'DMAX="0" SLOPE="both" SOURCE="gmond">\n<EXTRA_DATA>\n'
            f'<EXTRA_ELEMENT NAME="GROUP" VAL="xen"/>\n'
            f'<EXTRA_ELEMENT NAME="SPOOF_HOST" VAL="{ip}:{host}"/>\n</EXTRA_DATA>\n</METRIC>\n')


def generate(path: Path, hosts: int, guests: int) -> None:
    from vmtools.ganglia.sources import example_path
    head = Path(example_path("lab")).read_bytes()
    prolog = head[:head.index(b"<GANGLIA_XML")]
    now = 1_800_000_000
    with open(path, "wb") as out:
        out.write(prolog)
        out.write(f'<GANGLIA_XML VERSION="3.7.2" SOURCE="gmetad">\n<GRID NAME="bench" '
                  f'AUTHORITY="http://x/ganglia/" LOCALTIME="{now}">\n'.encode())
        for c in range(hosts // 1000 + (1 if hosts % 1000 else 0)):
            out.write(f'<CLUSTER NAME="xen-{c}" LOCALTIME="{now}" OWNER="o" LATLONG="l" '
                      f'URL="u">\n'.encode())
            for h in range(c * 1000, min(hosts, (c + 1) * 1000)):
                name, ip = f"xen-{h:05d}", f"10.{h // 65536}.{h // 256 % 256}.{h % 256}"
                parts = [f'<HOST NAME="{name}" IP="{ip}" REPORTED="{now - 3}" TN="3" '
                         f'TMAX="20" DMAX="86400" LOCATION="unspecified" GMOND_STARTED="0" '
                         f'TAGS="">\n']
                parts += [metric(m, f"{(h * 7 + i) % 100}.5", "float", name, ip)
                          for i, m in enumerate(STANDARD)]
                vms = [f"vm-{h:05d}-{g}" for g in range(guests)]
                parts += [metric("container.mem_total", 64 * 1048576, "uint32", name, ip),
                          metric("container.cpu_num", 16, "uint16", name, ip),
                          metric("container.vms", " ".join(vms), "string", name, ip),
                          metric("container.driver.migration", "xl-ssh", "string", name, ip),
                          metric("container.type", "xen-4.17", "string", name, ip)]
                for g, vm in enumerate(vms):
                    parts += [metric(f"container.vm.{vm}.cpu", 10 + g * 5, "float", name, ip),
                              metric(f"container.vm.{vm}.mem", 2097152, "uint32", name, ip),
                              metric(f"container.vm.{vm}.vcpus", 2, "uint16", name, ip),
                              metric(f"container.vm.{vm}.net", 125000.0, "float", name, ip)]
                parts.append("</HOST>\n")
                out.write("".join(parts).encode())
            out.write(b"</CLUSTER>\n")
        out.write(b"</GRID>\n</GANGLIA_XML>\n")


def child(argv: list[str]) -> tuple[float, int, int]:
    """Run argv with stdout to /dev/null; (wall seconds, peak RSS KiB, exit status)."""
    start = time.perf_counter()
    with open(os.devnull, "wb") as devnull:
        proc = subprocess.Popen(argv, stdout=devnull)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    return time.perf_counter() - start, usage.ru_maxrss, proc.returncode


def best(argv: list[str], repeat: int) -> tuple[float, int]:
    runs = [child(argv) for _ in range(repeat)]
    if any(rc != 0 for _, _, rc in runs):
        raise SystemExit(f"{argv[0]} failed")
    return min(r[0] for r in runs), max(r[1] for r in runs)


def main() -> None:
    ap = argparse.ArgumentParser(description="vm-snapshot --input vs lxml alone")
    ap.add_argument("--quick", action="store_true", help="500 hosts, one run each")
    ap.add_argument("--hosts", type=int, help="number of hosts (default 5000)")
    ap.add_argument("--guests", type=int, default=8, help="guests per host (default 8)")
    ap.add_argument("--repeat", type=int, help="runs per measurement, best time kept (3)")
    ap.add_argument("--keep", type=Path, help="write the dump here and keep it")
    args = ap.parse_args()
    hosts = args.hosts or (500 if args.quick else 5000)
    repeat = args.repeat or (1 if args.quick else 3)
    tmp = tempfile.TemporaryDirectory(prefix="snapshot-bench-")
    path = args.keep or Path(tmp.name) / "gmetad.xml"
    t0 = time.perf_counter()
    generate(path, hosts, args.guests)
    size = path.stat().st_size
    print(f"dump: {path} {hosts} hosts x {args.guests} guests, {size / 1e6:.1f} MB, "
          f"generated in {time.perf_counter() - t0:.1f} s", file=sys.stderr)

    rows = []
    base = best([PY, "-c", "pass"], repeat)
    rows.append(("python start-up", *base))
    parse = best([PY, "-c", f"from lxml import etree; etree.parse({str(path)!r})"], repeat)
    rows.append(("lxml parse (child)", *parse))
    rows.append(("lxml iterparse (child)", *best(
        [PY, "-c", f"from lxml import etree\nfor _ in etree.iterparse({str(path)!r}): pass"],
        repeat)))
    snap = best([VM_SNAPSHOT, "-q", "--input", str(path)], repeat)
    rows.append(("vm-snapshot --input (child)", *snap))

    # In-process: the parse alone, without interpreter and import start-up.
    from lxml import etree
    from vmtools.ganglia.interpret import interpret
    from vmtools.ganglia.xml import parse_ganglia
    from vmtools.model import dumps
    t = time.perf_counter()
    etree.parse(str(path))
    lx = time.perf_counter() - t
    t = time.perf_counter()
    with open(path, "rb") as fh:
        dump = parse_ganglia(fh, str(path))
    parsed = time.perf_counter() - t
    text = dumps(interpret([dump]).to_dict())
    total = time.perf_counter() - t
    rows.append(("lxml parse (in-process)", lx, 0))
    rows.append(("parse_ganglia (in-process)", parsed, 0))
    rows.append(("parse+interpret+JSON (in-process)", total, 0))

    print(f"\nfile size: {size / 1e6:.1f} MB ({size / 1024:.0f} KiB); {hosts} hosts, "
          f"{hosts * args.guests} guests; snapshot JSON {len(text) / 1e6:.1f} MB; "
          f"best of {repeat}")
    print(f"{'measurement':36} {'seconds':>8} {'peak RSS MiB':>13}")
    for name, secs, rss in rows:
        print(f"{name:36} {secs:8.2f} {rss / 1024 if rss else float('nan'):13.1f}")
    print(f"\nvm-snapshot / lxml parse (child, wall):     {snap[0] / parse[0]:.2f}x  (target <= 2)")
    print(f"vm-snapshot / lxml parse (in-process):      {total / lx:.2f}x")
    print(f"vm-snapshot peak RSS / file size:           {snap[1] * 1024 / size:.2f}")
    tmp.cleanup()


if __name__ == "__main__":
    main()
