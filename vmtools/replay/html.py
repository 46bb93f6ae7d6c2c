"""``vm-replay --html FILE``: one self-contained page that opens offline.

Charts use Chart.js (MIT, https://www.chartjs.org, v4.6.1) and its matrix chart module
chartjs-chart-matrix (MIT, by a Chart.js maintainer, v3.1.0) for the heat map, both vendored in
``vmtools/replay/static/`` from the npm registry with their licences, and inlined into the page:
no CDN, no network. Chart.js is the most used maintained canvas charting library, draws
hundreds of points per line fast, needs no date adapter with category axes, and its matrix
module draws a heat map with the same API; uPlot is smaller but has no heat map.

The page (at most 1,220 px wide, so it fits a 1280 px window): the figures table, a row per
figure with what it counts, a column per setting; per setting, over time, active hosts, energy
(cumulative kWh), overloaded hosts and migrations per hour (a rolling sum over the last 60
minutes, not one tick scaled up); each setting in a colour fixed by its name, with its own
dash pattern and marker; a heat map of each host's CPU use over time for the setting chosen in
a list, switched-off hosts drawn as off, with a colour scale. When every chart is drawn the page sets ``data-status="drawn"`` on
``<body>`` (``error: ...`` if something failed) and ``data-fits="yes"`` when nothing is wider
than the window, which the tests read from a headless browser.
"""

from __future__ import annotations

import hashlib
import html
import json
from importlib import resources

from vmtools.replay.report import COLUMNS

MAX_CELLS = 60_000          # heat map rectangles; more ticks are averaged into wider cells


def _asset(name: str) -> str:
    text = resources.files("vmtools.replay").joinpath("static", name).read_text("utf-8")
    # no source-map fetches from an offline page
    return "\n".join(ln for ln in text.splitlines() if not ln.startswith("//# sourceMappingURL"))


def _script_json(obj: object) -> str:
    """JSON safe inside <script>: no '</' or '<!--' can end or confuse the element."""
    return (json.dumps(obj, separators=(",", ":"), allow_nan=False)
            .replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026"))


def _heat(run: dict) -> dict:
    """The host-CPU heat map of a run, ticks averaged in buckets to at most MAX_CELLS cells."""
    series = run["series"]
    rows = series.get("host_cpu") or []
    hosts = series.get("hosts") or []
    if not rows or not hosts:
        return {"hosts": hosts, "times": [], "cells": []}
    off = series.get("host_off") or [[] for _ in rows]
    bucket = max(1, -(-len(rows) * len(hosts) // MAX_CELLS))
    times, cells = [], []
    for b in range(0, len(rows), bucket):
        chunk = rows[b:b + bucket]
        offs = [set(o) for o in off[b:b + bucket]]
        times.append(series["time"][b])
        x = len(times) - 1
        for y in range(len(hosts)):
            on = [r[y] for r, o in zip(chunk, offs) if y not in o]
            # off for most of the cell: drawn as off (None), else the mean use while on
            v = None if len(on) * 2 < len(chunk) else round(sum(on) / len(on), 3)
            cells.append([x, y, v])
    return {"hosts": hosts, "times": times, "cells": cells}


# Colours fixed per setting name: the built-in baselines have their own, any other name takes
# one of the rest by a hash of the name, so a setting keeps its colour whatever else is
# replayed with it. Dash patterns and point markers, also by name, tell apart settings whose
# lines coincide.
FIXED = {"none": "#7f7f7f", "thr-mmt": "#d62728", "threshold": "#ff7f0e", "sandpiper": "#8c564b"}
PALETTE = ["#1f77b4", "#2ca02c", "#9467bd", "#17becf", "#e377c2", "#bcbd22", "#393b79",
           "#637939", "#843c39", "#7b4173", "#3182bd", "#31a354"]
DASHES = [[], [6, 3], [2, 2], [10, 3, 2, 3], [4, 4], [12, 4]]
MARKERS = ["circle", "triangle", "rect", "rectRot", "crossRot", "star", "rectRounded", "cross"]

# What each figure of the table means (vm-replay(1) has the full definitions).
MEANING = {
    "host_hours": "host-time with at least one guest",
    "energy_kwh": "energy of every host by the power model (off hosts: standby watts)",
    "overload_hours": "host-time with CPU demand above the host's CPUs",
    "over_threshold_hours": "host-time above --cpu-threshold of the CPUs",
    "unmet_cpu_share": "CPU demand above capacity, over all CPU demand",
    "slatah": "SLATAH: mean over active hosts of the share of their active time at 100 % CPU "
              "(Beloglazov & Buyya 2012)",
    "pdm": "PDM: mean over guests of the CPU lost to their migrations (10 % of their demand "
           "in flight) over their demand",
    "slav": "SLAV = SLATAH x PDM",
    "memory_over_capacity": "host-intervals whose memory exceeded capacity (always 0)",
    "migrations": "migrations that landed",
    "migrated_gib": "memory those migrations moved",
    "max_migrations_per_tick": "most migrations in one tick's plan",
    "ping_pongs": "migrations back to a host the guest left less than an hour before",
    "plan_seconds_mean": "wall-clock seconds of a tick's planning, mean",
    "plan_seconds_max": "wall-clock seconds of a tick's planning, most",
    "failed_ticks": "ticks whose planning failed",
    "busy_ticks": "ticks skipped: the previous plan still ran",
    "power_offs": "hosts switched off",
    "power_ons": "hosts switched on",
}


def _hash(name: str) -> int:
    return int(hashlib.sha1(name.encode("utf-8")).hexdigest()[:8], 16)


def styles(names: list[str]) -> dict[str, dict]:
    """Colour, dash pattern and marker of each setting, from its name alone (the same name
    always looks the same); two settings of one page never share all three."""
    out: dict[str, dict] = {}
    used: set[tuple] = set()
    for name in sorted(set(names)):
        k = _hash(name)
        colour = FIXED.get(name) or PALETTE[k % len(PALETTE)]
        dash, marker = k % len(DASHES), (k // 7) % len(MARKERS)
        while (colour, dash, marker) in used:
            dash, marker = (dash + 1) % len(DASHES), (marker + 1) % len(MARKERS)
        used.add((colour, dash, marker))
        out[name] = {"colour": colour, "dash": DASHES[dash], "marker": MARKERS[marker]}
    return out


def _per_hour(migrations: list[int], every_minutes: float) -> list[float | None]:
    """Migrations in the hour up to each tick's end (a rolling sum over 60 minutes of ticks):
    None until an hour has passed."""
    k = max(1, round(60.0 / every_minutes))
    out: list[float | None] = []
    total = 0
    for i, m in enumerate(migrations):
        total += m
        if i >= k:
            total -= migrations[i - k]
        out.append(total if i >= k - 1 else None)
    return out


def page(doc: dict) -> str:
    """vm-replay's HTML page for the report ``doc``: the figures, the charts over time and
    the hosts' CPU heat map, in one file that needs no network (the chart library inlined).

    Over 80 lines because the page is one template (its HTML, style and script, each value
    escaped where it goes in), read top to bottom as the browser reads it; the Python before
    it only prepares the values."""
    every_h = doc["every_minutes"] / 60.0
    style = styles([r["name"] for r in doc["runs"]])
    runs = []
    for run in doc["runs"]:
        s = run["series"]
        energy, total = [], 0.0
        for w in s["watts"]:
            total += w * every_h / 1000.0
            energy.append(round(total, 4))
        runs.append({"name": run["name"], "kind": run["kind"], "time": s["time"],
                     "active": s["active_hosts"], "overloaded": s["overloaded_hosts"],
                     "migrations_per_hour": _per_hour(s["migrations"], doc["every_minutes"]),
                     "energy": energy, "heat": _heat(run), "style": style[run["name"]]})
    head = "<th>figure</th><th>what it counts</th>" + "".join(
        f'<th class="setting"><span class="swatch" style="background:{style[r["name"]]["colour"]}">'
        f'</span>{i}. {html.escape(r["name"] or "(defaults)")}</th>'
        for i, r in enumerate(doc["runs"], 1))
    body = ""
    for key, label, fmt in COLUMNS:
        cells = "".join(f"<td>{html.escape(fmt.format(r['figures'][key]))}</td>"
                        for r in doc["runs"])
        body += (f"<tr><th>{html.escape(label)}</th><td class=\"meaning\">"
                 f"{html.escape(MEANING.get(key, ''))}</td>{cells}</tr>\n")
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in doc.get("notes", [])[:50])
    convention = {"lag": "each tick sees the interval that ended (lag)",
                  "lookahead": "each tick sees the interval that starts (--lookahead)"}.get(
                      doc.get("convention", "lookahead"), "")
    title = (f"vm-replay of {doc['source']}: {doc['from']} to {doc['until']}, {doc['ticks']} "
             f"ticks every {doc['every_minutes']:g} min ({convention}), {doc['hosts']} hosts, "
             f"{doc['guests']} guests")
    n_hosts = len(runs[0]["heat"]["hosts"]) if runs else 0
    heat_px = max(320, min(1400, 60 + 14 * n_hosts))
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:">
<meta name="viewport" content="width=device-width">
<title>{html.escape(title)}</title>
<style>
body {{ font-family: sans-serif; margin: 1.5em auto; max-width: 1220px; padding: 0 1em; color: #222; }}
.wide {{ overflow-x: auto; max-width: 100%; }}
table {{ border-collapse: collapse; font-size: 0.8em; }}
th, td {{ border: 1px solid #ccc; padding: 0.2em 0.45em; text-align: right; vertical-align: top; }}
th:first-child, th:nth-child(2), td.meaning {{ text-align: left; }}
td.meaning {{ color: #555; max-width: 24em; }}
th.setting {{ max-width: 11em; overflow-wrap: anywhere; text-align: left; }}
.swatch {{ display: inline-block; width: 0.8em; height: 0.8em; margin-right: 0.3em; }}
.charts {{ display: grid; grid-template-columns: repeat(2, minmax(0, 1fr)); gap: 1em; }}
.chart {{ position: relative; height: 300px; }}
#heatbox {{ position: relative; height: {heat_px}px; }}
.scale {{ display: flex; align-items: center; gap: 0.5em; font-size: 0.85em; }}
.scale .bar {{ width: 240px; height: 0.9em; background: linear-gradient(to right,
  hsl(120,70%,88%), hsl(60,70%,69%), hsl(0,70%,50%)); }}
.scale .box {{ display: inline-block; width: 0.9em; height: 0.9em; }}
</style>
<script>{_asset("chart.umd.min.js")}</script>
<script>{_asset("chartjs-chart-matrix.min.js")}</script>
</head><body data-status="loading">
<h1>vm-replay</h1>
<p>{html.escape(title)}</p>
<h2>Figures</h2>
<div class="wide"><table><thead><tr>{head}</tr></thead><tbody>
{body}</tbody></table></div>
<h2>Over time</h2>
<p>Each setting keeps its colour, dash pattern and marker on every chart (the legend above each
chart; click a name to hide its line).</p>
<div class="charts">
<div class="chart"><canvas id="active"></canvas></div>
<div class="chart"><canvas id="energy"></canvas></div>
<div class="chart"><canvas id="overloaded"></canvas></div>
<div class="chart"><canvas id="migrations"></canvas></div>
</div>
<h2>Host CPU use</h2>
<p><label>setting <select id="heatsel"></select></label> One row per host (hover a cell for
its host, time and use), one column per tick.</p>
<p class="scale">0 %<span class="bar"></span>100 %
<span class="box" style="background:hsl(0,90%,28%)"></span>above 100 % (overloaded)
<span class="box" style="background:#c8c8d0"></span>switched off, booting or halting
<span class="box" style="background:#ffffff;border:1px solid #ccc"></span>on, no guest</p>
<div id="heatbox"><canvas id="heat"></canvas></div>
<h2>Notes</h2><ul>{notes or "<li>none</li>"}</ul>
<script type="application/json" id="replay-data">{_script_json(runs)}</script>
<script>
"use strict";
function done(status) {{
  document.body.dataset.status = status;
  const root = document.documentElement;
  document.body.dataset.fits = root.scrollWidth <= root.clientWidth ? "yes" :
    "no: " + root.scrollWidth + " px wide in " + root.clientWidth;
}}
window.addEventListener("error", function (e) {{ done("error: " + e.message); }});
try {{
  const runs = JSON.parse(document.getElementById("replay-data").textContent);
  Chart.defaults.animation = false;
  Chart.defaults.maintainAspectRatio = false;
  const labels = (runs[0] ? runs[0].time : []).map(t => t.replace("T", " ").replace("Z", ""));
  const every = Math.max(1, Math.ceil(labels.length / 14));
  function line(id, key, title, yTitle, step) {{
    return new Chart(document.getElementById(id), {{
      type: "line",
      data: {{ labels: labels, datasets: runs.map((r, i) => ({{
        label: r.name, data: r[key], borderColor: r.style.colour,
        backgroundColor: r.style.colour, borderDash: r.style.dash, borderWidth: 1.5,
        pointStyle: r.style.marker, pointBorderColor: r.style.colour,
        // a marker every few ticks, shifted per setting so coinciding lines show each one
        pointRadius: ctx => (ctx.dataIndex + i * Math.max(1, Math.floor(every / runs.length)))
                            % every === 0 ? 3.5 : 0,
        stepped: step, spanGaps: false }})) }},
      options: {{ plugins: {{ title: {{ display: true, text: title }},
                             legend: {{ labels: {{ usePointStyle: true, boxWidth: 28 }} }} }},
                 scales: {{ x: {{ ticks: {{ maxTicksLimit: 12 }} }},
                           y: {{ beginAtZero: true, title: {{ display: true, text: yTitle }} }} }} }}
    }});
  }}
  line("active", "active", "active hosts (with a guest) at each tick", "hosts", true);
  line("energy", "energy", "energy, cumulative", "kWh", false);
  line("overloaded", "overloaded", "overloaded hosts (CPU demand above capacity) at each tick",
       "hosts", true);
  line("migrations", "migrations_per_hour",
       "migrations per hour (rolling sum over the 60 minutes up to each tick; none shown before an hour)",
       "migrations / hour", true);
  let heat = null;
  function drawHeat(i) {{
    const h = runs[i].heat;
    if (heat) heat.destroy();
    const labelAll = h.hosts.length <= 60;
    heat = new Chart(document.getElementById("heat"), {{
      type: "matrix",
      data: {{ datasets: [{{ label: runs[i].name,
        data: h.cells.map(c => ({{ x: c[0], y: c[1], v: c[2] }})),
        backgroundColor: ctx => {{
          if (!ctx.raw) return "#ffffff";
          if (ctx.raw.v === null) return "#c8c8d0";
          const v = Math.min(ctx.raw.v, 1.5);
          if (v <= 0) return "#ffffff";
          return v > 1 ? "hsl(0,90%,28%)"
                       : "hsl(" + Math.round(120 * (1 - v)) + ",70%," + Math.round(88 - 38 * v) + "%)";
        }},
        width: ctx => {{ const a = ctx.chart.chartArea; return a ? a.width / Math.max(1, h.times.length) : 1; }},
        height: ctx => {{ const a = ctx.chart.chartArea; return a ? a.height / Math.max(1, h.hosts.length) : 1; }}
      }}] }},
      options: {{ plugins: {{ legend: {{ display: false }},
                  title: {{ display: true, text: "host CPU use (demand / CPUs), " + runs[i].name }},
                  tooltip: {{ callbacks: {{ title: () => "", label: c => h.hosts[c.raw.y] + " " +
                    h.times[c.raw.x] + ": " + (c.raw.v === null ? "off" : Math.round(c.raw.v * 100) + " %") }} }} }},
        scales: {{ x: {{ type: "linear", offset: false, min: -0.5, max: h.times.length - 0.5,
                         ticks: {{ callback: v => (h.times[v] || "").slice(11, 16) }} }},
                  y: {{ type: "linear", reverse: true, offset: false, min: -0.5,
                         max: h.hosts.length - 0.5,
                         // a tick on each host's row (every host when they fit, else evenly
                         // spaced ones; the tooltip names any host)
                         afterBuildTicks: axis => {{
                           const step = labelAll ? 1 : Math.ceil(h.hosts.length / 60);
                           axis.ticks = h.hosts.map((_, k) => ({{ value: k }}))
                                               .filter(t => t.value % step === 0);
                         }},
                         ticks: {{ autoSkip: false, font: {{ size: 10 }},
                                  callback: v => h.hosts[v] || "" }} }} }} }}
    }});
  }}
  const sel = document.getElementById("heatsel");
  runs.forEach((r, i) => {{ const o = document.createElement("option"); o.value = i;
                            o.textContent = r.name; sel.appendChild(o); }});
  sel.addEventListener("change", () => drawHeat(+sel.value));
  if (runs.length) drawHeat(0);
  // drawn means: every canvas has pixels that are not blank
  const canvases = [...document.querySelectorAll("canvas")];
  const blank = canvases.filter(c => {{
    const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
    for (let k = 3; k < d.length; k += 4) if (d[k] !== 0) return false;
    return true;
  }});
  done(blank.length ? "error: blank canvas " + blank.map(c => c.id).join(", ")
                    : "drawn " + canvases.length + " charts");
}} catch (e) {{
  done("error: " + e.message);
}}
</script>
</body></html>
"""
