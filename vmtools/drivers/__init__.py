"""Migration transports: one module per way of reaching a Domain-0.

``make_driver(endpoint, ...)`` picks the class for the endpoint's transport
(``xen``, ``xend-xmlrpc``, ``xm-ssh``, ``xl-ssh``, ``libvirt-ssh``, ``xapi``).
``close_shared()`` ends what drivers share (XAPI sessions) once a run is over.
"""

from __future__ import annotations

from vmtools.drivers.base import (Driver, Endpoint, HostKeyError,
                                  MigrationRefused, MigrationUncertain)
from vmtools.errors import UsageError
from vmtools.xen import SSH_TRANSPORTS, TRANSPORTS, XAPI_TRANSPORT


def make_driver(endpoint: Endpoint, ssh_options=None, connect_timeout: float = 10.0,
                xapi=None) -> Driver:
    """The driver of ``endpoint``'s transport. ``xapi`` (a
    :class:`~vmtools.drivers.xapi.XapiSettings`) is the pool master every ``xapi`` host is
    reached through; the hosts of one master share one session."""
    if endpoint.transport == XAPI_TRANSPORT:
        if xapi is None:
            raise UsageError(f"host {endpoint.name} is managed through XAPI: give the pool "
                             "master's URL ({xapi})", settings=("xapi",))
        from vmtools.drivers.xapi import XapiDriver, pool_for
        return XapiDriver(endpoint, pool_for(xapi), connect_timeout)
    if endpoint.transport == "libvirt-ssh":
        from vmtools.drivers.libvirt import LibvirtDriver
        from vmtools.drivers.ssh import SshOptions
        return LibvirtDriver(endpoint, ssh_options or SshOptions(), connect_timeout)
    if endpoint.transport == "xen":
        from vmtools.drivers.xend_http import XendHttpDriver
        return XendHttpDriver(endpoint, connect_timeout)
    if endpoint.transport == "xend-xmlrpc":
        from vmtools.drivers.xend_xmlrpc import XendXmlRpcDriver
        return XendXmlRpcDriver(endpoint, connect_timeout)
    if endpoint.transport in SSH_TRANSPORTS:
        from vmtools.drivers.ssh import SshDriver, SshOptions
        return SshDriver(endpoint, ssh_options or SshOptions(), connect_timeout)
    raise UsageError(f"unknown migration transport {endpoint.transport!r} "
                     f"(expected one of {', '.join(TRANSPORTS)})")


def close_shared() -> None:
    """Log out of every XAPI session a run opened (nothing when none was)."""
    import sys
    xapi = sys.modules.get("vmtools.drivers.xapi")
    if xapi is not None:
        xapi.close_pools()


__all__ = ["close_shared", "Driver", "Endpoint", "HostKeyError", "MigrationRefused",
           "MigrationUncertain", "make_driver"]
