"""Tables for ``--format table``: one function per document, built with tabulate."""

from __future__ import annotations

from tabulate import tabulate

TABLEFMT = "simple"
WIDTH: int | None = 80          # None: as wide as the cells (``-f wide``)


def set_width(width: int | None) -> None:
    """Tables fit ``width`` columns (80 by default); None lets them be as wide as they are."""
    global WIDTH
    WIDTH = width


def plural(n: int, word: str, words: str | None = None) -> str:
    """``1 migration``, ``2 migrations``."""
    return f"{n} {word if n == 1 else (words or word + 's')}"


def gib(mib: float) -> str:
    return f"{mib / 1024:.1f}"


def _fit(rows: list[list[str]], headers: list[str], width: int) -> list[int | None]:
    """Column widths that make the table fit ``width``: the widest columns' text is wrapped
    inside its cells (nothing is cut; ``-f wide`` keeps one line per row)."""
    # tabulate's "simple": a header gets 2 columns of padding, columns 2 spaces between
    w = [max([len(headers[i]) + 2] + [len(r[i]) for r in rows]) for i in range(len(headers))]
    limits: list[int | None] = [None] * len(headers)
    for _ in range(len(headers)):
        total = sum(w) + 2 * (len(w) - 1)
        if total <= width:
            break
        i = max(range(len(w)), key=lambda k: w[k])
        limit = max(len(headers[i]) + 2, 12, w[i] - (total - width))
        if limit >= w[i]:
            break
        limits[i] = w[i] = limit
    return limits


def table(rows: list[list], headers: list[str], title: str | None = None) -> str:
    cells = [["" if c is None else (f"{c:.2f}" if isinstance(c, float) else str(c)) for c in r]
             for r in rows]
    limits = _fit(cells, list(headers), WIDTH) if cells and WIDTH else None
    if limits and any(limits):
        text = tabulate(cells, headers=headers, tablefmt=TABLEFMT, disable_numparse=True,
                        maxcolwidths=limits)
    else:
        text = tabulate(cells, headers=headers, tablefmt=TABLEFMT,
                        disable_numparse=True) if cells else "(none)"
    return f"{wrap(title)}\n{text}\n" if title else text + "\n"


def wrap(line: str) -> str:
    """A long line of prose, folded to the table width (indented continuation lines)."""
    if not WIDTH or len(line) <= WIDTH:
        return line
    import textwrap
    return textwrap.fill(line, WIDTH, subsequent_indent="  ", break_on_hyphens=False,
                         break_long_words=False)


def pct(used: float, capacity: float) -> str:
    return f"{100.0 * used / capacity:.0f}%" if capacity else "-"


def snapshot_table(snapshot) -> str:
    """Hosts (capacity and use), the guests of each host, and the problems of a snapshot.
    Units are in the headers: CPUs (count), CPU % (of the host's CPUs), GiB, Mbit/s."""
    by_host: dict[str, list] = {}
    for vm in snapshot.vms:
        by_host.setdefault(vm.host, []).append(vm)
    wide = WIDTH is None
    rows = []
    for h in sorted(snapshot.hosts, key=lambda h: h.name):
        guests = by_host.get(h.name, [])
        cpu_used = sum(v.cpu for v in guests)
        mem_used = sum(v.mem_mib for v in guests)
        row = [h.name, h.state, f"{h.cpu:g}", pct(cpu_used, h.cpu), gib(h.mem_mib),
               pct(mem_used, h.mem_mib), str(len(guests)), h.migration]
        if wide:
            row[1:1] = [h.cluster]
            row.append(h.hypervisor)
        rows.append(row)
    headers = ["host", "state", "CPUs", "CPU %", "mem GiB", "mem %", "guests", "migration"]
    if wide:
        headers[1:1] = ["cluster"]
        headers.append("hypervisor")
    parts = [table(rows, headers,
                   f"Hosts ({len(snapshot.hosts)}) from {snapshot.source or '-'}")]
    for h in sorted(snapshot.hosts, key=lambda h: h.name):
        guests = sorted(by_host.get(h.name, []), key=lambda v: v.name)
        if not guests:
            continue
        grows = [[v.name, v.state, str(v.vcpus), f"{v.cpu:.2f}", gib(v.mem_mib),
                  "-" if v.net_mbps is None else f"{v.net_mbps:.2f}"] for v in guests]
        parts.append(table(grows, ["guest", "state", "vCPUs", "CPUs used", "mem GiB",
                                   "net Mbit/s"],
                           f"Guests on {h.name} ({len(guests)})"))
    if snapshot.problems:
        parts.append(problem_list([(p.kind, p.host, p.vm, p.message)
                                   for p in snapshot.problems]))
    return "\n".join(parts)


def problem_list(problems: list[tuple[str, str | None, str | None, str]]) -> str:
    """Problems in full: a list folded to the width (a table in ``-f wide``)."""
    title = f"Problems ({len(problems)})"
    if WIDTH is None:
        return table([[k, h or "", v or "", m] for k, h, v, m in problems],
                     ["problem", "host", "guest", "message"], title)
    lines = [title]
    for kind, host, vm, message in problems:
        where = ", ".join(x for x in (f"host {host}" if host else "",
                                      f"guest {vm}" if vm else "") if x)
        lines.append(wrap(f"- {kind}{f' ({where})' if where else ''}: {message}"))
    return "\n".join(lines) + "\n"


def duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def solver_words(solver: dict) -> str:
    name, status = solver.get("name"), solver.get("status")
    if name in (None, "none"):
        return f"no solver run ({status})" if status else "no solver run"
    return f"solver {name}: {status}"


def plan_summary_line(plan_doc: dict) -> str:
    """One line for people: hosts in use, migrations, memory, time (with what it assumed)."""
    s = plan_doc.get("summary", {})
    n = s.get("migrations") or 0
    if s.get("manual") or "created" in s:
        what = s.get("manual") or (f"create {plural(s['created'], 'new guest')}" + (
            f", waking {', '.join(s['hosts_woken'])}" if s.get("hosts_woken") else ""))
        return f"{plan_doc.get('objective')}: {what}; {solver_words(plan_doc.get('solver', {}))}"
    line = (f"{plan_doc.get('objective')}: hosts in use {s.get('hosts_before')} -> "
            f"{s.get('hosts_after')} (at least {s.get('hosts_lower_bound')} needed), "
            f"{plural(n, 'migration')}, {gib(s.get('migrated_mib', 0))} GiB to move")
    if s.get("pivots"):
        line += (f" (with {plural(s['pivots'], 'pivot')}: moves through a third host to "
                 "break a cycle)")
    if n:
        est = s.get("estimate_assumes") or {}
        line += f", about {duration(s.get('estimated_seconds') or 0)}"
        if est:
            line += (f" at {est.get('bandwidth_mbit_s', 0):g} Mbit/s, "
                     f"{est.get('parallel')} at once")
    return line + f"; {solver_words(plan_doc.get('solver', {}))}"


def _demand_words(plan_doc: dict) -> str:
    """Which CPU demand the plan used: why its CPU % may differ from the snapshot's."""
    demand = (plan_doc.get("summary") or {}).get("demand")
    return f"{demand} per guest" if demand else "as in the snapshot"


def _ends(a: dict) -> tuple[str, str]:
    """The from and to columns of a guest's action: a suspend goes to (image), a resume comes
    from (image), a create from (new), a checkpoint stays (checkpoint)."""
    op = a.get("op", "migrate")
    if op == "suspend":
        return a["src"], "(image)"
    if op == "resume":
        return "(image)", a["dst"]
    if op == "create":
        return "(new)", a["dst"]
    if op == "checkpoint":
        return a["src"], "(checkpoint)"
    return a["src"], a["dst"]


def plan_tables(plan_doc: dict) -> str:
    """``vm-plan -f table``: the actions, then each host's use before and after."""
    actions = [[a["id"], a["vm"], *_ends(a), gib(a["mem_mib"]),
                ",".join(map(str, a["after"])) or "-", a.get("reason", "")]
               if "vm" in a else                     # a power action: op and host
               [a["id"], a["op"], a["host"] if a["op"] == "power-off" else "",
                a["host"] if a["op"] == "power-on" else "", "",
                ",".join(map(str, a["after"])) or "-", a.get("reason", "")]
               for a in plan_doc.get("actions", [])]
    switched = {a["host"]: a["op"] for a in plan_doc.get("actions", []) if "vm" not in a}
    lifecycle = any(a.get("op") not in (None, "migrate") for a in plan_doc.get("actions", []))
    out = table(actions, ["id", "guest", "from", "to", "mem GiB", "after", "reason"],
                f"{'Actions' if switched or lifecycle else 'Migrations'} (after: the ids that "
                "must end first)")
    origin = plan_doc["origin"]
    vms = {v["name"]: v for v in origin["vms"]}
    for a in plan_doc.get("actions", []):       # guests a plan starts (resume, create)
        if a.get("op") in ("resume", "create") and a["vm"] not in vms:
            vms[a["vm"]] = {"cpu": a.get("cpu", 0.0), "mem_mib": a["mem_mib"]}
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
    frozen = {f["host"]: f for f in plan_doc.get("summary", {}).get("frozen") or []}
    # use under the rules, as vm-status shows it (summary.load); an older plan: of the host
    load = {e["host"]: e for e in plan_doc.get("summary", {}).get("load") or []}
    for h in origin["hosts"]:
        b, a = before[h["name"]], after[h["name"]]
        state = {"power-off": f"{h['state']} -> standby", "power-on": "standby -> online"
                 }.get(switched.get(h["name"], ""), h["state"])
        if h["name"] in frozen:
            state += ", frozen"
        e = load.get(h["name"])
        use = [f"{_hot_pct(e[f'{d}_before'], d, e['hot_before'])} -> "
               f"{_hot_pct(e[f'{d}_after'], d, e['hot_after'])}" for d in ("cpu", "mem")] \
            if e else [f"{pct(b[0], h['cpu'])} -> {pct(a[0], h['cpu'])}",
                       f"{pct(b[1], h['mem_mib'])} -> {pct(a[1], h['mem_mib'])}"]
        rows.append([h["name"], state, f"{b[2]} -> {a[2]}", *use])
    out += "\n" + table(rows, ["host", "state", "guests", "CPU %", "mem %"],
                        f"Hosts, before -> after (CPU demand: {_demand_words(plan_doc)})")
    if frozen:
        out += "\n" + frozen_table(list(frozen.values()))
    out += "\n" + wrap(plan_summary_line(plan_doc)) + "\n"
    policy = policy_lines(plan_doc.get("summary", {}))
    return out + "".join(wrap(line) + "\n" for line in policy.splitlines())


def _hot_pct(fraction: float, dim: str, hot: list[str]) -> str:
    """A use fraction as a percentage, with vm-status's ``!`` when it makes a hotspot."""
    return f"{100.0 * fraction:.0f}%" + ("!" if dim in hot else "")


def frozen_table(frozen: list[dict]) -> str:
    """The frozen hosts of a plan or a status view: nothing moves onto them, their guests
    stay; the problem kinds and the first problem's sentence (the guests leaving it to end an
    overload, in a plan)."""
    plan = any("leaving" in f for f in frozen)
    rows = []
    for f in frozen:
        kinds = f.get("kinds", [])
        why = f.get("why", "").removeprefix(", ".join(kinds) + ": ")
        row = [f["host"], ", ".join(kinds), why]
        if plan:
            row.insert(2, ", ".join(f.get("leaving") or []) or "-")
        rows.append(row)
    headers = ["host", "problems", "leaving", "why"] if plan else ["host", "problems", "why"]
    return table(rows, headers,
                 f"Frozen hosts ({len(frozen)}): nothing moves onto them, their guests stay")


def report_table(report: dict) -> str:
    """``vm-apply -f table``: one row per migration, with where its guest was verified."""
    s = report.get("summary", {})
    dry = report.get("dry_run")
    offline = s.get("offline")
    rows = []
    for a in report.get("actions", []):
        outcome = a["outcome"]
        if dry and outcome == "skipped":
            outcome = "would run"
        where = a.get("where") or ("not asked" if offline else "-")
        seconds = "-" if a.get("seconds") is None else f"{a['seconds']:.1f}"
        if a.get("vm") is None:                   # a power action: op and host
            rows.append([a["id"], a.get("op", ""), a.get("host", ""), "", outcome, seconds,
                         "-", a.get("error") or ""])
            continue
        rows.append([a["id"], a["vm"], *_ends(a), outcome, seconds, where,
                     a.get("error") or ""])
    headers = ["id", "guest", "from", "to", "outcome", "seconds", "verified on", "error"]
    if WIDTH is None:
        headers.insert(7, "transport")
        for row, a in zip(rows, report.get("actions", [])):
            row.insert(7, a.get("transport", ""))
    if dry:
        title = (f"vm-apply --dry-run{' --offline' if offline else ''}: "
                 f"{plural(len(rows), 'migration')} would run, nothing moved"
                 + ("; no host asked" if offline else "; every touched host asked"))
    else:
        title = (f"vm-apply: {s.get('done', 0)} done, {s.get('failed', 0)} failed, "
                 f"{s.get('not-run', 0)} not run")
    out = table(rows, headers, title)
    for problem in s.get("problems") or []:
        out += wrap(f"problem: {problem}") + "\n"
    return out


def ago(seconds: float | None) -> str:
    if seconds is None:
        return "age unknown"
    if seconds < 120:
        return f"{seconds:.0f} s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min ago"
    if seconds < 172800:
        return f"{seconds / 3600:.0f} h ago"
    return f"{seconds / 86400:.0f} days ago"


def _without_empty_last(rows: list[list], cols: list[str]) -> tuple[list[list], list[str]]:
    """The rows and columns without the last column when no row has anything in it (a column
    of nothing would still draw its rule)."""
    if any(r[-1] for r in rows):
        return rows, cols
    return [r[:-1] for r in rows], cols[:-1]


def status_table(doc: dict) -> str:
    """``vm-status``: one line per host, the problems, the last cron run; 80 columns."""
    s = doc["summary"]
    th = doc.get("thresholds", {})
    head = (f"{plural(s['hosts'], 'host')} ({s['online']} online, {s['standby']} standby), "
            f"{plural(s['guests'], 'guest')}; snapshot of {doc.get('snapshot_created') or '?'} "
            f"from {doc.get('source') or '-'}")
    rows = []
    for h in doc["hosts"]:
        def use(value, dim):
            if value is None:
                return "-"
            return f"{100 * value:.0f}%" + ("!" if dim in h["hotspot"] else "")
        rows.append([h["name"], h["state"] + (", frozen" if h.get("frozen") else "") +
                     (", maintenance" if h.get("maintenance") else ""),
                     use(h["cpu_use"], "cpu"), use(h["mem_use"], "mem"),
                     h["guests"], "-" if h.get("cpus") is None else f"{h['cpus']:g}",
                     "-" if h.get("mem_mib") is None else gib(h["mem_mib"]),
                     ("hotspot: " + ", ".join(h["hotspot"]).replace("cpu", "CPU")
                      .replace("mem", "memory")) if h["hotspot"] else ""])
    rows, cols = _without_empty_last(rows, ["host", "state", "CPU %", "mem %", "guests", "CPUs",
                                            "mem GiB", "note"])
    domains = doc.get("domains") or {}
    if not domains:
        out = table(rows, cols, wrap(head))
    else:
        # one table per migration domain (the hosts come sorted by domain, then name)
        out = wrap(head) + "\n"
        for name, d in domains.items():
            mine = [r for r, h in zip(rows, doc["hosts"]) if h.get("domain", "") == name]
            title = (f"domain {name or '(none)'}: {plural(d['hosts'], 'host')} ({d['online']} "
                     f"online), {plural(d['guests'], 'guest')}" +
                     (f", {plural(len(d['hotspots']), 'hotspot')}" if d["hotspots"] else "") +
                     (f", {len(d['frozen'])} frozen" if d["frozen"] else "") +
                     (f"; {plural(d['unavailable_sources'], 'source')} did not answer"
                      if d.get("unavailable_sources") else ""))
            out += "\n" + (table(mine, cols, wrap(title)) if mine else wrap(title) + "\n")
    out += (f"(! marks a hotspot: CPU above {100 * th.get('cpu', 0.9):.0f}% or memory above "
            f"{100 * th.get('mem', 0.95):.0f}% of the host)\n")
    frozen = [dict(h["frozen"], host=h["name"], knowledge=h.get("knowledge", ""))
              for h in doc["hosts"] if h.get("frozen")]
    if frozen:
        out += "\n" + frozen_table(frozen)
    if doc.get("suspended"):
        rows = [[e["name"], e.get("host") or "-", gib(e["mem_mib"]),
                 "-" if e.get("cpu") is None else f"{e['cpu']:.2f}",
                 e.get("suspended") or "-",
                 e.get("image") or ("(kept by the platform)" if e.get("seen") == "platform"
                                    else "-")] for e in doc["suspended"]]
        out += "\n" + table(rows, ["guest", "left", "mem GiB", "CPU", "suspended since",
                                   "image"], "Suspended guests (vm-apply's ledger and the "
                                             "platform's)")
    if doc.get("halted"):
        rows = [[e["name"], e.get("host") or "-", gib(e["mem_mib"]), e["vcpus"]]
                for e in doc["halted"]]
        out += "\n" + table(rows, ["guest", "affinity", "mem GiB", "vCPUs"],
                             "Halted guests (defined, not running)")
    if doc.get("problems"):
        out += "\n" + problem_list([(p["kind"], p.get("host"), p.get("vm"), p["message"])
                                    for p in doc["problems"]])
    elif not doc["hosts"]:
        # not "no problems": nothing is seen, so nothing is known to be well
        out += "\n" + wrap("No host is seen: the source reports none (every agent gone, the "
                           "wrong cluster or profile). Nothing is known of the guests.") + "\n"
    else:
        out += "\nNo problems.\n"
    last = doc.get("last_run")
    if last is None:
        where = doc.get("runs_dir")
        out += "\n" + wrap(f"No vm-rebalance run found{f' in {where}' if where else ''}.") + "\n"
    else:
        out += "\n" + wrap(f"Last vm-rebalance run: {last['run']}, {ago(last['age_seconds'])}: "
                           f"{last['what']}") + "\n"
        plan = last.get("plan")
        if plan:
            out += wrap(f"  plan: {plan.get('objective')}, hosts in use "
                        f"{plan.get('hosts_before')} -> {plan.get('hosts_after')}, "
                        f"{plural(plan.get('migrations') or 0, 'migration')}") + "\n"
        for f in last.get("failures") or []:
            out += wrap(f"  failed: {f['vm']} {f['from']} -> {f['to']}: {f['error']}") + "\n"
        out += wrap(f"  documents and logs in {last['dir']}") + "\n"
    return out


def policy_lines(s: dict) -> str:
    """What ``--objective auto`` saw and left: hotspots, consolidation, the budget."""
    out = ""
    if s.get("migrations") == 0 and ("hotspots" in s or "consolidation" in s):
        why: dict[str, list[str]] = {}
        for h in s.get("hotspots", []):
            if not h.get("acted"):
                why.setdefault(h.get("reason") or "left", []).append(f"hotspot {h['host']}")
        for e in (s.get("consolidation") or {}).get("left", []):
            if e.get("reason") not in ("hotspot", "touched"):
                why.setdefault(e["reason"], []).append(e["host"])
        if why:
            out += "nothing moved: " + "; ".join(
                f"{code}: {', '.join(hosts[:4])}" + (f" (+{len(hosts) - 4})" if len(hosts) > 4
                                                    else "")
                for code, hosts in why.items()) + "\n"
    hot = [[h["host"], pct(h["cpu"], 1), pct(h["mem"], 1),
            "relieved" if h["acted"] else "left", h.get("why", "")]
           for h in s.get("hotspots", [])]
    if hot:
        out += table(hot, ["host", "CPU %", "mem %", "", "why"], "Hotspots")
    left = (s.get("repair") or {}).get("left") or []
    if left:                # what auto's greedy repair could not clear (vm-plan(1))
        out += table([[e["host"], {"mem": "memory"}.get(e["dim"], "CPU"),
                       "-" if e.get("use") is None else pct(e["use"], 1), e["reason"], e["why"]]
                      for e in left], ["host", "over", "use %", "reason", "why"],
                     "Overloads the repair left" + (f" (and {s['repair']['left_more']} more)"
                                                    if s["repair"].get("left_more") else ""))
    cons = s.get("consolidation")
    if cons is not None:
        freed = cons.get("hosts_freed") or []
        out += f"consolidation: {plural(len(freed), 'host')} emptied" + \
            (f" ({', '.join(freed)})" if freed else "") + "\n"
        d = cons.get("deferred")
        if d:
            out += f"  {d['hosts']} more to empty later, next {d['next']}: {d['why']}\n"
        lefts = [e for e in cons.get("left", []) if e.get("reason") not in ("hotspot",
                                                                           "touched")]
        if lefts:
            out += "  not emptied (least memory first):\n"
            for e in lefts[:8]:
                out += wrap(f"    {e['host']}: {e['reason']}: {e['why']}") + "\n"
            more = len(lefts) - 8 + (cons.get("left_more") or 0)
            if more > 0:
                out += f"    ... and {plural(more, 'host')} more (see the JSON summary)\n"
        elif cons.get("best_left"):
            left = cons["best_left"]
            out += f"  best host left: {left['host']}: {left['why']}\n"
    d = s.get("deferred")
    if d is not None:
        out += (f"deferred to later runs: {plural(d['migrations'], 'migration')}, "
                f"{d['migrated_mib'] / 1024:.1f} GiB\n")
    return out
