"""Partial, late and lossy monitoring, as an operator meets it: edited copies of the bundled
gmetad dump (the hotspot one: node-4 is CPU-hot) through the installed vm-snapshot and vm-plan.

Each edit makes one host unknown or stale; vm-plan plans around it (exit 0): nothing moves
onto or off the frozen host, the hotspot elsewhere is still relieved, and the plan names the
host and the problem kind, on stderr and in its summary.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.conftest import ROOT, run

DUMP = (ROOT / "vmtools" / "examples" / "lab-gmetad-hotspot.xml").read_text(encoding="latin-1")


def host_block(xml: str, host: str) -> tuple[int, int]:
    start = xml.index(f'<HOST NAME="{host}"')
    return start, xml.index("</HOST>", start) + len("</HOST>")


def edit_host(xml: str, host: str, change) -> str:
    a, b = host_block(xml, host)
    return xml[:a] + change(xml[a:b]) + xml[b:]


def age_metrics(block: str, pattern: str, tn: int = 7200) -> str:
    """TN of every metric whose name matches ``pattern`` set to ``tn`` (TMAX is 60)."""
    def one(m: re.Match) -> str:
        return re.sub(r'TN="\d+"', f'TN="{tn}"', m.group(0))
    out, n = re.subn(rf'<METRIC NAME="{pattern}"[^>]*>', one, block)
    assert n, pattern
    return out


def snapshot_of(tmp_path: Path, xml: str, name: str = "dump.xml") -> str:
    path = tmp_path / name
    path.write_text(xml, encoding="latin-1")
    r = run("vm-snapshot", "--input", str(path))
    assert r.returncode == 0, r.stderr
    return r.stdout


def plan_of(snapshot: str, *args: str):
    r = run("vm-plan", "--explain", *args, input=snapshot)
    return r, (json.loads(r.stdout) if r.returncode == 0 else None)


def assert_planned_around(r, plan: dict, host: str, kind: str) -> None:
    assert r.returncode == 0, r.stderr
    frozen = {f["host"]: f for f in plan["summary"]["frozen"]}
    assert list(frozen) == [host], frozen
    assert kind in frozen[host]["kinds"]
    assert f"host {host} is frozen" in r.stderr and kind in r.stderr
    assert kind in plan["explain"][f"frozen {host}"]
    moves = [a for a in plan["actions"] if a["op"] == "migrate"]
    assert moves, "the rest of the cluster is still planned"
    assert all(host not in (a["src"], a["dst"]) for a in moves), moves
    origin = {v["name"]: v["host"] for v in plan["origin"]["vms"]}
    assert all(plan["placement"][v] == host for v, h in origin.items() if h == host)
    # The hotspot on node-4 is relieved all the same.
    hot = [h for h in plan["summary"]["hotspots"] if h["host"] == "node-4"]
    assert hot and hot[0]["acted"], plan["summary"]["hotspots"]


def test_a_guest_without_data(tmp_path):
    xml = edit_host(DUMP, "node-3", lambda b: re.sub(
        r'<METRIC NAME="container\.vm\.db2\.[^"]*"[^>]*>.*?</METRIC>\s*', "", b, flags=re.S))
    snap = json.loads(snapshot_of(tmp_path, xml))
    assert "db2" not in {v["name"] for v in snap["vms"]}
    r, plan = plan_of(json.dumps(snap))
    assert_planned_around(r, plan, "node-3", "no-data")
    entry = plan["summary"]["frozen"][0]
    # Never known (no --state): the host counts as full.
    assert entry["unknown_guests"] == [{"vm": "db2", "mem_mib": None}]
    assert entry["counted_as"] == "full"


def test_a_guest_with_stale_metrics(tmp_path):
    xml = edit_host(DUMP, "node-3", lambda b: age_metrics(b, r"container\.vm\.db2\.[^\"]*"))
    snap = json.loads(snapshot_of(tmp_path, xml))
    stale = [p for p in snap["problems"] if p["kind"] == "stale-guest"]
    assert len(stale) == 1 and stale[0]["vm"] == "db2" and stale[0]["host"] == "node-3"
    assert "7200 s (TMAX 60)" in stale[0]["message"]
    r, plan = plan_of(json.dumps(snap))
    assert_planned_around(r, plan, "node-3", "stale-guest")
    assert plan["placement"]["db2"] == "node-3"


def test_a_stale_host(tmp_path):
    xml = edit_host(DUMP, "node-3", lambda b: age_metrics(
        b, r"container\.(mem_total|cpu_num|vms|type|driver\.migration)"))
    snap = json.loads(snapshot_of(tmp_path, xml))
    assert [p["kind"] for p in snap["problems"]] == ["stale-host"]
    assert "not updated for 7200 s" in snap["problems"][0]["message"]
    r, plan = plan_of(json.dumps(snap))
    assert_planned_around(r, plan, "node-3", "stale-host")


def test_a_host_missing_after_a_run_with_state(tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    r, first = plan_of(snapshot_of(tmp_path, DUMP), "--state", str(state))
    assert r.returncode == 0, r.stderr
    assert first["summary"]["frozen"] == []
    a, b = host_block(DUMP, "node-3")
    gone = snapshot_of(tmp_path, DUMP[:a] + DUMP[b:], "gone.xml")
    assert "node-3" not in gone
    r, plan = plan_of(gone, "--state", str(state))
    assert r.returncode == 0, r.stderr
    frozen = plan["summary"]["frozen"]
    assert [f["host"] for f in frozen] == ["node-3"]
    assert frozen[0]["kinds"] == ["vanished-host", "vanished-guest"]
    assert "host node-3 is frozen" in r.stderr and "vanished-host" in r.stderr
    # Its guests are unknown now, and count at their size when last seen (from --state).
    sizes = {v["name"]: v["mem_mib"] for v in first["origin"]["vms"] if v["host"] == "node-3"}
    assert {g["vm"]: g["mem_mib"] for g in frozen[0]["unknown_guests"]} == sizes
    assert frozen[0]["counted_as"].startswith("its known guests and the unknown ones")
    assert all("node-3" not in (a["src"], a["dst"]) for a in plan["actions"])


def test_a_guest_on_two_hosts(tmp_path):
    a, b = host_block(DUMP, "node-3")
    metrics = "".join(re.findall(r'<METRIC NAME="container\.vm\.db2\.[^"]*".*?</METRIC>\s*',
                                 DUMP[a:b], flags=re.S))
    assert metrics
    xml = edit_host(DUMP, "node-1", lambda b: b.replace(
        'NAME="container.vms" VAL="web1 web2 db1 cache1"',
        'NAME="container.vms" VAL="web1 web2 db1 cache1 db2"').replace(
        "</HOST>", metrics + "</HOST>"))
    snap = json.loads(snapshot_of(tmp_path, xml))
    dup = [p for p in snap["problems"] if p["kind"] == "duplicate-guest"]
    assert len(dup) == 1 and dup[0]["vm"] == "db2"
    # No in-flight name anywhere: no guessed cause.
    assert "mid-migration" not in dup[0]["message"]
    kept = next(v["host"] for v in snap["vms"] if v["name"] == "db2")
    r, plan = plan_of(json.dumps(snap))
    assert_planned_around(r, plan, dup[0]["host"], "duplicate-guest")
    # The guest stays where it is counted; the other host (whose use is unknown) is frozen.
    assert plan["placement"]["db2"] == kept
    assert all(a["vm"] != "db2" for a in plan["actions"])


def test_monitoring_broken_rather_than_partial_plans_nothing(tmp_path):
    xml = edit_host(DUMP, "node-3", lambda b: age_metrics(
        b, r"container\.(mem_total|cpu_num|vms|type|driver\.migration)"))
    xml = edit_host(xml, "node-5", lambda b: age_metrics(
        b, r"container\.(mem_total|cpu_num|vms|type|driver\.migration)"))
    snapshot = snapshot_of(tmp_path, xml)
    r, _ = plan_of(snapshot)
    assert r.returncode == 75 and r.stdout == ""
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "2 of 6 hosts are frozen by problems of their own (more than --max-frozen 0.25)" \
        in r.stderr
    assert "node-3 (stale-host)" in r.stderr and "node-5 (stale-host)" in r.stderr
    # A setting: a larger fraction plans around both.
    r, plan = plan_of(snapshot, "--max-frozen", "0.5")
    assert r.returncode == 0, r.stderr
    assert [f["host"] for f in plan["summary"]["frozen"]] == ["node-3", "node-5"]
    # The old refusal, on request.
    r, _ = plan_of(snapshot, "--refuse-problems")
    assert r.returncode == 65 and "--refuse-problems" in r.stderr


def test_frozen_hosts_in_the_table(tmp_path):
    xml = edit_host(DUMP, "node-3", lambda b: age_metrics(
        b, r"container\.(mem_total|cpu_num|vms|type|driver\.migration)"))
    r = run("vm-plan", "-f", "table", input=snapshot_of(tmp_path, xml))
    assert r.returncode == 0, r.stderr
    assert "Frozen hosts (1)" in r.stdout and "stale-host" in r.stdout
    assert re.search(r"node-3\s+online, frozen", r.stdout)


@pytest.mark.parametrize("objective", ["consolidate", "balance", "repair"])
def test_every_objective_plans_around_a_frozen_host(tmp_path, objective):
    xml = edit_host(DUMP, "node-3", lambda b: age_metrics(
        b, r"container\.(mem_total|cpu_num|vms|type|driver\.migration)"))
    r, plan = plan_of(snapshot_of(tmp_path, xml), "--objective", objective,
                      "--time-limit", "20")
    assert r.returncode == 0, r.stderr
    assert [f["host"] for f in plan["summary"]["frozen"]] == ["node-3"]
    assert all("node-3" not in (a["src"], a["dst"]) for a in plan["actions"])


def test_a_guest_leaves_a_frozen_host_only_to_end_an_overload_its_known_guests_cause():
    from vmtools.model import VM, Host, Problem, Snapshot
    from vmtools.planner.plan import Options, make_plan
    from vmtools.rules.constraints import Constraints
    snap = Snapshot(hosts=[Host(name="h1", cpu=4, mem_mib=16384),
                           Host(name="h2", cpu=8, mem_mib=16384),
                           Host(name="h3", cpu=8, mem_mib=16384),
                           Host(name="h4", cpu=8, mem_mib=16384)],
                    vms=[VM(name="a", host="h1", cpu=3.0, mem_mib=4096),
                         VM(name="b", host="h1", cpu=2.0, mem_mib=2048),
                         VM(name="c", host="h1", cpu=0.1, mem_mib=1024),
                         VM(name="d", host="h2", cpu=0.5, mem_mib=1024)],
                    problems=[Problem("no-data", "host h1 lists guest x but ...", host="h1",
                                      vm="x")],
                    created="2026-12-07T06:00:00Z")
    for objective in ("auto", "consolidate", "balance", "repair"):
        plan = make_plan(snap, Constraints([]), Options(objective=objective, time_limit=20,
                                                                max_frozen=1.0))
        off_h1 = [a for a in plan.actions if a.src == "h1"]
        # 5.1 CPUs on 4: b alone ends it (the most relief per MiB); nothing else leaves.
        assert [a.vm for a in off_h1] == ["b"], (objective, plan.actions)
        assert off_h1[0].reason.startswith("overload: h1 is frozen (no-data)"), off_h1[0].reason
        assert not any(a.dst == "h1" for a in plan.actions)
        assert plan.summary["frozen"][0]["leaving"] == ["b"]
    # Without the overload nothing leaves, even where consolidation would empty h1.
    calm = Snapshot(hosts=snap.hosts, vms=[v if v.name != "a" else VM(name="a", host="h1",
                                                                       cpu=1.0, mem_mib=4096)
                                           for v in snap.vms],
                    problems=snap.problems, created=snap.created)
    plan = make_plan(calm, Constraints([]), Options(objective="consolidate", time_limit=20,
                                                          max_frozen=1.0))
    assert not any("h1" in (a.src, a.dst) for a in plan.actions), plan.actions


def test_auto_relieves_a_frozen_host_its_known_guests_alone_make_a_hotspot():
    from vmtools.model import VM, Host, Problem, Snapshot
    from vmtools.planner.plan import Options, make_plan
    from vmtools.rules.constraints import Constraints
    snap = Snapshot(hosts=[Host(name=f"h{i}", cpu=8, mem_mib=16384) for i in range(1, 5)],
                    vms=[VM(name="a", host="h1", cpu=4.0, mem_mib=2048),
                         VM(name="b", host="h1", cpu=3.6, mem_mib=2048),
                         VM(name="c", host="h2", cpu=1.0, mem_mib=2048)],
                    problems=[Problem("no-data", "host h1 lists guest x but ...", host="h1",
                                      vm="x")],
                    created="2026-12-07T06:00:00Z")
    # 7.6 of 8 CPUs known (95 %, above the 0.9 threshold, under capacity): auto relieves it
    # onto a host whose figures are known; consolidate (no hotspot to end) moves nothing off.
    plan = make_plan(snap, Constraints([]), Options(objective="auto", max_frozen=1.0))
    off = [a for a in plan.actions if a.src == "h1"]
    assert off and all(a.dst != "h1" for a in plan.actions)
    assert off[0].reason.startswith("relieve: h1 is frozen (no-data) and its known guests "
                                    "alone make it a hotspot (CPU 95%)"), off[0].reason
    plan = make_plan(snap, Constraints([]), Options(objective="consolidate", max_frozen=1.0,
                                                    time_limit=20))
    assert not any("h1" in (a.src, a.dst) for a in plan.actions), plan.actions


def test_a_host_without_its_guest_list_looks_empty_but_takes_nothing(tmp_path):
    """vm-gmetric left container.vms out (a guest list it could not read whole) and gmond has
    none from before (restarted): node-3 looks empty. Nothing moves onto it; with --state its
    guests are vanished-guest problems, counted at their size when last seen."""
    state = tmp_path / "state"
    state.mkdir()
    r, first = plan_of(snapshot_of(tmp_path, DUMP), "--state", str(state))
    assert r.returncode == 0, r.stderr
    xml = edit_host(DUMP, "node-3", lambda b: re.sub(
        r'<METRIC NAME="container\.vms"[^>]*>.*?</METRIC>\s*', "", b, flags=re.S))
    snap = json.loads(snapshot_of(tmp_path, xml, "no-list.xml"))
    assert [(p["kind"], p["host"]) for p in snap["problems"]] == [
        ("partial-container", "node-3")]
    assert not [v for v in snap["vms"] if v["host"] == "node-3"]
    for args in ((), ("--state", str(state))):
        r, plan = plan_of(json.dumps(snap), *args)
        assert r.returncode == 0, r.stderr
        entry = {f["host"]: f for f in plan["summary"]["frozen"]}["node-3"]
        assert entry["counted_as"] == "full"
        assert all("node-3" not in (a["src"], a["dst"]) for a in plan["actions"])
    assert entry["kinds"] == ["partial-container", "vanished-guest"]
    sizes = {v["name"]: v["mem_mib"] for v in first["origin"]["vms"] if v["host"] == "node-3"}
    assert {g["vm"]: g["mem_mib"] for g in entry["unknown_guests"]} == sizes


def test_a_run_that_lost_a_guests_metrics_keeps_its_hosts_hotspot_and_its_history(tmp_path):
    """With --state: a guest whose metrics are lost for one run counts at its last figures for
    whether its host is hot (the hotspot's persistence is not broken), and keeps its demand
    history (its planning demand is not its last sample alone)."""
    from vmtools.model import VM, Host, Problem, Snapshot
    from vmtools.planner.plan import Options, plan_with_state
    from vmtools.state import read_state
    from vmtools.rules.constraints import Constraints
    hosts = [Host(name=f"h{i}", cpu=8, mem_mib=16384) for i in range(1, 9)]

    def snap(minute: int, lost: bool) -> Snapshot:
        vms = [VM(name="a", host="h1", cpu=4.0, mem_mib=2048)]
        if not lost:
            vms.append(VM(name="b", host="h1", cpu=3.6, mem_mib=2048))
        vms += [VM(name=f"g{i}", host=f"h{i}", cpu=0.5, mem_mib=1024) for i in range(2, 9)]
        problems = [Problem("no-data", "host h1 lists guest b but ...", host="h1", vm="b")] \
            if lost else []
        return Snapshot(hosts=hosts, vms=vms, problems=problems,
                        created=f"2026-12-07T06:{minute:02d}:00Z")
    opts = Options(objective="auto")
    plan_with_state(snap(0, False), Constraints([]), opts, str(tmp_path),
                    window=(2, 3))
    plan = plan_with_state(snap(5, True), Constraints([]), opts, str(tmp_path), window=(2, 3))
    memory = read_state(str(tmp_path)).plan
    assert [o["hot"] for o in memory.observations] == [["h1"], ["h1"]]
    assert [r[1] for r in memory.samples["b"]] == [3.6]
    # h1 is frozen, and its known guest alone (a, 50 %) makes no hotspot: nothing touches it.
    assert not any("h1" in (a.src, a.dst) for a in plan.actions), plan.actions
