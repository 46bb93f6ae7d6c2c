"""``save``, ``restore`` and ``create`` of the simulated ``xm``/``xl``, as the real ones do them.

- ``xl save [-c] [-p] DOMAIN FILE`` / ``xm save [-c] DOMAIN FILE``: the guest's memory is
  written to FILE (a real file, written as the command's user: the directory must be
  writable); the transfer takes ``save_seconds(mem)``; the guest keeps its memory until the
  image is complete, then (without ``-c``) is destroyed: its memory is freed when the save
  ends. With ``-c`` (checkpoint) it goes on running.
- ``xl restore [-p] [-e] [CONFIG] FILE`` / ``xm restore [-p] FILE``: the image is read, a
  paused domain of the guest's memory is built at once (memory claimed when the restore
  starts), the memory is loaded in ``save_seconds(mem)``, then the guest runs. The image file
  stays (the real commands never remove it; xendomains and vm-apply do, once the guest runs).
- ``xl create [-q] [-p] CONFIG`` / ``xm create CONFIG``: the configuration file (``name``,
  ``memory`` in MiB, ``vcpus``) is read, memory claimed at once, the guest runs after
  ``create_seconds``.

An image holds the xl header line and the guest's description as JSON: the lab reads back
what it wrote, nothing more (the real format is libxc's stream; nobody outside the toolstack
reads it).

Fault injection, through the state's ``faults`` dict::

    {"save_fails":    {"web1": "xc: error: ..."},   # the save stops halfway, no image
     "restore_fails": {"web1": "xc: error: ..."},   # the restore fails halfway: the domain
                                                    # is destroyed, the image stays
     "create_fails":  {"web9": "..."}}
"""

from __future__ import annotations

import json
import os
import re
import time

from vmtools.lab.cluster import ClusterState, DEFAULT_MIGRATION
from vmtools.lab.migrate import find_domain
from vmtools.xen import DOM0

HEADER = b"Xen saved domain, xl format\n \0 \r"
POLL = 0.05


def save_seconds(state: dict, mem_mib: int) -> float:
    """How long saving or restoring ``mem_mib`` takes: the state's ``save`` rate (default the
    migration's)."""
    m = state.get("save") or state.get("migration", DEFAULT_MIGRATION)
    return max(m.get("min_seconds", 0.0), mem_mib / m["mib_per_s"])


def create_seconds(state: dict, mem_mib: int) -> float:
    return save_seconds(state, mem_mib) / 4


def _free_mib(host: dict) -> int:
    return host["mem_mib"] - host.get("dom0_mib", 0) - sum(
        d["mem_mib"] for d in host["domains"].values())


def _no_domain(tool: str, dom: str) -> tuple[int, str, str]:
    if tool == "xm":
        return 3, "", f"Error: Domain '{dom}' does not exist.\n"
    return 1, "", f"{dom} is an invalid domain identifier (rc=-6)\n"


def _fail(tool: str, message: str) -> tuple[int, str, str]:
    if tool == "xm":
        return 1, "", f"Error: {message}\n"
    return 1, "", f"libxl: error: {message}\n"


def _options(args: list[str], flags: str, with_value: str = "") -> tuple[set[str], list[str]]:
    opts, positional, i = set(), [], 0
    while i < len(args):
        a = args[i]
        if a.startswith("-") and len(a) == 2 and a[1] in flags:
            opts.add(a[1])
        elif a.startswith("-") and len(a) == 2 and a[1] in with_value:
            i += 1
        elif a.startswith("-") and a != "-":
            raise ValueError(a)
        else:
            positional.append(a)
        i += 1
    return opts, positional


def save(tool: str, args: list[str], host: str, state: ClusterState) -> tuple[int, str, str]:
    try:
        opts, pos = _options(args, "cp")
    except ValueError as exc:
        return 2, "", f"save: invalid option -- '{str(exc).lstrip('-')[:1]}'\n"
    if len(pos) < 2:
        return 2, "", f"'{tool} save' requires at least 2 arguments\n"
    dom, path = pos[0], pos[1]
    checkpoint = "c" in opts
    with state.transaction() as st:
        name = find_domain(st, host, dom)
        if name is None:
            return _no_domain(tool, dom)
        if name == DOM0:
            return _fail(tool, "Cannot save Domain-0")
        guest = st["hosts"][host]["domains"][name]
        if guest.get("busy"):
            return _fail(tool, f"domain {name} is busy ({guest['busy']})")
        guest["busy"] = "saving"
        seconds = save_seconds(st, guest["mem_mib"])
        fails = st.get("faults", {}).get("save_fails", {}).get(name)
        record = {k: v for k, v in guest.items() if k not in ("domid", "busy", "state")}
        record["name"] = name
    tmp = f"{path}.{os.getpid()}.part"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        _unbusy(state, host, name)
        if tool == "xm":
            return 1, "", f"Error: [Errno {exc.errno}] {exc.strerror}: '{path}'\n"
        return 1, "", f"Failed to open temp file {tmp} for writing: {exc.strerror}\n"
    with os.fdopen(fd, "wb") as fh:
        fh.write(HEADER + json.dumps(record).encode() + b"\n")
    time.sleep(seconds / 2 if fails else seconds)
    if fails:
        os.unlink(tmp)
        _unbusy(state, host, name)
        return _fail(tool, f"Failed to save domain {name}: {fails}")
    os.replace(tmp, path)
    with state.transaction() as st:
        domains = st["hosts"][host]["domains"]
        if checkpoint:
            domains[name].pop("busy", None)
        else:
            domains.pop(name, None)          # memory freed when the save ends
    if tool == "xl":
        return 0, "", (f"Saving to {path} new xl format (info 0x3/0x0/{len(json.dumps(record))})"
                       f"\nxc: info: Saving domain {record.get('domid', 0)}, type x86 PV\n")
    return 0, "", ""


def _unbusy(state: ClusterState, host: str, name: str) -> None:
    with state.transaction() as st:
        dom = st["hosts"][host]["domains"].get(name)
        if dom is not None:
            dom.pop("busy", None)


def read_image(path: str) -> dict:
    with open(path, "rb") as fh:
        data = fh.read()
    if not data.startswith(HEADER):
        raise ValueError("not a Xen saved domain")
    return json.loads(data[len(HEADER):])


def restore(tool: str, args: list[str], host: str, state: ClusterState
            ) -> tuple[int, str, str]:
    try:
        opts, pos = _options(args, "pedV")
    except ValueError as exc:
        return 2, "", f"restore: invalid option -- '{str(exc).lstrip('-')[:1]}'\n"
    if not pos:
        return 2, "", f"'{tool} restore' requires at least 1 argument\n"
    path = pos[-1]
    try:
        record = read_image(path)
    except OSError as exc:
        if tool == "xm":
            return 1, "", f"Error: [Errno {exc.errno}] {exc.strerror}: '{path}'\n"
        return 1, "", f"Can't open restore file: {exc.strerror}\n"
    except ValueError:
        return _fail(tool, f"{path}: File has wrong magic number")
    return _start(tool, host, state, record, save_seconds, "restore_fails",
                  paused="p" in opts)


def parse_config(text: str) -> dict:
    """``name``, ``memory`` and ``vcpus`` of an xl/xm configuration file."""
    out: dict = {}
    for line in text.splitlines():
        m = re.match(r'\s*(name|memory|vcpus)\s*=\s*"?([^"#\s]+)"?', line)
        if m:
            out[m.group(1)] = m.group(2)
    return out


def create(tool: str, args: list[str], host: str, state: ClusterState
           ) -> tuple[int, str, str]:
    try:
        opts, pos = _options(args, "qpcnF", "f")
    except ValueError as exc:
        return 2, "", f"create: invalid option -- '{str(exc).lstrip('-')[:1]}'\n"
    if not pos:
        return 2, "", f"'{tool} create' requires a configuration file\n"
    path = pos[0]
    try:
        with open(path, encoding="utf-8") as fh:
            config = parse_config(fh.read())
    except OSError as exc:
        if tool == "xm":
            return 1, "", f"Error: Unable to open config file: {path}\n"
        return 1, "", f"Failed to read config file: {path}: {exc.strerror}\n"
    if "name" not in config:
        return 1, "", f"{path}: domain name must be specified\n"
    try:
        record = {"name": config["name"], "mem_mib": int(config.get("memory", 128)),
                  "vcpus": int(config.get("vcpus", 1))}
    except ValueError:
        return 1, "", f"{path}: bad memory or vcpus\n"
    rc, out, err = _start(tool, host, state, record, create_seconds, "create_fails",
                          paused="p" in opts)
    if rc == 0 and tool == "xl":
        err = f"Parsing config from {path}\n" + err
    return rc, out, err


def _start(tool: str, host: str, state: ClusterState, record: dict, seconds_of, fault: str,
           paused: bool) -> tuple[int, str, str]:
    name = record["name"]
    with state.transaction() as st:
        spec = st["hosts"][host]
        if name in spec["domains"]:
            if tool == "xm":
                return 1, "", f"Error: Domain '{name}' already exists with ID " \
                              f"'{spec['domains'][name]['domid']}'\n"
            return 1, "", f"libxl: error: libxl_create.c: domain '{name}' already exists\n"
        if record["mem_mib"] > _free_mib(spec):
            return _fail(tool, f"failed to free memory for the domain ({record['mem_mib']} MiB "
                               f"needed, {max(0, _free_mib(spec))} MiB free)")
        dom = {"domid": st["next_domid"], "mem_mib": int(record["mem_mib"]),
               "vcpus": int(record.get("vcpus", 1)), "cpu_time": float(record.get("cpu_time", 0)),
               "load": float(record.get("load", 0.1)), "net_bytes": 0,
               "net_mbps": float(record.get("net_mbps", 0.0)), "state": "--p---",
               "busy": "starting"}
        st["next_domid"] += 1
        spec["domains"][name] = dom          # memory claimed when the start begins
        seconds = seconds_of(st, dom["mem_mib"])
        fails = st.get("faults", {}).get(fault, {}).get(name)
        domid = dom["domid"]
    time.sleep(seconds / 2 if fails else seconds)
    with state.transaction() as st:
        domains = st["hosts"][host]["domains"]
        if fails:
            domains.pop(name, None)
        elif name in domains:
            domains[name].pop("busy", None)
            domains[name]["state"] = "--p---" if paused else "-b----"
    if fails:
        return _fail(tool, f"libxl_create.c: domain {domid}: {fails}") if tool == "xl" \
            else _fail(tool, fails)
    return 0, "", ""


def run(tool: str, args: list[str], host: str, state: ClusterState) -> tuple[int, str, str]:
    """``xm``/``xl`` ``save``, ``restore`` or ``create`` on simulated host ``host``."""
    st = state.read()
    spec = st["hosts"].get(host)
    if spec is None or not spec.get("up", True):
        return 1, "", "cannot init xl context\n"
    sub, rest = args[0], args[1:]
    if sub == "save":
        return save(tool, rest, host, state)
    if sub == "restore":
        return restore(tool, rest, host, state)
    return create(tool, rest, host, state)
