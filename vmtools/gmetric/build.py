"""The metrics a Domain-0 publishes (vmtools-formats(5), "Ganglia metrics"), built from what
its toolstack says. Pure: no sockets, no subprocesses.

:func:`build_metrics` takes ``xl/xm info`` and two samples of ``xl/xm list`` + vif
counters, and returns the metric set:

- host (Entropy 1.0): ``container.mem_total`` (uint32 KB = total - Domain-0's memory),
  ``container.cpu_num`` (uint16), ``container.vms`` (string, Domain-0 excluded; split into
  ``container.vms.1``, ``.2``... past :data:`VMS_PART_CHARS` characters),
  ``container.driver.migration`` (string), ``container.type`` (``xen-<major>.<minor>``);
- per guest: ``container.vm.<name>.cpu`` (float %, of one CPU, from CPU-time deltas),
  ``.mem`` (uint32 KB), ``.vcpus`` (uint16), ``.net`` (float bytes/s, vif rx+tx deltas).

Every name and value is printable ASCII without ``< > & " '`` (gmetad re-emits values
unescaped: one bad name breaks the whole grid's XML); a guest whose name is not a safe name
is skipped and reported. The names come from :mod:`vmtools.ganglia.names`.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

from vmtools.dom0.parse import Domain, info_int
from vmtools.errors import DataError
from vmtools.ganglia.names import (CPU_NUM, DRIVER_MIGRATION, MEM_TOTAL, TYPE, VMS, guest_metric,
                                    vms_part)
from vmtools.model import is_safe_name
from vmtools.xen import DOM0, is_in_flight_name

UINT16_MAX = 2**16 - 1
UINT32_MAX = 2**32 - 1
# A guest cannot use more CPU than its host has; sampling jitter stays well below this slack.
CPU_SLACK = 1.5

log = logging.getLogger("vmtools.gmetric")

VMS_PART_CHARS = 850          # gmond cuts XML lines at 1 KB (reference §0.3: 925 still fit)
_UNSAFE_CHARS = set("<>&\"'")


@dataclass
class Metric:
    name: str
    value: str
    type: str
    units: str = ""
    slope: str = "both"
    tmax: int = 60
    dmax: int = 0

    def to_dict(self) -> dict:
        return {"name": self.name, "value": self.value, "type": self.type,
                "units": self.units, "slope": self.slope, "tmax": self.tmax, "dmax": self.dmax}


@dataclass
class Sample:
    """One reading of the Domain-0: ``when`` is ``time.monotonic()`` in the middle of the
    ``list`` call (the moment the toolstack read the CPU times is somewhere within it)."""
    when: float
    domains: list[Domain]
    vif: dict[int, int] = field(default_factory=dict)


@dataclass
class Built:
    metrics: list[Metric]
    skipped: list[dict]
    problems: list[str]


def safe_text(text: str) -> bool:
    """Printable ASCII without the characters gmetad would re-emit unescaped."""
    return all(32 <= ord(ch) < 127 for ch in text) and not (_UNSAFE_CHARS & set(text))


def split_guest_list(names: list[str], limit: int = VMS_PART_CHARS) -> list[str]:
    """Space-separated parts of at most ``limit`` characters, never splitting a name."""
    parts, current = [], ""
    for name in names:
        candidate = f"{current} {name}" if current else name
        if current and len(candidate) > limit:
            parts.append(current)
            current = name
        else:
            current = candidate
    parts.append(current)
    return parts


def build_metrics(info: dict[str, str] | None, current: Sample, previous: Sample | None,
                  migration: str, tmax: int = 60, guest_dmax: int = 180,
                  dom0_kib: int | None = None, part_chars: int = VMS_PART_CHARS,
                  min_parts: int = 1) -> Built:
    """The metric set for one cycle. ``info`` may be None (not known yet): the host metrics
    that need it are then left out and a problem says so. ``min_parts`` keeps publishing
    (empty) ``container.vms.N`` parts a previous cycle used, so no stale part survives.
    In this order: the host's capacity, its guest list, its type, each guest's figures."""
    metrics: list[Metric] = []
    skipped: list[dict] = []
    problems: list[str] = []

    def host(name: str, value: object, type: str, units: str = "", slope: str = "zero") -> None:
        metrics.append(Metric(name, str(value), type, units, slope, tmax, 0))

    def guest(name: str, value: object, type: str, units: str) -> None:
        metrics.append(Metric(name, str(value), type, units, "both", tmax, guest_dmax))

    dom0 = next((d for d in current.domains if d.name == DOM0 or d.domid == 0), None)
    guests = _publishable(current.domains, dom0, skipped)
    if info is not None:
        _capacity(info, dom0, dom0_kib, host, problems)
    else:
        problems.append("toolstack info unknown: container.mem_total, container.cpu_num and "
                        "container.type not published")

    parts = split_guest_list([g.name for g in guests], part_chars)
    while len(parts) < min_parts:
        parts.append("")
    for i, part in enumerate(parts):
        if i == 0:
            host(VMS, part, "string")
        else:
            metrics.append(Metric(vms_part(i), part, "string", "", "zero", tmax,
                                  guest_dmax))
    host(DRIVER_MIGRATION, migration, "string")
    if info is not None:
        try:
            host(TYPE, f"xen-{info_int(info, 'xen_major', 0, 999)}."
                       f"{info_int(info, 'xen_minor', 0, 999)}", "string")
        except DataError as exc:
            problems.append(f"{TYPE} not published: {exc}")

    _guest_figures(guests, info, current, previous, guest, problems)
    for m in metrics:
        if not safe_text(m.value):  # names are safe by construction; values come from xl
            problems.append(f"{m.name}: unsafe value left out")
    metrics = [m for m in metrics if safe_text(m.value)]
    return Built(metrics, skipped, problems)


def _publishable(domains: list[Domain], dom0: Domain | None, skipped: list[dict]
                 ) -> list[Domain]:
    """The guests whose metrics may be published; the others are noted in ``skipped`` (a
    guest in flight only logged: it is published again once it has landed)."""
    guests: list[Domain] = []
    seen: set[str] = set()
    for dom in domains:
        if dom is dom0 or dom.domid == 0:
            continue
        if is_in_flight_name(dom.name):
            log.info("guest %r is migrating: left out of this cycle", dom.name)
            continue
        if not is_safe_name(dom.name) or not safe_text(dom.name):
            skipped.append({"name": dom.name, "domid": dom.domid,
                            "reason": "unsafe name: publish only [A-Za-z0-9._-], starting "
                                      "with a letter or digit"})
            continue
        if dom.name in seen:
            skipped.append({"name": dom.name, "domid": dom.domid,
                            "reason": "listed twice by the toolstack"})
            continue
        if not 0 < dom.mem_mib * 1024 <= UINT32_MAX or not 0 < dom.vcpus <= UINT16_MAX:
            skipped.append({"name": dom.name, "domid": dom.domid,
                            "reason": f"implausible figures ({dom.mem_mib} MiB, {dom.vcpus} "
                                      "vCPUs): not publishable as uint32 KB and uint16"})
            continue
        seen.add(dom.name)
        guests.append(dom)
    return guests


def _capacity(info: dict[str, str], dom0: Domain | None, dom0_kib: int | None, host,
              problems: list[str]) -> None:
    """``container.mem_total`` (the memory guests may have: the host's less Domain-0's) and
    ``container.cpu_num``, each left out with a problem when it cannot be read."""
    try:
        total_mib = info_int(info, "total_memory", 1, 2**40)
        if dom0 is not None:
            dom0_mib = dom0.mem_mib
        elif dom0_kib is not None:
            dom0_mib = dom0_kib // 1024
        else:
            raise DataError("Domain-0 is not in the list and its memory is unknown",
                            "Domain-0")
        guest_kb = max(0, total_mib - dom0_mib) * 1024
        if guest_kb > UINT32_MAX:
            # The metric is a uint32 in KB (4 TiB): under-reporting is safe, lying is not.
            problems.append(f"{MEM_TOTAL}: {guest_kb} KB does not fit the metric's uint32; "
                            f"{UINT32_MAX} is published")
            guest_kb = UINT32_MAX
        host(MEM_TOTAL, guest_kb, "uint32", "KB")
    except DataError as exc:
        problems.append(f"{MEM_TOTAL} not published: {exc}")
    try:
        host(CPU_NUM, info_int(info, "nr_cpus", 1, UINT16_MAX), "uint16", "CPUs")
    except DataError as exc:
        problems.append(f"{CPU_NUM} not published: {exc}")


def _guest_figures(guests: list[Domain], info: dict[str, str] | None, current: Sample,
                   previous: Sample | None, guest, problems: list[str]) -> None:
    """Each guest's CPU (from the CPU time it used since the previous sample: none on the
    first), memory, vCPUs and network (bytes since the previous sample)."""
    try:
        host_cpus = info_int(info, "nr_cpus", 1, UINT16_MAX) if info is not None else UINT16_MAX
    except DataError:
        host_cpus = UINT16_MAX
    before = {(d.name, d.domid): d for d in previous.domains} if previous else {}
    elapsed = current.when - previous.when if previous else 0.0
    for dom in guests:
        old = before.get((dom.name, dom.domid))
        if old is not None and elapsed > 0 and dom.cpu_time >= old.cpu_time:
            cpu = (dom.cpu_time - old.cpu_time) / elapsed * 100.0
            if math.isfinite(cpu) and cpu <= 100.0 * max(dom.vcpus, host_cpus) * CPU_SLACK:
                guest(guest_metric(dom.name, "cpu"), f"{cpu:.1f}", "float", "%")
            else:
                problems.append(f"{guest_metric(dom.name, 'cpu')}: {cpu:g} % is more than "
                                "the host's CPUs can give (a CPU time jumped); not published")
        else:
            log.info("%s: no earlier CPU time to compare with yet", dom.name)
        guest(guest_metric(dom.name, "mem"), dom.mem_mib * 1024, "uint32", "KB")
        guest(guest_metric(dom.name, "vcpus"), dom.vcpus, "uint16", "CPUs")
        now_b, then_b = current.vif.get(dom.domid), previous.vif.get(dom.domid) if previous \
            else None
        if old is not None and elapsed > 0 and now_b is not None and then_b is not None \
                and now_b >= then_b:
            guest(guest_metric(dom.name, "net"), f"{(now_b - then_b) / elapsed:.1f}", "float",
                  "bytes/s")
