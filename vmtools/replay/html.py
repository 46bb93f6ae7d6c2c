"""``vm-replay --html FILE``: one self-contained page that opens offline.

Charts use Chart.js (MIT, https://www.chartjs.org, v4.6.1) and its matrix chart module
chartjs-chart-matrix (MIT, by a Chart.js maintainer, v3.1.0) for the heat map, both vendored in
``vmtools/replay/static/`` from the npm registry with their licences, and inlined into the page:
no CDN, no network. Chart.js is the most used maintained canvas charting library, draws
hundreds of points per line fast, needs no date adapter with category axes, and its matrix
module draws a heat map with the same API; uPlot is smaller but has no heat map.

The page: the figures table; per setting, over time, active hosts, energy (cumulative kWh),
overloaded hosts and migrations per hour; a heat map of each host's CPU use over time for the
setting chosen in a list. When every chart is drawn the page sets ``data-status="drawn"`` on
``<body>`` (``error: ...`` if something failed), which the tests read from a headless browser.
"""

from __future__ import annotations

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
    bucket = max(1, -(-len(rows) * len(hosts) // MAX_CELLS))
    times, cells = [], []
    for b in range(0, len(rows), bucket):
        chunk = rows[b:b + bucket]
        times.append(series["time"][b])
        x = len(times) - 1
        for y in range(len(hosts)):
            v = sum(r[y] for r in chunk) / len(chunk)
            cells.append([x, y, round(v, 3)])
    return {"hosts": hosts, "times": times, "cells": cells}


def page(doc: dict) -> str:
    every_h = doc["every_minutes"] / 60.0
    runs = []
    for run in doc["runs"]:
        s = run["series"]
        energy, total = [], 0.0
        for w in s["watts"]:
            total += w * every_h / 1000.0
            energy.append(round(total, 4))
        runs.append({"name": run["name"], "kind": run["kind"], "time": s["time"],
                     "active": s["active_hosts"], "overloaded": s["overloaded_hosts"],
                     "migrations_per_hour": [round(m / every_h, 2) for m in s["migrations"]],
                     "energy": energy, "heat": _heat(run)})
    head = "".join(f"<th>{html.escape(h)}</th>" for h in
                   ["setting", "kind"] + [h for _, h, _ in COLUMNS])
    body = ""
    for run in doc["runs"]:
        f = run["figures"]
        cells = [run["name"], run["kind"]] + [fmt.format(f[k]) for k, _, fmt in COLUMNS]
        body += "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + "</tr>\n"
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in doc.get("notes", [])[:50])
    title = (f"vm-replay of {doc['source']}: {doc['from']} to {doc['until']}, {doc['ticks']} "
             f"ticks every {doc['every_minutes']:g} min, {doc['hosts']} hosts, "
             f"{doc['guests']} guests")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:">
<title>{html.escape(title)}</title>
<style>
body {{ font-family: sans-serif; margin: 1.5em; color: #222; }}
table {{ border-collapse: collapse; font-size: 0.85em; }}
th, td {{ border: 1px solid #ccc; padding: 0.2em 0.5em; text-align: right; }}
th:first-child, td:first-child, td:nth-child(2) {{ text-align: left; }}
.charts {{ display: grid; grid-template-columns: repeat(auto-fit, minmax(480px, 1fr)); gap: 1em; }}
.chart {{ position: relative; height: 300px; }}
#heatbox {{ position: relative; height: 520px; }}
</style>
<script>{_asset("chart.umd.min.js")}</script>
<script>{_asset("chartjs-chart-matrix.min.js")}</script>
</head><body data-status="loading">
<h1>vm-replay</h1>
<p>{html.escape(title)}</p>
<h2>Figures</h2>
<table><thead><tr>{head}</tr></thead><tbody>
{body}</tbody></table>
<h2>Over time</h2>
<div class="charts">
<div class="chart"><canvas id="active"></canvas></div>
<div class="chart"><canvas id="energy"></canvas></div>
<div class="chart"><canvas id="overloaded"></canvas></div>
<div class="chart"><canvas id="migrations"></canvas></div>
</div>
<h2>Host CPU use</h2>
<p><label>setting <select id="heatsel"></select></label></p>
<div id="heatbox"><canvas id="heat"></canvas></div>
<h2>Notes</h2><ul>{notes or "<li>none</li>"}</ul>
<p id="status">loading</p>
<script type="application/json" id="replay-data">{_script_json(runs)}</script>
<script>
"use strict";
function done(status) {{
  document.body.dataset.status = status;
  document.getElementById("status").textContent = status;
}}
window.addEventListener("error", function (e) {{ done("error: " + e.message); }});
try {{
  const runs = JSON.parse(document.getElementById("replay-data").textContent);
  const palette = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b",
                   "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];
  Chart.defaults.animation = false;
  Chart.defaults.maintainAspectRatio = false;
  const labels = (runs[0] ? runs[0].time : []).map(t => t.replace("T", " ").replace("Z", ""));
  function line(id, key, title, step) {{
    return new Chart(document.getElementById(id), {{
      type: "line",
      data: {{ labels: labels, datasets: runs.map((r, i) => ({{
        label: r.name, data: r[key], borderColor: palette[i % palette.length],
        backgroundColor: palette[i % palette.length], pointRadius: 0, borderWidth: 1.5,
        stepped: step }})) }},
      options: {{ plugins: {{ title: {{ display: true, text: title }} }},
                 scales: {{ x: {{ ticks: {{ maxTicksLimit: 12 }} }}, y: {{ beginAtZero: true }} }} }}
    }});
  }}
  const charts = [line("active", "active", "active hosts", true),
                  line("energy", "energy", "energy (kWh, cumulative)", false),
                  line("overloaded", "overloaded", "overloaded hosts (CPU demand above capacity)", true),
                  line("migrations", "migrations_per_hour", "migrations per hour", true)];
  let heat = null;
  function drawHeat(i) {{
    const h = runs[i].heat;
    if (heat) heat.destroy();
    heat = new Chart(document.getElementById("heat"), {{
      type: "matrix",
      data: {{ datasets: [{{ label: runs[i].name,
        data: h.cells.map(c => ({{ x: c[0], y: c[1], v: c[2] }})),
        backgroundColor: ctx => {{
          const v = ctx.raw ? Math.min(ctx.raw.v, 1.5) : 0;
          return v > 1 ? "hsl(0,90%,28%)"
                       : "hsl(" + Math.round(120 * (1 - v)) + ",70%," + Math.round(88 - 38 * v) + "%)";
        }},
        width: ctx => {{ const a = ctx.chart.chartArea; return a ? a.width / Math.max(1, h.times.length) : 1; }},
        height: ctx => {{ const a = ctx.chart.chartArea; return a ? a.height / Math.max(1, h.hosts.length) : 1; }}
      }}] }},
      options: {{ plugins: {{ legend: {{ display: false }},
                  title: {{ display: true, text: "host CPU use (demand / CPUs; dark red: above 100 %)" }},
                  tooltip: {{ callbacks: {{ title: () => "", label: c => h.hosts[c.raw.y] + " " +
                    h.times[c.raw.x] + ": " + Math.round(c.raw.v * 100) + " %" }} }} }},
        scales: {{ x: {{ type: "linear", offset: false, min: -0.5, max: h.times.length - 0.5,
                         ticks: {{ callback: v => (h.times[v] || "").slice(11, 16) }} }},
                  y: {{ type: "linear", reverse: true, offset: false, min: -0.5,
                         max: h.hosts.length - 0.5, ticks: {{ callback: v => h.hosts[v] || "" }} }} }} }}
    }});
  }}
  const sel = document.getElementById("heatsel");
  runs.forEach((r, i) => {{ const o = document.createElement("option"); o.value = i;
                            o.textContent = r.name; sel.appendChild(o); }});
  sel.addEventListener("change", () => drawHeat(+sel.value));
  if (runs.length) drawHeat(0);
  // drawn means: every canvas has pixels that are not blank
  const blank = [...document.querySelectorAll("canvas")].filter(c => {{
    const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
    for (let k = 3; k < d.length; k += 4) if (d[k] !== 0) return false;
    return true;
  }});
  done(blank.length ? "error: blank canvas " + blank.map(c => c.id).join(", ")
                    : "drawn " + (charts.length + (heat ? 1 : 0)) + " charts");
}} catch (e) {{
  done("error: " + e.message);
}}
</script>
</body></html>
"""
