"""Migration transports: one module per way of reaching a Domain-0.

``make_driver(endpoint, ...)`` picks the class for the endpoint's transport
(``xen``, ``xend-xmlrpc``, ``xm-ssh``, ``xl-ssh``).
"""

from __future__ import annotations

from vmtools.drivers.base import (Driver, Endpoint, HostKeyError,
                                  MigrationRefused, MigrationUncertain)
from vmtools.errors import UsageError
from vmtools.xen import SSH_TRANSPORTS, TRANSPORTS


def make_driver(endpoint: Endpoint, ssh_options=None, connect_timeout: float = 10.0) -> Driver:
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


__all__ = ["Driver", "Endpoint", "HostKeyError", "MigrationRefused",
           "MigrationUncertain", "make_driver"]
