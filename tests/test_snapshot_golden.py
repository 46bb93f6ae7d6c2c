"""Golden pairs: Ganglia XML captured from the real daemons next to the snapshot it must give.

Regenerate with ``python tests/fixtures/ganglia/capture.py`` (needs gmond, gmetad, gmetric).
"""

from __future__ import annotations

import importlib.util
import io
import json

import pytest

from tests.conftest import FIXTURES, run
from vmtools.errors import DataError
from vmtools.ganglia.interpret import interpret
from vmtools.ganglia.xml import parse_ganglia

GANGLIA = FIXTURES / "ganglia"
_spec = importlib.util.spec_from_file_location("ganglia_capture", GANGLIA / "capture.py")
_capture = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_capture)
CASE_OPTIONS = _capture.CASE_OPTIONS
CASES = sorted(p.stem for p in GANGLIA.glob("*.xml"))
HOSTILE = [c for c in CASES if c.startswith("hostile-")]


@pytest.mark.parametrize("case", [c for c in CASES if c not in HOSTILE])
def test_golden_snapshot(case):
    opts = CASE_OPTIONS.get(case, {})
    expected = json.loads((GANGLIA / f"{case}.json").read_text())
    dump = parse_ganglia(io.BytesIO((GANGLIA / f"{case}.xml").read_bytes()), f"{case}.xml",
                         recover=opts.get("recover", False))
    doc = interpret([dump], stale_after=opts.get("stale_after", 120.0)).to_dict()
    doc.pop("created")
    assert doc == expected


@pytest.mark.parametrize("case", HOSTILE)
def test_hostile_input_is_refused_with_line_and_column(case):
    expected = json.loads((GANGLIA / f"{case}.json").read_text())
    with pytest.raises(DataError) as info:
        parse_ganglia(io.BytesIO((GANGLIA / f"{case}.xml").read_bytes()), f"{case}.xml")
    assert str(info.value) == expected["error"]
    if case != "hostile-empty":
        assert info.value.where.startswith(f"{case}.xml:")
        line, col = info.value.where.split(":")[1:]
        assert int(line) > 0 and int(col) > 0


@pytest.mark.parametrize("case", HOSTILE)
def test_hostile_input_through_the_installed_script(case):
    path = GANGLIA / f"{case}.xml"
    proc = run("vm-snapshot", "--input", str(path))
    assert proc.returncode == 65, proc.stderr
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("vm-snapshot: error: ")
    assert "Traceback" not in proc.stderr
    if case != "hostile-empty":
        assert f"{path}:" in lines[0]


def test_golden_problem_kinds_cover_the_issue():
    kinds = {p["kind"] for case in CASES if case not in HOSTILE
             for p in json.loads((GANGLIA / f"{case}.json").read_text()).get("problems", [])}
    assert {"duplicate-guest", "no-data", "partial-container", "not-a-number", "stale-cluster",
            "offline-host", "unsafe-name", "bad-value", "dropped-host"} <= kinds


def test_fallback_guest_demand_comes_from_its_own_gmond():
    doc = json.loads((GANGLIA / "problems.json").read_text())
    guest1 = next(v for v in doc["vms"] if v["name"] == "guest1")
    # cpu_user 20 % + cpu_system 10 % + cpu_nice 0 % of 2 CPUs; 4 GiB; 125000 B/s.
    assert guest1 == {"name": "guest1", "host": "node-a", "state": "running", "vcpus": 2,
                      "cpu": 0.6, "mem_mib": 4096, "net_mbps": 1.0}


def test_split_guest_list_is_joined_and_domain0_left_out():
    doc = json.loads((GANGLIA / "problems.json").read_text())
    on_a = sorted(v["name"] for v in doc["vms"] if v["host"] == "node-a")
    assert on_a == ["guest1", "web.prod"]   # lost1 (from container.vms.1) has no data
    assert any(p["kind"] == "no-data" and p["vm"] == "lost1" for p in doc["problems"])
    assert not any(v["name"] == "Domain-0" for v in doc["vms"])


def test_the_three_ports_give_the_same_snapshot():
    docs = [json.loads((GANGLIA / f"{c}.json").read_text())
            for c in ("problems", "problems-gmond", "problems-cluster-query")]
    for d in docs:
        d.pop("source")
    assert docs[0]["hosts"] and docs[0] == docs[1] == docs[2]
