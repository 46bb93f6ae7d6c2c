"""Property tests over generated hostile input (issue 10): each reader either refuses with a
DataError (exit 65 at the command line) or gives a result that holds what vmtools promises.

Hypothesis drives the generators of :mod:`tests.fuzz.generators` through a ``random.Random``
it controls, so a failure shrinks to a small seed and is replayed from its database. The CI
profile is derandomized and small (a few seconds); ``HYPOTHESIS_PROFILE=deep`` runs 20 times
more examples.
"""

from __future__ import annotations

import io
import json
import math
import os
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fuzz import generators as gen
from vmtools.gmetric.build import Sample, build_metrics
from vmtools.dom0.parse import parse_info, parse_list
from vmtools.errors import DataError
from vmtools.ganglia.interpret import interpret
from vmtools.ganglia.xml import parse_ganglia
from vmtools.drivers.hostmap import parse_hostmap, valid_address
from vmtools.model import (HOST_MAX_CPU, HOST_MAX_MIB, Plan, Snapshot, is_reserved_name,
                           loads)
from vmtools.snapshot import snapshot_json

settings.register_profile("ci", max_examples=60, derandomize=True, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("deep", max_examples=1200, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

randoms = st.randoms(use_true_random=False)


# ----------------------------------------------------------------------------- Ganglia numbers

@given(randoms, st.booleans())
def test_ganglia_input_gives_a_valid_snapshot_or_a_data_error(rng: random.Random, recover):
    data = gen.ganglia_xml(rng)
    try:
        snap = interpret([parse_ganglia(io.BytesIO(data), "fuzz.xml", recover=recover)])
    except DataError:
        return
    assert not gen.xml_uses_entity(data), "a DTD with an entity was not refused"
    text = snapshot_json(snap)                      # what vm-snapshot prints...
    again = Snapshot.from_dict(json.loads(text))   # ...is what vm-plan accepts
    assert "EXPANDED" not in text
    caps = {h.name: h.cpu for h in again.hosts}
    for h in again.hosts:
        assert 1 <= h.cpu <= HOST_MAX_CPU and 0 <= h.mem_mib <= HOST_MAX_MIB
        assert not is_reserved_name(h.name)
        assert h.net_mbps is None or 0 < h.net_mbps <= 1e7
    for v in again.vms:
        assert not is_reserved_name(v.name)
        assert math.isfinite(v.cpu) and 0 <= v.cpu <= caps[v.host] * 1.5 + 1e-3
        assert 1 <= v.vcpus <= 65535 and 1 <= v.mem_mib <= HOST_MAX_MIB + 1
    for p in again.problems:
        if p.kind in ("bad-value", "not-a-number"):
            assert " of " in p.message and " is " in p.message   # names metric and value


def test_lying_capacities_are_problems_naming_metric_and_value():
    def host(name, cpu, mem, tn="5", reported="1000"):
        m = "".join(gen._metric(k, v) for k, v in (
            ("container.mem_total", mem), ("container.cpu_num", cpu), ("container.vms", ""),
            ("container.driver.migration", "xen"), ("container.type", "xen-4.17")))
        return (f'<HOST NAME="{name}" IP="1" REPORTED="{reported}" TN="{tn}" TMAX="20">{m}'
                "</HOST>")
    xml = ('<GANGLIA_XML VERSION="3" SOURCE="gmond"><CLUSTER NAME="c" LOCALTIME="1000">'
           + host("liar", "8", "1e300") + host("zero", "0", "1024") + host("neg", "-2", "1024")
           + host("frac", "2.5", "1024") + host("ok", "8", "16777216")
           + host("future", "8", "1024", reported="1e400")
           + host("overflow", "8", "1024", tn="inf")
           + "</CLUSTER></GANGLIA_XML>").encode()
    snap = interpret([parse_ganglia(xml, "x")])
    by_host = {p.host: p for p in snap.problems}
    assert [h.name for h in snap.hosts] == ["future", "ok", "overflow"]
    assert "container.mem_total" in by_host["liar"].message and "1e300" in by_host["liar"].message
    assert "uint32" in by_host["liar"].message
    assert "container.cpu_num" in by_host["zero"].message and by_host["zero"].kind == "bad-value"
    assert "-2" in by_host["neg"].message and "2.5" in by_host["frac"].message
    # A time that is not Ganglia's uint32 seconds: named, and the host is not trusted as online.
    assert "REPORTED" in by_host["future"].message and "1e400" in by_host["future"].message
    assert "TN" in by_host["overflow"].message
    states = {h.name: h.state for h in snap.hosts}
    assert states == {"future": "offline", "ok": "online", "overflow": "offline"}


def test_reserved_names_from_ganglia_are_problems():
    m = "".join(gen._metric(k, v) for k, v in (
        ("container.mem_total", "16777216"), ("container.cpu_num", "8"),
        ("container.vms", "web1 web1--incoming migrating-db1 Domain-0"),
        ("container.driver.migration", "xen"), ("container.type", "xen-4.17"),
        ("container.vm.web1.cpu", "10"), ("container.vm.web1.mem", "1048576"),
        ("container.vm.web1--incoming.cpu", "10"), ("container.vm.web1--incoming.mem", "1")))
    xml = ('<GANGLIA_XML VERSION="3" SOURCE="gmond"><CLUSTER NAME="c" LOCALTIME="1000">'
           f'<HOST NAME="n1" IP="1" REPORTED="1000" TN="1" TMAX="20">{m}</HOST>'
           f'<HOST NAME="Domain-0" IP="1" REPORTED="1000" TN="1" TMAX="20">{m}</HOST>'
           "</CLUSTER></GANGLIA_XML>").encode()
    snap = interpret([parse_ganglia(xml, "x")])
    assert [v.name for v in snap.vms] == ["web1"]
    reserved = sorted(p.message.split(" named ")[1].split(",")[0]
                      for p in snap.problems if p.kind == "reserved-name")
    assert reserved == ["Domain-0", "migrating-db1", "web1--incoming"]


@pytest.mark.parametrize("hide", ["<!-- <a -->", "<?pi <x ?>", "<!-- <GANGLIA_XML> -->\n"])
def test_no_entity_is_ever_expanded_whatever_precedes_the_doctype(hide):
    xml = (f'{hide}<!DOCTYPE GANGLIA_XML [<!ENTITY x "EXPANDED">]>'
           '<GANGLIA_XML VERSION="3" SOURCE="gmond"><CLUSTER NAME="&x;" LOCALTIME="1">'
           '<HOST NAME="h&x;" IP="1" REPORTED="1" TN="1" TMAX="20"/></CLUSTER></GANGLIA_XML>')
    for recover in (False, True):
        with pytest.raises(DataError) as err:
            parse_ganglia(xml.encode(), "x", recover=recover)
        assert "entity" in str(err.value)


# ----------------------------------------------------------------------------- JSON documents

@pytest.fixture(scope="module")
def plan_doc():
    from vmtools.rules.constraints import Constraints
    from vmtools.planner.plan import Options, make_plan
    snap = Snapshot.from_dict(gen.snapshot_doc(random.Random(7)))
    return make_plan(snap, Constraints([]), Options(objective="consolidate",
                                                    time_limit=5)).to_dict()


def _read(cls, text):
    try:
        return cls.from_dict(loads(text, "fuzz.json"))
    except DataError:
        return None


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(rng=randoms)
def test_mutated_documents_are_read_or_refused_with_a_data_error(plan_doc, rng):
    from vmtools.rules.check import check_plan
    from vmtools.rules.constraints import parse_constraints
    from vmtools.state import plan_memory_from, state_from_document
    snap_doc = gen.snapshot_doc(rng)
    snap = _read(Snapshot, gen.mutate_json(rng, snap_doc))
    plan = _read(Plan, gen.mutate_json(rng, plan_doc))
    if plan is not None:
        try:
            check_plan(plan)
        except DataError:
            pass
    base = Snapshot.from_dict(snap_doc)
    for strict in (True, False):
        try:
            parse_constraints(loads(gen.mutate_json(rng, gen.constraints_doc(rng, snap_doc))
                                    if rng.random() < 0.5 else
                                    json.dumps(gen.constraints_doc(rng, snap_doc)), "c.json"),
                              base, strict=strict, skipped=[])
        except DataError:
            pass
    try:
        plan_memory_from(loads(gen.mutate_json(rng, gen.state_doc(rng)), "state.json"))
    except DataError:
        pass
    document = {"format": "vmtools.state", "version": "1.0", "plan": gen.state_doc(rng),
                "power": {"standby": {"node-9": {"cpu": 8, "mem_mib": 1024, "since": 1.0}}}}
    try:
        state_from_document(loads(gen.mutate_json(rng, document), "vmtools.state"))
    except DataError:
        pass
    del snap


@pytest.mark.parametrize("token, where", [
    ("1e400", "1:"), ("9" * 400, "hosts[0].cpu"), ("[" * 100000 + "]" * 100000, "nested"),
    ("-" + "9" * 5000, "digits")])
def test_documents_with_huge_numbers_or_deep_nesting_are_input_errors(token, where):
    doc = gen.snapshot_doc(random.Random(1))
    text = json.dumps(doc).replace('"cpu": 4.0', f'"cpu": {token}', 1).replace(
        '"cpu": 8.0', f'"cpu": {token}', 1).replace('"cpu": 16.0', f'"cpu": {token}', 1)
    with pytest.raises(DataError) as err:
        Snapshot.from_dict(loads(text, "s.json"))
    assert where in str(err.value)


# ----------------------------------------------------------------------------- names, addresses

@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=40) | st.builds(
    lambda a, z: f"{a}%{z}", st.sampled_from(["fe80::1", "::1", "2001:db8::2"]),
    st.text(max_size=12)))
def test_no_accepted_address_carries_a_shell_metacharacter(text):
    if valid_address(text):
        assert not set(text) & gen.SHELL_META, text
        assert text.isascii() and text.isprintable()


@given(randoms)
def test_host_map_addresses_are_strict(rng):
    try:
        entries = parse_hostmap(gen.hostmap_text(rng, ["node-1", "node-2", "node-3"]), "map")
    except DataError:
        return
    for e in entries.values():
        for addr in (e.address, e.migrate):
            if addr is not None:
                assert valid_address(addr) and not set(addr) & gen.SHELL_META


@given(randoms)
def test_xl_list_is_read_from_the_right(rng):
    text, rows = gen.xl_list(rng)
    domains = parse_list(text, problems=[])
    assert [tuple(d) for d in domains] == rows


@given(randoms)
def test_gmetric_never_publishes_an_implausible_figure(rng):
    text, _ = gen.xl_list(rng)
    domains = parse_list(text, problems=[])
    built = build_metrics(parse_info(gen.xl_info(rng)), Sample(10.0, domains), Sample(
        0.0, [d._replace(cpu_time=max(0.0, d.cpu_time - rng.uniform(0, 200))) for d in domains]),
        "xl-ssh")
    limits = {"uint16": (1, 2**16 - 1), "uint32": (0, 2**32 - 1)}
    for m in built.metrics:
        if m.type in limits:
            low, high = limits[m.type]
            assert m.value.isdigit() and low <= int(m.value) <= high, m
        elif m.type == "float":
            assert math.isfinite(float(m.value)) and float(m.value) >= 0, m


# ----------------------------------------------------------------------------- the planner

@settings(max_examples=int(os.environ.get("PLAN_EXAMPLES", "25")))
@given(randoms, st.sampled_from(["consolidate", "balance", "repair"]))
def test_every_objective_repairs_broken_rules_or_refuses_with_a_reason(rng, objective):
    """Random placements under random rules (many already broken where the guests are):
    a plan whose target keeps every rule and memory capacity, or a refusal (exit 1, 65 or
    75) -- never the planner's own safety check failing (exit 70)."""
    from vmtools.errors import InternalError, VmtoolsError
    from vmtools.rules.constraints import parse_constraints
    from vmtools.planner.instance import build_instance
    from vmtools.planner.plan import Options, make_plan
    doc = gen.snapshot_doc(rng, hosts=rng.randrange(2, 6), vms=rng.randrange(1, 12))
    for vm in doc["vms"]:
        if rng.random() < 0.3:
            vm["cpu"] = round(rng.uniform(0, 6), 2)                  # some hot hosts
    snap = Snapshot.from_dict(doc)
    try:
        cons = parse_constraints(gen.constraints_doc(rng, doc), snap, strict=False, skipped=[])
    except DataError:
        return                                                        # contradictory rules
    try:
        plan = make_plan(snap, cons, Options(objective=objective, time_limit=4,
                                             seed=rng.randrange(100)))
    except InternalError:
        raise
    except VmtoolsError as exc:
        assert exc.exit_code in (1, 65, 75) and str(exc)
        return
    inst = build_instance(snap, cons, cpu_limit=1.0)
    target = [inst.hosts.index(plan.placement.get(v, snap_host))
              for v, snap_host in ((v.name, v.host) for v in snap.vms)]
    index = {name: i for i, name in enumerate(inst.vms)}
    order = [index[v.name] for v in snap.vms]
    placement = [0] * inst.n_vms
    for i, h in zip(order, target):
        placement[i] = h
    for v, h in enumerate(placement):
        assert h in inst.allowed_set(v), f"{inst.vms[v]} ends on a host a rule forbids"
    mem = inst.used(placement)["mem"]
    assert all(mem[h] <= inst.cap["mem"][h] + 1e-6 for h in range(inst.n_hosts))
    for h in range(inst.n_hosts):
        assert placement.count(h) <= inst.count_cap[h]
    for group in inst.spread:
        assert len({placement[v] for v in group}) == len(group)
    for group in inst.gather:
        assert len({placement[v] for v in group}) == 1
