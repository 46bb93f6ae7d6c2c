"""Read a replay's history into a :class:`~vmtools.replay.trace.Trace`.

* :func:`read_snapshots`: snapshot documents (files, or directories searched recursively for
  ``*.json``, as vm-rebalance's archive keeps them; plans and reports there are skipped),
  ordered by ``created``. The first snapshot gives the hosts and the starting placement; later
  ones give each guest's demand at their time (their placement is ignored), and their problems
  (each tick's snapshot carries them, so vm-plan plans around them as it did live; a guest a
  problem names and the snapshot lacks runs on at its last known demand, unseen). Every snapshot must
  be of the first one's cluster(s).
* :func:`read_csv_trace`: ``time,guest,cpu,mem_mib[,net_mbps]`` rows (``time`` as
  ``2026-11-22T01:30:00Z`` or epoch seconds; ``cpu`` in physical CPUs) plus a hosts file
  ``name,cpu,mem_mib[,net_mbps[,cluster]]``. Both may start with a header line and carry ``#``
  comments. A header naming a ``host`` column gives each guest's starting host; without one the
  guests, sorted by name, are dealt round the hosts in file order (each to the next host with
  the memory), as an unconsolidated cluster would hold them.
"""

from __future__ import annotations

import csv
import io
import math
import os

from vmtools import numbers
from vmtools.errors import DataError, UsageError
from vmtools.inputs import MAX_DOCUMENT_BYTES, read_file
from vmtools.model import (HOST_MAX_CPU, HOST_MAX_MIB, HOST_MIN_CPU, HOST_MIN_MIB,
                           SNAPSHOT_FORMAT, Host, Snapshot, epoch_to_iso, is_safe_name,
                           iso_to_epoch, loads)
from vmtools.replay.trace import Demand, Sample, Trace, finish, sample_step


# --------------------------------------------------------------------------- snapshots

def _snapshot_files(paths: list[str]) -> list[str]:
    files: list[str] = []
    for p in paths:
        if os.path.isdir(p):
            found = []
            for root, dirs, names in os.walk(p):
                dirs.sort()
                found += [os.path.join(root, n) for n in sorted(names)
                          if n.endswith(".json") and not n.startswith(".")]
            if not found:
                raise UsageError(f"{p}: no *.json file in this directory")
            files += found
        elif os.path.exists(p):
            files.append(p)
        else:
            raise UsageError(f"{p}: no such file or directory")
    return files


def _read_json(path: str) -> object:
    return loads(read_file(path, "snapshot", limit=MAX_DOCUMENT_BYTES, prog="vm-replay"), path)


def read_snapshots(paths: list[str]) -> Trace:
    snaps: list[tuple[float, str, Snapshot]] = []
    for path in _snapshot_files(paths):
        obj = _read_json(path)
        if path not in paths and not (isinstance(obj, dict)
                                      and obj.get("format") == SNAPSHOT_FORMAT):
            continue                       # a plan or report next to the snapshots
        try:
            snap = Snapshot.from_dict(obj)
            when = iso_to_epoch(snap.created)
        except DataError as exc:
            raise DataError(exc.message, f"{path}: {exc.where}" if exc.where else path) \
                from None
        except (TypeError, ValueError):
            raise DataError(f"created {snap.created!r}: expected a time like "
                            "2026-11-22T01:30:00Z", path) from None
        snaps.append((when, path, snap))
    if not snaps:
        raise UsageError(f"{' '.join(paths)}: no vmtools.snapshot document found")
    snaps.sort(key=lambda t: (t[0], t[1]))
    first_time, first_path, first = snaps[0]
    clusters = {h.cluster for h in first.hosts}
    hosts = {h.name: h for h in first.hosts}
    samples: list[Sample] = []
    notes: list[str] = []
    for when, path, snap in snaps:
        other = sorted({h.cluster for h in snap.hosts} - clusters)
        if other:
            raise DataError(f"holds cluster {', '.join(map(repr, other))}, not the first "
                            f"snapshot's ({', '.join(map(repr, sorted(clusters)))}, "
                            f"{first_path}): replay one cluster at a time (move that file out "
                            "or pass the files of one cluster)", path)
        if samples and when == samples[-1].time:
            raise DataError(f"has the same created time as another snapshot "
                            f"({snap.created}): keep one of them", path)
        for h in snap.hosts:
            if h.name not in hosts:
                hosts[h.name] = Host(name=h.name, cluster=h.cluster, cpu=h.cpu,
                                     mem_mib=h.mem_mib, net_mbps=h.net_mbps,
                                     hypervisor=h.hypervisor, migration=h.migration)
                notes.append(f"host {h.name} first appears in {path}: it is available to the "
                             "replay from the start")
        listed = {v.name for v in snap.vms}
        samples.append(Sample(when, {v.name: Demand(v.cpu, v.mem_mib, v.net_mbps, v.vcpus)
                                     for v in snap.vms},
                              snap.guest_hosts(), list(snap.problems),
                              {p.vm for p in snap.problems if p.vm and p.vm not in listed},
                              file=path))
    host_list = [Host(name=h.name, cluster=h.cluster, cpu=h.cpu, mem_mib=h.mem_mib,
                      net_mbps=h.net_mbps, hypervisor=h.hypervisor, migration=h.migration)
                 for h in sorted(hosts.values(), key=lambda h: h.name)]
    placement = first.guest_hosts()
    source = paths[0] if len(paths) == 1 else f"{paths[0]} (+{len(paths) - 1})"
    trace = Trace(source, host_list, placement, samples,
                  sample_step([s.time for s in samples]), notes)
    return finish(trace)


# --------------------------------------------------------------------------- CSV

def _rows(path: str) -> list[tuple[int, list[str]]]:
    text = read_file(path, "CSV trace", limit=MAX_DOCUMENT_BYTES, prog="vm-replay")
    out = []
    reader = csv.reader(io.StringIO(text, newline=""))
    while True:
        n = reader.line_num + 1             # where the record starts (a quote may span lines)
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            raise DataError(f"not a CSV line: {exc}", f"{path}:{n}") from None
        if not row or not "".join(row).strip() or row[0].lstrip().startswith("#"):
            continue
        out.append((n, [c.strip() for c in row]))
    if not out:
        raise DataError("empty: no data line", path)
    return out


# The bounds of what a trace may say (the same as a snapshot document's, vmtools.model).
BOUNDS = {"cpu": (0.0, HOST_MAX_CPU), "mem_mib": (0, HOST_MAX_MIB + 1),
          "net_mbps": (0.0, 1e7), "vcpus": (1, HOST_MAX_CPU)}
HOST_BOUNDS = {"cpu": (HOST_MIN_CPU, HOST_MAX_CPU), "mem_mib": (HOST_MIN_MIB, HOST_MAX_MIB),
               "net_mbps": (1e-3, 1e7)}
# Epoch seconds of a trace: from 1970 to the end of year 9999 (what an ISO time can say).
MAX_EPOCH = 253402300799.0
# Two samples further apart than this: a mistyped time (64547200 for 1764547200), not a gap.
MAX_GAP_SECONDS = 366 * 86400.0


def _number(text: str, where: str, what: str, bounds: dict | None = None) -> float:
    lo, hi = (bounds or BOUNDS).get(what, (0.0, None))
    try:
        return numbers.parse(text, lo=lo, hi=hi)
    except DataError as exc:
        raise DataError(f"{what}: {exc.message}", where) from None


def _time(text: str, where: str) -> float:
    try:
        value = float(text) if text.replace(".", "", 1).isdigit() else iso_to_epoch(text)
    except (ValueError, OverflowError):
        raise DataError(f"time: expected 2026-11-22T01:30:00Z or epoch seconds, got "
                        f"{text!r}", where) from None
    if not 0 <= value <= MAX_EPOCH:
        raise DataError(f"time: {text!r} is not a time between 1970 and 9999", where)
    return value


def _name(text: str, where: str, what: str) -> str:
    if not is_safe_name(text):
        raise DataError(f"{what}: unsafe name {text!r} (letters, digits, '.', '_', '-')", where)
    return text


def _header(rows: list[tuple[int, list[str]]], known: set[str]) -> tuple[list[str] | None, list]:
    first = [c.lower() for c in rows[0][1]]
    if first and first[0] in known and all(c in known for c in first):
        return first, rows[1:]
    return None, rows


def read_hosts_csv(path: str) -> list[Host]:
    cols = ["name", "cpu", "mem_mib", "net_mbps", "cluster"]
    header, rows = _header(_rows(path), set(cols))
    header = header or cols
    if not {"name", "cpu", "mem_mib"} <= set(header):
        raise DataError("header: needs name, cpu and mem_mib columns", f"{path}:1")
    hosts: dict[str, Host] = {}
    for n, row in rows:
        where = f"{path}:{n}"
        if len(row) < 3 or len(row) > len(header):
            raise DataError(f"expected {', '.join(header)} ({len(row)} fields)", where)
        f = dict(zip(header, row))
        name = _name(f["name"], where, "name")
        if name in hosts:
            raise DataError(f"host {name} is listed twice", where)
        cpu = _number(f["cpu"], where, "cpu", HOST_BOUNDS)
        mem = _number(f["mem_mib"], where, "mem_mib", HOST_BOUNDS)
        net = _number(f["net_mbps"], where, "net_mbps", HOST_BOUNDS) if f.get("net_mbps") \
            else None
        hosts[name] = Host(name=name, cluster=f.get("cluster") or "trace", cpu=cpu,
                           mem_mib=int(mem), net_mbps=net, hypervisor="xen",
                           migration="xen")
    return list(hosts.values())


def read_csv_trace(path: str, hosts_path: str | None) -> Trace:
    if hosts_path is None:
        raise UsageError(f"{path}: a CSV trace needs {{hosts}} FILE (name,cpu,mem_mib per "
                         "host)", settings=("hosts",))
    hosts = read_hosts_csv(hosts_path)
    by_name = {h.name: h for h in hosts}
    cols = ["time", "guest", "cpu", "mem_mib", "net_mbps", "host", "vcpus"]
    header, rows = _header(_rows(path), set(cols))
    header = header or cols[:5]
    if not {"time", "guest", "cpu", "mem_mib"} <= set(header):
        raise DataError("header: needs time, guest, cpu and mem_mib columns", f"{path}:1")
    by_time: dict[float, Sample] = {}
    line_of: dict[float, int] = {}
    for n, row in rows:
        where = f"{path}:{n}"
        if len(row) < 4 or len(row) > len(header):
            raise DataError(f"expected {', '.join(header)} ({len(row)} fields)", where)
        f = dict(zip(header, row))
        t = _time(f["time"], where)
        guest = _name(f["guest"], where, "guest")
        net = _number(f["net_mbps"], where, "net_mbps") if f.get("net_mbps") else None
        vcpus = int(_number(f["vcpus"], where, "vcpus")) if f.get("vcpus") else None
        cpu = _number(f["cpu"], where, "cpu")
        d = Demand(cpu, int(_number(f["mem_mib"], where, "mem_mib")), net,
                   vcpus or max(1, math.ceil(cpu)))
        s = by_time.setdefault(t, Sample(t, {}, file=path))
        line_of.setdefault(t, n)
        if guest in s.vms:
            raise DataError(f"guest {guest} has two rows at the same time", where)
        s.vms[guest] = d
        s.lines[guest] = n
        if f.get("host"):
            host = _name(f["host"], where, "host")
            if host not in by_name:
                raise DataError(f"host {host} is not in {hosts_path}", where)
            s.seen_on[guest] = host
    samples = [by_time[t] for t in sorted(by_time)]
    _no_mistyped_time(samples, line_of, path)
    first = samples[0]
    if first.seen_on:
        missing = sorted(set(first.vms) - set(first.seen_on))
        if missing:
            raise DataError(f"guest {missing[0]} has no host at the first time "
                            "(the host column must be filled there)", path)
        placement = dict(first.seen_on)
    else:
        placement = _deal(first.vms, hosts, path)
    return finish(Trace(path, hosts, placement, samples,
                        sample_step([s.time for s in samples])))


def _no_mistyped_time(samples: list[Sample], line_of: dict[float, int], path: str) -> None:
    """Samples more than a year apart: one time is mistyped (a digit dropped from an epoch);
    name the line of the lone sample at the far end, before the replay ticks through decades."""
    times = [s.time for s in samples]
    for i, (a, b) in enumerate(zip(times, times[1:])):
        if b - a > MAX_GAP_SECONDS:
            odd = a if i + 1 <= len(times) - i - 1 else b     # the side with fewer samples
            raise DataError(f"time {epoch_to_iso(odd)} is {(b - a) / 86400 / 365.25:.0f} "
                            f"year(s) from the next sample: a mistyped time?",
                            f"{path}:{line_of[odd]}")


def _deal(vms: dict[str, Demand], hosts: list[Host], path: str) -> dict[str, str]:
    """Guests, sorted by name, dealt round the hosts: each to the next host with the memory."""
    free = [h.mem_mib for h in hosts]
    placement = {}
    k = 0
    for vm in sorted(vms):
        need = vms[vm].mem_mib
        for step in range(len(hosts)):
            i = (k + step) % len(hosts)
            if free[i] >= need:
                free[i] -= need
                placement[vm] = hosts[i].name
                k = i + 1
                break
        else:
            raise DataError(f"guest {vm} ({need} MiB) fits on no host at the first time: the "
                            "hosts file is too small for the trace", path)
    return placement
