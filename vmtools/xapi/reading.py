"""XAPI as a source of snapshots (:mod:`vmtools.sources`): the kind ``xapi``.

vm-snapshot's ``--xapi URL`` (with ``--xapi-credentials``, ``--xapi-ca``,
``--xapi-fingerprint``, ``--xapi-insecure``, ``--timeout``, ``--window``) is one
:class:`XapiSource`: it logs into the pool master, reads the pool
(:func:`vmtools.xapi.source.read_pool`) and logs out. The XAPI client (and the ``XenAPI``
package) is imported only when a pool is read.
"""

from __future__ import annotations

from typing import Any, Mapping

from vmtools.errors import OptionError
from vmtools.sources.base import Reading, SourceKind


class XapiSource:
    def __init__(self, url: str, *, credentials: str | None = None, ca_file: str | None = None,
                 fingerprints: list[str] = (), insecure: bool = False, timeout: float = 10.0,
                 window: float = 60.0):
        from vmtools.drivers.xapi_pool import XapiSettings
        if not window > 0:
            raise OptionError("window", f"{window:g}: must be more than 0 seconds")
        self.settings = XapiSettings(url, credentials=credentials, ca_file=ca_file,
                                     fingerprints=tuple(fingerprints), insecure=insecure,
                                     timeout=timeout)
        self.window = window
        self.name = f"xapi {self.settings.base}"

    def read(self, deadline: float | None = None) -> Reading:
        import time
        from vmtools.drivers.xapi_pool import XapiPool
        from vmtools.xapi.source import read_pool
        if deadline is not None:
            self.settings.timeout = max(1.0, min(self.settings.timeout,
                                                 deadline - time.monotonic()))
        pool = XapiPool(self.settings)
        try:
            return read_pool(pool, window=self.window)
        finally:
            pool.close()


def make(settings: Mapping[str, Any]) -> list[XapiSource]:
    """The pool vm-snapshot's XAPI settings name: ``url`` and the keyword arguments of
    :class:`XapiSource`."""
    opts = dict(settings)
    return [XapiSource(opts.pop("url"), **opts)]


KIND = SourceKind("xapi", "a XCP-ng / XenServer pool through its master's XAPI", make)

__all__ = ["KIND", "XapiSource", "make"]
