"""The platform seams: sources (how a snapshot is read) and drivers (how an action reaches a
host). A new platform plugs in here; these tests hold the contract each side relies on."""

from __future__ import annotations

import json
import math

import pytest

from tests.conftest import FIXTURES, run
from tests.test_snapshot_golden import CASE_OPTIONS, CASES, HOSTILE
from vmtools.drivers import NotSupported, make_driver, registry
from vmtools.drivers.base import Driver, Endpoint
from vmtools.drivers.hostmap import parse_hostmap
from vmtools.errors import UsageError
from vmtools.ganglia.reading import GangliaSource
from vmtools.ganglia.sources import ExampleSource, FileSource
from vmtools.model import VM, Host, Snapshot
from vmtools.snapshot import SOURCE_KINDS, make_sources, take_snapshot
from vmtools.sources import Reading, Source, check_reading, merge_readings


class FixedSource:
    """A source of another platform, as a new module would write one: it hands back what
    it saw, bad values included, and leaves the checking to the shared rules."""

    def __init__(self, name: str, hosts: list[Host], vms: list[VM], **extra):
        self.name = name
        self.reading = Reading(self.name, hosts, vms, **extra)

    def read(self, deadline: float | None = None) -> Reading:
        return self.reading


# ---------------------------------------------------------------- sources

@pytest.mark.parametrize("case", [c for c in CASES if c not in HOSTILE])
def test_ganglia_through_the_source_seam_gives_the_golden_snapshot(case, monkeypatch):
    """Ganglia as one registered source, with the shared check and the merge, changes
    nothing: every golden pair still comes out as captured."""
    opts = CASE_OPTIONS.get(case, {})
    monkeypatch.chdir(FIXTURES / "ganglia")       # the name the problems give the file
    source = make_sources("ganglia", {"inputs": [f"{case}.xml"],
                                      "recover": opts.get("recover", False),
                                      "stale_after": opts.get("stale_after", 120.0)})
    doc = take_snapshot(source).to_dict()
    expected = json.loads((FIXTURES / "ganglia" / f"{case}.xml").with_suffix(".json")
                          .read_text())
    doc.pop("created")
    assert doc == expected


def test_the_source_kinds_are_a_table_and_an_unknown_kind_is_a_usage_error():
    assert "ganglia" in SOURCE_KINDS
    assert all(isinstance(s, Source) for s in make_sources("ganglia", {"example": "lab"}))
    with pytest.raises(UsageError, match="unknown kind of source 'nosuch'.*ganglia"):
        make_sources("nosuch", {})


def test_a_host_seen_by_two_sources_is_a_duplicate_and_the_first_wins():
    ganglia = GangliaSource([ExampleSource("lab")])
    seen = ganglia.read()
    first = seen.hosts[0]
    other = FixedSource("xapi://pool", [Host(first.name, cpu=2, mem_mib=1024),
                                        Host("pool-host", cpu=8, mem_mib=8192)],
                        [VM(seen.vms[0].name, "pool-host", cpu=0.5, mem_mib=512),
                         VM("pool-guest", "pool-host", cpu=0.5, mem_mib=512),
                         VM("ghost", first.name, cpu=0.1, mem_mib=64)])
    snap = take_snapshot([ganglia, other])
    hosts = {h.name: h for h in snap.hosts}
    assert hosts[first.name].cpu == first.cpu          # Ganglia's, read first
    assert "pool-host" in hosts and "pool-guest" in {v.name for v in snap.vms}
    assert "ghost" not in {v.name for v in snap.vms}   # on the host the other source had
    kinds = {(p.kind, p.host, p.vm) for p in snap.problems}
    assert ("duplicate-host", first.name, None) in kinds
    assert ("duplicate-guest", "pool-host", seen.vms[0].name) in kinds
    assert snap.source == "example:lab, xapi://pool"
    Snapshot.from_dict(json.loads(json.dumps(snap.to_dict())))   # vm-plan reads it


@pytest.mark.parametrize("host, guest, kind, says", [
    (Host("h1", cpu=math.nan, mem_mib=1024), None, "bad-value", "CPUs"),
    (Host("h1", cpu=8, mem_mib=2**40), None, "bad-value", "MiB of memory"),
    (Host("h1", cpu=1e9, mem_mib=1024), None, "bad-value", "CPUs"),
    (Host("h1", cpu=8, mem_mib=1024, state="exploded"), None, "bad-value", "state"),
    (Host("bad name;rm", cpu=8, mem_mib=1024), None, "unsafe-name", "named"),
    (Host("Domain-0", cpu=8, mem_mib=1024), None, "reserved-name", "Domain-0"),
    (Host("h1", cpu=8, mem_mib=1024), VM("g1", "h1", cpu=math.inf, mem_mib=64),
     "bad-value", "CPU use"),
    (Host("h1", cpu=8, mem_mib=1024), VM("g1", "h1", cpu=100.0, mem_mib=64),
     "bad-value", "CPU use"),
    (Host("h1", cpu=8, mem_mib=1024), VM("g1", "h1", cpu=1.0, mem_mib=-5),
     "bad-value", "MiB"),
    (Host("h1", cpu=8, mem_mib=1024), VM("g1", "elsewhere", cpu=1.0, mem_mib=64),
     "no-data", "does not report"),
    (Host("h1", cpu=8, mem_mib=1024), VM("web1--incoming", "h1", cpu=1.0, mem_mib=64),
     "reserved-name", "web1--incoming"),
])
def test_bad_figures_from_any_source_become_problems_and_stay_out(host, guest, kind, says):
    source = FixedSource("other", [host], [guest] if guest else [])
    snap = take_snapshot([source])
    assert [p.kind for p in snap.problems] == [kind] and says in snap.problems[0].message
    if guest is None:
        assert snap.hosts == []
    else:
        assert snap.vms == []
    Snapshot.from_dict(json.loads(json.dumps(snap.to_dict())))


def test_a_figure_that_is_only_odd_is_dropped_and_the_rest_kept():
    host = Host("h1", cpu=8, mem_mib=1024, net_mbps=-1.0, hypervisor="xen 4;x",
                migration="carrier-pigeon")
    guest = VM("g1", "h1", cpu=1.0, mem_mib=64, vcpus=0, net_mbps=math.nan, state="Weird!")
    reading = check_reading(Reading("other", [host], [guest],
                                    samples={"g1": [(1.0, 0.5), (2.0, math.nan)],
                                             "stranger": [(1.0, 1.0)]}),
                            registry.names())
    (h,), (g,) = reading.hosts, reading.vms
    assert (h.net_mbps, h.hypervisor, h.migration) == (None, "", "")
    assert (g.vcpus, g.net_mbps, g.state) == (1, None, "unknown")
    assert reading.samples == {"g1": [(1.0, 0.5)]}
    assert len(reading.problems) == 6 and {p.kind for p in reading.problems} == {"bad-value"}
    assert "carrier-pigeon" in " ".join(p.message for p in reading.problems)


def test_a_reading_the_rules_find_nothing_in_is_handed_back_unchanged():
    reading = GangliaSource([ExampleSource("hotspot")]).read()
    assert check_reading(reading, registry.names()) is reading
    assert merge_readings([reading], registry.names()).hosts == reading.hosts


# ---------------------------------------------------------------- drivers

def test_every_transport_in_the_table_builds_its_driver_without_touching_the_host():
    for name in registry.names():
        row = registry.transport(name)
        driver = make_driver(Endpoint("n1", name, "127.0.0.1", row.default_port, "n1"))
        assert isinstance(driver, Driver) and driver.endpoint.transport == name
        driver.close()
    assert registry.transport("xl-ssh").ssh and not registry.transport("xen").ssh


def test_an_unknown_transport_is_refused_naming_the_known_ones():
    with pytest.raises(UsageError, match="unknown migration transport 'pigeon'.*xl-ssh"):
        make_driver(Endpoint("n1", "pigeon", "127.0.0.1", 1, "n1"))


@pytest.mark.slow  # three commands through real pipes
def test_vm_apply_refuses_an_unknown_transport_naming_the_known_ones():
    plan = run("vm-plan", "-", input=run("vm-snapshot", "--example", "hotspot").stdout).stdout
    proc = run("vm-apply", "--driver", "pigeon", "--dry-run", "--offline", "-", input=plan)
    assert proc.returncode == 2 and "pigeon" in proc.stderr and "xend-xmlrpc" in proc.stderr


def test_an_operation_a_transport_lacks_says_so_and_names_the_transport():
    driver = make_driver(Endpoint("n1", "xen", "127.0.0.1", 8000, "n1"))
    # xend's HTTP server saves and restores guests (op=save, op=restore), nothing else optional
    assert type(driver).capabilities() == frozenset({"suspend_guest", "resume_guest"})
    with pytest.raises(NotSupported, match="n1: starting guest web1 is not supported by "
                                           "the xen transport"):
        driver.start_guest("web1", 10.0)
    with pytest.raises(NotSupported, match="shutting the host down"):
        driver.shutdown_host(10.0)

    class WithPower(Driver):
        def shutdown_host(self, timeout: float) -> str:
            return "off"
    assert WithPower.capabilities() == frozenset({"shutdown_host"})


def test_a_registered_transport_is_known_to_every_reader_at_once():
    row = registry.register(registry.Transport("test-xend-again", 8000, "xend_http"))
    try:
        assert registry.is_transport("test-xend-again")
        checked = check_reading(Reading("other", [Host("h1", cpu=4, mem_mib=512,
                                                       migration="test-xend-again")]),
                                registry.names())
        assert checked.hosts[0].migration == "test-xend-again" and not checked.problems
        with pytest.raises(ValueError, match="twice"):
            registry.register(row)
    finally:
        registry._TRANSPORTS.pop("test-xend-again")


def test_the_host_map_lives_beside_the_transports():
    from vmtools.power import wol
    hosts = parse_hostmap("n1,10.0.0.1:8000,,wol,,00-16-3E-00-00-01\n")
    assert hosts["n1"].mac == "00:16:3e:00:00:01" and hosts["n1"].port == 8000
    assert wol.parse_mac("00:16:3e:00:00:01") == bytes.fromhex("00163e000001")
