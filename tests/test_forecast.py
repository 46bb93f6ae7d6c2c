"""``--forecast K``: each host's next interval from its guests' past samples alone (an
exponentially weighted level plus K weighted errors), what it changes in a plan, and the
setting on every way in (command line, environment, vm-replay ``--plan``)."""

from __future__ import annotations

import json

import pytest

from tests.conftest import run
from tests.test_plan_solver import snap
from vmtools.cli.vm_replay import vm_plan_setting
from vmtools.model import Snapshot, epoch_to_iso
from vmtools.planner import demand as dm
from vmtools.planner.plan import Options, plan_with_state
from vmtools.replay.engine import SimOptions, replay
from vmtools.replay.sources import read_csv_trace
from vmtools.rules.check import check_plan
from vmtools.rules.constraints import parse_rules


def test_a_steady_series_forecasts_itself_and_a_climbing_one_more_than_its_last():
    assert dm.forecast([2.0] * 12, 3.0) == pytest.approx(2.0)
    ramp = [1.0 + 0.3 * i for i in range(24)]
    assert dm.forecast(ramp, 0.0) < ramp[-1]           # the level alone lags behind a climb
    assert dm.forecast(ramp, 2.0) > max(ramp) + 0.5    # its errors give the climb room
    # --demand's statistic stays the floor: a falling series keeps its window's peak
    fall = list(reversed(ramp))
    assert dm.planning(fall, "max", 2.0) == max(fall)
    assert dm.planning(ramp, "max", 0.0) == max(ramp)  # 0: off


def test_a_later_spike_does_not_change_the_forecast_of_the_samples_before_it():
    past = [1.0, 1.2, 0.9, 1.1, 1.0, 1.3, 0.8, 1.0]
    before = dm.forecast(past, 2.0)
    samples: dict = {}
    base = 1_800_000_000
    for i, cpu in enumerate(past):
        dm.record(samples, snap({"a": (8, 16)}, {"x": ("a", cpu, 1)}), base + 300 * i, 120)
    assert dm.planning([r[1] for r in samples["x"]], "last", 2.0) == pytest.approx(before)
    dm.record(samples, snap({"a": (8, 16)}, {"x": ("a", 6.0, 1)}), base + 300 * len(past), 120)
    assert dm.planning([r[1] for r in samples["x"]], "last", 2.0) > before + 1.0


def _at(minute: int, x: float, y: float) -> Snapshot:
    s = snap({"a": (8, 64), "b": (8, 64)}, {"x": ("a", x, 4), "y": ("b", y, 4)})
    s.created = epoch_to_iso(1_800_000_000 + 60 * minute)
    return s


def _plan_over(tmp_path, snaps: list[Snapshot], **kw):
    """auto over ``snaps`` as cron runs; consolidation fills hosts to the 0.8 CPU target itself
    (no --consolidate-target band: these tests are about the demand the forecast adds)."""
    p = None
    kw.setdefault("consolidate_target", 0.8)
    tmp_path.mkdir()
    for s in snaps:
        p = plan_with_state(s, parse_rules([], s), Options(objective="auto", time_limit=20,
                                                           demand_window=60, **kw),
                            str(tmp_path), window=(1, 1))
        check_plan(p)
    return p


def test_a_host_whose_guest_climbs_is_not_filled_to_the_brim(tmp_path):
    # x climbs 0.3 CPUs every 5 minutes (4.3 now), y stays at 1.5: together 5.8 of the 6.4
    # the 0.8 target allows on 8 CPUs; the climb's next step puts them over.
    climbing = [_at(5 * i, 1.0 + 0.3 * i, 1.5) for i in range(12)]
    p = _plan_over(tmp_path / "off", climbing)
    assert p.summary["hosts_after"] == 1, "without a forecast the window's peak fits"
    p = _plan_over(tmp_path / "on", climbing, forecast=2.0)
    assert p.summary["hosts_after"] == 2 and p.actions == []
    assert p.summary["demand"] == "max over 60 min, forecast 2"
    # a steady pair is consolidated with the forecast as without it
    steady = [_at(5 * i, 4.3, 1.5) for i in range(12)]
    assert _plan_over(tmp_path / "steady", steady, forecast=2.0).summary["hosts_after"] == 1


HOSTS = "name,cpu,mem_mib\na,8,65536\nb,8,65536\nc,8,65536\n"


def _trace(tmp_path, spike_at: int | None):
    """x on a climbs and sways, y and z share b and c; x spikes at sample ``spike_at``."""
    tmp_path.mkdir()
    rows = ["time,guest,cpu,mem_mib,host"]
    for k in range(16):
        x = 6.5 if k == spike_at else 1.0 + 0.2 * k + (0.4 if k % 3 == 0 else 0.0)
        first = k == 0
        rows += [f"{300 * k},x,{x},4096,{'a' if first else ''}",
                 f"{300 * k},y,{1.0 + 0.1 * (k % 4)},4096,{'b' if first else ''}",
                 f"{300 * k},z,1.5,4096,{'c' if first else ''}"]
    (tmp_path / "t.csv").write_text("\n".join(rows) + "\n")
    (tmp_path / "h.csv").write_text(HOSTS)
    return read_csv_trace(str(tmp_path / "t.csv"), str(tmp_path / "h.csv"))


def _summaries(trace, lookahead: bool) -> list[tuple[str, dict]]:
    policy = vm_plan_setting("--state s --forecast 3 --demand last", 0, True, False)
    seen = []
    plan = policy.plan

    def record(s):
        p = plan(s)
        seen.append((s.created, {k: p.summary.get(k) for k in
                                 ("demand", "worst_cpu_before", "hosts_after", "migrations")}))
        return p
    policy.plan = record
    replay(trace, policy, SimOptions(every_minutes=5, lookahead=lookahead))
    return seen


@pytest.mark.parametrize("lookahead", [False, True])
def test_in_a_replay_a_future_spike_changes_nothing_planned_before_it_is_seen(tmp_path,
                                                                              lookahead):
    spike = 10
    calm = _summaries(_trace(tmp_path / "calm", None), lookahead)
    spiky = _summaries(_trace(tmp_path / "spiky", spike), lookahead)
    assert [t for t, _ in calm] == [t for t, _ in spiky]
    # With lag the tick at the spike's start sees the interval before it; the spike shows
    # at the next tick. --lookahead gives each tick the interval that starts.
    first_seen = spike if lookahead else spike + 1
    for k, ((t, a), (_, b)) in enumerate(zip(calm, spiky)):
        if k < first_seen:
            assert a == b, f"tick {k} ({t}) planned on a spike that had not happened"
    assert calm[first_seen][1]["worst_cpu_before"] < spiky[first_seen][1]["worst_cpu_before"]


def _snapshot_file(tmp_path) -> str:
    f = tmp_path / "s.json"
    f.write_text(json.dumps(_at(0, 2.0, 1.0).to_dict()))
    return str(f)


@pytest.mark.slow
def test_forecast_from_the_command_line_the_environment_and_a_replay_plan(tmp_path):
    f = _snapshot_file(tmp_path)
    for d in ("s1", "s2", "s3"):
        (tmp_path / d).mkdir()
    r = run("vm-plan", f, "--state", str(tmp_path / "s1"), "--forecast", "2")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["summary"]["demand"] == "max over 120 min, forecast 2"
    r = run("vm-plan", f, "--state", str(tmp_path / "s2"), env={"VMTOOLS_PLAN_FORECAST": "1.5"})
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["summary"]["demand"] == "max over 120 min, forecast 1.5"
    r = run("vm-plan", f, "--state", str(tmp_path / "s3"))
    assert json.loads(r.stdout)["summary"]["demand"] == "max over 120 min"   # 0: off
    for bad in ("-1", "11", "soon"):
        r = run("vm-plan", f, "--forecast", bad)
        assert r.returncode == 2 and r.stdout == "", r.stderr
        assert len(r.stderr.strip().splitlines()) == 1 and "--forecast" in r.stderr
    setting = vm_plan_setting("--state s --forecast 2.5", 0, True, False)
    assert setting.settings.forecast == 2.5
    t = tmp_path / "t.csv"
    t.write_text("time,guest,cpu,mem_mib,host\n0,x,1,1024,a\n300,x,1,1024,\n")
    (tmp_path / "h.csv").write_text(HOSTS)
    r = run("vm-replay", str(t), "--hosts", str(tmp_path / "h.csv"), "--every", "5",
            "--plan", "--state s --forecast 11")
    assert r.returncode == 2 and "--forecast" in r.stderr and r.stdout == ""
    assert len(r.stderr.strip().splitlines()) == 1
