"""How vm-apply runs a plan's ``power-off`` and ``power-on`` actions.

``power-off``: the host's transport (xend or the toolstack over SSH) must list no guest; then
the Domain-0 shuts itself down over SSH (:func:`vmtools.drivers.poweroff.shutdown_host`, which
checks once more on the host itself); then the host must be seen off within
``off_timeout``: its BMC reports the chassis off (``ipmi``), or its transport stops answering
(``wol``, no BMC to ask).

``power-on``: ``ipmitool chassis power on`` (``ipmi``) or a Wake-on-LAN magic packet (``wol``),
then the host's transport must answer (a TCP connect, then a guest list) within
``boot_timeout``. A host that does not come up fails its action; the migrations ``after`` it
are then not run (vm-apply's scheduler), so no guest is sent to a host that is not there.

Every host with a power action needs a power method in the host map (``--hosts``); the IPMI
credentials file is read and checked (:func:`vmtools.power.ipmi.read_credentials`) before
anything runs.

On a XCP-ng / XenServer pool (power method ``xapi``, transport ``xapi``) XAPI does both:
``power-off`` is ``host.disable`` then ``host.shutdown`` (XAPI refuses while a guest runs
there) until ``host_metrics.live`` is false; ``power-on`` is ``host.power_on`` (the host's
own Wake-on-LAN or IPMI power-on mode, set in XAPI) then ``host.enable`` once it is live
(:class:`vmtools.drivers.xapi.XapiDriver`).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from vmtools.drivers import registry
from vmtools.drivers.registry import XAPI_TRANSPORT
from vmtools.errors import DataError, OperationFailed, Unavailable
from vmtools.power import ipmi
from vmtools.power.boot import answers, wait_until
from vmtools.power.wol import DEFAULT_ADDRESS, DEFAULT_PORT, send_magic_packet

log = logging.getLogger("vmtools.power")



@dataclass
class PowerSettings:
    credentials: str = ipmi.DEFAULT_CREDENTIALS
    boot_timeout: float = 600.0
    off_timeout: float = 300.0
    wol_address: str = DEFAULT_ADDRESS
    wol_port: int = DEFAULT_PORT
    shutdown_command: str = "poweroff"
    ssh_port: int = 22
    poll: float = 1.0


def refuse_unpowered(plan, hosts: dict) -> None:
    """DataError unless every host a power action names has a power method in the host map
    (a host vmtools cannot switch back on is never switched off)."""
    for i, a in enumerate(plan.actions):
        if not a.is_power:
            continue
        entry = hosts.get(a.host)
        method = entry.power if entry is not None else "none"
        if method == "none":
            raise DataError(f"action {a.id} ({a.op} {a.host}): {a.host} has no power method "
                            "in the host map (--hosts: power column ipmi, wol or xapi); vm-apply "
                            "never switches off a host it cannot switch on again",
                            f"plan.actions[{i}]")


class PowerRunner:
    """Power actions of one vm-apply run."""

    def __init__(self, settings: PowerSettings, hosts: dict, ssh_options, origin_hosts: dict,
                 needs_ipmi: bool):
        self.settings = settings
        self.hosts = hosts                    # name -> HostEntry (the host map)
        self.ssh = ssh_options
        self.origin = origin_hosts            # name -> model.Host
        self.credentials = ipmi.read_credentials(settings.credentials) if needs_ipmi else None

    def method(self, host: str) -> str:
        entry = self.hosts.get(host)
        return entry.power if entry is not None else "none"

    def bmc(self, host: str) -> ipmi.Bmc:
        entry = self.hosts[host]
        assert self.credentials is not None
        return ipmi.Bmc(host, entry.bmc, entry.bmc_port, self.credentials.for_host(host))

    def describe(self, host: str) -> str:
        entry = self.hosts.get(host)
        if entry is None:
            return "none"
        if entry.power == "ipmi":
            return f"ipmi {entry.bmc}:{entry.bmc_port}"
        if entry.power == "wol":
            return f"wol {entry.mac} via {self.settings.wol_address}:{self.settings.wol_port}"
        if entry.power == "xapi":
            return "xapi host.shutdown/host.power_on"
        return entry.power

    def _xapi(self, host: str, endpoint) -> None:
        if endpoint.transport != XAPI_TRANSPORT:
            raise OperationFailed(f"{host}: power method xapi, but it is managed through "
                                  f"{endpoint.transport}, not XAPI")

    # ---- power-off
    def power_off(self, host: str, endpoint, driver) -> str:
        """Shut ``host`` down in order and see it off. Returns what was done; raises
        OperationFailed or Unavailable."""
        from vmtools.drivers.poweroff import shutdown_host
        guests = driver.list_guests()
        if guests:
            raise OperationFailed(f"{host} still runs {', '.join(sorted(guests)[:5])}: not "
                                  "switched off")
        if self.method(host) == "xapi":
            self._xapi(host, endpoint)
            return driver.shutdown_host(self.settings.off_timeout)
        if registry.is_transport(endpoint.transport) and \
                registry.transport(endpoint.transport).ssh:
            address, port = endpoint.address, endpoint.port
        else:
            address, port = endpoint.address, self.settings.ssh_port
        origin = self.origin.get(host)
        toolstack = "virsh" if endpoint.transport == "libvirt-ssh" else "xm" if \
            endpoint.transport == "xm-ssh" or (
                origin is not None and origin.hypervisor.startswith("xen-3")) else "xl"
        how = shutdown_host(host, address, port, self.ssh, toolstack,
                            self.settings.shutdown_command,
                            connect_timeout=min(30.0, self.settings.off_timeout))
        s = self.settings
        if self.method(host) == "ipmi":
            bmc = self.bmc(host)

            def off() -> bool:
                try:
                    return bmc.power_status() == "off"
                except (Unavailable, OperationFailed) as exc:
                    log.debug("%s: %s", host, exc)
                    return False
            if not wait_until(off, s.off_timeout, s.poll):
                raise OperationFailed(f"{host}: shut down over SSH, but its BMC does not report "
                                      f"the chassis off within {s.off_timeout:g}s")
            return f"{how}; BMC {self.describe(host)} reports the chassis off"
        if not wait_until(lambda: not answers(endpoint.address, endpoint.port, 2.0),
                          s.off_timeout, s.poll):
            raise OperationFailed(f"{host}: shut down over SSH, but its {endpoint.transport} "
                                  f"still answers after {s.off_timeout:g}s")
        return f"{how}; {endpoint.transport} at {endpoint.address}:{endpoint.port} stopped " \
               "answering"

    # ---- power-on
    def power_on(self, host: str, endpoint, driver) -> str:
        s = self.settings
        method = self.method(host)
        if method == "xapi":
            self._xapi(host, endpoint)
            return driver.power_on_host(s.boot_timeout)
        if method == "ipmi":
            bmc = self.bmc(host)
            if bmc.power_status() == "on":
                how = f"BMC {self.describe(host)}: the chassis was already on"
            else:
                bmc.power_on()
                how = f"chassis power on through {self.describe(host)}"
        elif method == "wol":
            entry = self.hosts[host]
            send_magic_packet(entry.mac, s.wol_address, s.wol_port)
            how = f"Wake-on-LAN packet to {self.describe(host)}"
        else:
            raise OperationFailed(f"{host} has no power method")
        deadline = time.monotonic() + s.boot_timeout
        if not wait_until(lambda: answers(endpoint.address, endpoint.port, 2.0),
                          s.boot_timeout, s.poll):
            raise OperationFailed(f"{host} did not come up within --boot-timeout "
                                  f"{s.boot_timeout:g}s after {how} (its {endpoint.transport} "
                                  f"at {endpoint.address}:{endpoint.port} does not answer); "
                                  "the migrations that needed it are not run")
        last: Exception | None = None

        def ready() -> bool:
            nonlocal last
            try:
                driver.ping()
                return True
            except (Unavailable, OperationFailed) as exc:
                last = exc
                return False
        if not wait_until(ready, max(0.0, deadline - time.monotonic()), s.poll):
            raise OperationFailed(f"{host} answers on {endpoint.address}:{endpoint.port} but "
                                  f"its {endpoint.transport} is not ready within --boot-timeout "
                                  f"{s.boot_timeout:g}s: {last}")
        return f"{how}; {endpoint.transport} answered"
