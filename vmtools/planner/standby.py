"""The hosts vmtools switched off, as vm-plan plans on them: the snapshot with each such host
``standby`` at the capacity it last had (from the ``power`` part of vmtools.state), and the
hosts lost without vmtools as problems (:func:`prepare_snapshot`). The decisions to switch
hosts on and off are :mod:`vmtools.planner.power`'s.
"""

from __future__ import annotations

from dataclasses import replace

from vmtools.model import Host, Problem, Snapshot, domain_of, epoch_to_iso, iso_to_epoch
from vmtools.state import STATE_FILE, PowerState


def capacity_record(h: Host) -> dict:
    return {"cluster": h.cluster, "domain": h.domain, "cpu": h.cpu, "mem_mib": h.mem_mib, "net_mbps": h.net_mbps,
            "hypervisor": h.hypervisor, "migration": h.migration}


def _standby_host(name: str, rec: dict, reported: str | None = None) -> Host:
    return Host(name=name, cluster=rec.get("cluster", ""), domain=domain_of(rec),
                state="standby",
                cpu=float(rec.get("cpu", 0.0)), mem_mib=int(rec.get("mem_mib", 0)),
                net_mbps=rec.get("net_mbps"), hypervisor=rec.get("hypervisor", ""),
                migration=rec.get("migration", ""), reported=reported)


def _reported_after(h: Host, t: float, margin: float = 60.0) -> bool:
    try:
        return h.reported is not None and iso_to_epoch(h.reported) > t + margin
    except ValueError:
        return False


def prepare_snapshot(snap: Snapshot, state: PowerState, boot_timeout: float, now: float
                     ) -> tuple[Snapshot, dict[str, str]]:
    """The snapshot as vm-plan plans on it: hosts vmtools switched off are ``standby`` with
    their last capacity, hosts lost without vmtools are problems. Updates ``state``.
    Returns (snapshot, notes for --explain)."""
    notes: dict[str, str] = {}
    hosts = {h.name: h for h in snap.hosts}
    # A host switched off leaves its last guest list in Ganglia until it is called offline:
    # a guest it listed before it was emptied shows up twice. It runs on the awake host.
    asleep = set(state.standby) | set(state.waking) | set(state.boot_failed)
    vms = {v.name: v for v in snap.vms}
    problems = []
    for p in snap.problems:
        v = vms.get(p.vm or "")
        if p.kind == "duplicate-guest" and v is not None and p.host and \
                (p.host in asleep) != (v.host in asleep):
            if v.host in asleep:
                vms[v.name] = replace(v, host=p.host)
            notes[f"host {p.host if p.host in asleep else v.host}"] = (
                f"still lists {v.name} in Ganglia from before it was switched off; "
                f"{v.name} runs on {vms[v.name].host}")
            continue
        problems.append(p)
    snap = replace(snap, vms=[vms[v.name] for v in snap.vms])
    guests_on: dict[str, int] = {}
    for v in snap.vms:
        guests_on[v.host] = guests_on.get(v.host, 0) + 1
    new_hosts: list[Host] = []
    for name, h in sorted(hosts.items()):
        rec = state.standby.get(name) or state.waking.get(name) or state.boot_failed.get(name)
        if rec is not None and guests_on.get(name, 0) == 0 and \
                (h.state != "online" or (h.reported is not None
                                         and not _reported_after(h, rec.get("since", now)))):
            # switched off by vmtools: Ganglia's last word on it predates the power-off
            new_hosts.append(_standby_host(name, {**capacity_record(h), **rec}, h.reported)
                             if h.state != "online" else
                             replace(h, state="standby"))
            problems = [p for p in problems if p.host != name or p.kind != "offline-host"]
            continue
        if name in state.standby:
            notes[f"host {name}"] = f"{name} reports again although vmtools switched it off"
            del state.standby[name]
        if h.state == "standby":            # the snapshot's source knows it is switched off
            state.known.pop(name, None)
            new_hosts.append(h)
            continue
        if h.state == "online":
            if name in state.waking:
                notes[f"host {name}"] = f"{name} is back online after its power-on"
            state.waking.pop(name, None)
            state.boot_failed.pop(name, None)
            state.known[name] = capacity_record(h)
        elif name in state.known and not any(p.host == name for p in problems):
            problems.append(Problem("offline-host", f"host {name} is offline and vmtools did "
                                    "not switch it off", host=name))
        new_hosts.append(h)
    for name, rec in sorted({**state.boot_failed, **state.standby, **state.waking}.items()):
        if name not in hosts:
            new_hosts.append(_standby_host(name, rec))
            # a source that remembers hosts (vm-snapshot --prometheus) names it vanished:
            # vmtools switched it off, it is standby, not lost
            problems = [p for p in problems if p.host != name or p.kind != "vanished-host"]
    for name in sorted(set(state.known) - set(hosts) - set(state.standby)):
        problems.append(Problem("vanished-host", f"host {name} vanished from Ganglia and "
                                "vmtools did not switch it off (if it was retired, remove it "
                                f"from \"power.known\" in {STATE_FILE})", host=name))
    for name, rec in sorted(state.waking.items()):
        if now - rec.get("since", now) > boot_timeout:
            state.boot_failed[name] = rec
            del state.waking[name]
    for name, rec in sorted(state.boot_failed.items()):
        notes[f"host {name}"] = (f"{name} did not come up within --boot-timeout "
                                 f"{boot_timeout:g}s of its power-on at "
                                 f"{epoch_to_iso(rec.get('since', now))}; it is not woken "
                                 "again until it reports")
    return replace(snap, hosts=new_hosts, problems=problems), notes
