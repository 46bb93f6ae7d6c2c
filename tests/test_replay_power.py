"""vm-replay with vm-plan --power: switched-off hosts draw 0 W, power actions take their time
at idle watts, and the same cron policy uses less energy with power management on."""

from __future__ import annotations

import pytest

import json

from tests.conftest import run

T0 = 1764000000


def write_trace(tmp_path, ticks=24):
    hosts = tmp_path / "hosts.csv"
    hosts.write_text("".join(f"h{i},8,16384\n" for i in range(4)))
    trace = tmp_path / "trace.csv"
    rows = ["time,guest,cpu,mem_mib"]
    for k in range(ticks):
        for g in range(4):
            rows.append(f"{T0 + 300 * k},g{g},0.2,2048")
    trace.write_text("\n".join(rows) + "\n")
    return trace, hosts


def replay(tmp_path, *args):
    trace, hosts = write_trace(tmp_path)
    proc = run("vm-replay", str(trace), "--hosts", str(hosts), *args, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return {r["name"]: r for r in json.loads(proc.stdout)["runs"]}


def test_power_management_saves_energy_in_a_replay(tmp_path):
    base = "--objective consolidate --state s"
    runs = replay(tmp_path, "--plan", base,
                  "--plan", base + " --power --standby-after 0 --reserve 0")
    off, on = runs[base]["figures"], runs[base + " --power --standby-after 0 --reserve 0"][
        "figures"]
    assert on["power_offs"] == 3 and off["power_offs"] == 0
    assert on["overload_hours"] == off["overload_hours"] == 0
    # 4 hosts at about idle (93.7 W) for 2 h, against 1 host after the first ticks
    assert off["energy_kwh"] > 0.7
    assert on["energy_kwh"] < 0.5 * off["energy_kwh"]
    watts = runs[base + " --power --standby-after 0 --reserve 0"]["series"]["watts"]
    assert watts[-1] < 0.3 * runs[base]["series"]["watts"][-1]


@pytest.mark.slow  # a replay or several commands through real pipes: seconds of CPU
def test_halting_hosts_draw_idle_watts_until_they_are_off(tmp_path):
    setting = "--objective consolidate --state s --power --standby-after 0 --reserve 0"
    quick = replay(tmp_path, "--plan", setting, "--halt-seconds", "0")[setting]["figures"]
    slow = replay(tmp_path, "--plan", setting, "--halt-seconds", "1800")[setting]["figures"]
    assert slow["energy_kwh"] > quick["energy_kwh"]
    assert run("vm-replay", "--halt-seconds", "-1", "x").returncode == 2
