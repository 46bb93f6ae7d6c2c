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


def plan_tables(plan_doc: dict) -> str:
    """``vm-plan -f table``: the actions, then each host's use before and after."""
    actions = [[a["id"], a["vm"], a["src"], a["dst"], f"{a['mem_mib'] / 1024:.1f}",
                ",".join(map(str, a["after"])) or "-", a.get("reason", "")]
               for a in plan_doc.get("actions", [])]
    out = table(actions, ["id", "vm", "from", "to", "GiB", "after", "reason"], "actions")
    origin = plan_doc["origin"]
    vms = {v["name"]: v for v in origin["vms"]}
    before: dict[str, list[float]] = {h["name"]: [0.0, 0.0, 0] for h in origin["hosts"]}
    after: dict[str, list[float]] = {h["name"]: [0.0, 0.0, 0] for h in origin["hosts"]}
    for v in origin["vms"]:
        before[v["host"]][0] += v["cpu"]
        before[v["host"]][1] += v["mem_mib"]
        before[v["host"]][2] += 1
    for name, host in plan_doc.get("placement", {}).items():
        v = vms[name]
        after[host][0] += v["cpu"]
        after[host][1] += v["mem_mib"]
        after[host][2] += 1
    rows = []
    for h in origin["hosts"]:
        b, a = before[h["name"]], after[h["name"]]
        rows.append([h["name"], h["state"], b[2], pct(b[0], h["cpu"]), pct(b[1], h["mem_mib"]),
                     a[2], pct(a[0], h["cpu"]), pct(a[1], h["mem_mib"])])
    out += "\n" + table(rows, ["host", "state", "guests", "cpu", "mem", "guests after",
                               "cpu after", "mem after"], "hosts (before -> after)")
    s = plan_doc.get("summary", {})
    solver = plan_doc.get("solver", {})
    out += (f"\n{plan_doc.get('objective')}: {s.get('hosts_before')} -> {s.get('hosts_after')} "
            f"hosts (lower bound {s.get('hosts_lower_bound')}), {s.get('migrations')} "
            f"migrations, {s.get('migrated_mib', 0) / 1024:.1f} GiB, {s.get('pivots')} pivots, "
            f"about {s.get('estimated_seconds')} s; solver {solver.get('name')} "
            f"{solver.get('status')}\n")
    return out + policy_lines(s)


def policy_lines(s: dict) -> str:
    """What ``--objective auto`` saw and left: hotspots, consolidation, the budget."""
    out = ""
    hot = [[h["host"], pct(h["cpu"], 1), pct(h["mem"], 1),
            "relieved" if h["acted"] else "left", h.get("why", "")]
           for h in s.get("hotspots", [])]
    if hot:
        out += table(hot, ["host", "cpu", "mem", "", "why"], "hotspots")
    cons = s.get("consolidation")
    if cons is not None:
        freed = cons.get("hosts_freed") or []
        out += f"consolidation: {len(freed)} hosts emptied" + \
            (f" ({', '.join(freed)})" if freed else "") + "\n"
        d = cons.get("deferred")
        if d:
            out += f"  {d['hosts']} more to empty later, next {d['next']}: {d['why']}\n"
        left = cons.get("best_left")
        if left:
            out += f"  best host left: {left['host']}: {left['why']}\n"
    d = s.get("deferred")
    if d is not None:
        out += (f"deferred to later runs: {d['migrations']} migrations, "
                f"{d['migrated_mib'] / 1024:.1f} GiB\n")
    return out
