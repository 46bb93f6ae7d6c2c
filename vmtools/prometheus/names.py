"""The Prometheus metric names of the contract (vmtools-formats(5), PROMETHEUS METRICS).

vm-gmetric's exporter serves them on each Domain-0 and vm-snapshot's built-in ``vmtools``
profile reads them back; both take the names from here, so the two sides cannot drift apart.
Every series carries the label ``host`` (the Domain-0's name, as vm-gmetric publishes it to
Ganglia); guest series also carry ``vm``.

The figures are the ones published to gmond, in base units: bytes, not KB; CPUs, not %.
"""

from __future__ import annotations

HOST_LABEL = "host"
VM_LABEL = "vm"

# host
HOST_MEMORY = "vmtools_host_guest_memory_bytes"      # container.mem_total, in bytes
HOST_CPUS = "vmtools_host_cpus"                      # container.cpu_num
HOST_INFO = "vmtools_host_info"                      # 1, labels hypervisor and migration
HOST_GUESTS = "vmtools_host_guests"                  # number of guests listed (complete lists only)
HOST_COMPLETE = "vmtools_host_toolstack_complete"    # 1: the guest series are every guest
HOST_PROBLEMS = "vmtools_host_toolstack_problems"    # problems in the last cycle
HOST_CYCLE_TIME = "vmtools_host_last_cycle_timestamp_seconds"
# guest
GUEST_CPU = "vmtools_guest_cpu_used_cpus"            # container.vm.N.cpu / 100
GUEST_CPU_SECONDS = "vmtools_guest_cpu_seconds_total"
GUEST_MEMORY = "vmtools_guest_memory_bytes"          # container.vm.N.mem, in bytes
GUEST_VCPUS = "vmtools_guest_vcpus"
GUEST_NET = "vmtools_guest_network_bytes_per_second"  # container.vm.N.net

# A port nobody else in this cluster uses by default; chosen, not registered.
EXPORTER_PORT = 9782
