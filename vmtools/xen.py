"""Facts about Xen that every part of vmtools shares: Domain-0's names, the names a guest
carries while it migrates, and xend's relocation port.

Imports nothing (the lab's stand-ins import it on every simulated ``xl`` call).
"""

from __future__ import annotations

# Domain-0 is named so by every toolstack; while a save/restore or a (refused) migration of
# Domain-0 is attempted, xl shows a transient ``Domain-0--incoming``.
DOM0 = "Domain-0"
DOM0_NAMES = frozenset({DOM0, DOM0 + "--incoming"})

# Names the toolstacks give a guest while it is in flight: xl shows ``<vm>--incoming`` on the
# target and ``<vm>--migratedaway`` on the sender; xend shows ``migrating-<vm>`` on the sender.
INCOMING_SUFFIX = "--incoming"
IN_FLIGHT_SUFFIXES = (INCOMING_SUFFIX, "--migratedaway")
IN_FLIGHT_PREFIXES = ("migrating-",)

# The migration transports and their ports are a table of their own:
# vmtools.drivers.registry.
# xend's relocation server, the port a migration's memory stream goes to.
RELOCATION_PORT = 8002


def is_dom0(name: str) -> bool:
    return name in DOM0_NAMES


def is_in_flight_name(name: str) -> bool:
    """True for a domain name that only exists while a guest migrates."""
    return name.endswith(IN_FLIGHT_SUFFIXES) or name.startswith(IN_FLIGHT_PREFIXES)


def is_migrating(vm: str, names: set[str] | frozenset[str]) -> bool:
    """True when ``names`` (what a host runs) shows guest ``vm`` in flight."""
    return any(vm + s in names for s in IN_FLIGHT_SUFFIXES) or \
        any(p + vm in names for p in IN_FLIGHT_PREFIXES)

# Where Debian's xendomains saves guests (XENDOMAINS_SAVE): vm-apply's and vm-plan's default
# image directory, which must be the same shared directory on every host that may resume.
DEFAULT_IMAGE_DIR = "/var/lib/xen/save"
