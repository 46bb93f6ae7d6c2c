"""The document model: envelopes, validation with JSON paths, canonical text, digests."""

from __future__ import annotations

import copy
import json

import pytest

from vmtools.errors import DataError
from vmtools.model import (VM, Action, Host, Plan, Report, Snapshot, document_digest, dumps,
                           is_safe_name, loads)


def snapshot_doc() -> dict:
    return Snapshot(
        hosts=[Host("node2", "lab", cpu=8, mem_mib=15872, hypervisor="xen-3.3", migration="xen"),
               Host("node1", "lab", cpu=4, mem_mib=7680, net_mbps=1000.0, hypervisor="xen-3.3",
                    migration="xen")],
        vms=[VM("web1", "node1", vcpus=2, cpu=0.85, mem_mib=1024, net_mbps=3.2),
             VM("db1", "node2", vcpus=4, cpu=2.5, mem_mib=4096)],
        source="file:lab.xml", created="2026-11-22T01:30:00Z").to_dict()


def test_snapshot_round_trip_is_canonical_and_sorted():
    doc = snapshot_doc()
    assert list(doc)[:2] == ["format", "version"]
    assert [h["name"] for h in doc["hosts"]] == ["node1", "node2"]
    again = Snapshot.from_dict(json.loads(dumps(doc))).to_dict()
    assert dumps(again) == dumps(doc)


def test_validation_error_names_the_json_path():
    doc = snapshot_doc()
    doc["vms"][1]["mem_mib"] = "4G"
    with pytest.raises(DataError) as err:
        Snapshot.from_dict(doc)
    assert str(err.value) == 'vms[1].mem_mib: expected an integer, got "4G"'


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d.update(format="vmtools.plan"), 'format: expected a vmtools.snapshot document'),
    (lambda d: d.update(version="2.0"), "version: version 2.0 of vmtools.snapshot is not supported"),
    (lambda d: d.update(version="one"), 'version: expected "MAJOR.MINOR"'),
    (lambda d: d["hosts"][0].pop("cpu"), "hosts[0].cpu: missing"),
    (lambda d: d["vms"][0].update(host="nowhere"), 'vms[0].host: host "nowhere" is not in hosts'),
    (lambda d: d["vms"].append(dict(d["vms"][0])), 'vms[2]: duplicate guest "db1"'),
    (lambda d: d["vms"][0].update(name="a;rm -rf /"), "vms[0].name: unsafe name"),
    (lambda d: d["hosts"][1].update(state="sleeping"), "hosts[1].state: expected one of online"),
])
def test_bad_snapshots_are_refused_with_their_place(mutate, message):
    doc = snapshot_doc()
    mutate(doc)
    with pytest.raises(DataError) as err:
        Snapshot.from_dict(doc)
    assert str(err.value).startswith(message)


def test_unknown_keys_and_newer_minor_versions_are_accepted():
    doc = snapshot_doc()
    doc["version"] = "1.7"
    doc["hosts"][0]["rack"] = "r12"
    doc["future"] = {"anything": True}
    snap = Snapshot.from_dict(doc)
    assert snap.host("node1").cpu == 4.0


def test_digest_ignores_key_order_and_whitespace():
    doc = snapshot_doc()
    shuffled = json.loads(json.dumps(doc, sort_keys=True, indent=7))
    assert document_digest(doc) == document_digest(shuffled)
    changed = copy.deepcopy(doc)
    changed["vms"][0]["mem_mib"] += 1
    assert document_digest(doc) != document_digest(changed)


def test_plan_detects_an_edited_origin():
    origin = Snapshot.from_dict(snapshot_doc())
    plan = Plan(origin=origin, placement={"web1": "node2", "db1": "node2"},
                actions=[Action(1, "web1", "node1", "node2", 1024, reason="consolidate")])
    doc = plan.to_dict()
    assert Plan.from_dict(json.loads(dumps(doc))).actions[0].dst == "node2"
    doc["origin"]["vms"][0]["mem_mib"] = 1
    with pytest.raises(DataError) as err:
        Plan.from_dict(doc)
    assert "origin_digest" in str(err.value)


def test_report_outcomes_are_checked():
    doc = Report(plan_digest="sha256:x", actions=[{"id": 1, "outcome": "lost"}]).to_dict()
    with pytest.raises(DataError) as err:
        Report.from_dict(doc)
    assert str(err.value).startswith("actions[0].outcome: expected one of done")


@pytest.mark.parametrize("text, where", [
    ("", "<stdin>"), ("{\n  \"a\": 1,\n}", "<stdin>:3:1"), ("[NaN]", "<stdin>:1:2"), ("{\"a\":\n [1e400]}", "<stdin>:2:3"),
])
def test_json_syntax_errors_name_line_and_column(text, where):
    with pytest.raises(DataError) as err:
        loads(text)
    assert err.value.where == where


@pytest.mark.parametrize("name, ok", [
    ("web-1.example.org", True), ("vm_2", True), ("Domain-0", True), ("", False),
    ("-rf", False), ("a b", False), ("x;y", False), ("<b>", False), ("caf\u00e9", False),
    ("a" * 254, False), ("$(reboot)", False),
])
def test_safe_names(name, ok):
    assert is_safe_name(name) is ok
