"""Several sources, one snapshot: each host tagged with its migration domain, the sources read
at once within one deadline, and a source that does not answer left out as a problem (its
domain not planned) instead of failing the run."""

from __future__ import annotations

import json
import re
import socket
import time
from pathlib import Path

import pytest

from tests.conftest import run
from vmtools.ganglia.sources import example_path
from vmtools.model import Snapshot


def _cluster_dump(tmp_path, cluster: str, prefix: str):
    """The shipped lab dump as another cluster: its cluster and host names changed."""
    text = Path(example_path("lab")).read_text()
    text = text.replace('CLUSTER NAME="xen-lab"', f'CLUSTER NAME="{cluster}"')
    text = text.replace('HOST NAME="node-', f'HOST NAME="{prefix}-')
    text = re.sub(r'(NAME="container\.vms" VAL=")([^"]*)"', lambda m: m.group(1) + " ".join(
        f"{prefix}{g}" for g in m.group(2).split()) + '"', text)
    text = text.replace('NAME="container.vm.', f'NAME="container.vm.{prefix}')
    path = tmp_path / f"{prefix}.xml"
    path.write_text(text)
    return path


def test_two_clusters_are_two_domains_and_old_snapshots_one(tmp_path):
    a, b = _cluster_dump(tmp_path, "paris", "pa"), _cluster_dump(tmp_path, "lyon", "ly")
    proc = run("vm-snapshot", "--input", str(a), "--input", str(b))
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    snap = Snapshot.from_dict(doc)
    domains = {h.name: h.domain for h in snap.hosts}
    assert len(domains) == 12 and snap.problems == []
    assert {d for n, d in domains.items() if n.startswith("pa-")} == {"paris"}
    assert {d for n, d in domains.items() if n.startswith("ly-")} == {"lyon"}
    assert {v.host[:2] for v in snap.vms} == {"pa", "ly"}
    # a snapshot written before the field: every host in the one domain ""
    for h in doc["hosts"]:
        del h["domain"]
    assert {h.domain for h in Snapshot.from_dict(doc).hosts} == {""}


def test_a_domain_name_that_is_not_printable_is_refused_on_reading():
    doc = json.loads(run("vm-snapshot", "--example", "lab").stdout)
    doc["hosts"][0]["domain"] = "a\x1b[31mb"
    with pytest.raises(Exception, match="migration domain"):
        Snapshot.from_dict(doc)


def test_an_overlong_cluster_name_freezes_its_hosts(tmp_path):
    path = _cluster_dump(tmp_path, "x" * 300, "zz")
    proc = run("vm-snapshot", "--input", str(path))
    assert proc.returncode == 0, proc.stderr
    snap = Snapshot.from_dict(json.loads(proc.stdout))
    assert {h.domain for h in snap.hosts} == {""}
    assert {p.host for p in snap.problems if p.kind == "bad-value"} == {h.name for h in snap.hosts}


def test_a_gmetad_that_refuses_leaves_its_domain_out_not_the_run(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]        # bound, not listening: connection refused
        proc = run("vm-snapshot", "--gmetad", f"127.0.0.1:{port}", "--gmetad",
                   f"127.0.0.1:{port}", "--input", str(_cluster_dump(tmp_path, "lyon", "ly")),
                   "--timeout", "2")
    assert proc.returncode == 0, proc.stderr
    snap = Snapshot.from_dict(json.loads(proc.stdout))
    assert {h.domain for h in snap.hosts} == {"lyon"} and len(snap.hosts) == 6
    lost = [p for p in snap.problems if p.kind == "unavailable-source"]
    assert len(lost) == 2 and all(f"gmetad://127.0.0.1:{port}" in p.message for p in lost)
    assert all(p.host is None for p in lost)
    assert "unavailable-source" in proc.stderr        # the warning line


@pytest.mark.slow
def test_silent_sources_are_read_at_once_within_one_deadline(tmp_path):
    socks = []
    try:
        for _ in range(3):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            s.listen(1)                  # accepts (kernel backlog) but never answers
            socks.append(s)
        args = [a for s in socks for a in ("--gmetad", f"127.0.0.1:{s.getsockname()[1]}")]
        started = time.monotonic()
        proc = run("vm-snapshot", *args, "--input", str(_cluster_dump(tmp_path, "lyon", "ly")),
                   "--timeout", "5", "--deadline", "1.5")
        took = time.monotonic() - started
    finally:
        for s in socks:
            s.close()
    assert proc.returncode == 0, proc.stderr
    snap = Snapshot.from_dict(json.loads(proc.stdout))
    assert len(snap.hosts) == 6
    assert len([p for p in snap.problems if p.kind == "unavailable-source"]) == 3
    # one after the other, three silent peers would take 3 x 5 s before the first no-data
    assert took < 5, took


def test_no_source_answering_is_still_exit_69():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        proc = run("vm-snapshot", "--gmetad", f"127.0.0.1:{port}", "--gmetad",
                   f"127.0.0.1:{port}", "--timeout", "1")
    assert proc.returncode == 69 and proc.stdout == ""
    assert proc.stderr.startswith(f"vm-snapshot: error: gmetad://127.0.0.1:{port}")


def test_bad_deadline_is_a_usage_error():
    proc = run("vm-snapshot", "--example", "lab", "--deadline", "0")
    assert proc.returncode == 2 and "--deadline" in proc.stderr
