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
  that runs virsh goes away, as libvirt's p2p job is cancelled with its client.
"""

from __future__ import annotations

import re
import signal

from vmtools.lab.cluster import ClusterState
from vmtools.lab.migrate import MigrationError, find_domain, migrate_domain, _stderr_gone
from vmtools.xen import DOM0, INCOMING_SUFFIX

NOT_RUNNING = ("error: failed to connect to the hypervisor\n"
               "error: Failed to connect socket to '/var/run/libvirt/libvirt-sock': "
               "No such file or directory\n")


def _domains(spec: dict) -> list[tuple[str, str, str]]:
    """(id, name, state) of every domain a host's libvirtd lists, Domain-0 first."""
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
        rows = _domains(spec)
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
            return 1, "", "error: command 'domstate' requires <domain> option\n"
        for _, name, state_ in _domains(spec):
            if name == rest[0]:
                return 0, f"{state_}\n\n", ""
        return 1, "", (f"error: failed to get domain '{rest[0]}'\n")
    if sub == "migrate":
        return _migrate(rest, host, state, st)
    return 1, "", f"error: unknown command: '{sub}'\n"


def _migrate(args: list[str], host: str, state: ClusterState, st: dict) -> tuple[int, str, str]:
    flags = [a for a in args if a.startswith("--")]
    positional = [a for a in args if not a.startswith("--")]
    for f in flags:
        if f not in ("--live", "--p2p", "--verbose", "--persistent", "--undefinesource"):
            return 1, "", f"error: command 'migrate' doesn't support option {f}\n"
    if len(positional) != 2:
        return 1, "", "error: command 'migrate' requires <desturi> option\n"
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
