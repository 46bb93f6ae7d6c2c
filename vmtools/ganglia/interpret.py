"""Turn parsed Ganglia answers into a snapshot, by the rules of vmtools-formats(5), GANGLIA METRICS.

Pure: no sockets, no XML. Input is one or more :class:`~vmtools.ganglia.xml.GangliaDump`
(one per source); output is a :class:`~vmtools.model.Snapshot`.

- A host is a hypervisor iff it carries all five ``container.*`` host metrics; some but not
  all is a ``partial-container`` problem and the host is left out.
- ``container.mem_total`` (KB, Domain-0 already excluded) becomes ``mem_mib``;
  ``container.cpu_num`` becomes ``cpu``; the optional vmtools extension
  ``container.net_mbps`` (Mbit/s) becomes ``net_mbps`` (Ganglia cannot know a link's speed).
- A host is offline iff ``TN > 4 x TMAX``; an offline host that lists guests keeps them, with
  state ``unknown``, and an ``offline-host`` problem.
- A container.* metric is late when its TN is past its TMAX (or its DMAX, when set): a late
  host metric (capacity, guest list) is a ``stale-host`` problem, a late guest metric a
  ``stale-guest`` problem; both are kept at their last figures. A non-empty
  ``container.problem`` (vm-gmetric could not read the whole guest list) is an
  ``incomplete-host`` problem. A host that publishes everything but ``container.vms``
  is kept with no guests and a ``partial-container`` problem (its guests are unknown).
- A cluster is stale when the grid's LOCALTIME is more than ``stale_after`` seconds ahead of
  the cluster's (gmetad serves the last data it got from a gmond that stopped answering).
- Guests: ``container.vms`` plus ``container.vms.1``, ``.2``... joined, Domain-0 left out;
  demand from ``container.vm.<name>.{cpu,mem,vcpus,net}``, each missing field from the
  guest's own gmond entry (``cpu_num``, ``mem_total``, ``cpu_user+cpu_system+cpu_nice``,
  ``bytes_in+bytes_out``). A guest with no CPU or memory figure is a ``no-data`` problem and
  is left out; a guest listed by two hosts is a ``duplicate-guest`` problem and is kept on
  the host that reported most recently (the first by name when they are as fresh). Every host
  of a stale cluster gets its own ``stale-cluster`` problem.
- Names must pass :func:`vmtools.model.is_safe_name`; any other name is an ``unsafe-name``
  problem and never reaches the snapshot.
Hosts and guests are sorted by name (gmond's order is hash order).
"""

from __future__ import annotations

import math
import re
import time

from vmtools.ganglia.xml import FALLBACK_METRICS, Cluster, GangliaDump, RawHost
from vmtools.drivers import registry
from vmtools.xen import DOM0_NAMES, is_in_flight_name, is_migrating
from vmtools.ganglia.names import (CPU_NUM, DRIVER_MIGRATION, GUEST_PREFIX, HOST_METRICS,
                                    MEM_TOTAL, NET_MBPS, PROBLEM, TYPE, VMS, VMS_PART)
from vmtools.model import (VM, Host, Problem, Snapshot,
                           epoch_to_iso, is_reserved_name, is_safe_name)
from vmtools.sources.check import CPU_SLACK, PROBLEM_KINDS, show as _show, sort_problems

DEFAULT_STALE_AFTER = 120.0
_HYPERVISOR_TYPE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,63}")

UINT16_MAX = 2**16 - 1
UINT32_MAX = 2**32 - 1
FLOAT_MAX = 1e12
# Each metric vm-snapshot reads: (declared type, lowest, highest plausible value). The types are
# the ones vm-gmetric declares (SPEC.md "Ganglia metrics") or gmond's own; the float ranges are
# what no real host reaches (10 Tbit/s, 65,535 CPUs busy). Guest fields by their last component.
METRIC_TYPES: dict[str, tuple[str, float, float]] = {
    # KB for guests; under 1 MiB is a broken or spoofed packet (a host of 0 MiB divides every
    # utilisation by zero)
    "container.mem_total": ("uint32", 1024, UINT32_MAX),
    "container.cpu_num": ("uint16", 1, UINT16_MAX),           # a host with no CPU divides by 0
    "container.net_mbps": ("float", 1e-3, 1e7),               # Mbit/s, 0 would divide by 0
    "cpu": ("float", 0, 100.0 * UINT16_MAX),                  # % of one CPU
    "mem": ("uint32", 1, UINT32_MAX),                         # KB; a running guest has some
    "vcpus": ("uint16", 1, UINT16_MAX),
    "net": ("float", 0, 1.25e12),                             # bytes/s
    "cpu_num": ("uint16", 1, UINT16_MAX),                     # a guest's own gmond
    "mem_total": ("float", 1, 2.0**40),                       # KB
    "cpu_user": ("float", 0, 100), "cpu_system": ("float", 0, 100),
    "cpu_nice": ("float", 0, 100),
    "bytes_in": ("float", 0, 1.25e12), "bytes_out": ("float", 0, 1.25e12),
}
# A REPORTED time this far past the answer's own time is a lie, not clock skew.
FUTURE_SLACK = 86400


def _range(low: float, high: float) -> str:
    return f"{low:g} to {high:.0f}" if high >= 1e6 and high == int(high) else f"{low:g} to {high:g}"


def _count(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


class SnapshotBuilder:
    """Consumes parsed hosts one at a time (so a large dump never sits in memory whole) and
    builds the snapshot at :meth:`finish`. ``add_host`` fits ``parse_ganglia(on_host=...)``."""

    def __init__(self, stale_after: float = DEFAULT_STALE_AFTER, now: float | None = None):
        self.stale_after = stale_after
        self.now = now if now is not None else time.time()
        self.problems: list[Problem] = []
        self.hosts: dict[str, Host] = {}
        # per hypervisor: its guests in listed order with (cpu %, mem KB, vcpus, net B/s)
        self.listed: dict[str, list[tuple[str, tuple]]] = {}
        self.age: dict[str, float] = {}      # host -> seconds since its last report (TN)
        self.container: dict[str, bool] = {}     # every host name seen: has container.*?
        self.plain: dict[str, RawHost] = {}      # ordinary hosts: guests' own gmond entries
        self.stale_clusters: dict[str, str] = {}  # cluster -> why its data is old
        self.in_flight: set[str] = set()         # names of guests in flight, as listed

    def problem(self, kind: str, message: str, host: str | None = None,
                vm: str | None = None) -> None:
        self.problems.append(Problem(kind=kind, message=message, host=host, vm=vm))

    def number(self, raw: RawHost, metric: str, host: str | None, vm: str | None = None,
               integer: bool = False) -> float | None:
        """The value of ``metric`` checked against its declared type and plausible range
        (:data:`METRIC_TYPES`), or None (absent, or refused with a problem naming it)."""
        text = raw.metrics.get(metric)
        if text is None:
            return None
        field = metric.rsplit(".", 1)[-1] if metric.startswith(GUEST_PREFIX) else metric
        kind, low, high = METRIC_TYPES.get(field, ("float", 0.0, FLOAT_MAX))
        who = f"host {raw.name}" if vm is None else \
            f"guest {vm} on host {host}" if raw.name == host else f"guest {vm}'s own gmond"
        try:
            value = float(text.strip()) if len(text) <= 64 else math.nan
        except ValueError:
            value = math.nan
        if not math.isfinite(value):
            self.problem("not-a-number", f"{metric} of {who} is {_show(text, 40)}, not a "
                         f"finite number; it is not used", host=host, vm=vm)
            return None
        if not low <= value <= high or (kind != "float" and value != math.floor(value)):
            self.problem("bad-value", f"{metric} of {who} is {_show(text, 40)}, outside its "
                         f"type {kind} ({_range(low, high)}); it is not used",
                         host=host, vm=vm)
            return None
        return float(math.floor(value)) if integer else value

    def times(self, raw: RawHost) -> bool:
        """REPORTED, TN and TMAX must be Ganglia's uint32 seconds, REPORTED not in the future;
        False (with a problem) when one is not, and the host's freshness is then unknown."""
        good = True
        for attr, value in (("REPORTED", raw.reported), ("TN", raw.tn), ("TMAX", raw.tmax)):
            text = raw.times.get(attr)
            if text is not None and value is None:
                self.problem("bad-value", f"{attr} of host {raw.name} is {_show(text, 40)}, "
                             f"not a uint32 count of seconds; the host is taken as offline",
                             host=raw.name)
                good = False
        if raw.reported is not None and self.now is not None \
                and raw.reported > self.now + FUTURE_SLACK:
            self.problem("bad-value", f"REPORTED of host {raw.name} is {raw.reported}, "
                         f"{raw.reported - int(self.now)} s in the future; the host is taken "
                         "as offline", host=raw.name)
            good = False
        return good

    # ----------------------------------------------------------------- dumps and hosts

    def add_dump(self, dump: GangliaDump) -> None:
        """What a parsed answer says beyond its hosts (dropped parts, stale clusters), and
        any hosts it still holds (those not streamed through :meth:`add_host`)."""
        for dropped in dump.dropped:
            who = _show(dropped.name) if dropped.name else "(name unreadable)"
            if dropped.kind == "host":
                self.problem("dropped-host", f"host {who} at {dropped.where} was dropped: "
                             f"{dropped.reason}",
                             host=dropped.name if dropped.name and is_safe_name(dropped.name)
                             else None)
            elif dropped.kind == "cluster":
                self.problem("dropped-cluster", f"cluster {who} at {dropped.where} was dropped "
                             f"with all its hosts: {dropped.reason}")
            else:
                self.problem("truncated", f"{dropped.where}: {dropped.reason}; hosts after "
                             "this point are missing")
        for cluster in dump.clusters:
            if cluster.grid_localtime is not None and cluster.localtime is not None:
                lag = cluster.grid_localtime - cluster.localtime
                if lag > self.stale_after:
                    # One problem per host (in finish): each frozen host names its reason.
                    self.stale_clusters[cluster.name] = (
                        f"cluster {_show(cluster.name)} was last heard {lag} s before "
                        f"{dump.source} answered (more than {self.stale_after:g} s): its "
                        "gmond stopped answering and the data may be old")
            for raw in cluster.hosts:
                self.add_host(cluster, raw, dump.source)

    def add_host(self, cluster: Cluster, raw: RawHost, source: str = "") -> None:
        if not is_safe_name(raw.name):
            self.problem("unsafe-name", f"a host in cluster {_show(cluster.name)} at line "
                         f"{raw.line} of {source} is named {_show(raw.name)}: names may hold "
                         "only letters, digits, '.', '_' and '-'; it is left out")
            return
        if is_reserved_name(raw.name):
            self.problem("reserved-name", f"a host in cluster {_show(cluster.name)} at line "
                         f"{raw.line} of {source} is named {raw.name}, a name Xen gives "
                         "Domain-0 or a guest in flight, never a host; it is left out")
            return
        present = [m for m in HOST_METRICS if m in raw.metrics]
        if raw.name in self.container:
            if present or self.container[raw.name]:
                self.problem("duplicate-host", f"host {raw.name} appears twice (again in "
                             f"{source}{', IP ' + raw.ip if raw.ip else ''}); the first one is "
                             "kept", host=raw.name)
            return
        self.container[raw.name] = bool(present)
        if not present:
            if any(m in raw.metrics for m in FALLBACK_METRICS):
                self.plain[raw.name] = raw   # maybe a guest's own gmond entry
            return
        missing = [m for m in HOST_METRICS if m not in raw.metrics]
        if missing == [VMS]:
            # vm-gmetric leaves its guest list out when it could not read it whole: the host
            # is there, its guests are unknown (it is frozen, and counts as full).
            self.problem("partial-container", f"host {raw.name} publishes no {VMS}: its "
                         "guests are unknown", host=raw.name)
        elif missing:
            self.problem("partial-container", f"host {raw.name} publishes {', '.join(present)} "
                         f"but not {', '.join(missing)}: it is not counted as a hypervisor",
                         host=raw.name)
            return
        made = self.host_of(cluster, raw)
        if made is None:
            # Already a problem naming the metric; a capacity that cannot be trusted takes
            # the host (and so its guests) out of the snapshot.
            return
        self.hosts[raw.name], why = made
        state = made[0].state
        names = self.guest_names(raw) if VMS in raw.metrics else []
        if state == "offline" and names:
            self.problem("offline-host", f"host {raw.name} {why} but still lists "
                         f"{_count(len(names), 'guest')}; they are kept with state unknown",
                         host=raw.name)
        elif state == "online":
            self.lateness(raw, names)
        said = raw.metrics.get(PROBLEM, "").strip()
        if said:
            self.problem("incomplete-host", f"host {raw.name}: vm-gmetric could not "
                         f"read its whole guest list ({_show(said, 120)}) and left {VMS} out "
                         "this cycle", host=raw.name)
        self.listed[raw.name] = self.guests_listed(raw, names)
        self.age[raw.name] = raw.tn if raw.tn is not None else 0

    def host_of(self, cluster: Cluster, raw: RawHost) -> tuple[Host, str] | None:
        """The host a container's metrics describe, and why it is offline ('' when it is
        not); None when its CPUs or memory cannot be read (a problem names the metric)."""
        cpu = self.number(raw, CPU_NUM, raw.name, integer=True)
        mem_kb = self.number(raw, MEM_TOTAL, raw.name)
        if cpu is None or mem_kb is None:
            return None
        net = self.number(raw, NET_MBPS, raw.name)
        hypervisor = raw.metrics[TYPE].strip()
        if not _HYPERVISOR_TYPE.fullmatch(hypervisor):
            self.problem("bad-value", f"container.type of host {raw.name} is "
                         f"{_show(hypervisor, 40)}, not a hypervisor name like xen-4.17",
                         host=raw.name)
            hypervisor = ""
        migration = raw.metrics[DRIVER_MIGRATION].strip()
        if not registry.is_transport(migration):
            self.problem("bad-value", f"container.driver.migration of host {raw.name} is "
                         f"{_show(migration, 40)}, not one of {', '.join(registry.names())}",
                         host=raw.name)
            migration = ""
        state, why = "online", ""
        if not self.times(raw):
            state, why = "offline", ("has report times that are not uint32 seconds (the "
                                     "bad-value problem above)")
        elif raw.tn is not None and raw.tmax and raw.tmax > 0 and raw.tn > 4 * raw.tmax:
            state, why = "offline", (f"has not reported for {raw.tn} s (more than 4 x TMAX = "
                                     f"{4 * raw.tmax} s)")
        return Host(
            name=raw.name, cluster=cluster.name, domain=cluster.name, state=state, cpu=cpu,
            mem_mib=int(mem_kb // 1024), net_mbps=net, hypervisor=hypervisor,
            migration=migration, reported=epoch_to_iso(raw.reported) if raw.reported else None
        ), why

    def guests_listed(self, raw: RawHost, names: list[str]) -> list[tuple[str, tuple]]:
        """The guests a host lists that may be kept, each with its figures as read (None
        where a figure is bad: a problem says so); the others are problems."""
        listed = []
        for name in dict.fromkeys(names):
            if not is_safe_name(name):
                self.problem("unsafe-name", f"host {raw.name} lists a guest named "
                             f"{_show(name)}: names may hold only letters, digits, '.', "
                             "'_' and '-'; it is left out", host=raw.name)
                continue
            if is_reserved_name(name):
                if is_in_flight_name(name):
                    self.in_flight.add(name)
                self.problem("reserved-name", f"host {raw.name} lists a guest named {name}, "
                             "the name Xen gives a guest in flight; it is left out",
                             host=raw.name)
                continue
            prefix = f"{GUEST_PREFIX}{name}."
            listed.append((name, (
                self.number(raw, prefix + "cpu", raw.name, name),
                self.number(raw, prefix + "mem", raw.name, name),
                self.number(raw, prefix + "vcpus", raw.name, name, integer=True),
                self.number(raw, prefix + "net", raw.name, name))))
        return listed

    def lateness(self, raw: RawHost, names: list[str]) -> None:
        """A ``stale-host`` problem when a host metric is late, else a ``stale-guest`` problem
        for each listed guest with a late metric."""
        if not raw.late:
            return
        host_late = sorted(m for m in raw.late if not m.startswith(GUEST_PREFIX))
        if host_late:
            tn, tmax, dmax = max(raw.late[m] for m in host_late)
            self.problem("stale-host", f"host {raw.name}: {', '.join(host_late[:3])}"
                         f"{' and more' if len(host_late) > 3 else ''} not updated for {tn} s "
                         f"(TMAX {tmax}{f', DMAX {dmax}' if dmax else ''}); its figures and "
                         "guest list are old", host=raw.name)
            return
        for name in dict.fromkeys(names):
            prefix = f"{GUEST_PREFIX}{name}."
            late = [raw.late[prefix + f] for f in ("cpu", "mem", "vcpus", "net")
                    if prefix + f in raw.late]
            if late:
                tn, tmax, dmax = max(late)
                self.problem("stale-guest", f"the metrics of guest {name} on host {raw.name} "
                             f"were not updated for {tn} s (TMAX {tmax}"
                             f"{f', DMAX {dmax}' if dmax else ''}); its figures are old",
                             host=raw.name, vm=name)

    @staticmethod
    def guest_names(raw: RawHost) -> list[str]:
        parts = [(0, raw.metrics[VMS])]
        for metric, value in raw.metrics.items():
            m = VMS_PART.fullmatch(metric)
            if m:
                parts.append((int(m.group(1)), value))
        text = " ".join(value for _, value in sorted(parts))
        return [name for name in text.split() if name not in DOM0_NAMES]

    # ----------------------------------------------------------------- guests

    def guests(self) -> list[VM]:
        placed: dict[str, VM] = {}
        # A guest listed twice is kept where it was reported last: a host that stopped
        # reporting (switched off, or dead) keeps its last guest list in gmond for a while.
        for host_name in sorted(self.hosts, key=lambda h: (self.age.get(h, 0), h)):
            host = self.hosts[host_name]
            for name, figures in self.listed[host_name]:
                if name in placed:
                    flight = " (mid-migration: a host lists it in flight)" \
                        if is_migrating(name, self.in_flight) else ""
                    self.problem("duplicate-guest", f"guest {name} is listed by both "
                                 f"{placed[name].host} and {host_name}{flight}; it is "
                                 f"kept on {placed[name].host}", host=host_name, vm=name)
                    continue
                vm = self.guest(name, host, figures)
                if vm is not None:
                    placed[name] = vm
        return list(placed.values())

    def guest(self, name: str, host: Host, figures: tuple) -> VM | None:
        cpu_pct, mem_kb, vcpus, net_bps = figures
        cpu = cpu_pct / 100.0 if cpu_pct is not None else None
        own = self.plain.get(name)
        if own is not None and None in (cpu, mem_kb, vcpus, net_bps):
            own_cpus = self.number(own, "cpu_num", None, name, integer=True)
            if vcpus is None:
                vcpus = own_cpus
            if mem_kb is None:
                mem_kb = self.number(own, "mem_total", None, name)
            if cpu is None:
                shares = [self.number(own, m, None, name)
                          for m in ("cpu_user", "cpu_system", "cpu_nice")]
                if own_cpus and all(s is not None for s in shares[:2]):
                    # Percentages of the guest's whole capacity, so scale by its CPUs.
                    cpu = sum(s or 0.0 for s in shares) / 100.0 * own_cpus
            if net_bps is None:
                rx = self.number(own, "bytes_in", None, name)
                tx = self.number(own, "bytes_out", None, name)
                if rx is not None and tx is not None:
                    net_bps = rx + tx
        if cpu is not None and cpu > host.cpu * CPU_SLACK:
            self.problem("bad-value", f"the CPU use of guest {name} on host {host.name} is "
                         f"{cpu:g} CPUs, more than its host's {host.cpu:g} can give; it is not "
                         "used", host=host.name, vm=name)
            cpu = None
        if cpu is None or mem_kb is None:
            missing = " and ".join(w for w, v in (("CPU", cpu), ("memory", mem_kb)) if v is None)
            self.problem("no-data", f"host {host.name} lists guest {name} but neither "
                         f"{GUEST_PREFIX}{name}.* nor the guest's own gmond gives its "
                         f"{missing}; it is left out", host=host.name, vm=name)
            return None
        return VM(name=name, host=host.name,
                  state="unknown" if host.state == "offline" else "running",
                  vcpus=max(1, int(vcpus)) if vcpus else 1, cpu=round(cpu, 4),
                  mem_mib=int(math.ceil(mem_kb / 1024.0)),
                  net_mbps=round(net_bps * 8 / 1e6, 4) if net_bps is not None else None)

    def finish(self, source: str) -> Snapshot:
        for name in sorted(self.hosts):
            why = self.stale_clusters.get(self.hosts[name].cluster)
            if why is not None:
                self.problem("stale-cluster", f"host {name}: {why}", host=name)
        for cluster, why in sorted(self.stale_clusters.items()):
            if not any(h.cluster == cluster for h in self.hosts.values()):
                self.problem("stale-cluster", why)
        vms = self.guests()
        vms.sort(key=lambda v: v.name)
        hosts = sorted(self.hosts.values(), key=lambda h: h.name)
        # Sorted by kind, then host, then guest: gmond's order is hash order.
        return Snapshot(hosts=hosts, vms=vms, problems=sort_problems(self.problems),
                        source=source)


def interpret(dumps: list[GangliaDump], *, stale_after: float = DEFAULT_STALE_AFTER,
              source: str | None = None) -> Snapshot:
    """Build the snapshot of one or more parsed Ganglia answers (their union)."""
    builder = SnapshotBuilder(stale_after)
    for dump in dumps:
        builder.add_dump(dump)
    return builder.finish(source if source is not None else ", ".join(d.source for d in dumps))


__all__ = ["interpret", "SnapshotBuilder", "DEFAULT_STALE_AFTER", "PROBLEM_KINDS", "HOST_METRICS"]
