"""The simulated pool master's objects (:mod:`vmtools.lab.xapi`): references, the world
brought to now, the records of each class with the data model's field names and types, and
the ``field "a" = "b" and ...`` queries of ``get_all_records_where``; the :class:`Failure` its
calls raise."""

from __future__ import annotations

import datetime as _dt
import re
import uuid as _uuid
import xmlrpc.client

from vmtools.lab.cluster import advance
from vmtools.lab.power import booted, power_of
from vmtools.xen import INCOMING_SUFFIX

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



class PoolRecords:
    """The records part of :class:`vmtools.lab.xapi.Pool`."""

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
