"""Read a XCP-ng / XenServer pool through its master's XAPI: a source's reading
(:mod:`vmtools.sources`; the kind ``xapi`` is :mod:`vmtools.xapi.reading`).

What is read (no call changes anything):

- ``pool.get_all_records`` (the pool's name: the hosts' cluster; its master);
- ``host.get_all_records`` and ``host_metrics.get_all_records``: each host's ``name_label``,
  ``enabled``, ``address``, ``host_CPUs`` (its CPU count), ``memory_overhead``,
  ``power_on_mode``, ``software_version.xen``, and its metrics' ``live``,
  ``memory_total`` and ``last_updated``;
- ``VM.get_all_records`` and ``VM_metrics.get_all_records``: each guest's ``name_label``,
  ``power_state``, ``resident_on``, ``memory_*``, ``VCPUs_max``, ``groups``; control
  domains (whose memory is taken from their host's), templates and snapshots left out;
- ``VM_group.get_all_records`` (XAPI 24.19 and later): groups with ``placement``
  ``anti_affinity``;
- ``GET /rrd_updates?start=NOW-WINDOW&cf=AVERAGE&interval=5&host=true`` on each live host's
  own address (each host serves only its own figures): a guest's ``cpuN`` (fraction of each
  vCPU) summed is its demand in physical CPUs (the mean over the window, and each row as a
  CPU sample in the reading's ``samples``, for vm-plan's ``--demand``), its
  ``vif_N_rx``/``vif_N_tx`` (bytes/s) its network use.

What it becomes:

- a live host is ``online``; a host that is not live is ``standby`` when it has a
  ``power_on_mode`` (XAPI can switch it on: Wake-on-LAN or IPMI), else ``offline``;
- a live but disabled host (XAPI's maintenance mode) is ``online`` and named in a
  ``maintenance`` rule: the plan evacuates it and sends it nothing;
- an ``anti_affinity`` VM group with two or more running guests is a ``spread`` rule, as
  long as the pool has enough enabled live hosts to spread it (XAPI's anti-affinity is best
  effort; a group larger than that is reported on stderr and left to XAPI);
- the rules travel in the snapshot's ``rules`` (vmtools-formats(5)); vm-plan obeys them;
- Running and Paused guests are placed; Halted and Suspended ones hold no host's memory or
  CPU and are not placed: they are the snapshot's ``stopped`` list (vmtools-formats(5)), with
  their vCPUs, ``memory_static_max`` (what starting them claims) and, when the VM has an
  ``affinity`` host of the pool, that host; a guest whose ``name_label`` is not a safe name
  (XAPI's labels are free text: "Web server (1)") goes by its ``uuid``, as the driver names it
  too (:func:`vmtools.drivers.xapi_pool.guest_name`);
- a figure of the wrong type, out of range (negative, beyond any host), a reference to no
  object of the pool, an unsafe or reserved name, a host whose ``/rrd_updates`` cannot be
  read: a problem naming it (as for Ganglia), never a crash.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import re
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone

from vmtools.drivers.xapi_pool import XapiError, XapiPool, guest_name, is_ref
from vmtools.errors import DataError, Unavailable
from vmtools.model import (HOST_MAX_CPU, HOST_MAX_MIB, VM, Host, Problem, epoch_to_iso,
                           is_reserved_name, is_safe_name, stopped_entry)
from vmtools.sources.base import Reading
from vmtools.xapi.rrd import parse_rrd_export

log = logging.getLogger("vmtools.snapshot")

MIB = 1024 * 1024
DEFAULT_WINDOW = 60.0
RRD_INTERVAL = 5
TRANSPORT = "xapi"
_HOSTNAME = re.compile(r"(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?")


def _stopped_guest(r, rec: dict, power: str, host_name: dict[str, str]) -> dict | None:
    """A Halted or Suspended VM as an entry of the snapshot's ``stopped`` list, or None
    (a problem says why) when its name or figures cannot be read."""
    name = guest_name(rec)
    label = rec.get("name_label")
    if name is None:
        r.problem("unsafe-name", f"a {power.lower()} guest named {_shown(label)} without a "
                  "uuid: not a safe name; left out")
        return None
    mem = r.integer(rec, "memory_static_max", f"guest {name}", 1, HOST_MAX_MIB * MIB, vm=name)
    vcpus = r.integer(rec, "VCPUs_max", f"guest {name}", 1, HOST_MAX_CPU, vm=name)
    if mem is None or vcpus is None:
        return None
    return stopped_entry(name, power.lower(), vcpus, -(-mem // MIB),
                         host_name.get(rec.get("affinity")))


def _shown(value) -> str:
    text = repr(value) if not isinstance(value, str) else value
    text = "".join(ch if ch.isprintable() else "?" for ch in text)
    return text if len(text) <= 40 else text[:37] + "..."


def _address_ok(text) -> bool:
    if not isinstance(text, str):
        return False
    try:
        ipaddress.ip_address(text)
        return True
    except ValueError:
        return _HOSTNAME.fullmatch(text) is not None


class _Reader:
    def __init__(self):
        self.problems: list[Problem] = []

    def problem(self, kind: str, message: str, host: str | None = None,
                vm: str | None = None) -> None:
        self.problems.append(Problem(kind=kind, message=message, host=host, vm=vm))

    def integer(self, rec: dict, key: str, what: str, low: int, high: int,
                host: str | None = None, vm: str | None = None) -> int | None:
        """An int64 field (XAPI sends them as decimal strings) within [low, high], else a
        bad-value problem and None."""
        value = rec.get(key)
        if isinstance(value, str) and re.fullmatch(r"-?\d{1,40}", value.strip()):
            number = int(value)
        elif isinstance(value, int) and not isinstance(value, bool):
            number = value
        else:
            self.problem("bad-value", f"{what}: {key} is {_shown(value)}, not an integer",
                         host, vm)
            return None
        if not low <= number <= high:
            self.problem("bad-value", f"{what}: {key} {_shown(str(number))} is outside "
                         f"{low}..{high}", host, vm)
            return None
        return number


def read_pool(pool: XapiPool, window: float = DEFAULT_WINDOW,
              now: float | None = None) -> Reading:
    """The pool as a reading (:mod:`vmtools.sources`): its migration domain is the pool.
    Unavailable when the master cannot be reached or trusted; DataError when a whole answer
    is no XAPI answer. The steps, in this order (problems come in it): every class's records,
    the hosts, the live hosts' RRDs, the guests, the pool's own rules."""
    now = time.time() if now is None else now
    r = _Reader()
    base = pool.settings.base
    got = {cls: _all_records(pool, r, cls, optional=cls == "VM_group")
           for cls in ("pool", "host", "host_metrics", "VM", "VM_metrics", "VM_group")}
    cluster, domain = _pool_identity(got["pool"], base)
    kept = _read_hosts(r, got["host"], got["host_metrics"], got["VM"], cluster, now)
    rrd, series, rrd_failed = _read_rrds(pool, r, kept.addresses, now, window)
    guests = _read_guests(r, got["VM"], got["VM_metrics"], kept, rrd, series, rrd_failed)
    rules = _pool_rules(r, got["VM_group"], guests.vm_name, kept)
    return Reading(source=f"xapi {base}",
                   hosts=sorted(kept.hosts.values(), key=lambda h: h.name),
                   vms=sorted(guests.vms.values(), key=lambda v: v.name), problems=r.problems,
                   migration_domain=domain, rules=rules, samples=guests.samples,
                   stopped=guests.stopped)


def _all_records(pool: XapiPool, r: _Reader, cls: str, optional: bool = False
                 ) -> dict[str, dict]:
    """``<cls>.get_all_records``: ref -> record; an entry that is not one is a problem and
    left out. ``optional``: a pool without the class answers nothing."""
    base = pool.settings.base
    try:
        got = pool.call(f"{cls}.get_all_records")
    except XapiError as exc:
        if optional and exc.code == "MESSAGE_METHOD_UNKNOWN":
            return {}
        raise Unavailable(f"XAPI at {base}: {exc}") from None
    if not isinstance(got, dict):
        raise DataError(f"XAPI {cls}.get_all_records: expected a struct of records, got "
                        f"{type(got).__name__}", base)
    out = {}
    for ref, rec in got.items():
        if is_ref(ref) and isinstance(rec, dict):
            out[ref] = rec
        else:
            r.problem("bad-value", f"{cls}.get_all_records: an entry {_shown(ref)} that "
                      "is not a reference to a record; left out")
    return out


def _pool_identity(pools: dict[str, dict], base: str) -> tuple[str, str | None]:
    """(the cluster name: the pool's name_label when printable; the migration domain)."""
    cluster, domain = "", None
    for rec in pools.values():
        label = rec.get("name_label")
        cluster = label if isinstance(label, str) and label.isprintable() and \
            len(label) <= 200 else ""
        domain = f"xapi-pool:{rec['uuid']}" if isinstance(rec.get("uuid"), str) and \
            re.fullmatch(r"[0-9a-f-]{36}", rec["uuid"]) else f"xapi-pool:{base}"
    return cluster, domain


@dataclass
class _Hosts:
    """The hosts kept, and what the later steps need of them."""
    hosts: dict[str, Host] = field(default_factory=dict)
    name_of: dict[str, str] = field(default_factory=dict)       # ref -> name, hosts kept
    addresses: dict[str, str] = field(default_factory=dict)     # live hosts' addresses
    live_enabled: set[str] = field(default_factory=set)
    maintenance: list[str] = field(default_factory=list)        # live, disabled


def _read_hosts(r: _Reader, hosts_rec: dict, metrics_rec: dict, vms_rec: dict, cluster: str,
                now: float) -> _Hosts:
    out = _Hosts()
    control_mem: dict[str, int] = {}
    for ref, vm in vms_rec.items():          # a control domain's memory is its host's
        if vm.get("is_control_domain") is True and is_ref(vm.get("resident_on")):
            mem = r.integer(vm, "memory_target", "control domain", 0, HOST_MAX_MIB * MIB)
            if mem is not None:
                control_mem[vm["resident_on"]] = mem
    for ref, rec in sorted(hosts_rec.items(), key=lambda kv: str(kv[1].get("name_label"))):
        host = _host(r, rec, metrics_rec, control_mem.get(ref, 0), out.hosts, cluster, now)
        if host is None:
            continue
        name, live = host.name, host.state == "online"
        out.hosts[name] = host
        out.name_of[ref] = name
        if live and _address_ok(rec.get("address")):
            out.addresses[name] = rec["address"]
        elif live:
            r.problem("bad-value", f"host {name}: address {_shown(rec.get('address'))} is "
                      "not an address; its CPU and network figures cannot be read", name)
        if live and rec.get("enabled"):
            out.live_enabled.add(name)
        elif live:
            out.maintenance.append(name)
    return out


def _host(r: _Reader, rec: dict, metrics_rec: dict, control_mem: int, kept: dict[str, Host],
          cluster: str, now: float) -> Host | None:
    """One host record as a Host, or None (a problem says why)."""
    name = rec.get("name_label")
    if not is_safe_name(name):
        r.problem("unsafe-name", f"a host named {_shown(name)}: not a safe name; left out")
        return None
    if is_reserved_name(name):
        r.problem("reserved-name", f"a host named {name}; left out", name)
        return None
    if name in kept:
        r.problem("duplicate-host", f"two hosts of the pool are named {name}; the first "
                  "is kept", name)
        return None
    metrics = metrics_rec.get(rec.get("metrics"))
    if metrics is None:
        r.problem("bad-value", f"host {name}: its metrics {_shown(rec.get('metrics'))} "
                  "are no host_metrics of the pool; left out", name)
        return None
    live, enabled = metrics.get("live"), rec.get("enabled")
    if not isinstance(live, bool) or not isinstance(enabled, bool):
        r.problem("bad-value", f"host {name}: live {_shown(live)} / enabled "
                  f"{_shown(enabled)} are not booleans; left out", name)
        return None
    cpus = rec.get("host_CPUs")
    ncpu = len(cpus) if isinstance(cpus, list) and all(is_ref(c) for c in cpus) else None
    if not ncpu or ncpu > HOST_MAX_CPU:
        r.problem("bad-value", f"host {name}: host_CPUs {_shown(cpus)} is not a list of "
                  f"1 to {HOST_MAX_CPU} CPU references; left out", name)
        return None
    total = r.integer(metrics, "memory_total", f"host {name}", 1, HOST_MAX_MIB * MIB * 2,
                      host=name)
    overhead = r.integer(rec, "memory_overhead", f"host {name}", 0, HOST_MAX_MIB * MIB,
                         host=name) if "memory_overhead" in rec else 0
    if total is None or overhead is None:
        return None
    mem_mib = (total - control_mem - overhead) // MIB
    if not 0 <= mem_mib <= HOST_MAX_MIB:
        r.problem("bad-value", f"host {name}: memory_total {total} less its control "
                  "domain and overhead is no host's memory; left out", name)
        return None
    mode = rec.get("power_on_mode")
    state = "online" if live else ("standby" if isinstance(mode, str) and mode
                                   else "offline")
    software = rec.get("software_version")
    xen = software.get("xen") if isinstance(software, dict) else None
    hypervisor = f"xen-{xen}" if isinstance(xen, str) and re.fullmatch(
        r"[0-9][0-9A-Za-z.+~-]{0,30}", xen) else "xen"
    reported = _iso(metrics.get("last_updated")) or epoch_to_iso(now)
    return Host(name=name, cluster=cluster, state=state, cpu=float(ncpu),
                mem_mib=int(mem_mib), hypervisor=hypervisor, migration=TRANSPORT,
                reported=reported)


def _read_rrds(pool: XapiPool, r: _Reader, addresses: dict[str, str], now: float,
               window: float):
    """Every live host's ``/rrd_updates`` at once: (figures by (kind, uuid), CPU series by
    uuid, the hosts whose RRDs could not be read and why)."""
    rrd: dict[tuple[str, str], dict[str, float]] = {}
    series: dict[str, list[tuple[float, float]]] = {}
    rrd_failed: dict[str, str] = {}

    def fetch(name: str):
        try:
            body = pool.get("/rrd_updates", {"start": str(int(now - window)), "cf": "AVERAGE",
                                             "interval": str(RRD_INTERVAL), "host": "true"},
                            address=addresses[name])
            return name, parse_rrd_export(body, f"{name} /rrd_updates", since=now - window)
        except (Unavailable, DataError) as exc:
            return name, exc
    if addresses:
        with ThreadPoolExecutor(max_workers=min(8, len(addresses))) as ex:
            for name, got in ex.map(fetch, sorted(addresses)):
                if isinstance(got, Exception):
                    rrd_failed[name] = str(got)
                    r.problem("no-data", f"host {name}: its /rrd_updates could not be read "
                              f"({got}); its guests' CPU is unknown", name)
                else:
                    rrd.update(got[0])
                    series.update(got[1])
    return rrd, series, rrd_failed


@dataclass
class _Guests:
    vms: dict[str, VM] = field(default_factory=dict)
    samples: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    stopped: list[dict] = field(default_factory=list)
    vm_name: dict[str, str] = field(default_factory=dict)       # ref -> name, guests kept


def _read_guests(r: _Reader, vms_rec: dict, vm_metrics: dict, kept: _Hosts, rrd: dict,
                 series: dict, rrd_failed: dict[str, str]) -> _Guests:
    """The running and paused guests (and the halted and suspended ones, apart)."""
    out = _Guests()
    not_running: list[str] = []
    renamed: list[str] = []
    for ref, rec in sorted(vms_rec.items(), key=lambda kv: str(kv[1].get("name_label"))):
        if rec.get("is_control_domain") is not False or rec.get("is_a_template") is True \
                or rec.get("is_a_snapshot") is True:
            continue
        label = rec.get("name_label")
        power = rec.get("power_state")
        if power in ("Halted", "Suspended"):
            not_running.append(f"{_shown(label)} ({power})")
            entry = _stopped_guest(r, rec, power, kept.name_of)
            if entry is not None:
                out.stopped.append(entry)
            continue
        if power not in ("Running", "Paused"):
            r.problem("bad-value", f"guest {_shown(label)}: power_state {_shown(power)} is "
                      "none of XAPI's; left out")
            continue
        name = guest_name(rec)
        if name is None:
            r.problem("unsafe-name", f"a guest named {_shown(label)} without a uuid: not a "
                      "safe name; left out")
            continue
        if name != label:
            renamed.append(f"{_shown(label)} as {name}")
        host = kept.name_of.get(rec.get("resident_on"))
        if host is None:
            r.problem("bad-value", f"guest {name} is {power} but resident_on "
                      f"{_shown(rec.get('resident_on'))} is no host of the pool kept here; "
                      "left out", vm=name)
            continue
        if name in out.vms:
            r.problem("duplicate-guest", f"two guests of the pool are named {name} (on "
                      f"{out.vms[name].host} and {host}); the first is kept", host, name)
            continue
        vm = _running_guest(r, rec, name, kept.hosts[host], vm_metrics, rrd,
                            host in rrd_failed)
        if vm is None:
            continue
        out.vms[name] = vm
        out.vm_name[ref] = name
        if series.get(rec["uuid"]):
            out.samples[name] = series[rec["uuid"]]
    if renamed:
        log.info("%d guest(s) whose name_label is no safe name go by their uuid: %s",
                 len(renamed), ", ".join(renamed[:10]) + (" ..." if len(renamed) > 10 else ""))
    if not_running:
        log.info("%d guest(s) not running, not placed: %s", len(not_running),
                 ", ".join(not_running[:10]) + (" ..." if len(not_running) > 10 else ""))
    return out


def _running_guest(r: _Reader, rec: dict, name: str, host: Host, vm_metrics: dict,
                   rrd: dict, rrd_failed: bool) -> VM | None:
    """A running or paused guest's figures (memory, vCPUs, the RRDs' CPU and network) as a
    VM on ``host``, or None (a problem says why)."""
    power = rec.get("power_state")
    if host.state != "online":
        r.problem("offline-host", f"host {host.name} is not live but XAPI lists guest {name} "
                  "resident there", host.name, name)
    metrics = vm_metrics.get(rec.get("metrics"), {})
    mem = r.integer(metrics, "memory_actual", f"guest {name}", 1, HOST_MAX_MIB * MIB,
                    host.name, name) if metrics.get("memory_actual") not in (None, "0") \
        else r.integer(rec, "memory_target", f"guest {name}", 1, HOST_MAX_MIB * MIB,
                       host.name, name)
    vcpus = r.integer(rec, "VCPUs_max", f"guest {name}", 1, HOST_MAX_CPU, host.name, name)
    if mem is None or vcpus is None:
        return None
    figures = rrd.get(("vm", rec.get("uuid"))) if isinstance(rec.get("uuid"), str) else None
    cpu_cols = [v for k, v in (figures or {}).items() if re.fullmatch(r"cpu\d+", k)]
    if not cpu_cols:
        why = ("its host's /rrd_updates could not be read" if rrd_failed
               else "XAPI's /rrd_updates has no CPU figure for it in the window")
        r.problem("no-data", f"guest {name} on {host.name}: {why}; left out", host.name, name)
        return None
    cpu = sum(cpu_cols)
    if not 0 <= cpu <= 1.5 * host.cpu or cpu > vcpus * 1.01:
        r.problem("bad-value", f"guest {name}: CPU {cpu:g} (sum of its vCPUs' use) is "
                  f"beyond its {vcpus} vCPUs or its host's {host.cpu:g} CPUs",
                  host.name, name)
        return None
    net_cols = [v for k, v in figures.items() if re.fullmatch(r"vif_\d+_(rx|tx)", k)]
    net = sum(net_cols) * 8 / 1e6 if net_cols else None
    if net is not None and not (0 <= net <= 1e7 and math.isfinite(net)):
        r.problem("bad-value", f"guest {name}: network {net:g} Mbit/s is out of range; "
                  "ignored", host.name, name)
        net = None
    return VM(name=name, host=host.name, state="running" if power == "Running" else
              "paused", vcpus=vcpus, cpu=round(cpu, 4), mem_mib=-(-mem // MIB),
              net_mbps=round(net, 3) if net is not None else None)


def _pool_rules(r: _Reader, groups_rec: dict, vm_name: dict[str, str], kept: _Hosts
                ) -> list[dict]:
    """The pool's own rules: each anti-affinity VM group with two running guests or more is
    a spread rule (when the enabled hosts can hold it apart), the live hosts disabled are in
    maintenance."""
    rules: list[dict] = []
    for ref, rec in sorted(groups_rec.items(), key=lambda kv: str(kv[1].get("name_label"))):
        if rec.get("placement") != "anti_affinity":
            continue
        members = rec.get("VMs")
        label = _shown(rec.get("name_label"))
        if not isinstance(members, list):
            r.problem("bad-value", f"VM group {label}: VMs is {_shown(members)}, not a list")
            continue
        names = sorted({vm_name[m] for m in members if m in vm_name})
        if len(names) < 2:
            continue
        if len(names) > len(kept.live_enabled):
            log.warning("XAPI anti-affinity group %s has %d running guests for %d enabled "
                        "hosts: not a spread rule (XAPI spreads it as best it can)", label,
                        len(names), len(kept.live_enabled))
            continue
        rules.append({"rule": "spread", "vms": names})
    if kept.maintenance:
        rules.append({"rule": "maintenance", "hosts": sorted(kept.maintenance)})
    return rules


def _iso(value) -> str | None:
    """A XAPI DateTime (``20261207T05:30:00Z``) as vmtools writes times, or None."""
    text = getattr(value, "value", value)
    if not isinstance(text, str):
        return None
    for fmt in ("%Y%m%dT%H:%M:%SZ", "%Y%m%dT%H:%M:%S", "%Y-%m-%dT%H:%M:%SZ"):
        try:
            dt = datetime.strptime(text, fmt).replace(tzinfo=timezone.utc)
            return dt.strftime("%Y-%m-%dT%H:%M:%SZ")
        except ValueError:
            continue
    return None
