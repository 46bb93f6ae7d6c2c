"""The migration transports vmtools knows, by name: the one table every reader checks a
transport name against (vm-apply's ``--driver``, a snapshot's ``migration``, vm-gmetric's
``--migration``) and :func:`vmtools.drivers.make_driver` builds drivers from.

A transport is one row: its name (as published in ``container.driver.migration`` and named in
the host map), the port it reaches a Domain-0 on, the module in :mod:`vmtools.drivers` that
implements it (imported only when a driver is made, so reading the table never loads
paramiko), whether that port is SSH (the orderly shutdown of an emptied host then uses it),
and one line for ``--help``. A new transport is its module plus one row here
(ARCHITECTURE.md, "A driver").
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from vmtools.errors import UsageError


@dataclass(frozen=True)
class Transport:
    name: str
    default_port: int
    module: str           # vmtools.drivers.<module>; it defines ``DRIVER``, a Driver class
    ssh: bool = False     # the port is sshd's (xm/xl over SSH)
    summary: str = ""
    # The platform keeps a suspended guest's image itself (XAPI: the suspend VDI in a storage
    # repository, a checkpoint a snapshot VM; libvirt: the managed save and domain snapshots
    # in libvirtd's directories): plan images are names, not files; vm-apply
    # asks the driver (has_image), never an image directory through another host, and
    # removes nothing after a resume.
    keeps_images: bool = False
    # ... and keeps it on the host that made it (libvirt's managed save is a file of that
    # host's libvirtd): the guest resumes there or nowhere. XAPI's suspend VDI sits in a
    # storage repository the pool shares: any host of the pool resumes it.
    images_local: bool = False


_TRANSPORTS: dict[str, Transport] = {}


def register(transport: Transport) -> Transport:
    """Add a transport to the table (a name given twice is a programming error)."""
    if transport.name in _TRANSPORTS:
        raise ValueError(f"transport {transport.name!r} is registered twice")
    _TRANSPORTS[transport.name] = transport
    return transport


for _row in (
        Transport("xen", 8000, "xend_http", summary="xend's HTTP/SXP server (Xen 3.x, 4.0-4.4)"),
        Transport("xend-xmlrpc", 8006, "xend_xmlrpc", summary="xend's XML-RPC server"),
        Transport("xm-ssh", 22, "ssh", ssh=True, summary="xm over SSH (Xen 3.x, 4.0-4.4)"),
        Transport("xl-ssh", 22, "ssh", ssh=True, summary="xl over SSH (Xen 4.1 and later)"),
        Transport("libvirt-ssh", 22, "libvirt", ssh=True, keeps_images=True, images_local=True,
                  summary="virsh over SSH (plain Xen with libvirt's libxl driver, or KVM)"),
        Transport("xapi", 443, "xapi", keeps_images=True,
                  summary="a XCP-ng / XenServer pool through its master's XAPI (HTTPS)")):
    register(_row)

# Every host of a XAPI pool is reached through the pool's master (vm-apply --xapi), and XAPI
# itself switches hosts off and on (the host map's power method "xapi").
XAPI_TRANSPORT = "xapi"


def names() -> tuple[str, ...]:
    """Every transport name, in the table's order."""
    return tuple(_TRANSPORTS)


def is_transport(name: object) -> bool:
    return isinstance(name, str) and name in _TRANSPORTS


def transport(name: str) -> Transport:
    """The row of ``name``; UsageError naming the known ones when there is none."""
    try:
        return _TRANSPORTS[name]
    except KeyError:
        raise UsageError(f"unknown migration transport {name!r} (expected one of "
                         f"{', '.join(_TRANSPORTS)})") from None


def keeps_images(name: str) -> bool:
    """Whether transport ``name`` keeps suspended guests' images itself (False for a name
    not in the table)."""
    row = _TRANSPORTS.get(name)
    return bool(row and row.keeps_images)


def images_local(name: str) -> bool:
    """Whether a guest suspended through transport ``name`` resumes only on the host that
    suspended it (False for a name not in the table)."""
    row = _TRANSPORTS.get(name)
    return bool(row and row.images_local)


def default_port(name: str) -> int:
    return transport(name).default_port


def driver_class(name: str):
    """The Driver class of transport ``name`` (its module is imported now)."""
    row = transport(name)
    return importlib.import_module(f"vmtools.drivers.{row.module}").DRIVER


__all__ = ["XAPI_TRANSPORT", "Transport", "register", "names", "is_transport", "transport", "default_port",
           "driver_class", "keeps_images", "images_local"]
