"""vm-replay: a replay small enough to compute by hand, each input kind, odd inputs, the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import run
from vmtools.errors import DataError, UsageError
from vmtools.model import VM, Host, Snapshot, dumps
from vmtools.power_model import PowerModel, parse_power_model
from vmtools.replay.baselines import Sandpiper, ThrMmt, Threshold, make_baseline
from vmtools.replay.engine import SimOptions, migration_seconds, replay
from vmtools.replay.report import run_replay
from vmtools.replay.sources import read_csv_trace, read_snapshots

LINEAR = parse_power_model({"hosts": [{"match": "*", "idle_w": 100, "peak_w": 200}]})
HOSTS = "name,cpu,mem_mib\na,2,4096\nb,2,4096\nc,2,4096\n"
# g2 bursts to 2 CPUs between 600 s and 1200 s; samples every 600 s, so the trace lasts 1800 s.
TRACE = """time,guest,cpu,mem_mib,host
0,g1,1.0,1000,a
0,g2,0.5,1000,b
0,g3,0.5,1000,b
600,g1,1.0,1000,
600,g2,2.0,1000,
600,g3,0.5,1000,
1200,g1,1.0,1000,
1200,g2,0.5,1000,
1200,g3,0.5,1000,
"""


def write(tmp_path: Path, name: str, text: str) -> str:
    p = tmp_path / name
    p.write_text(text)
    return str(p)


@pytest.fixture
def trace(tmp_path):
    return read_csv_trace(write(tmp_path, "t.csv", TRACE), write(tmp_path, "h.csv", HOSTS))


def opts(**kw) -> SimOptions:
    base = dict(every_minutes=10, power_model=LINEAR, bandwidth=8388.608, cpu_threshold=0.9)
    base.update(kw)
    return SimOptions(**base)


def test_migration_takes_its_memory_over_the_bandwidth():
    assert migration_seconds(1000, 8388.608) == pytest.approx(2.0)


def test_no_migration_by_hand(trace):
    r = replay(trace, make_baseline("none"), opts())
    f = r.figures
    # a: 1 CPU of 2 all along; b: 1, then 2.5 (capped at 100 %), then 1; c: empty.
    assert f["host_hours"] == 1.0
    joules = 150 * 1800 + (150 * 600 + 200 * 600 + 150 * 600) + 100 * 1800
    assert f["energy_kwh"] == round(joules / 3.6e6, 4)
    assert f["overload_hours"] == round(600 / 3600, 4)
    assert f["over_threshold_hours"] == round(600 / 3600, 4)
    assert f["unmet_cpu_share"] == round(0.5 * 600 / (1800 + 1800 + 900), 6)
    assert f["slatah"] == round((0 + 600 / 1800) / 2, 6)          # c was never active
    assert f["pdm"] == 0 and f["slav"] == 0 and f["migrations"] == 0
    assert r.series["active_hosts"] == [2, 2, 2]
    assert r.series["overloaded_hosts"] == [0, 1, 0]
    assert r.series["watts"] == [400.0, 450.0, 400.0]


def test_threshold_moves_the_busy_guest_by_hand(trace):
    policy = make_baseline("threshold:max_over=0,max_load_candidate=0.9")
    r = replay(trace, policy, opts(lookahead=True))
    f = r.figures
    # --lookahead: the tick at 600 s sees the burst that starts then. At 600 s b carries 2.5 CPUs (hot); g2 (2 CPUs) goes to c, the only host it fits on,
    # in 1 s + 1000 MiB / 8388.608 Mbit/s = 2 s, running on b until it lands at 602 s.
    assert f["migrations"] == 1 and f["max_migrations_per_tick"] == 1
    assert f["migrated_gib"] == round(1000 / 1024, 3)
    assert f["host_hours"] == round((1800 + 1800 + 1200) / 3600, 4)    # c from 600 s
    joules = (150 * 1800                                            # a
              + 150 * 600 + 200 * 2 + 125 * 598 + 125 * 600          # b
              + 100 * 600 + 100 * 2 + 200 * 598 + 125 * 600)         # c
    assert f["energy_kwh"] == round(joules / 3.6e6, 4)
    assert f["overload_hours"] == round(2 / 3600, 4)
    assert f["over_threshold_hours"] == round(600 / 3600, 4)        # b 2 s, c 598 s
    assert f["unmet_cpu_share"] == round(0.5 * 2 / 4500, 6)
    slatah = (0 + 2 / 1800 + 598 / 1200) / 3
    pdm = (0.1 * 2.0 * 2 / 1800) / 3
    assert f["slatah"] == round(slatah, 6)
    assert f["pdm"] == round(pdm, 8)
    assert f["slav"] == round(slatah * pdm, 10)
    assert f["memory_over_capacity"] == 0 and f["ping_pongs"] == 0 and f["failed_ticks"] == 0
    assert r.series["active_hosts"] == [2, 2, 3]             # sampled before each plan
    assert r.series["migrations"] == [0, 1, 0]
    assert r.series["watts"] == [400.0, round((150 * 600 + 200 * 2 + 125 * 598 + 100 * 2
                                               + 200 * 598) / 600, 1), 400.0]


def test_a_slow_migration_holds_memory_on_both_hosts_and_the_next_tick_is_busy(trace):
    # 1000 MiB at 8.388608 Mbit/s: 1001 s, longer than the 600 s between two ticks.
    r = replay(trace, make_baseline("threshold:max_over=0,max_load_candidate=0.9"),
               opts(bandwidth=8.388608, lookahead=True))
    f = r.figures
    assert f["migrations"] == 1 and f["busy_ticks"] == 1
    assert f["memory_over_capacity"] == 0
    assert f["overload_hours"] == round(600 / 3600, 4)             # g2 runs on b until 1601 s


class Scripted:
    """A policy that returns given actions at given tick times (epoch seconds)."""

    name, kind = "scripted", "baseline"

    def __init__(self, plans):
        self.plans = plans
        self.seen = []

    def decide(self, snap):
        from vmtools.model import iso_to_epoch
        self.seen.append(snap)
        return self.plans.get(iso_to_epoch(snap.created), [])


def test_power_actions_take_their_time_by_hand(trace):
    from vmtools.model import Action
    policy = Scripted({0: [Action.power(1, "power-off", "c")],
                       600: [Action.power(1, "power-on", "c"),
                             Action(2, "g2", "b", "c", 1000, after=[1])]})
    r = replay(trace, policy, opts(halt_seconds=60, boot_seconds=180))
    f = r.figures
    # c: halting 60 s (idle), standby until 600 s (0 W), booting 180 s (idle); g2 leaves b at
    # 780 s and lands at 782 s.
    c = 100 * 60 + 100 * 180 + 100 * 2 + 200 * 418 + 125 * 600
    b = 150 * 600 + 200 * 182 + 125 * 418 + 125 * 600
    assert f["energy_kwh"] == round((150 * 1800 + b + c) / 3.6e6, 4)
    assert (f["power_offs"], f["power_ons"], f["migrations"]) == (1, 1, 1)
    assert f["overload_hours"] == round(182 / 3600, 4)
    assert [h.state for h in policy.seen[1].hosts] == ["online", "online", "standby"]
    assert [h.state for h in policy.seen[2].hosts] == ["online", "online", "online"]


def test_vm_plan_setting_runs_in_process(trace):
    from vmtools.cli.vm_replay import vm_plan_setting
    setting = vm_plan_setting("--objective consolidate --cpu-target 1.0", 0, True, False)
    r = replay(trace, setting, opts(lookahead=True))
    # tick 0: 2 CPUs fit on one host: g1 joins b. Tick 600 s: b carries 3.5 CPUs, vm-plan
    # splits it again (g1 back to a: a ping-pong, within the hour). Tick 1200 s: packs again.
    assert r.series["migrations"] == [1, 1, 1]
    assert r.series["active_hosts"] == [2, 1, 2]
    assert r.figures["ping_pongs"] == 1 and r.figures["failed_ticks"] == 0
    assert r.figures["memory_over_capacity"] == 0
    assert r.figures["plan_seconds_max"] > 0


def test_vm_plan_state_lives_in_the_replay_not_in_the_directory_it_names(tmp_path, trace):
    from vmtools.cli.vm_replay import vm_plan_setting
    mine = tmp_path / "state"
    mine.mkdir()
    setting = vm_plan_setting(f"--objective balance --state {mine} --hotspot-window 2/2", 0,
                              True, False)
    replay(trace, setting, opts(every_minutes=5))
    assert list(mine.iterdir()) == []
    assert setting.state is not None and len(setting.state.plan.observations) >= 3


def test_bad_plan_options_are_usage_errors():
    from vmtools.cli.vm_replay import vm_plan_setting
    with pytest.raises(UsageError, match="no such option: --bogus"):
        vm_plan_setting("--objective consolidate --bogus", 0, True, False)
    with pytest.raises(UsageError, match="objective"):
        vm_plan_setting("--objective sideways", 0, True, False)
    with pytest.raises(UsageError, match="no input file"):
        vm_plan_setting("snap.json", 0, True, False)


def test_failed_planning_is_a_failed_tick_with_why(tmp_path, trace):
    from vmtools.cli.vm_replay import vm_plan_setting
    rules = tmp_path / "rules.json"
    rules.write_text('{"format": "vmtools.constraints", "version": "1.0", "rules": '
                     '[{"rule": "pin", "vms": ["nosuchguest"]}]}')
    # --strict-rules: a rule naming a guest that is not there is an input error (without it,
    # vm-plan skips the name with a warning)
    r = replay(trace, vm_plan_setting(f"--constraints {rules} --strict-rules", 0, True, False),
               opts())
    assert r.figures["failed_ticks"] == 3 and r.figures["migrations"] == 0
    assert r.failures[0]["time"] == "1970-01-01T00:00:00Z"
    assert r.failures[0]["why"].startswith("(exit 65) ") and "nosuchguest" in r.failures[0]["why"]


# --------------------------------------------------------------------------- odd inputs

def test_a_gap_holds_the_last_demand_and_a_late_guest_is_placed(tmp_path):
    text = TRACE.replace("600,g3,0.5,1000,\n", "") + "600,g4,0.25,500,c\n1200,g4,0.25,500,\n"
    t = read_csv_trace(write(tmp_path, "t.csv", text), write(tmp_path, "h.csv", HOSTS))
    assert t.samples[1].vms["g3"].cpu == 0.5
    assert any("g3 has no sample at 1 time" in n for n in t.notes)
    assert any("g4 appears at 1970-01-01T00:10:00Z" in n for n in t.notes)
    r = replay(t, make_baseline("none"), opts())
    assert r.series["active_hosts"] == [2, 3, 3]                     # g4 lands on c


def test_a_guest_that_leaves_is_gone(tmp_path):
    text = "\n".join(ln for ln in TRACE.splitlines() if not ln.startswith("1200,g3")) + "\n"
    t = read_csv_trace(write(tmp_path, "t.csv", text), write(tmp_path, "h.csv", HOSTS))
    assert any("g3 is gone from 1970-01-01T00:20:00Z" in n for n in t.notes)
    r = replay(t, make_baseline("none"), opts())
    assert r.figures["unmet_cpu_share"] == round(300 / (1800 + 1800 + 600), 6)


def test_csv_errors_name_the_line(tmp_path):
    h = write(tmp_path, "h.csv", HOSTS)
    with pytest.raises(DataError, match=r't.csv:3: cpu: expected a number, got "lots"'):
        read_csv_trace(write(tmp_path, "t.csv", TRACE.replace("0,g2,0.5", "0,g2,lots")), h)
    with pytest.raises(DataError, match="host z is not in"):
        read_csv_trace(write(tmp_path, "t.csv", TRACE.replace("0,g1,1.0,1000,a",
                                                              "0,g1,1.0,1000,z")), h)
    with pytest.raises(UsageError, match="needs hosts FILE") as exc:
        read_csv_trace(write(tmp_path, "t.csv", TRACE), None)
    assert "t.csv: a CSV trace needs --hosts FILE (" in exc.value.on_command_line()


def test_without_a_host_column_guests_are_dealt_round_the_hosts(tmp_path):
    text = "0,g1,1,1000\n0,g2,1,1000\n0,g3,1,1000\n0,g4,1,3000\n"
    t = read_csv_trace(write(tmp_path, "t.csv", text), write(tmp_path, "h.csv", HOSTS))
    assert t.placement == {"g1": "a", "g2": "b", "g3": "c", "g4": "a"}


def snapshots(tmp_path: Path, n: int = 6, cluster: str = "xen-lab") -> Path:
    d = tmp_path / "runs"
    for k in range(n):
        run_dir = d / f"2026112{k}T0000Z"         # vm-rebalance's archive: one directory a run
        run_dir.mkdir(parents=True)
        hosts = [Host(name=f"node{i}", cluster=cluster, cpu=4, mem_mib=8192) for i in range(3)]
        vms = [VM(name=f"vm{j}", host=f"node{(j + k) % 3}", cpu=0.5 + 0.25 * (j == k % 4),
                  mem_mib=1024) for j in range(4)]
        s = Snapshot(hosts=hosts, vms=vms, created=f"2026-11-22T00:{5 * k:02d}:00Z")
        (run_dir / "snapshot.json").write_text(dumps(s.to_dict()))
        (run_dir / "plan.json").write_text('{"format": "vmtools.plan", "version": "1.0"}')
        (run_dir / "result.json").write_text("[1, 2]")
    return d


def test_snapshot_directory_first_gives_placement_later_demand(tmp_path):
    t = read_snapshots([str(snapshots(tmp_path))])
    assert len(t.samples) == 6 and t.step == 300
    assert t.placement == {"vm0": "node0", "vm1": "node1", "vm2": "node2", "vm3": "node0"}
    assert t.samples[1].vms["vm1"].cpu == 0.75
    r = replay(t, make_baseline("none"), SimOptions())
    assert r.figures["ticks"] == 6 and r.figures["migrations"] == 0
    assert r.series["active_hosts"] == [3] * 6              # later placements are ignored


def test_snapshot_of_another_cluster_is_refused(tmp_path):
    d = snapshots(tmp_path)
    other = Snapshot(hosts=[Host(name="x1", cluster="other", cpu=4, mem_mib=8192)],
                     vms=[], created="2026-11-22T00:30:00Z")
    (d / "late.json").write_text(dumps(other.to_dict()))
    with pytest.raises(DataError, match="cluster 'other', not the first snapshot's"):
        read_snapshots([str(d)])


def test_determinism_of_every_baseline(tmp_path):
    t = read_snapshots([str(snapshots(tmp_path, 12))])
    settings = lambda: [make_baseline(n) for n in ("none", "threshold:max_over=0", "sandpiper",  # noqa: E731
                                                   "thr-mmt")]
    from vmtools.cli.vm_replay import vm_plan_setting
    plans = [vm_plan_setting("--state s", 0, True, False) for _ in range(2)]
    a = run_replay(t, settings() + plans[:1], SimOptions())
    b = run_replay(t, settings() + plans[1:], SimOptions())
    assert len(a["runs"]) == 5
    for ra, rb in zip(a["runs"], b["runs"]):
        fa, fb = dict(ra["figures"]), dict(rb["figures"])
        for k in ("plan_seconds_mean", "plan_seconds_max"):
            fa.pop(k), fb.pop(k)
        assert fa == fb and ra["series"] == rb["series"]


# --------------------------------------------------------------------------- baselines

def snap(loads: dict[str, list[tuple[float, int]]], cpu: float = 4, mem: int = 8192,
         created: str = "2026-11-22T00:00:00Z") -> Snapshot:
    hosts = [Host(name=h, cpu=cpu, mem_mib=mem) for h in sorted(loads)]
    vms = [VM(name=f"{h}-{i}", host=h, cpu=c, mem_mib=m)
           for h, gs in loads.items() for i, (c, m) in enumerate(gs)]
    return Snapshot(hosts=hosts, vms=vms, created=created)


def test_thr_mmt_moves_the_smallest_guests_off_an_overloaded_host_then_empties_the_idlest():
    s = snap({"h1": [(2.0, 4096), (1.0, 512), (0.5, 1024)], "h2": [(1.0, 1024)],
              "h3": [(0.2, 1024)]})
    actions = ThrMmt().decide(s)
    moves = {a.vm: a.dst for a in actions if a.op == "migrate"}
    offs = [a for a in actions if a.op == "power-off"]
    # h1 at 3.5/4 > 0.8: its smallest guest (512 MiB) leaves (3.5 -> 2.5 = 0.625). With the
    # G5 curve it costs 13 W more on h2 (0.25 -> 0.5) but 9.65 W on h3 (0.05 -> 0.3): h3.
    # Then the least used host, h2 (0.25), is emptied: its guest fits on h3 (h1 overloaded).
    assert moves == {"h1-1": "h3", "h2-0": "h3"}
    # h2, left empty, is switched off once its guest has left
    assert [(a.host, a.after) for a in offs] == [
        ("h2", [a.id for a in actions if a.op == "migrate" and a.src == "h2"])]


def test_thr_mmt_switches_the_host_it_emptied_off_by_hand(tmp_path):
    text = "time,guest,cpu,mem_mib,host\n0,g1,0.2,1000,a\n0,g2,0.2,1000,b\n600,g1,0.2,1000,\n" \
           "600,g2,0.2,1000,\n"
    t = read_csv_trace(write(tmp_path, "t.csv", text), write(tmp_path, "h.csv", HOSTS[:-9]))
    r = replay(t, make_baseline("thr-mmt"), opts())
    f = r.figures
    # Tick 0: a and b both at 0.1; a (first by name) is emptied onto b (2 s), then switched
    # off: 60 s halting at idle watts, then standby at 0 W. Tick 600 s: nothing to do.
    assert (f["migrations"], f["power_offs"], f["power_ons"]) == (1, 1, 0)
    joules = (110 * 2 + 100 * 60) + (110 * 2 + 120 * 1198)
    assert f["energy_kwh"] == round(joules / 3.6e6, 4)
    assert f["host_hours"] == round(1202 / 3600, 4)
    assert r.series["active_hosts"] == [2, 1]
    r = replay(t, make_baseline("thr-mmt:power=0"), opts())
    assert r.figures["power_offs"] == 0
    assert r.figures["energy_kwh"] == round((110 * 2 + 100 * 1198 + 110 * 2 + 120 * 1198)
                                            / 3.6e6, 4)


def test_sandpiper_needs_k_of_n_hot_observations():
    sp = Sandpiper(params="k=2,n=3")
    hot = snap({"h1": [(3.5, 1024), (0.3, 1024)], "h2": [(0.2, 1024)]})
    assert sp.decide(hot) == []                       # one hot observation of two needed
    moves = sp.decide(hot)
    assert [(a.vm, a.dst) for a in moves] == [("h1-1", "h2")] or \
        [(a.vm, a.dst) for a in moves] == [("h1-0", "h2")]


def test_threshold_waits_max_over_minutes():
    th = Threshold(params="max_over=10")
    assert th.decide(snap({"h1": [(3.9, 1024)], "h2": []}, created="2026-11-22T00:00:00Z")) == []
    assert th.decide(snap({"h1": [(3.9, 1024)], "h2": []}, created="2026-11-22T00:05:00Z")) == []
    moves = th.decide(snap({"h1": [(3.9, 1024)], "h2": []}, created="2026-11-22T00:10:00Z"))
    assert [(a.vm, a.dst) for a in moves] == [("h1-0", "h2")]


def test_baseline_parameters_are_checked():
    with pytest.raises(UsageError, match="unknown parameter"):
        make_baseline("thr-mmt:speed=3")
    with pytest.raises(UsageError, match="expected one of none, threshold"):
        make_baseline("drs")


def test_power_model_curve_and_linear():
    m = parse_power_model({"format": "vmtools.power", "version": "1.0",
                           "hosts": [{"match": "g4-*", "idle_w": 86, "peak_w": 117},
                                     {"match": "*", "curve_w": [93.7, 97, 101, 105, 110, 116,
                                                                121, 125, 129, 133, 135]}]})
    assert m.watts("g4-1", 0.5) == pytest.approx(101.5)
    assert m.watts("g5-1", 0.15) == pytest.approx(99.0)
    assert m.watts("g5-1", 1.7) == 135 and m.watts("g5-1", 0.3, "standby") == 0
    with pytest.raises(DataError, match=r"hosts\[0\].curve_w: expected 11 values"):
        parse_power_model({"hosts": [{"curve_w": [1, 2]}]})
    assert isinstance(LINEAR, PowerModel)


# --------------------------------------------------------------------------- the command

@pytest.mark.slow  # a replay or several commands through real pipes: seconds of CPU
def test_cli_document_and_table(tmp_path):
    t, h = write(tmp_path, "t.csv", TRACE), write(tmp_path, "h.csv", HOSTS)
    r = run("vm-replay", t, "--hosts", h, "--every", "10", "--plan", "--objective consolidate",
            "--baseline", "none", "--baseline", "thr-mmt")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["format"] == "vmtools.replay" and doc["version"] == "1.1"
    assert doc["ticks"] == 3 and doc["every_minutes"] == 10 and doc["convention"] == "lag"
    assert [(x["name"], x["kind"]) for x in doc["runs"]] == [
        ("--objective consolidate", "vm-plan"), ("none", "baseline"), ("thr-mmt", "baseline")]
    spec_figures = {"host_hours", "energy_kwh", "overload_hours", "over_threshold_hours",
                    "unmet_cpu_share", "slatah", "pdm", "slav", "memory_over_capacity",
                    "migrations", "migrated_gib", "max_migrations_per_tick", "ping_pongs",
                    "plan_seconds_mean", "plan_seconds_max", "failed_ticks"}
    for x in doc["runs"]:
        assert spec_figures <= set(x["figures"])
        assert {"time", "active_hosts", "overloaded_hosts", "migrations", "watts"} <= set(x["series"])
    r = run("vm-replay", t, "--hosts", h, "-f", "table", "--baseline", "sandpiper")
    assert r.returncode == 0 and "SLATAH" in r.stdout and "sandpiper" in r.stdout
    assert "each tick sees the interval that ended" in " ".join(r.stdout.split())
    r = run("vm-replay", t, "--hosts", h, "--every", "10", "--lookahead",
            "--baseline", "threshold:max_over=0,max_load_candidate=0.9")
    doc = json.loads(r.stdout)
    assert doc["convention"] == "lookahead"
    # g2's 1000 MiB take 1 s + 8.4 s at the default 1000 Mbit/s: overloaded that long only
    assert doc["runs"][0]["figures"]["overload_hours"] == round(9.388608 / 3600, 4)


# --------------------------------------------------------------------------- lag

def test_lag_each_tick_sees_the_interval_that_ended(trace):
    lag, ahead = Scripted({}), Scripted({})
    replay(trace, lag, opts())
    replay(trace, ahead, opts(lookahead=True))
    g2 = [[v.cpu for v in s.vms if v.name == "g2"][0] for s in lag.seen]
    # the first tick has no interval behind it: its first sample; then 0-600 s, 600-1200 s
    assert g2 == [0.5, 0.5, 2.0]
    assert [[v.cpu for v in s.vms if v.name == "g2"][0] for s in ahead.seen] == [0.5, 2.0, 0.5]
    # every 20 minutes over 10-minute samples: the average of the 20 minutes that ended
    slow = Scripted({})
    replay(trace, slow, opts(every_minutes=20))
    assert [[v.cpu for v in s.vms if v.name == "g2"][0] for s in slow.seen] == [0.5, 1.25]
    # memory is the allocation now, whatever the convention
    assert {v.mem_mib for s in lag.seen for v in s.vms} == {1000}


def test_lag_a_spike_no_policy_can_foresee_counts_as_overload(trace):
    policy = "threshold:max_over=0,max_load_candidate=0.9"
    ahead = replay(trace, make_baseline(policy), opts(lookahead=True)).figures
    lag = replay(trace, make_baseline(policy), opts()).figures
    # --lookahead moves g2 as its burst starts: 2 s overloaded. With lag the tick at 600 s sees
    # 0-600 s (b at half its CPUs), the burst runs its 600 s on b, and the tick at 1200 s,
    # seeing it, moves g2 when the burst is over: a migration for nothing.
    assert ahead["overload_hours"] == round(2 / 3600, 4) and ahead["migrations"] == 1
    assert lag["overload_hours"] == round(600 / 3600, 4)
    assert lag["unmet_cpu_share"] == round(0.5 * 600 / 4500, 6)
    assert lag["migrations"] == 1
    # the same holds for a vm-plan setting: the baselines and vm-plan see the same snapshots
    from vmtools.cli.vm_replay import vm_plan_setting
    setting = vm_plan_setting("--objective balance", 0, True, False)
    assert replay(trace, setting, opts()).figures["overload_hours"] == round(600 / 3600, 4)


@pytest.mark.slow  # a replay or several commands through real pipes: seconds of CPU
def test_cli_bad_inputs(tmp_path):
    t, h = write(tmp_path, "t.csv", TRACE), write(tmp_path, "h.csv", HOSTS)
    r = run("vm-replay", t, "--hosts", h, "--plan", "--objective nowhere")
    assert r.returncode == 2 and r.stderr.startswith("vm-replay: error: --plan")
    r = run("vm-replay", write(tmp_path, "bad.csv", "0,g1,x,1000\n"), "--hosts", h)
    assert r.returncode == 65 and "bad.csv:1: cpu" in r.stderr and "Traceback" not in r.stderr
    r = run("vm-replay", str(tmp_path / "nothing"))
    assert r.returncode == 2 and "no such file" in r.stderr
    r = run("vm-replay", t, "--hosts", h, "--baseline", "drs")
    assert r.returncode == 2


def test_repeat_plays_the_trace_back_to_back_and_warm_up_leaves_the_first_part_out(trace):
    twice = trace.repeated(2)
    assert twice.start == trace.start and twice.end == trace.start + 2 * 1800
    assert [s.time for s in twice.samples] == [0, 600, 1200, 1800, 2400, 3000]
    assert twice.samples[4].vms["g2"].cpu == 2.0            # the burst again, 1800 s later
    one = replay(trace, make_baseline("none"), opts()).figures
    # Nothing moves under "none": the second pass alone equals one pass, to the joule.
    second = replay(twice, make_baseline("none"), opts(warm_up=1800)).figures
    assert second["ticks"] == 3
    for key in ("energy_kwh", "overload_hours", "unmet_cpu_share", "host_hours"):
        assert second[key] == one[key]
    both = replay(twice, make_baseline("none"), opts()).figures
    assert both["overload_hours"] == pytest.approx(2 * one["overload_hours"], abs=1e-4)


def test_warm_up_moves_count_in_no_figure(trace):
    # threshold moves g2 at 600 s (as in the test by hand above): inside a 20-minute warm-up
    # the move happens (c carries g2 afterwards) but the figures do not count it.
    policy = "threshold:max_over=0,max_load_candidate=0.9"
    r = replay(trace, make_baseline(policy), opts(warm_up=1200, lookahead=True))
    assert r.figures["migrations"] == 0 and r.figures["ticks"] == 1
    assert r.series["active_hosts"] == [3]                   # a, b and c (g2 landed there)
    with pytest.raises(UsageError, match="leaves nothing to measure"):
        run_replay(trace, [make_baseline("none")], opts(warm_up=1800))


@pytest.mark.slow  # a replay or several commands through real pipes: seconds of CPU
def test_cli_repeat_and_warm_up(tmp_path):
    t, h = write(tmp_path, "t.csv", TRACE), write(tmp_path, "h.csv", HOSTS)
    r = run("vm-replay", t, "--hosts", h, "--every", "10", "--repeat", "3", "--warm-up", "30")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["ticks"] == 6 and doc["warm_up_ticks"] == 3
    assert doc["measured_from"] == "1970-01-01T00:30:00Z"
    assert len(doc["runs"][0]["series"]["time"]) == 6
    r = run("vm-replay", t, "--hosts", h, "--every", "10", "--warm-up", "30")
    assert r.returncode == 2 and "leaves nothing to measure" in r.stderr
    r = run("vm-replay", t, "--hosts", h, "--warm-up", "-5")
    assert r.returncode == 2 and "--warm-up" in r.stderr
