"""The simulated pool master's guest calls (:mod:`vmtools.lab.xapi`): finding a VM,
``VM.assert_can_migrate`` and ``VM.pool_migrate``, and the guest lifecycle (``VM.suspend``,
``VM.checkpoint``, ``VM.resume_on``, ``VM.start_on``), each as XAPI answers and refuses it."""

from __future__ import annotations

import threading
import time
import uuid as _uuid

from vmtools.lab.lifecycle import create_seconds, save_seconds
from vmtools.lab.migrate import MigrationError, migrate_domain
from vmtools.lab.xapi_records import MIB, Failure, ref_of
from vmtools.xen import INCOMING_SUFFIX


class GuestCalls:
    """The VM calls of :class:`vmtools.lab.xapi.Pool`."""

    # ---- guests
    def m_VM_get_by_name_label(self, st, label):
        return [ref_of("VM", v) for v in self._vm_names(st)
                if self.vm_record(st, v)["name_label"] == label]

    def m_VM_get_by_uuid(self, st, uuid):
        for v in self._vm_names(st):
            if self.vm_record(st, v)["uuid"] == uuid:
                return ref_of("VM", v)
        raise Failure("UUID_INVALID", "VM", uuid)

    def _can_migrate(self, st: dict, vm_ref, host_ref) -> tuple[str, str, str]:
        name = self.vm_by_ref(st, vm_ref)
        dst = self.host_by_ref(st, host_ref)
        rec = self.vm_record(st, name)
        if rec["is_control_domain"]:
            raise Failure("OPERATION_NOT_ALLOWED", "Control domains cannot be migrated")
        if rec["power_state"] != "Running":
            raise Failure("VM_BAD_POWER_STATE", vm_ref, "running", rec["power_state"].lower())
        if self.vm_ops.get(name):
            raise Failure("OTHER_OPERATION_IN_PROGRESS", "VM", vm_ref,
                          next(iter(self.vm_ops[name].values())))
        src = self.host_by_ref(st, rec["resident_on"])
        host = st["hosts"][dst]
        if not self.live(host):
            raise Failure("HOST_OFFLINE", host_ref)
        if not host.get("enabled", True):
            raise Failure("HOST_DISABLED", host_ref)
        if src == dst:
            raise Failure("HOST_CANNOT_ATTACH_NETWORK", host_ref, ref_of("network", "eth0"))
        needed = int(rec["memory_static_max"])
        free = int(self.host_metrics_record(st, dst)["memory_free"])
        if needed > free:
            raise Failure("HOST_NOT_ENOUGH_FREE_MEMORY", needed, free)
        return name, src, dst

    def m_VM_assert_can_migrate(self, st, vm_ref, dest, live, vdi_map, vif_map, options,
                                *vgpu_map):
        if not isinstance(dest, dict) or "host" not in dest:
            raise Failure("INVALID_VALUE", "dest", str(dest)[:40])
        self._can_migrate(st, vm_ref, dest["host"])
        return ""

    def m_VM_pool_migrate(self, st, vm_ref, host_ref, options, task=None):
        name, src, dst = self._can_migrate(st, vm_ref, host_ref)
        faults = self.faults(st)
        cancel = task["cancel"] if task else threading.Event()
        stubborn = name in faults.get("uncancellable", ())
        # a hang holds it until cancelled, or until the fault is lifted: then it goes on
        key = self._busy(name, "pool_migrate", cancel, stubborn)
        try:
            if name in faults.get("task_error", {}):
                raise Failure(*faults["task_error"][name])
            try:
                migrate_domain(self.state, src, name, dst, live=True,
                               aborted=lambda: cancel.is_set() and not stubborn)
            except MigrationError as exc:
                if cancel.is_set() and not stubborn:
                    raise Failure("TASK_CANCELLED", key) from None
                raise Failure("VM_MIGRATE_FAILED", vm_ref, ref_of("host", src), host_ref,
                              exc.message) from None
        finally:
            self._free(name, key)
        return ""

    # ---- the guest lifecycle: suspend, checkpoint, resume_on, start_on
    def _power(self, st: dict, vm_ref, expected: str) -> tuple[str, dict]:
        """The VM's name and record; VM_BAD_POWER_STATE unless it is ``expected`` (XAPI's
        params: the VM, the state expected, the state it is in, lower case)."""
        name = self.vm_by_ref(st, vm_ref)
        rec = self.vm_record(st, name)
        if rec["is_control_domain"] or rec["is_a_snapshot"]:
            raise Failure("OPERATION_NOT_ALLOWED", "not allowed on a control domain or a "
                          "snapshot")
        if rec["power_state"] != expected:
            raise Failure("VM_BAD_POWER_STATE", vm_ref, expected.lower(),
                          rec["power_state"].lower())
        if self.vm_ops.get(name):
            raise Failure("OTHER_OPERATION_IN_PROGRESS", "VM", vm_ref,
                          next(iter(self.vm_ops[name].values())))
        return name, rec

    def _busy(self, name: str, op: str, cancel: threading.Event, stubborn: bool):
        """Mark ``name`` busy with ``op``; wait while a ``hang`` fault holds it (raising
        TASK_CANCELLED when the task is cancelled); return the key to :meth:`_free`."""
        key = "OpaqueRef:" + str(_uuid.uuid4())
        with self.lock:
            self.vm_ops.setdefault(name, {})[key] = op
        try:
            while name in self.faults(self.state.read()).get("hang", ()):
                if self.stopping.is_set():
                    raise Failure("INTERNAL_ERROR", "xapi is stopping")
                if cancel.is_set() and not stubborn:
                    raise Failure("TASK_CANCELLED", key)
                time.sleep(0.05)
        except Failure:
            self._free(name, key)
            raise
        return key

    def _free(self, name: str, key: str) -> None:
        with self.lock:
            ops = self.vm_ops.get(name, {})
            ops.pop(key, None)
            if not ops:
                self.vm_ops.pop(name, None)

    def _save(self, st, vm_ref, op: str, task) -> tuple[str, str, dict]:
        """A running VM's memory written out (its suspend VDI) in ``save_seconds``: (name,
        host, its domain record)."""
        name, rec = self._power(st, vm_ref, "Running")
        host = self.host_by_ref(st, rec["resident_on"])
        cancel = task["cancel"] if task else threading.Event()
        key = self._busy(name, op, cancel, name in self.faults(st).get("uncancellable", ()))
        try:
            if name in self.faults(st).get("task_error", {}):
                raise Failure(*self.faults(st)["task_error"][name])
            dom = dict(st["hosts"][host]["domains"][name])
            time.sleep(save_seconds(st, int(dom["mem_mib"])))
        finally:
            self._free(name, key)
        return name, host, dom

    def m_VM_suspend(self, st, vm_ref, task=None):
        name, host, dom = self._save(st, vm_ref, "suspend", task)
        with self.state.transaction() as st2:       # memory freed when the image is written
            dom = st2["hosts"][host]["domains"].pop(name, dom)
            record = {k: v for k, v in dom.items() if k not in ("domid", "busy", "state")}
            st2.setdefault("xapi", {}).setdefault("stopped", {})[name] = {
                "power_state": "Suspended", "dom": record, "host": host}
        return ""

    def m_VM_checkpoint(self, st, vm_ref, new_name, task=None):
        if not isinstance(new_name, str) or not new_name:
            raise Failure("INVALID_VALUE", "new_name", str(new_name)[:40])
        name, _host, dom = self._save(st, vm_ref, "checkpoint", task)
        with self.state.transaction() as st2:
            st2.setdefault("xapi", {}).setdefault("checkpoints", {})[new_name] = {
                "of": name, "mem_mib": int(dom["mem_mib"]), "vcpus": int(dom.get("vcpus", 1))}
        return ref_of("VM", new_name)

    def _start(self, st, vm_ref, host_ref, expected: str, op: str, task) -> str:
        name, rec = self._power(st, vm_ref, expected)
        dst = self.host_by_ref(st, host_ref)
        host = st["hosts"][dst]
        if not self.live(host):
            raise Failure("HOST_OFFLINE", host_ref)
        if not host.get("enabled", True):
            raise Failure("HOST_DISABLED", host_ref)
        cancel = task["cancel"] if task else threading.Event()
        key = self._busy(name, op, cancel, name in self.faults(st).get("uncancellable", ()))
        incoming = name + INCOMING_SUFFIX
        try:
            with self.state.transaction() as st2:     # memory claimed when the start begins
                needed = int(rec["memory_static_max"])
                free = int(self.host_metrics_record(st2, dst)["memory_free"])
                if needed > free:
                    # nothing is written: the transaction ends in error
                    raise Failure("HOST_NOT_ENOUGH_FREE_MEMORY", str(needed), str(free))
                spec = st2.get("xapi", {}).get("stopped", {}).get(name) or \
                    self.extras.get("halted", {}).get(name, {})
                dom = dict(spec.get("dom") or {"mem_mib": needed // MIB,
                                               "vcpus": int(rec["VCPUs_max"]),
                                               "load": 0.1, "cpu_time": 0.0})
                dom.update(domid=st2["next_domid"], state="--p---", busy=op, net_bytes=0)
                dom.setdefault("net_mbps", 0.0)
                st2["next_domid"] += 1
                st2["hosts"][dst]["domains"][incoming] = dom
                seconds = (save_seconds if expected == "Suspended" else create_seconds)(
                    st2, int(dom["mem_mib"]))
            fails = self.faults(st).get("task_error", {}).get(name)
            time.sleep(seconds / 2 if fails else seconds)
            with self.state.transaction() as st2:
                domains = st2["hosts"][dst]["domains"]
                dom = domains.pop(incoming, None)
                if dom is not None and not fails:
                    dom.pop("busy", None)
                    dom["state"] = "-b----"
                    domains[name] = dom
                    st2.setdefault("xapi", {}).setdefault("stopped", {}).pop(name, None)
            if fails or dom is None:     # the domain is destroyed, the VM stays as it was
                raise Failure(*fails) if fails else Failure(
                    "INTERNAL_ERROR", f"the domain of {name} vanished")
            if name in self.extras.get("halted", {}):
                self.extras["halted"].pop(name)
        finally:
            self._free(name, key)
        return ""

    def m_VM_resume_on(self, st, vm_ref, host_ref, start_paused=False, force=False,
                       task=None):
        return self._start(st, vm_ref, host_ref, "Suspended", "resume_on", task)

    def m_VM_start_on(self, st, vm_ref, host_ref, start_paused=False, force=False,
                      task=None):
        return self._start(st, vm_ref, host_ref, "Halted", "start_on", task)

