"""The Ganglia metric names of the contract (vmtools-formats(5), GANGLIA METRICS), and
Ganglia's default ports.

vm-gmetric writes them on each Domain-0 and vm-snapshot reads them back from gmetad; both
take the names from here, so the two sides cannot drift apart.

- host: ``container.mem_total`` (KB, Domain-0 excluded), ``container.cpu_num``,
  ``container.vms`` (space-separated guest names, continued in ``container.vms.1``, ``.2``...),
  ``container.driver.migration`` (a transport of :mod:`vmtools.xen`), ``container.type``
  (``xen-<major>.<minor>``); optional ``container.net_mbps`` (a vmtools extension) and
  ``container.problem`` (vmtools: why this cycle's guest list was left out, empty when none);
- per guest: ``container.vm.<name>.cpu`` (%, of one CPU), ``.mem`` (KB), ``.vcpus``, ``.net``
  (bytes/s).
"""

from __future__ import annotations

import re

PREFIX = "container."
MEM_TOTAL = "container.mem_total"
CPU_NUM = "container.cpu_num"
VMS = "container.vms"
DRIVER_MIGRATION = "container.driver.migration"
TYPE = "container.type"
NET_MBPS = "container.net_mbps"
# vm-gmetric's word that it could not read the whole guest list this cycle (so it left
# container.vms out): empty when all is well. vm-snapshot makes it a host problem.
PROBLEM = "container.problem"
# The five a host must carry to be a hypervisor.
HOST_METRICS = (MEM_TOTAL, CPU_NUM, VMS, DRIVER_MIGRATION, TYPE)

GUEST_PREFIX = "container.vm."
GUEST_FIELDS = ("cpu", "mem", "vcpus", "net")

VMS_PART = re.compile(r"container\.vms\.(\d{1,6})")   # bounded: a 5,000-digit part is garbage

# Ganglia's default ports: gmond's (XML over TCP, metrics over UDP), gmetad's XML dump and its
# interactive (path query) port.
GMOND_PORT = 8649
GMETAD_XML_PORT = 8651
GMETAD_INTERACTIVE_PORT = 8652


def vms_part(n: int) -> str:
    """The name of the ``n``-th continuation of ``container.vms`` (n >= 1)."""
    return f"{VMS}.{n}"


def guest_metric(vm: str, field: str) -> str:
    """``container.vm.<vm>.<field>``."""
    return f"{GUEST_PREFIX}{vm}.{field}"
