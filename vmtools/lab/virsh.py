"""``virsh`` on a simulated plain-Xen host run by libvirt's libxl driver, as it answers.

The commands the ``libvirt-ssh`` transport uses (:mod:`vmtools.drivers.libvirt`), from the
shared cluster state (:mod:`vmtools.lab.cluster`), with virsh's output and messages:

- ``virsh uri``: ``xen:///system`` (``qemu:///system`` on a host whose state says
  ``"libvirt": "qemu"``, a KVM host);
- ``virsh list [--all] [--name]``: the table (``Id``, ``Name``, ``State``; Domain-0 with Id 0)
  or the names; a migration arriving shows as its guest, ``paused`` (libvirt keeps the guest's
  own name on the destination while it arrives);
- ``virsh domstate DOM``: ``running`` or ``paused``;
- ``virsh migrate --live --p2p DOM xen+ssh://DST/system`` (``qemu+ssh://`` on KVM; the
  other scheme is refused): the lab's live migration
  (:func:`vmtools.lab.migrate.migrate_domain`), proportional to memory; ``error: ...`` and exit
  1 when it fails; the transfer stops (the guest stays at the source) when the SSH session
  that runs virsh goes away, as libvirt's p2p job is cancelled with its client;
- the guest lifecycle, with libvirt keeping the images itself (a defined domain's managed
  save and its snapshots live in libvirtd's own directories on that host): ``virsh
  managedsave DOM`` (the memory saved in ``save_seconds``, freed when the save ends; the
  domain stays defined, shut off, with a managed save), ``virsh start DOM`` (a defined, shut
  off domain: from its managed save, which libvirt then removes, or booted; memory claimed
  when the start begins, ``not enough memory`` when the host lacks it), ``virsh
  snapshot-create-as DOM NAME`` (a running domain's memory and disks, it runs on),
  ``virsh dominfo DOM`` (its ``State`` and ``Managed save``), ``virsh snapshot-list DOM
  --name``, and ``virsh list --all`` with the defined domains ``shut off``. A host's defined
  but inactive domains are its state's ``libvirt_defined`` ({name: {"mem_mib", "vcpus",
  "managed_save": bool, ...}}), its snapshots ``libvirt_snapshots`` ({domain: [names]}).
  Faults: the state's ``faults`` ``start_fails`` ({guest: message}) as for xl.
"""

from __future__ import annotations

import re
import signal
import time

from vmtools.lab.cluster import ClusterState
from vmtools.lab.lifecycle import create_seconds, save_seconds
from vmtools.lab.migrate import MigrationError, find_domain, migrate_domain, _stderr_gone
from vmtools.xen import DOM0, INCOMING_SUFFIX

NOT_RUNNING = ("error: failed to connect to the hypervisor\n"
               "error: Failed to connect socket to '/var/run/libvirt/libvirt-sock': "
               "No such file or directory\n")


def _domains(spec: dict, all_: bool = False) -> list[tuple[str, str, str]]:
    """(id, name, state) of every domain a host's libvirtd lists, Domain-0 first (with
    ``all_``, the defined inactive ones last, ``shut off``)."""
    if all_:
        return _domains(spec) + [("-", name, "shut off")
                                 for name in sorted(spec.get("libvirt_defined", {}))
                                 if name not in spec["domains"]]
    rows = [("0", DOM0, "running")]
    for name, dom in sorted(spec["domains"].items(), key=lambda kv: kv[1].get("domid", 0)):
        if name.endswith(INCOMING_SUFFIX):
            rows.append((str(dom.get("domid", "-")), name[:-len(INCOMING_SUFFIX)], "paused"))
        else:
            state = "paused" if dom.get("state", "").startswith("--p") else "running"
            rows.append((str(dom.get("domid", "-")), name, state))
    return rows


def run(args: list[str], host: str, state: ClusterState) -> tuple[int, str, str]:
    sub, rest = (args[0], args[1:]) if args else ("", [])
    st = state.read()
    spec = st["hosts"].get(host)
    if spec is None or not spec.get("up", True):
        return 1, "", NOT_RUNNING
    if sub == "uri":
        return 0, f"{_scheme(spec)}:///system\n\n", ""
    if sub == "list":
        unknown = [a for a in rest if a not in ("--all", "--name", "--state-running",
                                                 "--state-paused")]
        if unknown:
            return 1, "", f"error: command 'list' doesn't support option {unknown[0]}\n"
        rows = _domains(spec, "--all" in rest)
        if "--state-running" in rest:
            rows = [r for r in rows if r[2] == "running"]
        if "--state-paused" in rest:
            rows = [r for r in rows if r[2] == "paused"]
        if "--name" in rest:
            return 0, "".join(f"{name}\n" for _, name, _ in rows) + "\n", ""
        out = f" {'Id':<4} {'Name':<31} State\n" + "-" * 47 + "\n"
        out += "".join(f" {i:<4} {name:<31} {state}\n" for i, name, state in rows)
        return 0, out + "\n", ""
    if sub == "domstate":
        if len(rest) != 1:
            return _requires("domstate")
        for _, name, state_ in _domains(spec):
            if name == rest[0]:
                return 0, f"{state_}\n\n", ""
        return 1, "", (f"error: failed to get domain '{rest[0]}'\n")
    if sub == "migrate":
        return _migrate(rest, host, state, st)
    if sub in LIFECYCLE:
        return LIFECYCLE[sub](rest, host, state)
    return 1, "", f"error: unknown command: '{sub}'\n"


# --------------------------------------------------------------------------- the lifecycle

def _no_domain(dom: str) -> tuple[int, str, str]:
    return 1, "", f"error: failed to get domain '{dom}'\n"


def _one(args: list[str]) -> str | None:
    """The one positional argument (the domain), or None when there is not exactly one."""
    positional = [a for a in args if not a.startswith("--")]
    return positional[0] if len(positional) == 1 else None


def _requires(command: str, what: str = "<domain> option") -> tuple[int, str, str]:
    """virsh's answer to a command missing its argument."""
    return 1, "", f"error: command '{command}' requires {what}\n"


def _managedsave(args: list[str], host: str, state: ClusterState) -> tuple[int, str, str]:
    dom = _one(args)
    if dom is None:
        return _requires("managedsave")
    with state.transaction() as st:
        spec = st["hosts"][host]
        name = find_domain(st, host, dom)
        if name is None or name.endswith(INCOMING_SUFFIX):
            if dom in spec.get("libvirt_defined", {}):
                return 1, "", ("error: Failed to save domain '" + dom + "' state\nerror: "
                               "Requested operation is not valid: domain is not running\n")
            return _no_domain(dom)
        if name == DOM0:
            return 1, "", "error: Requested operation is not valid: cannot save Domain-0\n"
        guest = spec["domains"][name]
        if guest.get("busy"):
            return 1, "", (f"error: Failed to save domain '{name}' state\nerror: Timed out "
                           f"during operation: cannot acquire state change lock (held by "
                           f"{guest['busy']})\n")
        guest["busy"] = "managedsave"
        seconds = save_seconds(st, guest["mem_mib"])
        fails = st.get("faults", {}).get("save_fails", {}).get(name)
    time.sleep(seconds / 2 if fails else seconds)
    with state.transaction() as st:
        spec = st["hosts"][host]
        guest = spec["domains"].get(name)
        if fails or guest is None:
            if guest is not None:
                guest.pop("busy", None)
        else:
            del spec["domains"][name]              # memory freed when the save ends
            record = {k: v for k, v in guest.items() if k not in ("domid", "busy", "state")}
            spec.setdefault("libvirt_defined", {})[name] = dict(record, managed_save=True)
    if fails:
        return 1, "", (f"error: Failed to save domain '{name}' state\nerror: internal error: "
                       f"libxenlight failed to save domain: {fails}\n")
    return 0, f"\nDomain '{name}' state saved by libvirt\n\n", ""


def _start(args: list[str], host: str, state: ClusterState) -> tuple[int, str, str]:
    dom = _one(args)
    if dom is None:
        return _requires("start")
    with state.transaction() as st:
        spec = st["hosts"][host]
        defined = spec.setdefault("libvirt_defined", {})
        if find_domain(st, host, dom) is not None:
            return 1, "", (f"error: Domain '{dom}' is already active\n")
        if dom not in defined:
            return _no_domain(dom)
        record = defined[dom]
        free = spec["mem_mib"] - spec.get("dom0_mib", 0) - sum(
            d["mem_mib"] for d in spec["domains"].values())
        if int(record["mem_mib"]) > free:
            return 1, "", (f"error: Failed to start domain '{dom}'\nerror: internal error: "
                           f"libxenlight failed to create new domain '{dom}': not enough "
                           f"memory ({record['mem_mib']} MiB needed, {max(0, free)} MiB "
                           "free)\n")
        restore = bool(record.get("managed_save"))
        guest = {"domid": st["next_domid"], "mem_mib": int(record["mem_mib"]),
                 "vcpus": int(record.get("vcpus", 1)),
                 "cpu_time": float(record.get("cpu_time", 0)),
                 "load": float(record.get("load", 0.1)), "net_bytes": 0,
                 "net_mbps": float(record.get("net_mbps", 0.0)), "state": "--p---",
                 "busy": "starting"}
        st["next_domid"] += 1
        spec["domains"][dom] = guest              # memory claimed when the start begins
        seconds = (save_seconds if restore else create_seconds)(st, guest["mem_mib"])
        fails = st.get("faults", {}).get("start_fails", {}).get(dom)
    time.sleep(seconds / 2 if fails else seconds)
    with state.transaction() as st:
        spec = st["hosts"][host]
        if fails:
            spec["domains"].pop(dom, None)        # the managed save stays
        elif dom in spec["domains"]:
            spec["domains"][dom].pop("busy", None)
            spec["domains"][dom]["state"] = "-b----"
            spec["libvirt_defined"].pop(dom, None)   # libvirt removes the managed save
    if fails:
        return 1, "", (f"error: Failed to start domain '{dom}'\nerror: internal error: "
                       f"libxenlight failed to restore domain '{dom}': {fails}\n")
    return 0, f"Domain '{dom}' started\n\n", ""


def _snapshot_create_as(args: list[str], host: str, state: ClusterState
                        ) -> tuple[int, str, str]:
    positional = [a for a in args if not a.startswith("--")]
    if len(positional) != 2:
        return _requires("snapshot-create-as", "<domain> and <name>")
    dom, snap = positional
    st = state.read()
    name = find_domain(st, host, dom)
    if name is None or name == DOM0 or name.endswith(INCOMING_SUFFIX):
        return _no_domain(dom)
    if snap in st["hosts"][host].get("libvirt_snapshots", {}).get(name, []):
        return 1, "", (f"error: operation failed: domain snapshot '{snap}' already "
                       "exists\n")
    time.sleep(save_seconds(st, st["hosts"][host]["domains"][name]["mem_mib"]))
    with state.transaction() as st:
        st["hosts"][host].setdefault("libvirt_snapshots", {}).setdefault(name, []).append(snap)
    return 0, f"Domain snapshot {snap} created\n", ""


def _dominfo(args: list[str], host: str, state: ClusterState) -> tuple[int, str, str]:
    dom = _one(args)
    if dom is None:
        return _requires("dominfo")
    st = state.read()
    spec = st["hosts"][host]
    for id_, name, status in _domains(spec, True):
        if name == dom:
            rec = spec["domains"].get(name) or spec["domains"].get(name + INCOMING_SUFFIX) \
                or spec.get("libvirt_defined", {}).get(name) or {"mem_mib": 0, "vcpus": 1}
            saved = bool(spec.get("libvirt_defined", {}).get(name, {}).get("managed_save"))
            kib = int(rec.get("mem_mib", 0)) * 1024
            return 0, (f"Id:             {id_}\nName:           {name}\n"
                       f"OS Type:        linux\nState:          {status}\n"
                       f"CPU(s):         {rec.get('vcpus', 1)}\n"
                       f"Max memory:     {kib} KiB\nUsed memory:    {kib} KiB\n"
                       f"Persistent:     yes\nAutostart:      disable\n"
                       f"Managed save:   {'yes' if saved else 'no'}\n\n"), ""
    return _no_domain(dom)


def _snapshot_list(args: list[str], host: str, state: ClusterState) -> tuple[int, str, str]:
    dom = _one(args)
    if dom is None:
        return _requires("snapshot-list")
    st = state.read()
    spec = st["hosts"][host]
    if dom not in {n for _, n, _ in _domains(spec, True)}:
        return _no_domain(dom)
    names = spec.get("libvirt_snapshots", {}).get(dom, [])
    return 0, "".join(f"{n}\n" for n in names) + "\n", ""


LIFECYCLE = {"managedsave": _managedsave, "start": _start,
             "snapshot-create-as": _snapshot_create_as, "dominfo": _dominfo,
             "snapshot-list": _snapshot_list}


def _migrate(args: list[str], host: str, state: ClusterState, st: dict) -> tuple[int, str, str]:
    flags = [a for a in args if a.startswith("--")]
    positional = [a for a in args if not a.startswith("--")]
    for f in flags:
        if f not in ("--live", "--p2p", "--verbose", "--persistent", "--undefinesource"):
            return 1, "", f"error: command 'migrate' doesn't support option {f}\n"
    if len(positional) != 2:
        return _requires("migrate", "<desturi> option")
    dom, uri = positional
    m = re.fullmatch(r"([a-z]+)\+ssh://([^/\s]+)/system", uri)
    if "--p2p" not in flags:
        return 1, "", ("error: Requested operation is not valid: libxenlight driver only "
                       "supports peer2peer migration\n")
    if not m:
        return 1, "", f"error: invalid argument: unable to parse URI {uri}\n"
    if m.group(1) != _scheme(st["hosts"][host]):
        return 1, "", (f"error: operation failed: Failed to connect to remote libvirt URI "
                       f"{uri}: the remote host runs no {m.group(1)} driver\n")
    dst = m.group(2)
    name = find_domain(st, host, dom)
    if name is None or name == DOM0 or name.endswith(INCOMING_SUFFIX):
        return 1, "", f"error: failed to get domain '{dom}'\n"
    hangup: list[int] = []
    signal.signal(signal.SIGHUP, lambda *_: hangup.append(1))
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    try:
        migrate_domain(state, host, name, dst, live=True,
                       aborted=lambda: bool(hangup) or _stderr_gone())
    except MigrationError as exc:
        if "can't connect" in exc.message and exc.stage == "start":
            return 1, "", (f"error: operation failed: Failed to connect to remote libvirt URI "
                           f"{uri}: Cannot recv data: ssh: connect to host {dst} port "
                           "22: Connection refused: Connection reset by peer\n")
        if exc.stage == "ack":
            return 1, "", ("error: internal error: Failed to confirm migration: domain state "
                           "is unknown\n")
        return 1, "", f"error: internal error: libxenlight failed to migrate: {exc.message}\n"
    return 0, "\n", ""


def _scheme(spec: dict) -> str:
    """``xen`` (libvirt's libxl driver), or ``qemu`` for a host the scenario runs as KVM
    (``"libvirt": "qemu"``)."""
    return "qemu" if spec.get("libvirt") == "qemu" else "xen"
