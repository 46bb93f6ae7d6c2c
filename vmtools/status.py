"""vm-status's core: the morning view of a cluster, as a ``vmtools.status`` document.

From a snapshot (a file, or taken live from gmetad by the command line), vm-plan's power state
(which hosts vmtools switched off: standby) and vm-rebalance's newest run directory: one entry
per host (state, CPU and memory use, hotspots, guests, what is known of it: a host a problem
names is frozen, with the problem kinds and why), the snapshot's problems, and what the last
cron run did and when.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from vmtools.model import Snapshot, domain_of, is_safe_name
from vmtools.rules.load import CPU_THRESHOLD, MEM_THRESHOLD, host_loads, hot_dims
from vmtools.runs import headline, latest
from vmtools.sources.knowledge import assess
from vmtools.state import FORGET_AFTER, domain_dirs, read_state, unanswered_hosts

def standby_hosts(state_dir: str | None) -> dict[str, dict]:
    """Hosts vm-plan switched off, from the vmtools.state document in its state directory
    (``{}`` when there is no such directory or document). A damaged document is a DataError
    naming the file and the fix (:func:`vmtools.state.read_state`), as for vm-plan."""
    if not state_dir or not os.path.isdir(state_dir):
        return {}
    out = {}
    for name, rec in read_state(state_dir).power.standby.items():
        cluster = rec.get("cluster")
        out[name] = {"cluster": cluster if isinstance(cluster, str) and
                     (not cluster or is_safe_name(cluster)) else "",
                     "domain": domain_of(rec), "cpu": rec.get("cpu"),
                     "mem_mib": rec.get("mem_mib")}
    return out


def domain_standby(snap: Snapshot, state_dir: str | None) -> dict[str, dict]:
    """The standby hosts as each domain's vm-plan keeps them: from each domain's own
    directory (:func:`plan_state_dirs`; a record without a domain gets its directory's), then
    STATE_DIR's of the domains without one (one domain: STATE_DIR's, as ever). Whole records
    (capacity and transport, as vm-plan keeps them), for switching a host on."""
    def records(path: str | None) -> dict[str, dict]:
        return read_state(path).power.standby if path and os.path.isdir(path) else {}
    dirs = plan_state_dirs(snap, state_dir)
    return _merged_standby(records(state_dir), {
        d: {name: dict(rec, domain=domain_of(rec) or d) for name, rec in records(path).items()}
        for d, path in dirs.items()})


def _standby_by_dir(state_dir: str | None, dirs: dict[str, str]
                    ) -> tuple[dict[str, dict], dict[str, dict[str, dict]]]:
    """STATE_DIR's standby hosts, and each domain's own directory's (a record without a
    domain gets its directory's)."""
    own = {d: {name: dict(rec, domain=rec["domain"] or d)
               for name, rec in standby_hosts(path).items()} for d, path in dirs.items()}
    return standby_hosts(state_dir), own


def _merged_standby(top: dict[str, dict], own: dict[str, dict[str, dict]]) -> dict[str, dict]:
    """Each domain's own standby hosts, then STATE_DIR's of the domains without a
    directory."""
    out: dict[str, dict] = {}
    for d in sorted(own):
        for name, rec in own[d].items():
            out.setdefault(name, rec)
    for name, rec in top.items():
        if domain_of(rec) not in own:
            out.setdefault(name, rec)
    return out


def domain_maintenance(snap: Snapshot, state_dir: str | None) -> dict[str, str]:
    """host -> since: the hosts in maintenance as each host's own domain's vm-plan reads
    them: a host of a domain with its own directory from that directory's maintenance.json
    alone, the others (one domain: all) from STATE_DIR's."""
    from vmtools.maintenance import read_maintenance
    dirs = plan_state_dirs(snap, state_dir)
    domain = {h.name: h.domain for h in snap.hosts}
    top = read_maintenance(state_dir) if state_dir and os.path.isdir(state_dir) else {}
    out = {name: since for name, since in top.items() if domain.get(name) not in dirs}
    for d, path in dirs.items():
        out.update({name: since for name, since in read_maintenance(path).items()
                    if domain.get(name, d) == d})
    return out


def mark_maintenance(hosts: list[dict], snap: Snapshot, state_dir: str | None,
                     dirs: dict[str, str] | None = None) -> None:
    """Each host's ``maintenance``: null, or ``{"since", "by"}``: ``vmtools`` when vm-plan's
    state directory records it (DIR/maintenance.json, written by vm-web; since when; a host
    of a domain in ``dirs``, :func:`plan_state_dirs`, from its domain's own directory alone),
    ``platform`` when the snapshot's own rules hold it (a XAPI pool's disabled host). A
    damaged document is a DataError naming the file, as for vm-plan."""
    from vmtools.maintenance import read_maintenance
    dirs = dirs or {}
    top = read_maintenance(state_dir) if state_dir and os.path.isdir(state_dir) else {}
    own = {d: read_maintenance(path) for d, path in dirs.items()}
    platform = {h for r in snap.rules if isinstance(r, dict) and r.get("rule") == "maintenance"
                for h in (r.get("hosts") or []) if isinstance(h, str)}
    for h in hosts:
        name = h["name"]
        ours = own.get(h["domain"], top)
        h["maintenance"] = {"since": ours[name] or None, "by": "vmtools"} if name in ours \
            else {"since": None, "by": "platform"} if name in platform else None


def plan_state_dirs(snap: Snapshot, state_dir: str | None) -> dict[str, str]:
    """vm-rebalance's domain mode: the migration domains of the snapshot (its hosts', and
    those whose source did not answer) that have their own vm-plan state directory,
    STATE_DIR/NAME (:func:`vmtools.state.domain_dirs`: only names vm-rebalance accepts)."""
    names = {h.domain for h in snap.hosts} | {p.domain for p in snap.problems
                                              if isinstance(p.domain, str)}
    return domain_dirs(state_dir, names)


def vanished_hosts(state_dir: str | None, snap: Snapshot
                   ) -> dict[str, tuple[float, str | None, bool]]:
    """Hosts vm-plan saw within a day and the snapshot lacks, which vmtools did not switch
    off: name -> (seconds since last seen, the domain it was last seen in or None, whether
    its domain's source did not answer). A vanished one is vm-plan's ``vanished-host``
    (frozen); one whose source did not answer is out of the run, as vm-plan has it
    (:func:`vmtools.state.unanswered_hosts`)."""
    if not state_dir or not os.path.isdir(state_dir):
        return {}
    from vmtools.model import iso_to_epoch
    state = read_state(state_dir)
    try:
        now = iso_to_epoch(snap.created)
    except (TypeError, ValueError):
        now = time.time()
    off = set(state.power.standby) | set(state.power.waking) | set(state.power.boot_failed)
    here = {h.name for h in snap.hosts}
    silent = unanswered_hosts(state.plan, snap)
    return {name: (now - seen, state.plan.domains.get(name), name in silent)
            for name, seen in sorted(state.plan.hosts.items())
            if name not in here and name not in off and is_safe_name(name)
            and 0 <= now - seen <= FORGET_AFTER}


def rules_of(snap: Snapshot, constraints: object = None):
    """The rules a host's capacity is read under, as vm-plan reads them: the platform's own
    (the snapshot's), then a vmtools.constraints document's (its JSON; names the snapshot
    lacks are left out, as vm-plan does)."""
    from vmtools.model import CONSTRAINTS_FORMAT, check_envelope
    from vmtools.rules.constraints import parse_rules
    items = list(snap.rules)
    if constraints is not None:
        items += [item for _, item in check_envelope(constraints, CONSTRAINTS_FORMAT)
                  .list("rules")]
    return parse_rules(items, snap, strict=False, skipped=[])


def stopped_guests(snap: Snapshot, suspended: dict[str, dict] | None
                   ) -> tuple[list[dict], list[dict]]:
    """The suspended guests (vm-apply's ledger, ``seen`` "ledger", and those the platform
    reports in the snapshot's ``stopped`` list that the ledger lacks, ``seen`` "platform":
    suspended outside vmtools, e.g. in XenCenter) and the halted ones, each sorted by name."""
    ledger = suspended or {}
    running = {v.name for v in snap.vms}
    asleep = [dict({k: e[k] for k in ("name", "host", "mem_mib", "vcpus", "cpu", "image",
                                      "suspended")}, seen="ledger")
              for _, e in sorted(ledger.items()) if e["name"] not in running]
    asleep += [{"name": e["name"], "host": e.get("host"), "mem_mib": e["mem_mib"],
                "vcpus": e["vcpus"], "cpu": None, "image": None, "suspended": None,
                "seen": "platform"}
               for e in snap.stopped if e["state"] == "suspended" and e["name"] not in ledger]
    halted = [{"name": e["name"], "host": e.get("host"), "mem_mib": e["mem_mib"],
               "vcpus": e["vcpus"]} for e in snap.stopped if e["state"] == "halted"]
    return sorted(asleep, key=lambda e: e["name"]), halted


def build_status(snap: Snapshot, runs_dir: str | None, state_dir: str | None,
                 cpu_threshold: float = CPU_THRESHOLD, mem_threshold: float = MEM_THRESHOLD,
                 now: float | None = None, suspended: dict[str, dict] | None = None,
                 constraints: object = None) -> dict:
    """The ``vmtools.status`` document. ``suspended``: vm-apply's suspended-guests ledger
    (:func:`vmtools.model.parse_suspended`), listed apart (they run nowhere) with the
    snapshot's own suspended guests, and its halted ones (:func:`stopped_guests`);
    ``constraints``: vm-plan's rules (JSON), whose capacity rules set what a host gives.
    Use and hotspots are :mod:`vmtools.rules.load`'s, as vm-plan's are."""
    now = time.time() if now is None else now
    guests: dict[str, list] = {}
    for vm in snap.vms:
        guests.setdefault(vm.host, []).append(vm)
    # a host's standby and maintenance come from its domain's own directory when it has one
    # (vm-rebalance with DOMAINS), else from STATE_DIR itself (one domain: as ever)
    dirs = plan_state_dirs(snap, state_dir)
    top, own = _standby_by_dir(state_dir, dirs)
    know = assess(snap)
    loads = host_loads(snap, rules_of(snap, constraints))
    hosts = []
    for h in sorted(snap.hosts, key=lambda h: h.name):
        mine = guests.get(h.name, [])
        cpu, mem = loads[h.name].cpu, loads[h.name].mem
        hot = hot_dims(cpu, mem, cpu_threshold, mem_threshold) if h.state == "online" else []
        state = "standby" if h.name in own.get(h.domain, top) and h.state != "online" \
            else h.state
        frozen = know.frozen.get(h.name)
        hosts.append({"name": h.name, "cluster": h.cluster, "domain": h.domain, "state": state,
                      "cpus": h.cpu, "mem_mib": h.mem_mib,
                      "cpu_use": None if cpu is None else round(cpu, 3),
                      "mem_use": None if mem is None else round(mem, 3),
                      "guests": len(mine), "hotspot": hot,
                      "knowledge": know.host(h.name),
                      "frozen": None if frozen is None else
                      {"kinds": frozen.kinds, "why": frozen.why()}})
    hosts += _absent_hosts(snap, state_dir, dirs, own, top)
    mark_maintenance(hosts, snap, state_dir, dirs)
    domains = domain_summary(hosts, snap)
    if domains:
        hosts.sort(key=lambda h: (h["domain"], h["name"]))
    asleep, halted = stopped_guests(snap, suspended)
    last = None
    if runs_dir:
        found = latest(Path(runs_dir))
        if found is not None:
            run_dir, result = found
            last = {"dir": str(run_dir), "run": result.get("run"),
                    "finished": result.get("finished"), "exit": result.get("exit"),
                    "what": headline(result), "dry_run": bool(result.get("dry_run")),
                    "plan": result.get("plan"), "failures": result.get("failures") or [
                        f for r in (result.get("domains") or {}).values()
                        for f in r.get("failures") or []]}
            try:
                last["age_seconds"] = round(now - os.stat(run_dir / "result.json").st_mtime)
            except OSError:
                last["age_seconds"] = None
    return {"format": "vmtools.status", "version": "1.0", "source": snap.source,
            "snapshot_created": snap.created,
            "thresholds": {"cpu": cpu_threshold, "mem": mem_threshold},
            "hosts": hosts,
            "summary": {"hosts": len(hosts),
                        "online": sum(1 for h in hosts if h["state"] == "online"),
                        "standby": sum(1 for h in hosts if h["state"] == "standby"),
                        "guests": len(snap.vms),
                        "hotspots": [h["name"] for h in hosts if h["hotspot"]],
                        "frozen": [h["name"] for h in hosts if h["frozen"]],
                        "problems": len(snap.problems),
                        "suspended": len(asleep), "halted": len(halted)},
            "suspended": asleep, "halted": halted,
            "problems": [p.to_dict() for p in snap.problems],
            **({"domains": domains} if domains else {}),
            **({"domain_state": dirs} if dirs else {}),
            "last_run": last, "runs_dir": runs_dir}


def _absent_hosts(snap: Snapshot, state_dir: str | None, dirs: dict[str, str],
                  own: dict[str, dict], top: dict[str, dict]) -> list[dict]:
    """The hosts the snapshot lacks: standby (each domain's own directory's, ``own``, then
    STATE_DIR's, ``top``, of the domains without one), then vanished (seen by the vm-plan of
    STATE_DIR, then of each domain's directory, and neither switched off nor listed)."""
    hosts: list[dict] = []
    standby = _merged_standby(top, own)
    for name in sorted(set(standby) - {h.name for h in snap.hosts}):
        rec = standby[name]
        hosts.append({"name": name, "cluster": rec.get("cluster", ""),
                      "domain": rec.get("domain", ""), "state": "standby",
                      "cpus": rec.get("cpu"), "mem_mib": rec.get("mem_mib"), "cpu_use": None,
                      "mem_use": None, "guests": 0, "hotspot": [], "knowledge": "known",
                      "frozen": None})
    listed = {h.name for h in snap.hosts} | {h["name"] for h in hosts}
    for domain, path in [("", state_dir), *sorted(dirs.items())]:
        for name, (ago, seen_in, silent) in vanished_hosts(path, snap).items():
            if name in listed:
                continue
            listed.add(name)
            where = seen_in or domain
            if not silent:
                state, kind = "vanished", "vanished-host"
                why = (f"vanished-host: host {name} was seen {ago:.0f} s before this "
                       "snapshot and is not in it; vmtools did not switch it off")
            else:
                # as vm-plan has it: out of the run (its source is silent), not gone
                state, kind = "unanswered", "unavailable-source"
                why = (f"unavailable-source: host {name} was seen {ago:.0f} s before this "
                       f"snapshot; the source of its domain {where} did not answer, so "
                       "nothing is known of it now and nothing is planned for it")
            hosts.append({"name": name, "cluster": "", "domain": where, "state": state,
                          "cpus": None,
                          "mem_mib": None, "cpu_use": None, "mem_use": None, "guests": 0,
                          "hotspot": [], "knowledge": "unknown",
                          "frozen": {"kinds": [kind], "why": why}})
    return hosts


def domain_summary(hosts: list[dict], snap: Snapshot) -> dict[str, dict]:
    """Per migration domain (when there are several): its hosts, how many are online, its
    guests, hotspots and frozen hosts, and the sources of it that did not answer."""
    lost: dict[str, int] = {}
    for p in snap.problems:
        if p.kind == "unavailable-source" and p.domain is not None:
            lost[p.domain] = lost.get(p.domain, 0) + 1
    names = {h["domain"] for h in hosts} | set(lost)
    if len(names) < 2:
        return {}
    out = {}
    for name in sorted(names):
        mine = [h for h in hosts if h["domain"] == name]
        out[name] = {"hosts": len(mine),
                     "online": sum(1 for h in mine if h["state"] == "online"),
                     "guests": sum(h["guests"] for h in mine),
                     "hotspots": [h["name"] for h in mine if h["hotspot"]],
                     "frozen": [h["name"] for h in mine if h["frozen"]]}
        if lost.get(name):
            out[name]["unavailable_sources"] = lost[name]
    return out
