"""Tables for ``--format table``: one function per document, built with tabulate."""

from __future__ import annotations

from tabulate import tabulate

TABLEFMT = "simple"


def table(rows: list[list], headers: list[str], title: str | None = None) -> str:
    text = tabulate(rows, headers=headers, tablefmt=TABLEFMT, floatfmt=".2f",
                    disable_numparse=True) if rows else "(none)"
    return f"{title}\n{text}\n" if title else text + "\n"


def pct(used: float, capacity: float) -> str:
    return f"{100.0 * used / capacity:.0f}%" if capacity else "-"


def snapshot_table(snapshot) -> str:
    """Hosts (capacity and use), the guests of each host, and the problems of a snapshot."""
    by_host: dict[str, list] = {}
    for vm in snapshot.vms:
        by_host.setdefault(vm.host, []).append(vm)
    rows = []
    for h in sorted(snapshot.hosts, key=lambda h: h.name):
        guests = by_host.get(h.name, [])
        cpu_used = sum(v.cpu for v in guests)
        mem_used = sum(v.mem_mib for v in guests)
        rows.append([h.name, h.cluster, h.state, f"{h.cpu:g}", pct(cpu_used, h.cpu),
                     str(h.mem_mib), pct(mem_used, h.mem_mib), str(len(guests)),
                     h.hypervisor, h.migration])
    parts = [table(rows, ["host", "cluster", "state", "cpus", "cpu use", "mem MiB", "mem use",
                          "guests", "hypervisor", "migration"],
                   f"Hosts ({len(snapshot.hosts)}) from {snapshot.source or '-'}")]
    for h in sorted(snapshot.hosts, key=lambda h: h.name):
        guests = sorted(by_host.get(h.name, []), key=lambda v: v.name)
        if not guests:
            continue
        grows = [[v.name, v.state, str(v.vcpus), f"{v.cpu:.2f}", str(v.mem_mib),
                  "-" if v.net_mbps is None else f"{v.net_mbps:.2f}"] for v in guests]
        parts.append(table(grows, ["guest", "state", "vcpus", "cpu", "mem MiB", "net Mbit/s"],
                           f"Guests on {h.name} ({len(guests)})"))
    if snapshot.problems:
        prows = [[p.kind, p.host or "", p.vm or "", p.message] for p in snapshot.problems]
        parts.append(table(prows, ["problem", "host", "guest", "message"],
                           f"Problems ({len(snapshot.problems)})"))
    return "\n".join(parts)
