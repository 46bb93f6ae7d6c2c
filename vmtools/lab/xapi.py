"""A simulated XCP-ng / XenServer pool master, for ``vm-lab --platform xapi``.

It speaks XAPI's wire as the real master does (built from the XAPI data model,
``ocaml/idl/datamodel*.ml``, and its HTTP handlers), so the official ``XenAPI`` client and
vmtools drive it unchanged:

- XML-RPC over HTTPS on the master's address (``POST /``); every answer is
  ``{"Status": "Success", "Value": ...}`` or ``{"Status": "Failure", "ErrorDescription":
  [code, params...]}``; int64 fields travel as strings, references as ``OpaqueRef:<uuid>``;
- sessions (``session.login_with_password``/``logout``; a session unused for
  ``session_timeout`` seconds, or all of them after a fault, answer ``SESSION_INVALID``);
- the records of ``pool``, ``host``, ``host_metrics``, ``VM`` (control domains included),
  ``VM_metrics``, ``VM_group``, ``PIF``, ``network``, ``task`` with the data model's field
  names and types (the subset vmtools and XO's balancer read);
- ``VM.assert_can_migrate`` (with ``host.migrate_receive``), ``VM.pool_migrate`` and
  ``Async.VM.pool_migrate``, whose task takes time proportional to memory (the lab's
  migration rate, :mod:`vmtools.lab.migrate`) and can be cancelled (``task.cancel``);
- the guest lifecycle: ``VM.suspend`` (Running to Suspended in the lab's save time, the
  memory freed when it ends), ``VM.checkpoint(vm, name)`` (a snapshot VM ``name``,
  ``is_a_snapshot``, ``snapshot_of`` the VM, power_state Suspended; the VM runs on),
  ``VM.resume_on(vm, host, start_paused, force)`` and ``VM.start_on`` (Suspended, resp.
  Halted, to Running; the memory claimed when the call starts, ``HOST_NOT_ENOUGH_FREE_MEMORY
  [needed, free]`` when the host lacks it), each refused with ``VM_BAD_POWER_STATE [vm,
  expected, actual]`` on a VM in another state, and as ``Async`` tasks that ``task.cancel``
  stops while a ``hang`` fault holds them; the ``task_error`` fault fails them. Stopped
  guests are kept in the state's ``xapi.stopped``, checkpoints in ``xapi.checkpoints``;
- ``host.disable``/``enable``, ``host.shutdown`` (refused with ``HOST_NOT_DISABLED`` or
  ``HOST_IN_USE`` while a guest runs there, as XAPI does), ``host.power_on`` (refused with
  ``HOST_POWER_ON_MODE_DISABLED`` when the host has no power-on mode); a host switched on
  boots ``boot_seconds`` later, enabled;
- ``/rrd_updates?session_id=..&start=..&cf=AVERAGE&interval=..&host=true`` on every host's own
  address (the real endpoint serves only the host asked): the rrdtool ``xport`` XML with
  ``AVERAGE:host:<uuid>:cpuN``, ``cpu_avg``, ``memory_total_kib``, ``memory_free_kib``,
  ``pif_eth0_rx/tx`` and ``AVERAGE:vm:<uuid>:cpuN``, ``memory``, ``vif_0_rx/tx`` columns,
  newest row first; calls to a member's XML-RPC answer ``HOST_IS_SLAVE``.

Hosts and guests are the lab's shared cluster state (:mod:`vmtools.lab.cluster`) from the same
scenarios as the xend lab. A scenario's optional ``xapi`` object adds what only XAPI has::

    "xapi": {"groups": {"web-spread": {"placement": "anti_affinity",
                                       "vms": ["web1", "web2"]}},
             "halted": {"old1": {"mem_mib": 1024, "vcpus": 1, "power_state": "Halted"}},
             "master": "node-1", "power_on_mode": "wake-on-lan"}

Faults, in the state's ``faults`` under ``xapi`` (besides :mod:`vmtools.lab.migrate`'s)::

    {"hang": ["web1"],              # web1's migration task waits until cancelled (or until
                                    # the fault is lifted: then it migrates)
     "uncancellable": ["web1"],     # ... and task.cancel does not stop it
     "task_error": {"web2": ["VM_MIGRATE_FAILED", "..."]},   # the task fails so
     "expire_before": 1765000000.0, # sessions made before this time are invalid
     "raw": {"VM.get_all_records": "garbage"},   # answer a method with this, unwrapped
     "value": {"host.get_all_records": 7},       # answer with Success and this Value
     "override": {"host_metrics": {"node-2": {"memory_total": "-5"}},
                  "VM": {"web1": {"resident_on": "OpaqueRef:nowhere"}}}}
"""

from __future__ import annotations

import datetime as _dt
import http.server
import logging
import re
import secrets
import socketserver
import ssl
import subprocess
import threading
import time
import urllib.parse
import uuid as _uuid
import xmlrpc.client
from pathlib import Path

from vmtools.lab.cluster import ClusterState, advance
from vmtools.lab.lifecycle import create_seconds, save_seconds
from vmtools.lab.migrate import MigrationError, migrate_domain
from vmtools.lab.power import booted, power_of, switch_off, switch_on
from vmtools.xen import INCOMING_SUFFIX

log = logging.getLogger("vmtools.lab.xapi")

MIB = 1024 * 1024
NULL = "OpaqueRef:NULL"
# the calls whose Async task can be cancelled (task.cancel) while they run
TASK_AWARE = ("VM.pool_migrate", "VM.suspend", "VM.checkpoint", "VM.resume_on", "VM.start_on")
_NS = _uuid.UUID("6f1d0b52-8d1f-4d0c-9d43-3c1b8f9e0a11")


def uuid_of(kind: str, name: str) -> str:
    return str(_uuid.uuid5(_NS, f"{kind}:{name}"))


def ref_of(kind: str, name: str) -> str:
    return "OpaqueRef:" + str(_uuid.uuid5(_NS, f"ref:{kind}:{name}"))


def _now_iso() -> xmlrpc.client.DateTime:
    return xmlrpc.client.DateTime(_dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H:%M:%SZ"))


class Failure(Exception):
    def __init__(self, code: str, *params: object):
        super().__init__(code)
        self.description = [code, *[str(p) for p in params]]


# --------------------------------------------------------------------------- TLS

def make_certificates(directory: Path, addresses: list[str]) -> tuple[Path, Path, Path]:
    """A lab CA and one server certificate for every host address (as a pool whose hosts
    carry CA-signed certificates). Returns (ca.pem, cert.pem, key.pem)."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca, key, csr, cert = (directory / n for n in
                                  ("ca.key", "ca.pem", "host.key", "host.csr", "host.pem"))
    ext = directory / "san.cnf"
    ext.write_text("subjectAltName=" + ",".join(f"IP:{a}" for a in addresses)
                   + ",DNS:localhost\nbasicConstraints=CA:FALSE\n")

    def run(*argv: str) -> None:
        subprocess.run(["openssl", *argv], check=True, capture_output=True, timeout=60)
    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(ca_key), "-out",
        str(ca), "-days", "2", "-subj", "/CN=vmtools lab pool CA")
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr),
        "-subj", "/CN=vmtools lab pool")
    run("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key),
        "-CAcreateserial", "-out", str(cert), "-days", "2", "-extfile", str(ext))
    for p in (ca_key, key):
        p.chmod(0o600)
    return ca, cert, key


# --------------------------------------------------------------------------- the pool

class Pool:
    """The pool's XAPI objects over the shared cluster state."""

    def __init__(self, state: ClusterState, extras: dict, password: str,
                 boot_seconds: float = 3.0, session_timeout: float = 86400.0,
                 user: str = "root"):
        self.state = state
        self.extras = extras
        self.users = {user: password}
        self.boot_seconds = boot_seconds
        self.session_timeout = session_timeout
        self.lock = threading.RLock()
        self.sessions: dict[str, dict] = {}
        self.tasks: dict[str, dict] = {}
        self.vm_ops: dict[str, dict[str, str]] = {}       # vm name -> {task ref: op}
        self.samples: list[dict] = []                      # RRD history, oldest first
        self.stopping = threading.Event()

    # ---- the world
    def world(self) -> dict:
        """The state, brought to now (booted hosts marked on and enabled). Written back only
        when a host has just booted: most calls only read."""
        st = self.state.read()
        if any(power_of(h) == "booting" for h in st["hosts"].values()):
            with self.state.transaction() as st:
                for name, host in st["hosts"].items():
                    if booted(st, name, self.boot_seconds):
                        host["enabled"] = True
        else:
            advance(st)
        st.setdefault("xapi", {})
        return st

    def faults(self, st: dict) -> dict:
        return st.get("faults", {}).get("xapi", {})

    def master(self, st: dict) -> str:
        return self.extras.get("master") or sorted(st["hosts"])[0]

    def live(self, host: dict) -> bool:
        return power_of(host) == "on" and host.get("up", True)

    # ---- refs
    def host_by_ref(self, st: dict, ref: object) -> str:
        for name in st["hosts"]:
            if ref_of("host", name) == ref:
                return name
        raise Failure("HANDLE_INVALID", "host", ref)

    def vm_by_ref(self, st: dict, ref: object) -> str:
        for name in self._vm_names(st):
            if ref_of("VM", name) == ref:
                return name
        raise Failure("HANDLE_INVALID", "VM", ref)

    def _vm_names(self, st: dict) -> list[str]:
        names = [f"dom0:{h}" for h in st["hosts"]]
        for host in st["hosts"].values():
            names += [d for d in host["domains"] if not d.endswith(INCOMING_SUFFIX)]
        names += [n for n in self.extras.get("halted", {}) if n not in names]
        xst = st.get("xapi", {})
        names += [n for n in xst.get("stopped", {}) if n not in names]
        return names + [n for n in xst.get("checkpoints", {}) if n not in names]

    # ---- records
    def host_record(self, st: dict, name: str) -> dict:
        h = st["hosts"][name]
        rec = {
            "uuid": uuid_of("host", name), "name_label": name, "name_description": "",
            "hostname": name, "address": h["ip"], "enabled": bool(h.get("enabled", True)),
            "metrics": ref_of("host_metrics", name),
            "host_CPUs": [ref_of("host_cpu", f"{name}/{i}") for i in range(int(h["cpus"]))],
            "cpu_info": {"cpu_count": str(h["cpus"]), "socket_count": "1",
                         "vendor": "GenuineIntel", "speed": "2600.000"},
            "resident_VMs": [ref_of("VM", v) for v in self._resident(st, name)],
            "control_domain": ref_of("VM", f"dom0:{name}"),
            "power_on_mode": h.get("power_on_mode", self.extras.get("power_on_mode",
                                                                   "wake-on-lan")),
            "power_on_config": {},
            "API_version_major": "2", "API_version_minor": "21",
            "software_version": {"product_brand": "XCP-ng", "product_version": "8.3.0",
                                 "platform_name": "XCP", "xen": str(h.get("xen", "4.17"))},
            "memory_overhead": str(64 * MIB),
            "PIFs": [ref_of("PIF", name)], "other_config": {}, "tags": [],
            "current_operations": {}, "allowed_operations": ["provision", "evacuate"],
        }
        return self._override(st, "host", name, rec)

    def _resident(self, st: dict, name: str) -> list[str]:
        h = st["hosts"][name]
        if not self.live(h):
            return []
        return [f"dom0:{name}"] + [d for d in h["domains"] if not d.endswith(INCOMING_SUFFIX)]

    def host_metrics_record(self, st: dict, name: str) -> dict:
        h = st["hosts"][name]
        used = h.get("dom0_mib", 0) + sum(d["mem_mib"] for d in h["domains"].values())
        rec = {"uuid": uuid_of("host_metrics", name),
               "memory_total": str(int(h["mem_mib"]) * MIB),
               "memory_free": str(max(0, int(h["mem_mib"]) - used) * MIB),
               "live": self.live(h), "last_updated": _now_iso(), "other_config": {}}
        return self._override(st, "host_metrics", name, rec)

    def vm_record(self, st: dict, name: str) -> dict:
        groups = [ref_of("VM_group", g) for g, spec in self.extras.get("groups", {}).items()
                  if name in spec.get("vms", ())]
        affinity = snapshot_of = NULL
        if name.startswith("dom0:"):
            host = name[5:]
            h = st["hosts"][host]
            mem, vcpus, resident = h.get("dom0_mib", 1024), min(int(h["cpus"]), 16), host
            power = "Running" if self.live(h) else "Halted"
            label, control, domid = f"Control domain on host: {host}", True, 0
            groups = []
        elif name in st.get("xapi", {}).get("checkpoints", {}):
            spec = st["xapi"]["checkpoints"][name]
            mem, vcpus, resident = spec["mem_mib"], spec["vcpus"], None
            # a checkpoint is a snapshot VM whose power_state is Suspended (its memory image
            # is its suspend VDI)
            power, label, control, domid = "Suspended", name, False, -1
            snapshot_of = ref_of("VM", spec["of"])
        elif name in st.get("xapi", {}).get("stopped", {}) or \
                name in self.extras.get("halted", {}):
            spec = st.get("xapi", {}).get("stopped", {}).get(name) or \
                self.extras["halted"][name]
            dom = spec.get("dom", spec)
            mem, vcpus, resident = dom.get("mem_mib", 1024), dom.get("vcpus", 1), None
            power, label, control, domid = spec.get("power_state", "Halted"), name, False, -1
            affinity = ref_of("host", spec["affinity"]) if spec.get("affinity") in st["hosts"] \
                else NULL
        else:
            resident = next(h for h, spec in st["hosts"].items() if name in spec["domains"])
            dom = st["hosts"][resident]["domains"][name]
            mem, vcpus, power = dom["mem_mib"], dom["vcpus"], "Running"
            label, control, domid = name, False, dom.get("domid", 1)
        rec = {
            "uuid": uuid_of("VM", name), "name_label": label, "name_description": "",
            "power_state": power,
            "resident_on": ref_of("host", resident) if resident and power == "Running" else NULL,
            "affinity": affinity, "is_control_domain": control, "is_a_template": False,
            "is_a_snapshot": snapshot_of != NULL, "snapshot_of": snapshot_of,
            "domid": str(domid),
            "memory_static_max": str(mem * MIB), "memory_static_min": str(mem * MIB // 2),
            "memory_dynamic_max": str(mem * MIB), "memory_dynamic_min": str(mem * MIB),
            "memory_target": str(mem * MIB),
            "VCPUs_max": str(vcpus), "VCPUs_at_startup": str(vcpus),
            "metrics": ref_of("VM_metrics", name), "groups": groups,
            "current_operations": dict(self.vm_ops.get(name, {})),
            "allowed_operations": (["pool_migrate", "migrate_send", "suspend", "checkpoint"]
                                   if power == "Running" else ["resume", "resume_on"]
                                   if power == "Suspended" and snapshot_of == NULL else
                                   ["start", "start_on"] if power == "Halted" else []),
            "other_config": {}, "tags": [],
        }
        return self._override(st, "VM", label, rec)

    def vm_metrics_record(self, st: dict, name: str) -> dict:
        vm = self.vm_record(st, name)
        running = vm["power_state"] == "Running"
        rec = {"uuid": uuid_of("VM_metrics", name),
               "memory_actual": vm["memory_target"] if running else "0",
               "VCPUs_number": vm["VCPUs_max"] if running else "0",
               "VCPUs_utilisation": {}, "start_time": _now_iso(), "last_updated": _now_iso()}
        return self._override(st, "VM_metrics", vm["name_label"], rec)

    def group_record(self, st: dict, name: str) -> dict:
        spec = self.extras.get("groups", {})[name]
        vms = [ref_of("VM", v) for v in spec.get("vms", ()) if v in self._vm_names(st)]
        return {"uuid": uuid_of("VM_group", name), "name_label": name,
                "name_description": "", "placement": spec.get("placement", "normal"),
                "VMs": vms}

    def _override(self, st: dict, cls: str, name: str, rec: dict) -> dict:
        extra = self.faults(st).get("override", {}).get(cls, {}).get(name)
        if extra:
            rec = dict(rec, **extra)
        return rec

    def all_records(self, st: dict, cls: str) -> dict:
        if cls == "host":
            return {ref_of("host", h): self.host_record(st, h) for h in st["hosts"]}
        if cls == "host_metrics":
            return {ref_of("host_metrics", h): self.host_metrics_record(st, h)
                    for h in st["hosts"]}
        if cls == "VM":
            return {ref_of("VM", v): self.vm_record(st, v) for v in self._vm_names(st)}
        if cls == "VM_metrics":
            return {ref_of("VM_metrics", v): self.vm_metrics_record(st, v)
                    for v in self._vm_names(st)}
        if cls == "VM_group":
            return {ref_of("VM_group", g): self.group_record(st, g)
                    for g in self.extras.get("groups", {})}
        if cls == "pool":
            return {ref_of("pool", "pool"): {"uuid": uuid_of("pool", "pool"),
                                             "name_label": "lab-pool",
                                             "master": ref_of("host", self.master(st))}}
        if cls == "PIF":
            return {ref_of("PIF", h): {"uuid": uuid_of("PIF", h), "device": "eth0",
                                       "host": ref_of("host", h), "management": True,
                                       "network": ref_of("network", "eth0"),
                                       "IP": st["hosts"][h]["ip"]} for h in st["hosts"]}
        if cls == "network":
            return {ref_of("network", "eth0"): {
                "uuid": uuid_of("network", "eth0"),
                "name_label": "Pool-wide network associated with eth0",
                "PIFs": [ref_of("PIF", h) for h in st["hosts"]]}}
        if cls == "task":
            with self.lock:
                return {ref: self._task_record(t) for ref, t in self.tasks.items()}
        raise Failure("MESSAGE_METHOD_UNKNOWN", f"{cls}.get_all_records")

    def _task_record(self, t: dict) -> dict:
        return {"uuid": t["uuid"], "name_label": t["name"], "status": t["status"],
                "progress": float(t["progress"]), "result": t["result"],
                "error_info": list(t["error_info"]), "created": t["created"],
                "finished": t.get("finished", xmlrpc.client.DateTime("19700101T00:00:00Z")),
                "resident_on": t["resident_on"], "other_config": {}}

    # ---- the XML-RPC dispatcher
    def dispatch(self, method: str, params: tuple) -> object:
        if method == "session.login_with_password":
            return self.login(*params[:2])
        if not params:
            raise Failure("SESSION_INVALID", "")
        session, args = params[0], params[1:]
        self.check_session(session)
        if method == "session.logout":
            with self.lock:
                self.sessions.pop(session, None)
            return ""
        st = self.world()
        faults = self.faults(st)
        if method in faults.get("value", {}):
            return faults["value"][method]
        is_async = method.startswith("Async.")
        name = method[6:] if is_async else method
        cls, _, verb = name.rpartition(".")
        handler = getattr(self, f"m_{cls}_{verb}", None)
        if handler is None:
            if verb == "get_all_records" and not args:
                return self.all_records(st, cls)
            if verb == "get_all" and not args:
                return list(self.all_records(st, cls))
            if verb == "get_all_records_where" and len(args) == 1:
                terms = _where(args[0])
                return {ref: rec for ref, rec in self.all_records(st, cls).items()
                        if all(_field_text(rec.get(k)) == v for k, v in terms)}
            if verb in ("get_record",) and len(args) == 1:
                recs = self.all_records(st, cls)
                if args[0] not in recs:
                    raise Failure("HANDLE_INVALID", cls, args[0])
                return recs[args[0]]
            if verb.startswith("get_") and len(args) == 1 and cls != "task":
                recs = self.all_records(st, cls)
                if args[0] not in recs:
                    raise Failure("HANDLE_INVALID", cls, args[0])
                field = verb[4:]
                if field in recs[args[0]]:
                    return recs[args[0]][field]
            raise Failure("MESSAGE_METHOD_UNKNOWN", method)
        if is_async:
            return self.run_async(name, handler, st, args)
        return handler(st, *args)

    def login(self, user: object = None, password: object = None) -> str:
        if self.users.get(user) != password or not isinstance(password, str):
            raise Failure("SESSION_AUTHENTICATION_FAILED", user, "Authentication failure")
        ref = "OpaqueRef:" + str(_uuid.uuid4())
        with self.lock:
            self.sessions[ref] = {"user": user, "made": time.time(), "last": time.time()}
        return ref

    def check_session(self, session: object) -> None:
        now = time.time()
        st = self.state.read()
        expire_before = self.faults(st).get("expire_before")
        with self.lock:
            s = self.sessions.get(session)
            if s is not None and (now - s["last"] > self.session_timeout or
                                  (expire_before is not None and s["made"] < expire_before)):
                self.sessions.pop(session, None)
                s = None
            if s is None:
                raise Failure("SESSION_INVALID", session)
            s["last"] = now

    # ---- tasks
    def new_task(self, name: str, resident_on: str) -> tuple[str, dict]:
        ref = "OpaqueRef:" + str(_uuid.uuid4())
        task = {"uuid": str(_uuid.uuid4()), "name": name, "status": "pending", "progress": 0.0,
                "result": "", "error_info": [], "created": _now_iso(),
                "resident_on": resident_on, "cancel": threading.Event()}
        with self.lock:
            self.tasks[ref] = task
        return ref, task

    def finish(self, task: dict, status: str, result: str = "", error: list | None = None):
        with self.lock:
            task.update(status=status, result=result, error_info=error or [], progress=1.0,
                        finished=_now_iso())

    def run_async(self, name: str, handler, st: dict, args: tuple) -> str:
        ref, task = self.new_task(f"Async.{name}", ref_of("host", self.master(st)))

        def work() -> None:
            try:
                value = handler(st, *args, task=task) if name in TASK_AWARE \
                    else handler(self.world(), *args)
                if task["status"] in ("pending", "cancelling"):
                    # the result is the call's value as XML-RPC text; a void call's is ""
                    self.finish(task, "success", f"<value>{value}</value>" if value else "")
            except Failure as exc:
                self.finish(task, "cancelled" if exc.description[0] == "TASK_CANCELLED"
                            else "failure", error=exc.description)
            except Exception as exc:  # noqa: BLE001 - the simulated master must not die
                log.exception("task %s", name)
                self.finish(task, "failure", error=["INTERNAL_ERROR", str(exc)])
        threading.Thread(target=work, name=f"task-{name}", daemon=True).start()
        return ref

    def m_task_get_status(self, st, ref):
        return self._task(ref)["status"]

    def m_task_get_result(self, st, ref):
        return self._task(ref)["result"]

    def m_task_get_error_info(self, st, ref):
        return list(self._task(ref)["error_info"])

    def m_task_get_progress(self, st, ref):
        return float(self._task(ref)["progress"])

    def m_task_get_record(self, st, ref):
        return self._task_record(self._task(ref))

    def m_task_cancel(self, st, ref):
        task = self._task(ref)
        if task["status"] != "pending":
            raise Failure("OPERATION_NOT_ALLOWED", "task is not pending")
        with self.lock:
            task["status"] = "cancelling"
        task["cancel"].set()
        return ""

    def m_task_destroy(self, st, ref):
        with self.lock:
            if self.tasks.pop(ref, None) is None:
                raise Failure("HANDLE_INVALID", "task", ref)
        return ""

    def _task(self, ref) -> dict:
        with self.lock:
            task = self.tasks.get(ref)
        if task is None:
            raise Failure("HANDLE_INVALID", "task", ref)
        return task

    # ---- hosts
    def m_host_get_by_name_label(self, st, label):
        return [ref_of("host", h) for h in st["hosts"] if h == label]

    def m_host_disable(self, st, ref, *auto_enable):
        name = self.host_by_ref(st, ref)
        with self.state.transaction() as st2:
            st2["hosts"][name]["enabled"] = False
        return ""

    def m_host_enable(self, st, ref):
        name = self.host_by_ref(st, ref)
        if not self.live(st["hosts"][name]):
            raise Failure("HOST_OFFLINE", ref)
        with self.state.transaction() as st2:
            st2["hosts"][name]["enabled"] = True
        return ""

    def m_host_shutdown(self, st, ref):
        name = self.host_by_ref(st, ref)
        host = st["hosts"][name]
        if not self.live(host):
            raise Failure("HOST_OFFLINE", ref)
        if host.get("enabled", True):
            raise Failure("HOST_NOT_DISABLED")
        guests = [d for d in host["domains"]]
        if guests:
            raise Failure("HOST_IN_USE", ref, "vm", ref_of("VM", guests[0].removesuffix(
                INCOMING_SUFFIX)))

        def later() -> None:            # the real host goes down after the call returns
            time.sleep(0.3)
            with self.state.transaction() as st2:
                switch_off(st2, name)
        threading.Thread(target=later, daemon=True).start()
        return ""

    def m_host_power_on(self, st, ref):
        name = self.host_by_ref(st, ref)
        rec = self.host_record(st, name)
        if not rec["power_on_mode"]:
            raise Failure("HOST_POWER_ON_MODE_DISABLED")
        if self.live(st["hosts"][name]):
            raise Failure("HOST_IS_LIVE", ref)
        with self.state.transaction() as st2:
            switch_on(st2, name)
        return ""

    def m_host_migrate_receive(self, st, ref, network, options):
        name = self.host_by_ref(st, ref)
        if network != ref_of("network", "eth0"):
            raise Failure("HANDLE_INVALID", "network", network)
        if not self.live(st["hosts"][name]):
            raise Failure("HOST_OFFLINE", ref)
        return {"host": ref, "xenops": f"http://{st['hosts'][name]['ip']}/services/xenops",
                "SM": f"http://{st['hosts'][name]['ip']}/services/SM",
                "master": f"http://{st['hosts'][self.master(st)]['ip']}/",
                "session_id": "OpaqueRef:" + str(_uuid.uuid4())}

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
        key = "OpaqueRef:" + str(_uuid.uuid4())
        with self.lock:
            self.vm_ops.setdefault(name, {})[key] = "pool_migrate"
        try:
            stubborn = name in faults.get("uncancellable", ())
            if name in faults.get("hang", ()):
                # until cancelled, or until the fault is lifted: then the migration goes on
                while name in self.faults(self.state.read()).get("hang", ()):
                    if self.stopping.is_set():
                        raise Failure("INTERNAL_ERROR", "xapi is stopping")
                    if cancel.is_set() and not stubborn:
                        raise Failure("TASK_CANCELLED", key)
                    time.sleep(0.05)
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
            with self.lock:
                ops = self.vm_ops.get(name, {})
                ops.pop(key, None)
                if not ops:
                    self.vm_ops.pop(name, None)
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

    # ---- RRDs
    def sample(self) -> None:
        """One RRD sample of every host and running guest (the lab calls it every second)."""
        st = self.state.read()
        now = time.time()
        row: dict = {"t": now, "hosts": {}, "vms": {}}
        for name, host in st["hosts"].items():
            if not self.live(host):
                continue
            loads = {d: spec.get("load", 0.0) for d, spec in host["domains"].items()
                     if not d.endswith(INCOMING_SUFFIX)}
            cpus = int(host["cpus"])
            used = host.get("dom0_mib", 0) + sum(d["mem_mib"] for d in host["domains"].values())
            net = sum(spec.get("net_mbps", 0.0) for spec in host["domains"].values())
            row["hosts"][name] = {"cpu": min(1.0, sum(loads.values()) / cpus), "cpus": cpus,
                                  "mem_total_kib": host["mem_mib"] * 1024,
                                  "mem_free_kib": max(0, host["mem_mib"] - used) * 1024,
                                  "net_bytes": net * 1e6 / 8}
            for d, load in loads.items():
                spec = host["domains"][d]
                vcpus = max(1, int(spec.get("vcpus", 1)))
                row["vms"][d] = {"host": name, "vcpus": vcpus,
                                 "cpu": min(1.0, load / vcpus), "mem": spec["mem_mib"] * MIB,
                                 "net_bytes": spec.get("net_mbps", 0.0) * 1e6 / 8}
        with self.lock:
            self.samples.append(row)
            del self.samples[:-3600]

    def rrd_updates(self, host: str, query: dict) -> str:
        st = self.state.read()
        start = float(query.get("start", ["0"])[0])
        interval = max(1, int(float(query.get("interval", ["5"])[0])))
        with_host = query.get("host", ["false"])[0] == "true"
        cf = query.get("cf", ["AVERAGE"])[0]
        residents = set(self._resident(st, host)) - {f"dom0:{host}"}
        with self.lock:
            rows = [r for r in self.samples if r["t"] >= start]
        buckets: dict[int, list[dict]] = {}
        for r in rows:
            buckets.setdefault(int(r["t"]) // interval * interval, []).append(r)
        hcpus = int(st["hosts"][host]["cpus"])
        legend: list[str] = []
        columns: list = []           # (kind, name, field)
        if with_host:
            hu = uuid_of("host", host)
            for i in range(hcpus):
                legend.append(f"{cf}:host:{hu}:cpu{i}")
                columns.append(("hosts", host, "cpu"))
            for fld, key in (("cpu_avg", "cpu"), ("memory_total_kib", "mem_total_kib"),
                             ("memory_free_kib", "mem_free_kib"), ("pif_eth0_rx", "net_bytes"),
                             ("pif_eth0_tx", "net_bytes")):
                legend.append(f"{cf}:host:{hu}:{fld}")
                columns.append(("hosts", host, key))
        for vm in sorted(residents):
            vu = uuid_of("VM", vm)
            vcpus = int(st["hosts"][host]["domains"][vm].get("vcpus", 1))
            for i in range(vcpus):
                legend.append(f"{cf}:vm:{vu}:cpu{i}")
                columns.append(("vms", vm, "cpu"))
            for fld, key in (("memory", "mem"), ("vif_0_rx", "net_bytes"),
                             ("vif_0_tx", "net_bytes")):
                legend.append(f"{cf}:vm:{vu}:{fld}")
                columns.append(("vms", vm, key))
        out_rows = []
        for t in sorted(buckets, reverse=True):
            values = []
            for kind, name, key in columns:
                got = [r[kind][name][key] for r in buckets[t] if name in r[kind]]
                if key == "net_bytes" and kind == "vms":
                    got = [g / 2 for g in got]       # rx and tx each carry half
                values.append(sum(got) / len(got) if got else float("nan"))
            out_rows.append((t, values))
        faults = self.faults(st).get("rrd", {})
        if host in faults:
            return faults[host]
        parts = ["<?xml version=\"1.0\"?><xport><meta>",
                 f"<start>{min(buckets) if buckets else int(start)}</start>",
                 f"<step>{interval}</step>",
                 f"<end>{max(buckets) if buckets else int(start)}</end>",
                 f"<rows>{len(out_rows)}</rows><columns>{len(legend)}</columns><legend>"]
        parts += [f"<entry>{e}</entry>" for e in legend]
        parts.append("</legend></meta><data>")
        for t, values in out_rows:
            parts.append(f"<row><t>{t}</t>" + "".join(
                f"<v>{'NaN' if v != v else format(v, '.4f')}</v>" for v in values) + "</row>")
        parts.append("</data></xport>")
        return "".join(parts)


def _where(expr: object) -> list[tuple[str, str]]:
    """``field "a" = "b" and field "c" = "d"`` (XAPI's query language, the conjunctions of
    equalities clients use) as [(a, b), (c, d)]."""
    if not isinstance(expr, str):
        raise Failure("INVALID_VALUE", "expr", str(expr)[:40])
    terms = []
    for part in re.split(r"\)?\s+and\s+\(?", expr.strip().strip("()")):
        m = re.fullmatch(r'\s*field\s*"([^"]+)"\s*=\s*"([^"]*)"\s*', part)
        if not m:
            raise Failure("INVALID_VALUE", "expr", expr[:60])
        terms.append((m.group(1), m.group(2)))
    return terms


def _field_text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


# --------------------------------------------------------------------------- HTTP

class _Handler(http.server.BaseHTTPRequestHandler):
    server_version = "xapi"
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):  # noqa: D401 - quiet
        log.debug("%s %s", self.address_string(), fmt % args)

    def _send(self, code: int, body: bytes, ctype: str = "text/xml") -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        pool: Pool = self.server.pool                       # type: ignore[attr-defined]
        host: str = self.server.host                        # type: ignore[attr-defined]
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        try:
            params, method = xmlrpc.client.loads(body, use_builtin_types=False)
        except Exception:  # noqa: BLE001
            self._send(400, b"bad XML-RPC")
            return
        st = pool.state.read()
        raw = pool.faults(st).get("raw", {})
        if method in raw:
            answer = raw[method]
        elif host != pool.master(st):
            answer = {"Status": "Failure", "ErrorDescription":
                      ["HOST_IS_SLAVE", st["hosts"][pool.master(st)]["ip"]]}
        else:
            try:
                answer = {"Status": "Success", "Value": pool.dispatch(method, params)}
            except Failure as exc:
                answer = {"Status": "Failure", "ErrorDescription": exc.description}
            except TypeError:
                answer = {"Status": "Failure", "ErrorDescription":
                          ["MESSAGE_PARAMETER_COUNT_MISMATCH", method, "?", str(len(params))]}
        try:
            data = xmlrpc.client.dumps((answer,), methodresponse=True, allow_none=False)
        except TypeError:
            data = xmlrpc.client.dumps(("garbage",), methodresponse=True)
        self._send(200, data.encode())

    def do_GET(self) -> None:  # noqa: N802
        pool: Pool = self.server.pool                       # type: ignore[attr-defined]
        url = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(url.query)
        if url.path != "/rrd_updates":
            self._send(404, b"not found", "text/plain")
            return
        if not pool.live(pool.state.read()["hosts"][self.server.host]):  # type: ignore
            self.close_connection = True         # a host that is off answers nothing
            return
        try:
            pool.check_session(query.get("session_id", [""])[0])
        except Failure:
            self._send(401, b"Unauthorised", "text/plain")
            return
        body = pool.rrd_updates(self.server.host, query)   # type: ignore[attr-defined]
        self._send(200, body.encode())


class _Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class XapiLab:
    """The simulated pool: the master's XML-RPC and every host's ``/rrd_updates``, on each
    host's loopback address (``127.0.1.N``), one port for all."""

    def __init__(self, state: ClusterState, extras: dict, directory: Path,
                 boot_seconds: float = 3.0, port: int = 0, tls: bool = True,
                 session_timeout: float = 86400.0):
        self.state = state
        self.dir = Path(directory)
        self.password = secrets.token_urlsafe(18)
        self.pool = Pool(state, extras, self.password, boot_seconds, session_timeout)
        self.port = port
        self.tls = tls
        self.servers: dict[str, _Server] = {}
        self.threads: list[threading.Thread] = []
        self.ca = self.cert = self.key = None
        self.credentials = self.dir / "xapi.toml"

    @property
    def master(self) -> str:
        return self.pool.master(self.state.read())

    @property
    def url(self) -> str:
        st = self.state.read()
        scheme = "https" if self.tls else "http"
        return f"{scheme}://{st['hosts'][self.pool.master(st)]['ip']}:{self.port}"

    def fingerprint(self) -> str:
        import hashlib
        der = ssl.PEM_cert_to_DER_cert(Path(self.cert).read_text())
        return hashlib.sha256(der).hexdigest()

    def start(self) -> "XapiLab":
        self.dir.mkdir(parents=True, exist_ok=True)
        st = self.state.read()
        addresses = {name: h["ip"] for name, h in st["hosts"].items()}
        if self.tls:
            self.ca, self.cert, self.key = make_certificates(self.dir / "tls",
                                                             sorted(addresses.values()))
        fd = self.credentials.open("w")
        self.credentials.chmod(0o600)
        fd.write(f'username = "root"\npassword = "{self.password}"\n')
        fd.close()
        master = self.pool.master(st)
        order = [master] + sorted(set(addresses) - {master})
        for name in order:
            server = _Server((addresses[name], self.port), _Handler)
            if self.port == 0:
                self.port = server.server_address[1]
            if self.tls:
                ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
                ctx.load_cert_chain(str(self.cert), str(self.key))
                server.socket = ctx.wrap_socket(server.socket, server_side=True)
            server.pool = self.pool              # type: ignore[attr-defined]
            server.host = name                   # type: ignore[attr-defined]
            self.servers[name] = server
            t = threading.Thread(target=server.serve_forever, name=f"xapi-{name}",
                                 daemon=True)
            t.start()
            self.threads.append(t)
        sampler = threading.Thread(target=self._sample, name="xapi-rrd", daemon=True)
        sampler.start()
        self.threads.append(sampler)
        return self

    def _sample(self) -> None:
        while not self.pool.stopping.wait(1.0):
            try:
                self.pool.world()          # boots hosts switched on
                self.pool.sample()
            except (OSError, ValueError, KeyError) as exc:
                log.debug("rrd sampler: %s", exc)

    def stop(self) -> None:
        self.pool.stopping.set()
        for server in self.servers.values():
            server.shutdown()
            server.server_close()
        self.servers.clear()
