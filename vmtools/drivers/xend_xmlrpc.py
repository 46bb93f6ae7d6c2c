"""The ``xend-xmlrpc`` transport: xend's legacy XML-RPC server (``xend-tcp-xmlrpc-server``,
port 8006).

``xend.domains(0)`` lists domain names; ``xend.domain.migrate(vm, dst, True)`` migrates,
synchronously. Only the three positional arguments valid on every Xen version are sent (the
fourth meant *resource* before 3.3 and *port* after). Faults: 3 = no such domain, 1 and 2 =
the migration failed.
"""

from __future__ import annotations

import http.client
import xmlrpc.client

from vmtools.drivers.base import Driver, MigrationRefused, migrate_call_failed, why
from vmtools.xen import DOM0_NAMES
from vmtools.errors import Unavailable


class _TimeoutTransport(xmlrpc.client.Transport):
    def __init__(self, connect_timeout: float, timeout: float):
        super().__init__()
        self.connect_timeout = connect_timeout
        self.timeout = timeout

    def request(self, host, handler, request_body, verbose=False):  # type: ignore[override]
        # The stock Transport sends a request twice when the connection was reset: never
        # resend a migration whose outcome is unknown.
        return self.single_request(host, handler, request_body, verbose)

    def make_connection(self, host):  # type: ignore[override]
        conn = super().make_connection(host)
        conn.timeout = self.connect_timeout
        if conn.sock is None:
            conn.connect()
            conn.sock.settimeout(self.timeout)
        return conn


class XendXmlRpcDriver(Driver):
    transport = "xend-xmlrpc"

    def _proxy(self, timeout: float) -> xmlrpc.client.ServerProxy:
        # one proxy per call: ServerProxy shares its connection and is not thread-safe
        return xmlrpc.client.ServerProxy(
            f"http://{self.endpoint.address}:{self.endpoint.port}/RPC2",
            transport=_TimeoutTransport(self.connect_timeout, timeout), allow_none=True)

    def list_guests(self) -> set[str]:
        try:
            names = self._proxy(self.connect_timeout).xend.domains(0)
        except xmlrpc.client.Fault as exc:
            raise Unavailable(f"{self.endpoint.name}: xend.domains failed: "
                              f"{exc.faultString}") from None
        except (OSError, http.client.HTTPException, xmlrpc.client.ProtocolError) as exc:
            raise Unavailable(f"{self.endpoint.name}: xend XML-RPC at {self.endpoint.address}:"
                              f"{self.endpoint.port} did not answer: {why(exc)}") from None
        if not isinstance(names, list):
            raise Unavailable(f"{self.endpoint.name}: xend.domains returned {type(names)}")
        return {n for n in names if isinstance(n, str) and n not in DOM0_NAMES}

    def migrate(self, vm: str, dst_address: str, timeout: float) -> None:
        try:
            self._proxy(timeout).xend.domain.migrate(vm, dst_address, True)
        except xmlrpc.client.Fault as exc:
            if exc.faultCode == 3:
                raise MigrationRefused(f"xend: domain {exc.faultString} does not exist on "
                                       f"{self.endpoint.name}") from None
            raise MigrationRefused(f"xend: {exc.faultString}") from None
        except (OSError, http.client.HTTPException, xmlrpc.client.ProtocolError) as exc:
            raise migrate_call_failed(exc, self.endpoint.name, "xend XML-RPC",
                                      timeout) from None

    # ---- the guest lifecycle: xend's own save and restore (xend.domain.save(dom, file,
    # checkpoint), xend.domain.restore(file, paused)), both synchronous like migrate. xend
    # cannot look at files or create a guest from an xm configuration file (xm parses it
    # client-side into SXP), so images are checked and removed through another host that can
    # (vm-apply) and create is not offered.
    def _lifecycle(self, call, what: str, timeout: float) -> None:
        try:
            call(self._proxy(timeout).xend.domain)
        except xmlrpc.client.Fault as exc:
            if exc.faultCode == 3:
                raise MigrationRefused(f"xend: domain {exc.faultString} does not exist on "
                                       f"{self.endpoint.name}") from None
            raise MigrationRefused(f"xend {what}: {exc.faultString}") from None
        except (OSError, http.client.HTTPException, xmlrpc.client.ProtocolError) as exc:
            raise migrate_call_failed(exc, self.endpoint.name, "xend XML-RPC",
                                      timeout) from None

    def suspend_guest(self, vm: str, image: str, timeout: float) -> None:
        self._lifecycle(lambda d: d.save(vm, image, False), "save", timeout)

    def checkpoint_guest(self, vm: str, image: str, timeout: float) -> None:
        self._lifecycle(lambda d: d.save(vm, image, True), "save (checkpoint)", timeout)

    def resume_guest(self, vm: str, image: str, timeout: float) -> None:
        self._lifecycle(lambda d: d.restore(image, False), "restore", timeout)


DRIVER = XendXmlRpcDriver
