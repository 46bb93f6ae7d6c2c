"""The simulated Domain-0's read-only toolstack: ``xm``/``xl`` ``list`` and ``info``,
``xenstore-read`` and ``xenstore-ls``, answering from the shared cluster state.

The formats are the real ones (Xen's ``xm`` and ``xl`` sources; see the reference):

- ``xm list``: header ``%-40s %5s %5s %5s %10s %9s``, rows
  ``%-40s %5s %5d %5d %10s %8.1f`` (name, id, MiB, vCPUs, state, CPU seconds);
- ``xl list``: header ``Name<40 sp>ID   Mem VCPUs<TAB>State<TAB>Time(s)``, rows
  ``%-40s %5d %5lu %5d     %c%c%c%c%c%c  %8.1f``;
- ``xm info``/``xl info``: ``%-23s: value`` lines; memory in MiB;
- Domain-0 is listed first with the host's ``dom0_mib`` and all physical CPUs.

Errors are the real messages and exit codes: ``xm list nosuch`` → ``Error: Domain 'nosuch'
does not exist.`` (3); ``xl list nosuch`` → ``nosuch is an invalid domain identifier (rc=-6)``
(1); ``xenstore-read /nope`` → ``xenstore-read: couldn't read path /nope`` (1).

Each answer first advances the simulated clock (:func:`vmtools.lab.cluster.advance`), so CPU
time and vif counters grow with each guest's load between two samples.

Fault injection for tests, in the state file::

    "faults": {"toolstack": {"node-1": {"xl list": {"hang": 30},
                                        "xm info": {"rc": 1, "stderr": "Error: ...\\n"},
                                        "xenstore-ls": {"stdout": "replaced output"},
                                        "xm list": {"append": "garbage line\\n"}}}}

``hang`` sleeps that many seconds before answering (a wedged xend); ``rc``/``stderr`` fail;
``stdout`` replaces the answer; ``append`` adds lines to it.

With ``VMTOOLS_LAB_SYSFS=<root>`` in the environment, every answer also refreshes
``<root>/sys/class/net/vif<domid>.0/statistics/{rx,tx}_bytes`` for the host's guests (see
:func:`materialise_sysfs`), so a Domain-0 tool reading sysfs sees counters consistent with
the CPU times it just read.
"""

from __future__ import annotations

import os
import time

from vmtools.lab.cluster import ClusterState, advance
from vmtools.xen import DOM0

XM_NOT_RUNNING = ("Error: Unable to connect to xend: No such file or directory. "
                  "Is xend running?\n")
XL_NO_CONTEXT = ("xencall: error: Could not obtain handle on privileged command interface: "
                 "No such file or directory\nlibxl: error: libxl.c:102:libxl_ctx_alloc: cannot "
                 "open libxc handle: No such file or directory\ncannot init xl context\n")

Answer = tuple[int, str, str]


def run(tool: str, args: list[str], host: str, state: ClusterState) -> Answer:
    """Answer ``tool args...`` as Domain-0 of ``host`` would: ``(rc, stdout, stderr)``."""
    args = list(args)
    sub = args[0] if args and tool in ("xm", "xl") else ""
    key = f"{tool} {sub}".strip()
    snapshot = state.read()
    advance(snapshot)           # this caller's view of now; saved by nobody (see cluster)
    fault = snapshot.get("faults", {}).get("toolstack", {}).get(host, {}).get(key)
    if fault and fault.get("hang"):
        time.sleep(float(fault["hang"]))
    sysfs = os.environ.get("VMTOOLS_LAB_SYSFS")
    if sysfs and host in snapshot["hosts"]:
        materialise_sysfs(sysfs, snapshot, host)
    rc, out, err = _answer(tool, args, host, snapshot)
    if fault:
        if "stdout" in fault:
            out = fault["stdout"]
        out += fault.get("append", "")
        if "rc" in fault:
            rc, err = int(fault["rc"]), fault.get("stderr", "")
    return rc, out, err


def _answer(tool: str, args: list[str], host: str, st: dict) -> Answer:
    spec = st["hosts"].get(host)
    if tool in ("xm", "xl"):
        if spec is None or not spec.get("up", True):
            return (1, "", XM_NOT_RUNNING if tool == "xm" else XL_NO_CONTEXT)
        sub, rest = (args[0], args[1:]) if args else ("", [])
        if sub == "list":
            return _list(tool, rest, host, spec, st)
        if sub == "info":
            return 0, _info(tool, host, spec, st), ""
        if tool == "xm":
            return 1, "", f"Error: Subcommand {sub} not found!\n" if sub else \
                "Usage: xm <subcommand> [args]\n"
        return 1, "", "command not implemented\n" if sub else "Usage xl [-vfN] <subcommand>\n"
    if spec is None or not spec.get("up", True):
        return 1, "", f"{tool}: could not connect to xenstore: No such file or directory\n"
    tree = _xenstore(spec, st)
    if tool == "xenstore-read":
        if not args:
            return 1, "", "Usage: xenstore-read [-h] [-p] [-s] key [...]\n"
        out = []
        for path in args:
            value = tree.get(_norm(path))
            if value is None:
                return 1, "".join(out), f"xenstore-read: couldn't read path {path}\n"
            out.append(value + "\n")
        return 0, "".join(out), ""
    if tool == "xenstore-ls":
        path = _norm(args[-1]) if args and not args[-1].startswith("-") else "/"
        if path not in tree:
            return 1, "", f"xs_directory ({path}): No such file or directory\n"
        return 0, _ls(tree, path), ""
    return 127, "", f"{tool}: command not found\n"


# ----------------------------------------------------------------------------- list

def _domains(spec: dict, st: dict) -> list[dict]:
    """Domain-0 first, then the guests by domid, as the toolstack orders them."""
    dom0 = {"name": DOM0, "domid": 0, "mem_mib": spec.get("dom0_mib", 1024),
            "vcpus": spec.get("cpus", 8), "state": "r-----",
            "cpu_time": round((st.get("clock", 0.0) % 1e6) * 0.05, 1)}
    guests = [dict(d, name=n) for n, d in spec["domains"].items()]
    return [dom0] + sorted(guests, key=lambda d: d["domid"])


def list_line(tool: str, dom: dict) -> str:
    if tool == "xm":
        return "%-40s %5s %5d %5d %10s %8.1f\n" % (dom["name"], dom["domid"], dom["mem_mib"],
                                                   dom["vcpus"], dom["state"], dom["cpu_time"])
    state = (dom.get("state") or "------").ljust(6, "-")[:6]
    return "%-40s %5d %5d %5d     %s  %8.1f\n" % (dom["name"], dom["domid"], dom["mem_mib"],
                                                  dom["vcpus"], state, dom["cpu_time"])


def list_header(tool: str) -> str:
    if tool == "xm":
        return "%-40s %5s %5s %5s %10s %9s\n" % ("Name", "ID", "Mem", "VCPUs", "State",
                                                 "Time(s)")
    return "Name                                        ID   Mem VCPUs\tState\tTime(s)\n"


def _list(tool: str, args: list[str], host: str, spec: dict, st: dict) -> Answer:
    options = [a for a in args if a.startswith("-")]
    wanted = [a for a in args if not a.startswith("-")]
    if any(o in ("-l", "--long") for o in options):
        return 1, "", "vmtools lab: list --long is not simulated\n"
    domains = _domains(spec, st)
    if wanted:
        chosen = []
        for name in wanted:
            found = [d for d in domains if d["name"] == name or str(d["domid"]) == name]
            if not found:
                if tool == "xm":
                    return 3, "", f"Error: Domain '{name}' does not exist.\n"
                return 1, "", f"{name} is an invalid domain identifier (rc=-6)\n"
            chosen.extend(found)
        domains = chosen
    return 0, list_header(tool) + "".join(list_line(tool, d) for d in domains), ""


# ----------------------------------------------------------------------------- info

def _info_pairs(tool: str, host: str, spec: dict) -> list[tuple[str, object]]:
    major, _, minor = str(spec.get("xen", "4.17")).partition(".")
    cpus = int(spec.get("cpus", 8))
    used = spec.get("dom0_mib", 1024) + sum(d["mem_mib"] for d in spec["domains"].values())
    free = max(0, int(spec.get("mem_mib", 16384)) - used)
    pairs: list[tuple[str, object]] = [
        ("host", host), ("release", "6.1.0-35-amd64"),
        ("version", "#1 SMP PREEMPT_DYNAMIC Debian 6.1.137-1 (2025-05-07)"),
        ("machine", "x86_64"), ("nr_cpus", cpus)]
    if tool == "xl":
        pairs.append(("max_cpu_id", cpus - 1))
    pairs += [("nr_nodes", 1), ("cores_per_socket", cpus), ("threads_per_core", 1),
              ("cpu_mhz", "2394.454"),
              ("hw_caps", "178bfbff:f6f83203:2e500800:000007f7:00000000:00000000:00000000:"
                          "00000000"),
              ("virt_caps", "hvm hvm_directio" if tool == "xl" else "hvm"),
              ("total_memory", int(spec.get("mem_mib", 16384))), ("free_memory", free)]
    if tool == "xl":
        pairs += [("sharing_freed_memory", 0), ("sharing_used_memory", 0),
                  ("outstanding_claims", 0)]
    pairs += [("free_cpus", 0), ("xen_major", major), ("xen_minor", minor or "0"),
              ("xen_extra", ".1")]
    if tool == "xl":
        pairs.append(("xen_version", f"{major}.{minor or '0'}.1"))
    pairs += [("xen_caps", "xen-3.0-x86_64 hvm-3.0-x86_32 hvm-3.0-x86_32p hvm-3.0-x86_64"),
              ("xen_scheduler", "credit2" if tool == "xl" else "credit"),
              ("xen_pagesize", 4096), ("platform_params", "virt_start=0xffff800000000000"),
              ("xen_changeset", ""),
              ("xen_commandline", "placeholder dom0_mem=%dM,max:%dM"
               % (spec.get("dom0_mib", 1024), spec.get("dom0_mib", 1024))),
              ("cc_compiler", "x86_64-linux-gnu-gcc (Debian 12.2.0-14) 12.2.0"),
              ("cc_compile_by", "pkg-xen-devel"), ("cc_compile_domain", "lists.alioth.debian.org"),
              ("cc_compile_date", "Wed May 21 10:00:00 UTC 2025")]
    if tool == "xl":
        pairs.append(("build_id", "9c1e8ba0a2b9dbd3c7d3d1c43a6f3f2a3d84d5b1"))
    pairs.append(("xend_config_format", 4))
    return pairs


def _info(tool: str, host: str, spec: dict, st: dict) -> str:
    return "".join("%-23s: %s\n" % (k, v) for k, v in _info_pairs(tool, host, spec))


# ----------------------------------------------------------------------------- xenstore

def _norm(path: str) -> str:
    path = "/" + path.strip("/")
    return path


_NAMESPACE_DNS = bytes.fromhex("6ba7b8109dad11d180b400c04fd430c8")


def _uuid5(name: str) -> str:
    """RFC 4122's name-based (SHA-1) UUID in the DNS namespace, as ``uuid.uuid5`` makes it
    (that module imports ``platform`` and costs a stand-in call a third of its start-up;
    hashlib loads OpenSSL, so only xenstore answers import it)."""
    import hashlib
    b = bytearray(hashlib.sha1(_NAMESPACE_DNS + name.encode()).digest()[:16])
    b[6] = (b[6] & 0x0F) | 0x50
    b[8] = (b[8] & 0x3F) | 0x80
    h = b.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _xenstore(spec: dict, st: dict) -> dict[str, str]:
    """The host's xenstore as ``{path: value}``; every directory is a node with value ""."""
    tree: dict[str, str] = {}

    def put(path: str, value: str) -> None:
        parts = path.strip("/").split("/")
        for i in range(len(parts)):
            tree.setdefault("/" + "/".join(parts[:i]) if i else "/", "")
        tree["/" + "/".join(parts)] = value

    for dom in _domains(spec, st):
        base = f"/local/domain/{dom['domid']}"
        vm_uuid = _uuid5(f"{dom['name']}.vmtools-lab")
        put(f"{base}/vm", f"/vm/{vm_uuid}")
        put(f"{base}/name", dom["name"])
        put(f"{base}/domid", str(dom["domid"]))
        put(f"{base}/memory/static-max", str(dom["mem_mib"] * 1024))
        put(f"{base}/memory/target", str(dom["mem_mib"] * 1024))
        for cpu in range(int(dom["vcpus"])):
            put(f"{base}/cpu/{cpu}/availability", "online")
        put(f"/vm/{vm_uuid}/name", dom["name"])
        put(f"/vm/{vm_uuid}/uuid", str(vm_uuid))
    put("/tool/xenstored", "")
    return tree


def _ls(tree: dict[str, str], path: str) -> str:
    """``xenstore-ls PATH``: the subtree below PATH, one space of indent per level."""
    prefix = path.rstrip("/") + "/"
    out: list[str] = []

    def walk(node: str, depth: int) -> None:
        base = node.rstrip("/") + "/"
        children = sorted({p[len(base):].split("/")[0] for p in tree
                           if p.startswith(base) and p != node}, key=_natural)
        for child in children:
            full = base + child
            out.append('%s%s = "%s"\n' % (" " * depth, child, tree.get(full, "")))
            walk(full, depth + 1)

    walk(prefix.rstrip("/") or "/", 0)
    return "".join(out)


def _natural(text: str) -> tuple:
    return (0, int(text), "") if text.isdigit() else (1, 0, text)


# ----------------------------------------------------------------------------- sysfs

def materialise_sysfs(root: str | os.PathLike, state: dict | ClusterState, host: str) -> str:
    """Write ``<root>/sys/class/net/vif<domid>.0/statistics/{rx,tx}_bytes`` for the guests of
    ``host`` (rx + tx = the guest's ``net_bytes``) and remove vifs of guests that left.
    Returns the ``sys/class/net`` directory. (os.path, not pathlib: every stand-in call runs
    this, and a real ``xl`` starts in a few milliseconds.)"""
    st = state.read() if isinstance(state, ClusterState) else state
    net = os.path.join(root, "sys", "class", "net")
    os.makedirs(net, exist_ok=True)
    spec = st["hosts"].get(host, {"domains": {}})
    live = set()
    for dom in spec["domains"].values():
        name = f"vif{dom['domid']}.0"
        live.add(name)
        stats = os.path.join(net, name, "statistics")
        os.makedirs(stats, exist_ok=True)
        total = int(dom.get("net_bytes", 0))
        for counter, value in (("rx_bytes", total // 2), ("tx_bytes", total - total // 2)):
            path = os.path.join(stats, counter)
            tmp = f"{path}.{os.getpid()}.tmp"
            with open(tmp, "w") as fh:
                fh.write(f"{value}\n")
            os.replace(tmp, path)
    for entry in os.listdir(net):
        if entry.startswith("vif") and entry not in live:
            import shutil          # rarely needed: a guest left this host
            shutil.rmtree(os.path.join(net, entry), ignore_errors=True)
    return net
