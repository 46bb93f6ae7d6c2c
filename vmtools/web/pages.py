"""vm-web's pages: server-rendered HTML, every value from the cluster escaped.

Every page is built by :func:`page`; text goes in through :func:`h` (html.escape of anything
that is not already :class:`Markup`), so a host, guest or problem text is text whatever it
holds. No inline script or style (the Content-Security-Policy forbids both): bars are
``<meter>`` elements and charts SVG attributes, with the figures also written out, so nothing
is told by colour alone.
"""

from __future__ import annotations

import html
from typing import Iterable
from urllib.parse import quote

from vmtools.text import printable


class Markup(str):
    """HTML already escaped (or written here)."""


def esc(value: object) -> Markup:
    if isinstance(value, Markup):
        return value
    return Markup(html.escape(printable(str(value)) if value is not None else "", quote=True))


def h(template: str, *args: object) -> Markup:
    """``template`` (trusted, written here) with ``{}`` filled by escaped ``args``."""
    return Markup(template.format(*(esc(a) for a in args)))


def join(parts: Iterable[Markup]) -> Markup:
    return Markup("".join(esc(p) for p in parts))


def url(path: str, **query: object) -> str:
    q = "&".join(f"{k}={quote(str(v), safe='')}" for k, v in query.items() if v is not None)
    return path + ("?" + q if q else "")


def pct(x: float | None) -> str:
    return "unknown" if x is None else f"{x * 100:.0f} %"


def page(title: str, body: Markup, *, csrf: str | None = None, read_only: bool = False,
         here: str = "") -> str:
    nav = Markup("")
    if csrf is not None:
        links = [("/", "Cluster"), ("/plans", "Plans and runs"), ("/history", "History"),
                 ("/replays", "Replays")]
        nav = join(h('<li><a href="{}"{}>{}</a></li>', p,
                     Markup(' aria-current="page"') if p == here else Markup(""), t)
                   for p, t in links)
        nav = h('<nav aria-label="main"><ul>{}</ul>{}<form method="post" action="/logout">'
                '<input type="hidden" name="csrf" value="{}"><button>Log out</button></form>'
                '</nav>', nav, Markup('<span class="ro">read-only</span>') if read_only
                else Markup(""), csrf)
    return h('<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
             '<meta name="viewport" content="width=device-width, initial-scale=1">'
             '<title>{} — vm-web</title><link rel="stylesheet" href="/static/style.css">'
             '<link rel="icon" href="data:,">'
             '<script src="/static/app.js" defer></script></head>'
             '<body><header><a class="brand" href="/">vm-web</a>{}</header>'
             '<main id="main"><h1>{}</h1>{}</main></body></html>\n', title, nav, title, body)


def csrf_field(csrf: str) -> Markup:
    return h('<input type="hidden" name="csrf" value="{}">', csrf)


# ---------------------------------------------------------------- login

def login_page(message: str = "") -> str:
    body = h('{}<p>Open the URL vm-web printed when it started, or give the login token '
             '(the first line of its token file).</p>'
             '<form method="post" action="/login"><label for="token">Login token</label> '
             '<input id="token" name="token" type="password" autocomplete="off" required> '
             '<button>Log in</button></form>',
             h('<p class="error" role="alert">{}</p>', message) if message else Markup(""))
    return page("Log in", body)


def message_page(title: str, message: str, csrf: str | None, back: str = "/") -> str:
    return page(title, h('<p class="error" role="alert">{}</p><p><a href="{}">Back</a></p>',
                         message, back), csrf=csrf)


# ---------------------------------------------------------------- the cluster

def _meter(label: str, use: float | None, target: float, what: str) -> Markup:
    if use is None:
        return h('<div class="bar"><span class="lbl">{}</span> unknown</div>', label)
    over = use > target
    return h('<div class="bar"><span class="lbl">{}</span> <meter min="0" max="1" low="{}" '
             'high="{}" optimum="0" value="{}" title="{}">{}</meter> <span class="fig">{} '
             '{}</span></div>', label, f"{target * 0.8:.3f}", f"{target:.3f}",
             f"{min(use, 1.0):.3f}", what, pct(use), pct(use),
             Markup(h('<strong class="over">over the {} target</strong>', pct(target)))
             if over else h('(target {})', pct(target)))


def cluster_page(status: dict, vms: list, moving: dict[str, str], in_flight: list[str],
                 csrf: str, read_only: bool, targets: tuple[float, float],
                 maintenance: dict[str, dict] | None = None) -> str:
    """``maintenance``: host -> {"since": text, "ours": whether vm-plan's state records it
    (a host the platform holds disabled by itself, a XAPI pool's, is not ended here)}."""
    maintenance = maintenance or {}
    by_host: dict[str, list] = {}
    for v in sorted(vms, key=lambda v: v.name):
        by_host.setdefault(v.host, []).append(v)
    s = status["summary"]
    parts = [h('<p class="summary">{} hosts ({} online, {} standby), {} guests, {} problem{}. '
               'Snapshot of {} from {}.</p>', s["hosts"], s["online"], s["standby"], s["guests"],
               s["problems"], "" if s["problems"] == 1 else "s", status.get("snapshot_created") or "now",
               status.get("source") or "the source")]
    if in_flight:
        parts.append(h('<p class="flight">In migration now: {}</p>', ", ".join(in_flight)))
    parts.append(Markup('<div class="hosts">'))
    for host in status["hosts"]:
        guests = [_guest_item(v, moving.get(v.name), read_only)
                  for v in by_host.get(host["name"], [])]
        parts.append(_host_section(host, guests, maintenance.get(host["name"]), read_only,
                                   targets))
    parts.append(Markup("</div>"))
    if status.get("suspended"):
        parts.append(_suspended_table(status["suspended"], read_only))
    if status.get("problems"):
        rows = join(h('<li><strong>{}</strong> {}: {}</li>', p.get("kind"),
                      p.get("host") or p.get("vm") or "", p.get("message"))
                    for p in status["problems"][:200])
        parts.append(h('<h2>Problems</h2><ul class="problems">{}</ul>', rows))
    last = status.get("last_run")
    if last:
        parts.append(h('<h2>Last vm-rebalance run</h2><p>{}: {} (exit {})</p>',
                       last.get("run"), last.get("what"), last.get("exit")))
    return page("Cluster", join(parts), csrf=csrf, read_only=read_only, here="/")


def _guest_item(v, move: str | None, read_only: bool) -> Markup:
    """One guest of a host's list: its figures, where it is migrating, its actions."""
    acts = Markup("")
    if not read_only:
        acts = join(h('<a class="act" href="{}">{}</a>', url("/action", op=op, target=v.name),
                      op) for op in ("migrate", "suspend"))
    return h('<li><span class="guest">{}</span> <span class="fig">{} vCPU, {} CPU, {} MiB</span>'
             '{} {}</li>', v.name, v.vcpus, f"{v.cpu:.2f}", v.mem_mib,
             h(' <strong class="moving">migrating to {}</strong>', move) if move else Markup(""),
             acts)


def _host_section(host: dict, guests: list, maint: dict | None, read_only: bool,
                  targets: tuple[float, float]) -> Markup:
    """One host: its tags (state, hot, frozen, maintenance), figures, meters against the
    targets, its guests and the actions it offers."""
    cpu_t, mem_t = targets
    flags = []
    if host["state"] != "online":
        flags.append(h('<span class="tag state">{}</span>', host["state"].upper()))
    if host["hotspot"]:
        flags.append(h('<span class="tag hot">HOT ({})</span>', ", ".join(host["hotspot"])))
    if host["frozen"]:
        flags.append(Markup('<span class="tag frozen">FROZEN</span>'))
    if maint is not None:
        since = maint.get("since")
        flags.append(h('<span class="tag maint">MAINTENANCE{}</span>',
                       f" since {since}" if since else ""))
    history = url("/history", host=host["name"])
    if read_only:
        host_acts = h('<p class="hostacts"><a href="{}">history</a></p>', history)
    else:
        if host["state"] == "standby":
            ops: tuple[str, ...] = ("power-on",)
        elif host["state"] != "online":
            # vanished, unanswered: nothing is known of it now, so nothing is offered
            ops = ()
        elif maint is not None:
            ops = ("end-maintenance", "power-off") if maint.get("ours") else ("power-off",)
        else:
            ops = ("evacuate", "maintenance", "power-off")
        host_acts = h('<p class="hostacts">{} <a href="{}">history</a></p>',
                      join(h('<a class="act" href="{}">{}</a>',
                             url("/action", op=op, target=host["name"]), op) for op in ops),
                      history)
    cpus = host.get("cpus")
    why = h('<p class="why">frozen: {}</p>', host["frozen"]["why"]) if host["frozen"] \
        else Markup("")
    return h('<section class="host" id="{}" aria-label="host {}"><h2>{} {}</h2>{}'
             '<p class="fig">{} CPUs, {} MiB, {} guests</p>{}{}<ul class="guests">{}'
             '</ul>{}</section>',
             "host-" + host["name"], host["name"], host["name"], join(flags), why,
             "?" if cpus is None else f"{cpus:g}", host.get("mem_mib") or "?",
             host["guests"],
             _meter("CPU", host["cpu_use"], cpu_t, "CPU use of the host"),
             _meter("Memory", host["mem_use"], mem_t, "memory use of the host"),
             join(guests) or Markup("<li>no guest</li>"), host_acts)


def _suspended_table(entries: list[dict], read_only: bool) -> Markup:
    rows = join(h('<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>',
                  e["name"], e.get("host") or "-", e["mem_mib"], e.get("suspended") or "-",
                  Markup("") if read_only else
                  h('<a class="act" href="{}">resume</a>',
                    url("/action", op="resume", target=e["name"])))
                for e in entries)
    return h('<h2>Suspended guests</h2><table><thead><tr><th>guest</th><th>left</th>'
             '<th>MiB</th><th>since</th><th></th></tr></thead><tbody>{}</tbody></table>', rows)


# ---------------------------------------------------------------- actions

def action_form(op: str, target: str, what: str, choices: list[str], csrf: str) -> str:
    dst = Markup("")
    if op in ("migrate", "resume"):
        opts = join(h('<option value="{}">{}</option>', c, c) for c in choices)
        dst = h('<p><label for="dst">Destination host</label> <select id="dst" name="dst"{}>'
                '{}{}</select></p>', Markup(" required") if op == "migrate" else Markup(""),
                Markup("") if op == "migrate" else
                Markup('<option value="">any host with room</option>'), opts)
    body = h('<p>{}: <strong>{}</strong></p><form method="post" action="/plan">{}'
             '<input type="hidden" name="op" value="{}"><input type="hidden" name="target" '
             'value="{}">{}<p><button>Make the plan</button> <a href="/">Cancel</a></p></form>'
             '<p>The plan is shown before anything runs.</p>',
             what, target, csrf_field(csrf), op, target, dst)
    return page(f"{op} {target}", body, csrf=csrf)


def actions_table(actions: list) -> Markup:
    rows = []
    for a in actions:
        where = a.host if a.is_power else f"{a.src or '-'} → {a.dst or '-'}"
        rows.append(h('<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>',
                      a.id, a.op, a.vm or a.host, where, a.reason))
    return h('<table class="actions"><thead><tr><th>#</th><th>op</th><th>guest or host</th>'
             '<th>where</th><th>why</th></tr></thead><tbody>{}</tbody></table>', join(rows))


def _use(vms, attr: str, capacity: float) -> str:
    return pct(sum(getattr(v, attr) for v in vms) / capacity) if capacity else "unknown"


def effect_table(plan) -> Markup:
    """The hosts a plan touches: CPU and memory use before and after (its placement)."""
    origin = plan.origin
    touched = sorted({x for a in plan.actions for x in (a.src, a.dst, a.host) if x})
    size = {v.name: v for v in origin.vms}
    for a in plan.actions:               # a guest to resume is in no host's list before
        if a.op in ("resume", "create") and a.vm not in size:
            size[a.vm] = a
    rows = []
    for h_ in origin.hosts:
        if h_.name not in touched:
            continue
        before = [v for v in origin.vms if v.host == h_.name]
        after = [size[g] for g, where in plan.placement.items() if where == h_.name
                 and g in size]
        rows.append(h('<tr><td>{}</td><td>{} → {}</td><td>{} → {}</td><td>{} → {}</td></tr>',
                      h_.name, len(before), len(after), _use(before, "cpu", h_.cpu),
                      _use(after, "cpu", h_.cpu), _use(before, "mem_mib", h_.mem_mib),
                      _use(after, "mem_mib", h_.mem_mib)))
    if not rows:
        return Markup("")
    return h('<h2>What changes</h2><table><thead><tr><th>host</th><th>guests</th><th>CPU</th>'
             '<th>memory</th></tr></thead><tbody>{}</tbody></table>', join(rows))


def confirm_page(job, csrf: str) -> str:
    plan = job.plan
    lasting = plan.summary.get("maintenance")
    note = Markup("")
    if isinstance(lasting, dict):
        note = h('<p class="lasting">{}</p>', (
            f"{lasting['host']} stays in maintenance after this plan: it is recorded in "
            "vm-plan's state directory, and vm-plan (vm-rebalance) moves no guest onto it "
            "until its maintenance is ended here.") if lasting["on"] else (
            f"{lasting['host']} leaves maintenance: vm-plan may place guests on it again."))
    body = h('<p>This plan has {} action{}, checked against the rules. Nothing has run yet.'
             '</p>{}{}{}<form method="post" action="/run">{}<input type="hidden" name="job" '
             'value="{}"><button class="go">Run it</button> <a href="/">Cancel</a></form>',
             len(plan.actions), "" if len(plan.actions) == 1 else "s", note,
             actions_table(plan.actions), effect_table(plan), csrf_field(csrf), job.id)
    return page(f"Confirm: {job.what}", body, csrf=csrf)


def report_table(report: dict) -> Markup:
    rows = join(h('<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class="outcome">{}'
                  '</td><td>{}</td></tr>', a.get("id"), a.get("op") or "migrate",
                  a.get("vm") or a.get("host") or "", f"{a.get('src') or '-'} → "
                  f"{a.get('dst') or '-'}", a.get("outcome"), a.get("error") or "")
                for a in report.get("actions", []))
    return h('<table class="actions"><thead><tr><th>#</th><th>op</th><th>guest or host</th>'
             '<th>where</th><th>outcome</th><th>error</th></tr></thead><tbody>{}</tbody>'
             '</table>', rows)


def job_page(view: dict, csrf: str) -> str:
    lines = join(h("<li>{}</li>", line) for line in view["lines"])
    report = Markup("")
    if view["report"] is not None:
        report = h("<h2>Report</h2>{}", report_table(view["report"]))
    err = h('<p class="error" role="alert">{}</p>', view["error"]) if view["error"] \
        else Markup("")
    body = h('<p>State: <strong id="job-state" data-job="{}">{}</strong></p>{}'
             '<h2>Progress</h2><ol id="job-lines" aria-live="polite">{}</ol>{}'
             '<p><a href="/">Back to the cluster</a></p>', view["id"], view["state"], err,
             lines, report)
    return page(f"Plan {view['id']}: {view['what']}", body, csrf=csrf)


# ---------------------------------------------------------------- plans, runs, history

def plans_page(jobs: list, runs: list[dict], csrf: str) -> str:
    jrows = join(h('<tr><td><a href="/job/{}">{}</a></td><td>{}</td><td>{}</td></tr>',
                   j["id"], j["id"], j["what"], j["state"]) for j in jobs)
    rrows = join(h('<tr><td><a href="{}">{}</a></td><td>{}</td><td>{}</td></tr>',
                   url("/run", name=r["name"]), r["name"], r.get("what") or "",
                   r.get("exit")) for r in runs)
    body = h('<h2>Plans made here</h2><table><thead><tr><th>plan</th><th>what</th>'
             '<th>state</th></tr></thead><tbody>{}</tbody></table>'
             '<h2>vm-rebalance runs</h2><table><thead><tr><th>run</th><th>what</th>'
             '<th>exit</th></tr></thead><tbody>{}</tbody></table>',
             jrows or Markup('<tr><td colspan="3">none yet</td></tr>'),
             rrows or Markup('<tr><td colspan="3">no archive, or no run in it</td></tr>'))
    return page("Plans and runs", body, csrf=csrf, here="/plans")


def run_page(name: str, result: dict | None, plan, report: dict | None, csrf: str,
             domains: list[dict] | None = None) -> str:
    """One archived run: its line, plan and report; over several migration domains, each
    domain's line, plan and report under its name."""
    parts = [h("<p>{}</p>", (result or {}).get("what") or "no result recorded")]
    for title, one in [("", {"plan": plan, "report": report})] + [
            (f"{d['name']}: ", d) for d in domains or []]:
        if title:
            parts.append(h("<h2>{}</h2><p>{}</p>", title.rstrip(": "), one["what"]))
        if one["plan"] is not None:
            parts.append(h("<h2>{}Plan</h2>{}", title, actions_table(one["plan"].actions)))
        if one["report"] is not None:
            parts.append(h("<h2>{}Report</h2>{}", title, report_table(one["report"])))
    return page(f"Run {name}", join(parts), csrf=csrf, here="/plans")


def chart(points: list[tuple[float, float]], label: str) -> Markup:
    """A line of fractions over time, as SVG (0 to 100 %, time left to right)."""
    if not points:
        return Markup("")
    t0, t1 = points[0][0], points[-1][0]
    span = (t1 - t0) or 1.0
    top = max(1.0, max(v for _, v in points))
    xy = " ".join(f"{(t - t0) / span * 300:.1f},{100 - v / top * 100:.1f}" for t, v in points)
    return h('<svg class="chart" viewBox="-2 -2 304 104" role="img" aria-label="{}">'
             '<line x1="0" y1="{}" x2="300" y2="{}" class="full"/>'
             '<polyline points="{}" class="line"/></svg>', label, f"{100 - 100 / top:.1f}",
             f"{100 - 100 / top:.1f}", xy)


def history_page(host: str | None, hosts: list[str], series: list[dict], csrf: str,
                 guests: dict[str, list] | None = None, state_note: str | None = None) -> str:
    links = join(h('<li><a href="{}">{}</a></li>', url("/history", host=n), n) for n in hosts)
    parts = [h('<p>From the snapshots vm-rebalance archived (one point per run).</p>'
               '<ul class="inline">{}</ul>', links or Markup("<li>no run archived</li>"))]
    if host is not None:
        pts = [(p["t"], p["cpu"]) for p in series if p["cpu"] is not None]
        mem = [(p["t"], p["mem"]) for p in series if p["mem"] is not None]
        rows = join(h("<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>", p["when"],
                      pct(p["cpu"]), pct(p["mem"]), p["guests"]) for p in series)
        parts.append(h('<h2>{}</h2><figure><figcaption>CPU use (line; the dashed line is '
                       '100 %)</figcaption>{}</figure><figure><figcaption>Memory use'
                       '</figcaption>{}</figure><table><thead><tr><th>run</th><th>CPU</th>'
                       '<th>memory</th><th>guests</th></tr></thead><tbody>{}</tbody></table>',
                       host, chart(pts, f"CPU use of {host}"),
                       chart(mem, f"memory use of {host}"),
                       rows or Markup('<tr><td colspan="4">no point recorded</td></tr>')))
        charts = join(h('<figure><figcaption>{}: CPU used, {} samples, at most {} physical CPUs'
                        '</figcaption>{}</figure>', g, len(pts), f"{max(c for _, c in pts):.2f}",
                        chart(pts, f"CPU of {g}")) for g, pts in (guests or {}).items())
        parts.append(h('<h2>Its guests, from vm-plan\'s state</h2><p>The CPU samples vm-plan '
                       'keeps for its demand window (--state).</p>{}{}', charts or
                       Markup("<p>none recorded</p>"),
                       h('<p class="error">{}</p>', state_note) if state_note else Markup("")))
    return page("History", join(parts), csrf=csrf, here="/history")


def replays_page(names: list[str], csrf: str) -> str:
    items = join(h('<li><a href="/replays/{}">{}</a></li>', quote(n), n) for n in names)
    body = h('<p>Pages vm-replay wrote (--replay-dir).</p><ul>{}</ul>',
             items or Markup("<li>none</li>"))
    return page("Replays", body, csrf=csrf, here="/replays")
