"""Migration transports: one module per way of reaching a Domain-0, named in one table.

:mod:`vmtools.drivers.registry` lists the transports (``xen``, ``xend-xmlrpc``, ``xm-ssh``,
``xl-ssh``) with their ports; ``make_driver(endpoint, ...)`` builds the driver of the
endpoint's transport from that table. :mod:`vmtools.drivers.hostmap` is the host map (where
to reach each host), read by vm-apply and by the power actions.
``close_shared()`` ends what drivers share (XAPI sessions) once a run is over.
"""

from __future__ import annotations

from vmtools.drivers import registry
from vmtools.drivers.base import (Driver, Endpoint, HostKeyError, MigrationRefused,
                                  MigrationUncertain, NotSupported)


def make_driver(endpoint: Endpoint, ssh_options=None, connect_timeout: float = 10.0,
                **settings) -> Driver:
    """The driver of ``endpoint.transport``; UsageError for a transport not in the table."""
    cls = registry.driver_class(endpoint.transport)
    return cls.for_endpoint(endpoint, connect_timeout, ssh_options=ssh_options, **settings)


def close_shared() -> None:
    """Log out of every XAPI session a run opened (nothing when none was)."""
    import sys
    xapi = sys.modules.get("vmtools.drivers.xapi_pool")
    if xapi is not None:
        xapi.close_pools()


__all__ = ["close_shared", "Driver", "Endpoint", "HostKeyError", "MigrationRefused", "MigrationUncertain",
           "NotSupported", "make_driver", "registry"]
