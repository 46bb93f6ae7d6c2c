"""vm-gmetric as a Prometheus exporter: the figures of the last publishing cycle (the very
ones sent to gmond, :mod:`vmtools.gmetric.build`) as metric families of
:mod:`vmtools.prometheus.names`, served by :class:`vmtools.prometheus.exposition.Exporter`.

A cycle whose toolstack read failed, or listed lines the parser refused, serves no guest
series at all and ``vmtools_host_toolstack_complete 0``: a guest list that hides a running
guest is never served (vm-snapshot turns the host into a problem).
"""

from __future__ import annotations

from vmtools.ganglia.names import (CPU_NUM, DRIVER_MIGRATION, GUEST_PREFIX, MEM_TOTAL, TYPE)
from vmtools.prometheus import names as N
from vmtools.prometheus.exposition import Exporter, Family


def host_name(publisher) -> str:
    spoof = publisher.s.spoof
    return spoof.rpartition(":")[2] if spoof else publisher.ident


def families(publisher) -> list[Family]:
    """The families of ``publisher``'s last cycle (before the first one: only the host's
    ``complete 0``)."""
    host = host_name(publisher)
    h = ("host",)
    g = ("host", "vm")
    fams = {
        "mem": Family(N.HOST_MEMORY, "Memory available to guests (total minus Domain-0's), "
                      "bytes (Ganglia container.mem_total)", labels=h),
        "cpus": Family(N.HOST_CPUS, "Physical CPUs (Ganglia container.cpu_num)", labels=h),
        "info": Family(N.HOST_INFO, "The hypervisor and the migration transport (Ganglia "
                       "container.type, container.driver.migration)",
                       labels=("host", "hypervisor", "migration")),
        "guests": Family(N.HOST_GUESTS, "Guests listed by the toolstack, Domain-0 excluded "
                         "(only when the list is complete)", labels=h),
        "complete": Family(N.HOST_COMPLETE, "1 when the guest series are every guest the "
                           "toolstack runs; 0: the guest list is unknown this cycle",
                           labels=h),
        "problems": Family(N.HOST_PROBLEMS, "Problems reading the toolstack in the last "
                           "cycle", labels=h),
        "cycle": Family(N.HOST_CYCLE_TIME, "When the toolstack was last read (Unix time)",
                        labels=h),
        "cpu": Family(N.GUEST_CPU, "CPU use, in physical CPUs, over the last cycle (Ganglia "
                      "container.vm.NAME.cpu / 100)", labels=g),
        "cpu_s": Family(N.GUEST_CPU_SECONDS, "CPU time used since the guest started, seconds",
                        "counter", labels=g),
        "gmem": Family(N.GUEST_MEMORY, "Memory allocated to the guest, bytes (Ganglia "
                       "container.vm.NAME.mem)", labels=g),
        "vcpus": Family(N.GUEST_VCPUS, "Virtual CPUs (Ganglia container.vm.NAME.vcpus)",
                        labels=g),
        "net": Family(N.GUEST_NET, "Network traffic in and out over the last cycle, bytes "
                      "per second (Ganglia container.vm.NAME.net)", labels=g),
    }
    built, current, complete, cycle_at = publisher.view or (None, None, False, 0.0)
    fams["complete"].add(1 if complete else 0, host)
    if built is not None:
        fams["problems"].add(len(built.problems), host)
        fams["cycle"].add(cycle_at, host)
        by_name = {m.name: m.value for m in built.metrics}
        if MEM_TOTAL in by_name:
            fams["mem"].add(int(by_name[MEM_TOTAL]) * 1024, host)
        if CPU_NUM in by_name:
            fams["cpus"].add(int(by_name[CPU_NUM]), host)
        if TYPE in by_name and DRIVER_MIGRATION in by_name:
            fams["info"].add(1, host, by_name[TYPE], by_name[DRIVER_MIGRATION])
    if complete:
        guests = sorted(m.name[len(GUEST_PREFIX):-len(".mem")] for m in built.metrics
                        if m.name.startswith(GUEST_PREFIX) and m.name.endswith(".mem"))
        fams["guests"].add(len(guests), host)
        cpu_time = {d.name: d.cpu_time for d in current.domains}
        for vm in guests:
            def value(field: str) -> str | None:
                return by_name.get(f"{GUEST_PREFIX}{vm}.{field}")
            if value("cpu") is not None:
                fams["cpu"].add(float(value("cpu")) / 100.0, host, vm)
            if vm in cpu_time:
                fams["cpu_s"].add(cpu_time[vm], host, vm)
            fams["gmem"].add(int(value("mem")) * 1024, host, vm)
            fams["vcpus"].add(int(value("vcpus")), host, vm)
            if value("net") is not None:
                fams["net"].add(float(value("net")), host, vm)
    return list(fams.values())


def start_exporter(publisher, address: str, port: int) -> Exporter:
    return Exporter(address, port, lambda: families(publisher))
