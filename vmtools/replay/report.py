"""The ``vmtools.replay`` document (vmtools-formats(5), REPLAY): every setting replayed over
one window of a trace (:func:`run_replay`), and its ``-f table`` view."""

from __future__ import annotations

from typing import Callable

from vmtools import __version__, render
from vmtools.model import epoch_to_iso
from vmtools.replay.engine import (RunResult, SimOptions, replay, stop_on_signals,
                                   warm_up_ticks, window)
from vmtools.replay.trace import Trace

REPLAY_FORMAT = "vmtools.replay"

# The figures of the table, in vmtools-formats(5)'s order, with how each is shown.
COLUMNS = [("host_hours", "host-h", "{:.1f}"), ("energy_kwh", "kWh", "{:.2f}"),
           ("overload_hours", "overload h", "{:.2f}"),
           ("over_threshold_hours", "over thr h", "{:.2f}"),
           ("unmet_cpu_share", "unmet CPU", "{:.4%}"), ("slatah", "SLATAH", "{:.4%}"),
           ("pdm", "PDM", "{:.5%}"), ("slav", "SLAV", "{:.7f}"),
           ("memory_over_capacity", "mem over", "{}"), ("migrations", "migr.", "{}"),
           ("migrated_gib", "GiB moved", "{:.1f}"), ("max_migrations_per_tick", "max/tick", "{}"),
           ("ping_pongs", "ping-pong", "{}"), ("plan_seconds_mean", "plan s mean", "{:.3f}"),
           ("plan_seconds_max", "plan s max", "{:.3f}"), ("failed_ticks", "failed", "{}"),
           ("busy_ticks", "busy", "{}"), ("power_offs", "off", "{}"), ("power_ons", "on", "{}"),
           ("frozen_host_ticks", "frozen host-ticks", "{}"), ("refused_ticks", "refused", "{}")]


def run_replay(trace: Trace, policies: list, opts: SimOptions,
               progress: Callable[[str, int, int], None] | None = None) -> dict:
    """Every setting over ``trace``: the ``vmtools.replay`` document."""
    start, end, n_ticks = window(trace, opts)
    warm_up_ticks(opts, n_ticks)             # a warm-up longer than the replay: say so first
    runs = []
    with stop_on_signals():
        for policy in policies:
            report = (lambda k, n, name=policy.name: progress(name, k, n)) if progress else None
            runs.append(replay(trace, policy, opts, progress=report))
    return replay_document(trace, runs, opts, start, end, n_ticks)


def replay_document(trace: Trace, runs: list[RunResult], opts: SimOptions,
                    start: float, until: float, n_ticks: int) -> dict:
    warm = warm_up_ticks(opts, n_ticks)
    return {
        "format": REPLAY_FORMAT, "version": "1.1", "generator": f"vm-replay {__version__}",
        "source": trace.source, "from": epoch_to_iso(start), "until": epoch_to_iso(until),
        "every_minutes": opts.every_minutes, "convention": opts.convention,
        "ticks": n_ticks - warm,
        "warm_up_ticks": warm, "measured_from": epoch_to_iso(start + warm * opts.every_minutes * 60),
        "hosts": len(trace.hosts), "guests": len({vm for s in trace.samples for vm in s.vms}),
        "settings": {"parallel": opts.parallel, "per_host": opts.per_host,
                     "bandwidth_mbps": opts.bandwidth, "cpu_threshold": opts.cpu_threshold,
                     "power_model": opts.power_model.source,
                     "monitoring_loss": opts.monitoring_loss, "loss_seed": opts.loss_seed},
        "notes": list(trace.notes),
        "runs": [{"name": r.name, "kind": r.kind, "figures": r.figures, "failures": r.failures,
                  "series": r.series} for r in runs],
    }


def replay_table(doc: dict) -> str:
    """``-f table``: one row per figure, one column per setting (numbered, named above), to
    fit 80 columns; ``-f wide``: one row per setting, every figure a column."""
    seen = {"lag": "each tick sees the interval that ended",
            "lookahead": "each tick sees the interval that starts"}.get(
                doc.get("convention", "lookahead"), "")
    title = (f"replay of {doc['source']}: {doc['from']} to {doc['until']}, "
             f"{doc['ticks']} ticks every {doc['every_minutes']:g} min ({seen}), "
             f"{doc['hosts']} hosts, {doc['guests']} guests")
    if render.WIDTH is None:
        rows = []
        for run in doc["runs"]:
            f = run["figures"]
            rows.append([run["name"], run["kind"]]
                        + [fmt.format(f[key]) for key, _, fmt in COLUMNS])
        out = render.table(rows, ["setting", "kind"] + [head for _, head, _ in COLUMNS], title)
    else:
        out = render.wrap(title) + "\n"
        for i, run in enumerate(doc["runs"], 1):
            out += render.wrap(f"  {i}: {run['name'] or '(defaults)'} ({run['kind']})") + "\n"
        rows = [[head] + [fmt.format(run["figures"][key]) for run in doc["runs"]]
                for key, head, fmt in COLUMNS]
        out += render.table(rows, ["figure"] + [str(i) for i in range(1, len(doc["runs"]) + 1)])
    for run in doc["runs"]:
        for fail in run["failures"][:5]:
            out += render.wrap(f"{run['name']}: {fail['time']}: planning failed: "
                               f"{fail['why']}") + "\n"
        if len(run["failures"]) > 5:
            out += render.wrap(f"{run['name']}: ... and {len(run['failures']) - 5} more failed "
                               "ticks") + "\n"
    for note in doc["notes"][:20]:
        out += render.wrap(f"note: {note}") + "\n"
    if len(doc["notes"]) > 20:
        out += f"note: ... and {len(doc['notes']) - 20} more (see the JSON document)\n"
    return out
