"""Read a replay's history from Ganglia's RRD files (gmetad's ``rrd_rootdir``).

Layout: ``DIR/<cluster>/<host>/<metric>.rrd``, one data source ``sum`` per file, as gmetad
writes them (``__SummaryInfo__`` directories are skipped). gmetad keeps only numeric metrics,
so the guest list (``container.vms``, a string) is not there: a host is a hypervisor when it has
``container.cpu_num`` and ``container.mem_total`` files, and its guests are the
``container.vm.<name>.<field>.rrd`` files under it (``cpu`` in %, ``mem`` in KB, ``vcpus``,
``net`` in bytes/s; the name may hold dots, the field is the last component).

The files are read with Debian's ``rrdtool`` command (``rrdtool xport --json --showtime``, one
call per host for all its files, arguments as a list, never through a shell): the maintained
reader of the format, already on every gmetad host, rather than a parser of RRD bytes. A row
stamped ``t`` is the average over the ``step`` seconds before ``t``; it becomes the sample at
``t - step``. Rows where nothing has a value are left out (the last demand holds: see
:mod:`vmtools.replay.trace`).

A guest seen on two hosts in one row is where it appeared last: the other value is the stale
one gmond keeps repeating until the metric's DMAX (vm-gmetric's default: 3 x TMAX) expires
after a migration. Names that are not safe (see :func:`vmtools.model.is_safe_name`) are skipped
with a note: RRD directories are named after what Ganglia received over unauthenticated UDP.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import time

from vmtools.errors import DataError, OptionError, Unavailable
from vmtools.inputs import OutputDeadline, OutputTooLarge, read_process
from vmtools.model import Host, is_safe_name
from vmtools.numbers import problem
from vmtools.text import printable
from vmtools.replay.trace import Demand, Sample, Trace, finish

FIELDS = ("cpu", "mem", "vcpus", "net")
HOST_METRICS = ("container.cpu_num", "container.mem_total")
CHUNK = 60                        # DEFs per rrdtool call
TIMEOUT = 120.0                   # for the whole read, every rrdtool call together
# One rrdtool answer: 60 series of two years of 5-minute rows is ~150 MiB of JSON.
MAX_ANSWER_BYTES = 256 * 2**20
# Rows of one answer: more is a damaged RRD header (a step of 14 million s) or a window of years.
MAX_ROWS = 250_000
# What a Domain-0's RRDs may say (as vm-snapshot bounds the same metrics, ganglia.interpret):
# host CPUs and KB, a guest's CPU % of one CPU, KB, vcpus, bytes/s.
HOST_RANGES = {"container.cpu_num": (1, 2**16 - 1), "container.mem_total": (1024, 2**32 - 1)}
GUEST_RANGES = {"cpu": (0.0, 100.0 * (2**16 - 1)), "mem": (0.0, 2**32 - 1.0),
                "vcpus": (1, 2**16 - 1), "net": (0.0, 1.25e12)}


def _rrdtool() -> str:
    path = shutil.which("rrdtool")
    if path is None:
        raise Unavailable("rrdtool is not installed: apt-get install rrdtool")
    return path


def _escape(path: str) -> str:
    # rrdtool's DEF takes "vname=path:ds:cf"; a colon in the path is written "\:", and that is
    # the only escape rrdtool reads: a backslash stays as it is, unless it would escape the
    # colon after it (a path ending in one, or holding "\:", cannot be said).
    if path.endswith("\\") or "\\:" in path:
        raise OptionError("rrd", f"{path}: a path ending in a backslash or holding a "
                          "backslash before a colon cannot be given to rrdtool")
    return path.replace(":", "\\:")


def xport(files: list[str], start: float, end: float, step: float,
          deadline: float | None = None) -> tuple[float, list[float], list[list]]:
    """(actual step, row end times, one value list per row with a value (or None) per file)
    of ``files`` over [start, end]; every call within ``deadline`` (``time.monotonic()``), each
    answer bounded in bytes and rows before it is parsed."""
    tool = _rrdtool()
    deadline = time.monotonic() + TIMEOUT if deadline is None else deadline
    times: list[float] = []
    columns: list[list] = []
    actual = step
    for i in range(0, len(files), CHUNK):
        part = files[i:i + CHUNK]
        args = [tool, "xport", "--json", "--showtime", "--start", str(int(start)),
                "--end", str(int(math.ceil(end))), "--step", str(max(1, int(step)))]
        for k, f in enumerate(part):
            args.append(f"DEF:v{k}={_escape(f)}:sum:AVERAGE")
        for k in range(len(part)):
            args.append(f"XPORT:v{k}:v{k}")
        where = os.path.dirname(part[0])
        try:
            proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, start_new_session=True)
        except OSError as exc:
            raise Unavailable(f"rrdtool cannot run: {exc.strerror}") from None
        try:
            stdout, stderr = read_process(proc, max(0.0, deadline - time.monotonic()),
                                          MAX_ANSWER_BYTES)
        except OutputDeadline:
            raise Unavailable(f"rrdtool took more than {TIMEOUT:g} s for the whole read "
                              f"(at {where})") from None
        except OutputTooLarge:
            raise DataError(f"rrdtool's answer is larger than {MAX_ANSWER_BYTES // 2**20} MiB "
                            "(a damaged RRD header, or a window of years): replay a shorter "
                            "window ({start}, {until})", where,
                            settings=("start", "until")) from None
        if proc.returncode != 0:
            message = stderr.decode("utf-8", "replace").strip().removeprefix("ERROR: ")
            raise DataError(f"rrdtool cannot read it: {printable(message)}", where)
        try:
            doc = json.loads(stdout.decode("utf-8", "replace"))
            rows = doc["data"]
            if len(rows) > MAX_ROWS:
                raise DataError(f"rrdtool answers {len(rows):,} rows, more than {MAX_ROWS:,} "
                                "(a damaged RRD header, or a window of years): replay a "
                                "shorter window ({start}, {until})", where,
                                settings=("start", "until"))
            actual = float(doc["meta"]["step"])
            these = [float(r[0]) for r in rows]
            values = [[None if v is None or not math.isfinite(float(v)) else float(v)
                       for v in r[1:]] for r in rows]
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            raise DataError(f"unexpected rrdtool xport output ({exc})",
                            os.path.dirname(part[0])) from None
        if not times:
            times = these
            columns = [[] for _ in these]
        elif these != times:
            raise DataError("its RRD files do not share one time grid (different steps); "
                            "pass a {step} they all have", os.path.dirname(part[0]),
                            settings=("step",))
        for row, vals in zip(columns, values):
            row.extend(vals)
    return actual, times, columns


def _guest_files(host_dir: str, notes: list[str]) -> dict[str, dict[str, str]]:
    """guest -> field -> file, from ``container.vm.<name>.<field>.rrd``."""
    out: dict[str, dict[str, str]] = {}
    for name in sorted(os.listdir(host_dir)):
        if not (name.startswith("container.vm.") and name.endswith(".rrd")):
            continue
        stem = name[len("container.vm."):-len(".rrd")]
        guest, _, fld = stem.rpartition(".")
        if fld not in FIELDS or not guest:
            continue
        if not is_safe_name(guest):
            notes.append(f"{os.path.join(host_dir, name)}: unsafe guest name, skipped")
            continue
        out.setdefault(guest, {})[fld] = os.path.join(host_dir, name)
    return out


def read_rrd(root: str, start: float, until: float, step: float,
             cluster: str | None = None) -> Trace:
    cluster = _cluster_in(root, cluster)
    cdir = os.path.join(root, cluster)
    notes: list[str] = []
    hosts, per_host, grid, actual_step = _read_hosts(cdir, cluster, start, until, step, notes)
    if not hosts:
        raise DataError("no host with container.cpu_num and container.mem_total RRDs "
                        "(is vm-gmetric publishing, and gmetad's rrd_rootdir this one?)", cdir)
    samples = _samples(grid or [], per_host, actual_step)
    if not samples:
        raise DataError(f"no guest has a value between {{start}} and {{until}} (step "
                        f"{actual_step:g} s)", cdir, settings=("start", "until"))
    trace = Trace(f"rrd://{cdir}", hosts, dict(samples[0].seen_on), samples, actual_step,
                  notes)
    return finish(trace)


def _cluster_in(root: str, cluster: str | None) -> str:
    """The cluster directory of gmetad's ``root`` to read: ``cluster``, or the only one."""
    if not os.path.isdir(root):
        raise OptionError("rrd", f"{root}: no such directory")
    clusters = sorted(d for d in os.listdir(root)
                      if os.path.isdir(os.path.join(root, d)) and d != "__SummaryInfo__")
    if cluster is None:
        if len(clusters) != 1:
            raise OptionError("rrd", f"{root} holds {len(clusters)} clusters "
                              f"({', '.join(clusters) or 'none'}): choose one with {{cluster}}",
                              settings=("cluster",))
        return clusters[0]
    if cluster not in clusters:
        raise OptionError("cluster", f"{cluster}: not in {root} (it holds "
                          f"{', '.join(clusters) or 'no cluster'})")
    return cluster


def _read_hosts(cdir: str, cluster: str, start: float, until: float, step: float,
                notes: list[str]):
    """Every Domain-0 of the cluster directory (its vm-gmetric host RRDs and its guests'),
    read on one time grid: (hosts, host -> guest -> field -> values, the grid, its step)."""
    hosts: list[Host] = []
    per_host: dict[str, dict[str, dict[str, list]]] = {}   # host -> guest -> field -> values
    grid: list[float] | None = None
    actual_step = step
    deadline = time.monotonic() + TIMEOUT
    for hname in sorted(os.listdir(cdir)):
        hdir = os.path.join(cdir, hname)
        if hname == "__SummaryInfo__" or not os.path.isdir(hdir):
            continue
        if not all(os.path.exists(os.path.join(hdir, m + ".rrd")) for m in HOST_METRICS):
            continue                             # not a Domain-0 running vm-gmetric
        if not is_safe_name(hname):
            notes.append(f"{hdir}: unsafe host name, skipped")
            continue
        guests = _guest_files(hdir, notes)
        files = [os.path.join(hdir, m + ".rrd") for m in HOST_METRICS]
        keys = [("", m) for m in HOST_METRICS]
        for g in sorted(guests):
            for fld, path in sorted(guests[g].items()):
                files.append(path)
                keys.append((g, fld))
        actual_step, times, rows = xport(files, start, until, step, deadline)
        _drop_impossible(files, keys, rows, notes)
        if grid is None:
            grid = times
        elif times != grid:
            raise DataError("its RRD files do not share the other hosts' time grid; pass a "
                            "{step} they all have", hdir, settings=("step",))
        cpus = next((r[0] for r in rows if r[0] is not None), None)
        mem_kb = next((r[1] for r in rows if r[1] is not None), None)
        if not cpus or not mem_kb:
            notes.append(f"host {hname} has no container.cpu_num or container.mem_total "
                         "value in the window: left out")
            continue
        hosts.append(Host(name=hname, cluster=cluster, cpu=float(cpus),
                          mem_mib=int(mem_kb // 1024), hypervisor="xen", migration="xen"))
        series: dict[str, dict[str, list]] = {}
        for col, (g, fld) in enumerate(keys):
            if g:
                series.setdefault(g, {})[fld] = [r[col] for r in rows]
        per_host[hname] = series
    return hosts, per_host, grid, actual_step


def _drop_impossible(files: list[str], keys: list[tuple[str, str]], rows: list[list],
                     notes: list[str]) -> None:
    """Values outside what the metric can be (a negative CPU count, memory of -100 KB, a
    guest at 1e300 %) are no values: what a snapshot of the same metrics refuses."""
    for col, (g, fld) in enumerate(keys):
        lo, hi = GUEST_RANGES[fld] if g else HOST_RANGES[fld]
        bad = 0
        for r in rows:
            if r[col] is not None and problem(r[col], lo=lo, hi=hi) is not None:
                r[col] = None
                bad += 1
        if bad:
            notes.append(f"{files[col]}: {bad} value(s) outside {lo:g} to {hi:g} left out")


def _samples(grid: list[float], per_host: dict[str, dict[str, dict[str, list]]],
             actual_step: float) -> list[Sample]:
    """One sample per step of the grid with a guest in it: each guest where its series
    started last (on two hosts, the other is gmond's stale copy), its memory carried over a
    step without one."""
    samples: list[Sample] = []
    where: dict[str, str] = {}
    since: dict[tuple[str, str], int] = {}
    last_mem: dict[str, float] = {}
    for i, t in enumerate(grid):
        s = Sample(t - actual_step, {})
        seen: dict[str, list[str]] = {}
        for hname in sorted(per_host):
            for g, fields in per_host[hname].items():
                if "cpu" in fields and fields["cpu"][i] is not None:
                    seen.setdefault(g, []).append(hname)
        for g, hs in seen.items():
            for h in hs:
                if (g, h) not in since:
                    since[(g, h)] = i
        for key in [k for k in since if k[1] not in seen.get(k[0], ())]:
            del since[key]                  # no value any more: gone from that host
        for g in sorted(seen):
            # on two hosts: where its series started last (the other is gmond's stale copy)
            hname = max(seen[g], key=lambda h: (since[(g, h)], h != where.get(g), h))
            fields = per_host[hname][g]
            cpu = fields["cpu"][i]
            mem = fields["mem"][i] if "mem" in fields else None
            mem = last_mem.get(g) if mem is None else mem
            if mem is None:
                continue
            last_mem[g] = mem
            vcpus = fields["vcpus"][i] if "vcpus" in fields else None
            net = fields["net"][i] if "net" in fields else None
            s.vms[g] = Demand(max(0.0, cpu) / 100.0, int(mem // 1024),
                              None if net is None else net * 8 / 1e6,
                              int(vcpus) if vcpus else max(1, math.ceil(cpu / 100.0)))
            s.seen_on[g] = hname
            where[g] = hname
        if s.vms:
            samples.append(s)
    return samples
