"""The ``xapi`` transport: a XCP-ng / XenServer pool through its master's XAPI (XML-RPC over
HTTPS), with the official ``XenAPI`` client package.

What the ``XenAPI`` package does for vmtools: the session (``session.login_with_password``,
``logout``), the ``{"Status": "Success", "Value": ...}`` / ``{"Status": "Failure",
"ErrorDescription": [code, params...]}`` envelope of every answer (a failure becomes
``XenAPI.Failure(details)``), the ``Async.*`` namespace, and logging in again when the master
answers ``SESSION_INVALID`` (a session that expired or a master that restarted). What vmtools
adds around it: TLS verified against a CA file or a pinned certificate fingerprint (checked
before a byte of the login is sent), timeouts on every call, no resending of a call whose
answer was lost, credentials from a private file or the environment (never argv, logs or
errors), and every answer validated (a non-struct, a wrong type, an unknown ref: one clear
error, never a traceback).

:class:`XapiPool` (:mod:`vmtools.drivers.xapi_pool`, with the credentials, TLS and the
translation of failures; the XAPI source reads through it too) is one session with one master,
shared by every host's driver (XAPI is asked once for the whole pool); :class:`XapiDriver`
(here: the calls, their tasks polled and cancelled) is one host of it as vm-apply's
:class:`~vmtools.drivers.base.Driver`:

- ``list_guests``: the running (and paused) guests whose ``resident_on`` is this host
  (``VM.get_all_records_where('field "resident_on" = "<host>"')``: one host's records),
  control domains left out; a guest XAPI is migrating (``pool_migrate`` or ``migrate_send``
  among its ``current_operations``) is listed with vmtools' in-flight name
  ``<vm>--migratedaway`` too, so vm-apply never starts a second move of it;
- ``migrate``: ``VM.assert_can_migrate(vm, dest, true, {}, {}, {})`` with ``dest`` from
  ``host.migrate_receive`` on the destination over its management network (memory, power
  state, storage, networks checked by XAPI before anything moves: a failure here is a
  refusal), then ``Async.VM.pool_migrate(vm, host, {"live": "true"})``; the task is polled,
  and cancelled (``task.cancel``) when ``timeout`` passes;
- ``shutdown_host``: ``host.disable`` then ``host.shutdown`` (XAPI itself refuses while a guest
  runs there: ``HOST_IN_USE``), then ``host_metrics.live`` must turn false;
- ``power_on_host``: ``host.power_on`` (the host's own ``power_on_mode``: Wake-on-LAN or IPMI,
  which XAPI drives), then ``host.enable`` once ``host_metrics.live`` is true again;
- ``disable``: ``host.disable`` (the ``maintenance`` rule: XAPI places nothing new there);
  ``enable``: ``host.enable``, when vm-web ends a host's maintenance;
- the guest lifecycle, each an ``Async`` call whose task is polled and cancelled on
  ``timeout`` as a migration's: ``suspend_guest`` is ``VM.suspend`` (Running to Suspended,
  the memory written to the VM's suspend VDI and freed), ``checkpoint_guest``
  ``VM.checkpoint(vm, NAME)`` (a snapshot VM named after the image's file name, the guest
  running on), ``resume_guest`` ``VM.resume_on(vm, host, false, false)``, ``create_guest``
  ``VM.start_on(vm, host, false, false)`` of a Halted VM (XAPI defines guests itself: the
  configuration path is not read). XAPI keeps the images in its storage repositories (the
  transport's ``keeps_images``): ``has_image`` answers from the VM's ``power_state`` (or its
  snapshot), and nothing is removed after a resume (XAPI destroys the suspend VDI itself).
"""

from __future__ import annotations

import logging
import time

from vmtools.drivers.base import (Driver, Endpoint, MigrationRefused, MigrationUncertain,
                                  checkpoint_name)
from vmtools.drivers.xapi_pool import (_UUID, Credentials, XapiError, XapiPool, XapiSettings,
                                       _short, close_pools, guest_name, is_ref, parse_fingerprint,
                                       pool_for, read_credentials, records)
from vmtools.errors import DataError, OperationFailed, Unavailable, UsageError
from vmtools.xen import IN_FLIGHT_SUFFIXES

log = logging.getLogger("vmtools.xapi")

MIGRATING_OPERATIONS = frozenset({"pool_migrate", "migrate_send"})
MIGRATED_AWAY = IN_FLIGHT_SUFFIXES[1]

# What an error code of a migration means for vm-apply. Refused: XAPI said no before
# anything moved (the guest is where it was). Every other failure of the task is "failed"
# (vm-apply asks the hosts where the guest is); no answer is "uncertain".
REFUSED_CODES = frozenset({
    "HOST_NOT_ENOUGH_FREE_MEMORY", "HOST_NOT_ENOUGH_PCPUS", "VM_BAD_POWER_STATE",
    "HOST_NOT_LIVE", "HOST_OFFLINE", "HOST_DISABLED", "HOST_DISABLED_UNTIL_REBOOT",
    "VM_REQUIRES_SR", "VM_REQUIRES_NETWORK", "VM_REQUIRES_GPU", "VM_REQUIRES_VGPU",
    "VM_HOST_INCOMPATIBLE_VERSION", "VM_INCOMPATIBLE_WITH_THIS_HOST", "VM_IS_TEMPLATE",
    "OPERATION_NOT_ALLOWED", "OPERATION_BLOCKED", "OTHER_OPERATION_IN_PROGRESS",
    "HANDLE_INVALID", "RBAC_PERMISSION_DENIED", "VM_MIGRATE_CONTACT_REMOTE_SERVICE_FAILED",
    "HOST_CANNOT_ATTACH_NETWORK", "VM_HAS_PCI_ATTACHED", "VM_HAS_VGPU", "VM_LACKS_FEATURE",
    "VM_NO_CRASHDUMP_SR", "VM_NO_EMPTY_CD_VBD", "VM_IS_PROTECTED", "HA_OPERATION_WOULD_BREAK_FAILOVER_PLAN",
})
_HERE = object()        # stands for this driver's host among a call's arguments


# --------------------------------------------------------------------------- the driver

def require_settings(host: str, xapi: "XapiSettings | None") -> None:
    if xapi is None:
        raise UsageError(f"host {host} is managed through XAPI: give the pool master's URL "
                         "({xapi})", settings=("xapi",))


class _NoPool:
    """The pool of a driver made without the master's settings: every call says so."""

    def __init__(self, host: str):
        self.host = host

    def call(self, *_args):
        require_settings(self.host, None)

    get = call

    def close(self) -> None:
        pass


class XapiDriver(Driver):
    """One host of a pool, through the pool master."""

    transport = "xapi"

    def __init__(self, endpoint: Endpoint, pool: XapiPool, connect_timeout: float = 10.0,
                 poll: float = 0.5):
        super().__init__(endpoint, connect_timeout)
        self.pool = pool
        self.poll = poll

    @classmethod
    def for_endpoint(cls, endpoint: Endpoint, connect_timeout: float = 10.0, *,
                     xapi: XapiSettings | None = None, **_settings) -> "XapiDriver":
        """The hosts of one master share one session (:func:`pool_for`). Without the
        master's settings the driver is made, but its first call is a UsageError (vm-apply
        checks before anything runs: :func:`require_settings`)."""
        return cls(endpoint, pool_for(xapi) if xapi is not None else _NoPool(endpoint.name),
                   connect_timeout)

    # ---- lookups
    def host_ref(self, name: str | None = None) -> str:
        name = name or self.endpoint.name
        refs = self.pool.call("host.get_by_name_label", name)
        if not isinstance(refs, list):
            raise DataError("host.get_by_name_label returned no list", self.pool.settings.base)
        refs = [r for r in refs if is_ref(r)]
        if len(refs) != 1:
            raise Unavailable(f"{name}: the pool has {len(refs) or 'no'} host"
                              f"{'s' if len(refs) > 1 else ''} named so"
                              + (" (is it in this pool?)" if not refs else ""))
        return refs[0]

    def vm_ref(self, name: str) -> str:
        """The guest vmtools calls ``name`` (:func:`guest_name`: its label, or its uuid)."""
        if _UUID.fullmatch(name):
            try:
                refs = [self.pool.call("VM.get_by_uuid", name)]
            except XapiError as exc:
                if exc.code != "UUID_INVALID":
                    raise
                refs = []
        else:
            refs = self.pool.call("VM.get_by_name_label", name)
        if not isinstance(refs, list):
            raise DataError("VM.get_by_name_label returned no list", self.pool.settings.base)
        guests = []
        for ref in (r for r in refs if is_ref(r)):
            rec = self.pool.call("VM.get_record", ref)
            if isinstance(rec, dict) and not rec.get("is_control_domain") and \
                    not rec.get("is_a_template") and not rec.get("is_a_snapshot") and \
                    guest_name(rec) == name:
                guests.append(ref)
        if len(guests) != 1:
            raise MigrationRefused(f"XAPI: {len(guests) or 'no'} guest{'s' if len(guests) > 1 else ''}"
                                   f" named {name} in the pool")
        return guests[0]

    def management_network(self, host: str) -> str:
        """The network of ``host``'s management interface (what ``host.migrate_receive``
        needs to describe the destination)."""
        for rec in records(self.pool, "PIF").values():
            if rec.get("host") == host and rec.get("management") is True and \
                    is_ref(rec.get("network")):
                return rec["network"]
        raise MigrationRefused(f"XAPI: the destination has no management interface")

    # ---- the driver interface
    def list_guests(self) -> set[str]:
        try:
            me = self.host_ref()
            # only this host's guests cross the wire (not the whole pool's, every poll)
            vms = records(self.pool, "VM", f'field "resident_on" = "{me}"')
        except XapiError as exc:
            raise Unavailable(f"{self.endpoint.name}: {exc}") from None
        except DataError as exc:
            raise Unavailable(f"{self.endpoint.name}: {exc}") from None
        names: set[str] = set()
        for rec in vms.values():
            if rec.get("resident_on") != me or rec.get("is_control_domain") is not False:
                continue
            if rec.get("power_state") not in ("Running", "Paused"):
                continue
            name = guest_name(rec)
            if name is None:
                continue
            names.add(name)
            ops = rec.get("current_operations")
            if isinstance(ops, dict) and MIGRATING_OPERATIONS & {str(v) for v in ops.values()}:
                names.add(name + MIGRATED_AWAY)
        return names

    def migrate(self, vm: str, dst_address: str, timeout: float) -> None:
        try:
            ref = self.vm_ref(vm)
            dst = self.host_ref(dst_address)
            rec = self.pool.call("VM.get_record", ref)
            if isinstance(rec, dict) and rec.get("resident_on") != self.host_ref():
                raise MigrationRefused(f"XAPI: {vm} is not resident on {self.endpoint.name}")
            dest = self.pool.call("host.migrate_receive", dst, self.management_network(dst),
                                  {})
            self.pool.call("VM.assert_can_migrate", ref, dest, True, {}, {}, {})
        except XapiError as exc:
            raise MigrationRefused(f"refused: {exc}") from None
        except (Unavailable, DataError) as exc:
            raise MigrationRefused(f"refused: {exc}") from None
        try:
            task = self.pool.call("Async.VM.pool_migrate", ref, dst, {"live": "true"})
        except XapiError as exc:
            raise MigrationRefused(f"refused: {exc}") from None
        except Unavailable as exc:
            # the call may have reached the master and started the task
            raise MigrationUncertain(f"{exc} (the migration may have started)") from None
        if not is_ref(task):
            raise MigrationUncertain("XAPI Async.VM.pool_migrate returned no task reference")
        try:
            self._wait(task, vm, timeout)
        finally:
            try:
                self.pool.call("task.destroy", task)
            except (XapiError, Unavailable, DataError):
                pass

    def _wait(self, task: str, vm: str, timeout: float, call: str = "VM.pool_migrate",
              what: str = "migration") -> None:
        deadline = time.monotonic() + timeout
        status = self._status(task, what)
        while status == "pending":
            if time.monotonic() >= deadline:
                self._cancel(task, vm, timeout, call, what)
                return
            time.sleep(min(self.poll, max(0.0, deadline - time.monotonic())))
            status = self._status(task, what)
        self._ended(task, status, vm, call, what)

    def _status(self, task: str, what: str = "migration") -> str:
        try:
            status = self.pool.call("task.get_status", task)
        except (XapiError, Unavailable, DataError) as exc:
            raise MigrationUncertain(f"lost track of the {what} task: {exc}") from None
        if status not in ("pending", "success", "failure", "cancelling", "cancelled"):
            raise MigrationUncertain(f"the {what} task's status is {_short(status)!r}")
        return "pending" if status == "cancelling" else status

    def _ended(self, task: str, status: str, vm: str, call: str = "VM.pool_migrate",
               what: str = "migration") -> None:
        if status == "success":
            return
        if status == "cancelled":
            raise MigrationRefused(f"XAPI: the {what} of {vm} was cancelled")
        try:
            info = self.pool.call("task.get_error_info", task)
        except (XapiError, Unavailable, DataError):
            info = []
        info = [str(x) for x in info] if isinstance(info, list) else []
        code = info[0] if info else "UNKNOWN"
        err = XapiError(call, code, info[1:])
        if code in REFUSED_CODES:
            raise MigrationRefused(f"refused: {err}")
        raise MigrationRefused(f"failed: {err}")

    def _cancel(self, task: str, vm: str, timeout: float, call: str = "VM.pool_migrate",
                what: str = "migration") -> None:
        """--timeout passed: ask XAPI to cancel the task, and believe only its answer."""
        try:
            self.pool.call("task.cancel", task)
        except XapiError as exc:
            log.info("task.cancel: %s", exc)       # e.g. the task had just ended
        except (Unavailable, DataError) as exc:
            raise MigrationUncertain(f"no end within {timeout:g}s and the task could not be "
                                     f"cancelled ({exc}); the {what} may still run") from None
        end = time.monotonic() + max(5.0, self.connect_timeout)
        status = self._status(task, what)
        while status == "pending" and time.monotonic() < end:
            time.sleep(self.poll)
            status = self._status(task, what)
        if status == "pending":
            raise MigrationUncertain(f"no end within {timeout:g}s; task.cancel asked, but "
                                     f"the task still runs (the {what} may still end)")
        if status == "success":
            return
        if status in ("cancelled", "failure"):
            try:
                self._ended(task, status, vm, call, what)
            except MigrationRefused as exc:
                raise MigrationRefused(f"no end within {timeout:g}s: cancelled ({exc})"
                                       ) from None

    # ---- the guest lifecycle (XAPI keeps the images: a suspended VM's memory is its
    # suspend VDI in a storage repository, a checkpoint is a snapshot VM; the plan's image
    # path only names it)
    def _lifecycle(self, call: str, what: str, vm: str, timeout: float, *args,
                   resident: bool = False) -> None:
        """``Async.<call>(vm, *args)``, its task polled and cancelled after ``timeout``."""
        try:
            ref = self.vm_ref(vm)
            if resident:
                rec = self.pool.call("VM.get_record", ref)
                if isinstance(rec, dict) and rec.get("resident_on") != self.host_ref():
                    raise MigrationRefused(f"XAPI: {vm} is not resident on "
                                           f"{self.endpoint.name}")
            args = tuple(self.host_ref() if a is _HERE else a for a in args)
            task = self.pool.call(f"Async.{call}", ref, *args)
        except XapiError as exc:
            raise MigrationRefused(f"refused: {exc}") from None
        except DataError as exc:
            raise MigrationRefused(f"refused: {exc}") from None
        except Unavailable as exc:
            raise MigrationUncertain(f"{exc} (the {what} may have started)") from None
        if not is_ref(task):
            raise MigrationUncertain(f"XAPI Async.{call} returned no task reference")
        try:
            self._wait(task, vm, timeout, call, what)
        finally:
            try:
                self.pool.call("task.destroy", task)
            except (XapiError, Unavailable, DataError):
                pass

    def suspend_guest(self, vm: str, image: str, timeout: float) -> None:
        self._lifecycle("VM.suspend", "suspend", vm, timeout, resident=True)

    def checkpoint_guest(self, vm: str, image: str, timeout: float) -> None:
        self._lifecycle("VM.checkpoint", "checkpoint", vm, timeout, checkpoint_name(image),
                        resident=True)

    def resume_guest(self, vm: str, image: str, timeout: float) -> None:
        self._lifecycle("VM.resume_on", "resume", vm, timeout, _HERE, False, False)

    def create_guest(self, vm: str, config: str, timeout: float) -> None:
        self._lifecycle("VM.start_on", "start", vm, timeout, _HERE, False, False)

    def has_image(self, op: str, vm: str, path: str) -> bool:
        """From the guest's state: a resume's (or a suspend's) image is there when the VM is
        Suspended, a create's configuration when it is Halted (XAPI defines guests itself),
        a checkpoint's when the VM has a snapshot named :func:`checkpoint_name`."""
        try:
            ref = self.vm_ref(vm)
            if op == "checkpoint":
                found = self.pool.call("VM.get_by_name_label", checkpoint_name(path))
                for snap in (r for r in (found if isinstance(found, list) else [])
                             if is_ref(r)):
                    rec = self.pool.call("VM.get_record", snap)
                    if isinstance(rec, dict) and rec.get("is_a_snapshot") is True and \
                            rec.get("snapshot_of") == ref:
                        return True
                return False
            power = self.pool.call("VM.get_power_state", ref)
        except MigrationRefused:
            return False                       # no such guest: nothing of it is there
        except (XapiError, DataError) as exc:
            raise Unavailable(f"{self.endpoint.name}: {exc}") from None
        return power == ("Halted" if op == "create" else "Suspended")

    # ---- power and maintenance (vmtools.power.execute calls these for xapi hosts)
    def _metrics(self, host: str) -> dict:
        ref = self.pool.call("host.get_metrics", host)
        rec = self.pool.call("host_metrics.get_record", ref) if is_ref(ref) else None
        return rec if isinstance(rec, dict) else {}

    def is_live(self) -> bool:
        try:
            return self._metrics(self.host_ref()).get("live") is True
        except (XapiError, Unavailable, DataError):
            return False

    def disable(self) -> str:
        try:
            self.pool.call("host.disable", self.host_ref())
        except XapiError as exc:
            raise OperationFailed(f"{self.endpoint.name}: {exc}") from None
        return "host.disable"

    def enable(self) -> str:
        """The end of a maintenance: ``host.enable`` (XAPI places guests there again)."""
        try:
            self.pool.call("host.enable", self.host_ref())
        except XapiError as exc:
            raise OperationFailed(f"{self.endpoint.name}: {exc}") from None
        return "host.enable (XAPI places guests there again)"

    def shutdown_host(self, off_timeout: float, poll: float = 1.0) -> str:
        host = self.host_ref()
        mode = self.pool.call("host.get_power_on_mode", host)
        if mode in ("", None):
            raise OperationFailed(f"{self.endpoint.name}: not shut down: its power_on_mode is "
                                  "empty, so XAPI could not switch it on again (set "
                                  "Wake-on-LAN or IPMI in XAPI)")
        pool_refs = self.pool.call("pool.get_all")
        if isinstance(pool_refs, list) and pool_refs and is_ref(pool_refs[0]) and \
                self.pool.call("pool.get_master", pool_refs[0]) == host:
            raise OperationFailed(f"{self.endpoint.name} is the pool master: vmtools never "
                                  "shuts it down")
        was_enabled = self.pool.call("host.get_enabled", host) is True
        try:
            self.pool.call("host.disable", host)
            self.pool.call("host.shutdown", host)
        except XapiError as exc:
            if was_enabled:                          # back as it was (a host in maintenance
                try:                                 # stays disabled)
                    self.pool.call("host.enable", host)
                except (XapiError, Unavailable, DataError):
                    pass
            raise OperationFailed(f"{self.endpoint.name}: not shut down: {exc}") from None
        deadline = time.monotonic() + off_timeout
        while self.is_live():
            if time.monotonic() >= deadline:
                raise OperationFailed(f"{self.endpoint.name}: host.shutdown accepted, but "
                                      f"XAPI still reports it live after {off_timeout:g}s")
            time.sleep(poll)
        return "host.disable, host.shutdown; XAPI reports it no longer live"

    def power_on_host(self, boot_timeout: float, poll: float = 1.0) -> str:
        host = self.host_ref()
        if not self.is_live():
            try:
                self.pool.call("host.power_on", host)
            except XapiError as exc:
                raise OperationFailed(f"{self.endpoint.name}: not switched on: {exc}") from None
            how = "host.power_on"
        else:
            how = "already live"
        deadline = time.monotonic() + boot_timeout
        while not self.is_live():
            if time.monotonic() >= deadline:
                raise OperationFailed(f"{self.endpoint.name} did not come up within "
                                      f"{{boot_timeout}} {boot_timeout:g}s after {how} (XAPI "
                                      "does not report it live); the migrations that needed "
                                      "it are not run", settings=("boot_timeout",))
            time.sleep(poll)
        try:
            self.pool.call("host.enable", host)
        except XapiError as exc:
            raise OperationFailed(f"{self.endpoint.name} is live but host.enable failed: {exc}"
                                  ) from None
        return f"{how}; live; host.enable"

    def close(self) -> None:
        """The pool's session is shared: closed by whoever made the pool."""


DRIVER = XapiDriver

__all__ = ["DRIVER", "XapiDriver", "XapiPool", "XapiSettings", "XapiError", "Credentials",
           "read_credentials", "parse_fingerprint", "records", "is_ref", "guest_name", "pool_for",
           "close_pools", "require_settings"]
