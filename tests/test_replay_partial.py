"""vm-replay plans replayed snapshots as vm-plan would, problems included, and shows what a
lossy monitoring does to a setting (--monitoring-loss, seeded)."""

from __future__ import annotations

import pytest

import json
from pathlib import Path

from tests.conftest import run
from vmtools.model import VM, Host, Problem, Snapshot, dumps


def archive(tmp_path: Path, problem: bool, n: int = 6) -> Path:
    """vm-rebalance's archive of ``n`` runs of a cluster worth consolidating (eight hosts, two
    small guests each); with ``problem``, node2 lists a guest whose metrics never came."""
    d = tmp_path / ("with" if problem else "without")
    for k in range(n):
        run_dir = d / f"2026112{k}T0000Z"
        run_dir.mkdir(parents=True)
        hosts = [Host(name=f"node{i}", cluster="xen-lab", cpu=8, mem_mib=16384)
                 for i in range(8)]
        vms = [VM(name=f"vm{i}", host=f"node{i % 8}", cpu=0.5, mem_mib=2048) for i in range(16)]
        problems = [Problem("no-data", "host node2 lists guest lost but neither "
                            "container.vm.lost.* nor the guest's own gmond gives its CPU and "
                            "memory; it is left out", host="node2", vm="lost")] if problem else []
        s = Snapshot(hosts=hosts, vms=vms, problems=problems,
                     created=f"2026-11-22T00:{5 * k:02d}:00Z")
        (run_dir / "snapshot.json").write_text(dumps(s.to_dict()))
    return d


def replay(*args: str) -> dict:
    r = run("vm-replay", *args, "--plan", "--objective consolidate")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


@pytest.mark.slow  # a replay or several commands through real pipes: seconds of CPU
def test_a_replayed_problem_freezes_its_host_as_vm_plan_did(tmp_path):
    clean = replay(str(archive(tmp_path, False)))["runs"][0]
    assert clean["figures"]["migrations"] > 0 and clean["figures"]["frozen_host_ticks"] == 0
    doc = replay(str(archive(tmp_path, True)))
    figures = doc["runs"][0]["figures"]
    # Every tick's snapshot carries the problem: node2 is frozen each time, nothing moves
    # onto or off it, and no tick failed (the old replay dropped the problem and moved it).
    assert figures["frozen_host_ticks"] == figures["ticks"]
    assert figures["failed_ticks"] == 0 and figures["refused_ticks"] == 0
    assert figures["migrations_onto_frozen"] == 0 and figures["migrations_off_frozen"] == 0
    assert figures["migrations"] > 0
    idx = doc["runs"][0]["series"]["hosts"].index("node2")
    assert all(row[idx] > 0 for row in doc["runs"][0]["series"]["host_cpu"])


@pytest.mark.slow  # a replay or several commands through real pipes: seconds of CPU
def test_monitoring_loss_is_seeded_and_counted(tmp_path):
    src = str(archive(tmp_path, False, 12))
    a = replay(src, "--monitoring-loss", "0.05", "--loss-seed", "7")
    b = replay(src, "--monitoring-loss", "0.05", "--loss-seed", "7")
    fa, fb = a["runs"][0]["figures"], b["runs"][0]["figures"]
    assert fa == {**fb, "plan_seconds_mean": fa["plan_seconds_mean"],
                  "plan_seconds_max": fa["plan_seconds_max"]}
    assert a["settings"]["monitoring_loss"] == 0.05
    assert fa["lost_host_reports"] + fa["lost_guest_metrics"] > 0
    # A tick with a frozen host is planned around, one with more than a quarter frozen is
    # refused (exit 75, as vm-plan would): none fails.
    assert fa["failed_ticks"] == 0
    assert fa["frozen_host_ticks"] > 0
    assert fa["migrations_onto_frozen"] == 0
    r = run("vm-replay", src, "--monitoring-loss", "1.5")
    assert r.returncode == 2 and "--monitoring-loss" in r.stderr


def test_replaying_a_run_vm_plan_refused_moves_nothing(tmp_path):
    """An archive whose snapshots freeze three hosts of eight (monitoring broken): vm-plan
    refused those runs live (exit 75), and the replay refuses them too, counted apart from
    failures, instead of planning migrations nobody made."""
    d = archive(tmp_path, False)
    for path in d.rglob("snapshot.json"):
        s = Snapshot.from_dict(json.loads(path.read_text()))
        s.problems = [Problem("stale-host", f"host node{i}: container.vms not updated for "
                              "7200 s (TMAX 60); its figures and guest list are old",
                              host=f"node{i}") for i in (1, 2, 3)]
        path.write_text(dumps(s.to_dict()))
    figures = replay(str(d))["runs"][0]["figures"]
    assert figures["refused_ticks"] == figures["ticks"] and figures["failed_ticks"] == 0
    assert figures["migrations"] == 0
    assert figures["frozen_host_ticks"] == 3 * figures["ticks"]
