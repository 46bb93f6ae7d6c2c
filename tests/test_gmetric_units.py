"""vm-gmetric's pure parts: toolstack parsers (against the stand-in's real formats and
hand-written hostile output), the XDR codec, gmond.conf parsing and the metric builder."""

from __future__ import annotations


import pytest
from pathlib import Path

from vmtools.gmetric.build import Sample, build_metrics, split_guest_list
from vmtools.dom0.parse import Domain, parse_info, parse_list
from vmtools.errors import DataError, UsageError
from vmtools.ganglia import xdr
from vmtools.ganglia.send import Channel, channels_from_conf, parse_destination
from vmtools.lab import toolstack
from vmtools.lab.cluster import ClusterState, new_state

XL_LIST = """\
Name                                        ID   Mem VCPUs\tState\tTime(s)
Domain-0                                     0  2048     4     r-----    1234.5
web1                                         3  1024     2     -b----      12.3
a-name-that-is-much-longer-than-forty-characters-wide 17   512     1     --p---       0.0
db.eu-west.1                                 9  4096     8     r-----  123456.7 4f3c-uuid  -
"""

XM_LIST = """\
Name                                        ID   Mem VCPUs      State   Time(s)
Domain-0                                     0  1024     2     r-----     98.1
vm 1                                         4   256     1     -b----      0.4
stopped-managed                                    512     1                 0.0
"""


def test_parse_xl_list_reads_every_column_and_long_names():
    doms = parse_list(XL_LIST)
    assert doms[0] == Domain("Domain-0", 0, 2048, 4, "r-----", 1234.5)
    assert doms[1] == Domain("web1", 3, 1024, 2, "-b----", 12.3)
    assert doms[2].name == "a-name-that-is-much-longer-than-forty-characters-wide"
    assert (doms[2].domid, doms[2].state) == (17, "--p---")
    assert doms[3] == Domain("db.eu-west.1", 9, 4096, 8, "r-----", 123456.7)


def test_parse_xm_list_keeps_a_name_with_a_space():
    doms = parse_list(XM_LIST)
    assert [d.name for d in doms] == ["Domain-0", "vm 1"]
    assert doms[1].cpu_time == 0.4


def test_garbage_lines_are_skipped_and_reported_or_refused():
    text = XL_LIST + "libxl: warning: something odd\n\x1b[31mweb2 x y\n"
    problems: list[str] = []
    assert len(parse_list(text, problems=problems)) == 4
    assert len(problems) == 2 and "line 6" in problems[0] and "libxl: warning" in problems[0]
    assert "\\x1b" in problems[1]
    with pytest.raises(DataError) as err:
        parse_list(text, strict=True)
    assert err.value.where == "6:1"


@pytest.mark.parametrize("tool", ["xm", "xl"])
def test_parsers_read_the_stand_in_toolstack(tmp_path, tool):
    st = new_state({"node-1": {"cpus": 12, "mem_mib": 32768, "dom0_mib": 2048, "xen": "3.3",
                               "domains": {"web1": {"mem_mib": 1536, "vcpus": 3},
                                           "db1": {"mem_mib": 512}}}})
    state = ClusterState(tmp_path / "c.json")
    state.write(st)
    rc, out, err = toolstack.run(tool, ["list"], "node-1", state)
    assert rc == 0 and err == ""
    doms = {d.name: d for d in parse_list(out, strict=True)}
    assert set(doms) == {"Domain-0", "web1", "db1"}
    assert (doms["Domain-0"].mem_mib, doms["Domain-0"].domid) == (2048, 0)
    assert (doms["web1"].mem_mib, doms["web1"].vcpus) == (1536, 3)
    rc, out, _ = toolstack.run(tool, ["info"], "node-1", state)
    info = parse_info(out, strict=True)
    assert (info["nr_cpus"], info["total_memory"]) == ("12", "32768")
    assert (info["xen_major"], info["xen_minor"]) == ("3", "3")


def test_stand_in_errors_are_the_real_ones(tmp_path):
    state = ClusterState(tmp_path / "c.json")
    state.write(new_state({"node-1": {}}))
    assert toolstack.run("xm", ["list", "nosuch"], "node-1", state) == \
        (3, "", "Error: Domain 'nosuch' does not exist.\n")
    assert toolstack.run("xl", ["list", "nosuch"], "node-1", state) == \
        (1, "", "nosuch is an invalid domain identifier (rc=-6)\n")
    assert toolstack.run("xenstore-read", ["/local/domain/0/memory/target"], "node-1",
                         state) == (0, "1048576\n", "")
    assert toolstack.run("xenstore-read", ["/nope"], "node-1", state)[0] == 1


def test_sysfs_counters_follow_the_simulated_clock(tmp_path):
    st = new_state({"node-1": {"domains": {"web1": {"net_mbps": 80.0, "net_bytes": 1000}}}})
    net = Path(toolstack.materialise_sysfs(tmp_path, st, "node-1"))
    stats = net / "vif1.0" / "statistics"
    assert int((stats / "rx_bytes").read_text()) + int((stats / "tx_bytes").read_text()) == 1000
    st["hosts"]["node-1"]["domains"] = {}
    toolstack.materialise_sysfs(tmp_path, st, "node-1")
    assert not (net / "vif1.0").exists()


# ----------------------------------------------------------------------------- XDR

def test_xdr_round_trip_and_padding():
    meta = xdr.encode_metadata("10.0.0.1:n1", "container.vms", "string", "", "zero", 60, 0,
                               True, [("SPOOF_HOST", "10.0.0.1:n1"), ("GROUP", "xen")])
    assert len(meta) % 4 == 0
    p = xdr.decode(meta)
    assert (p.id, p.host, p.name, p.spoof) == (128, "10.0.0.1:n1", "container.vms", True)
    assert p.fields == {"type": "string", "units": "", "slope": "zero", "tmax": 60, "dmax": 0,
                        "extra": [("SPOOF_HOST", "10.0.0.1:n1"), ("GROUP", "xen")]}
    hb = xdr.decode(xdr.encode_value("h", "heartbeat", 1700000000, xdr.UINT, True, "%u"))
    assert (hb.id, hb.fields) == (132, {"fmt": "%u", "value": 1700000000})
    f = xdr.decode(xdr.encode_value("h", "x", 0.5, xdr.FLOAT))
    assert (f.id, f.fields["value"]) == (134, 0.5)


def test_xdr_refuses_oversized_packets_and_non_ascii():
    xdr.encode_value("h", "container.vms", "v" * 1400)
    with pytest.raises(xdr.PacketTooLarge):
        xdr.encode_value("h", "container.vms", "v" * 1420)
    with pytest.raises(DataError):
        xdr.encode_value("h", "container.vms", "caf\u00e9")
    with pytest.raises(DataError):
        xdr.decode(b"\0\0\0\x85\0\0\0\x09ab")


# ----------------------------------------------------------------------------- gmond.conf

def test_gmond_conf_channels_unicast_multicast_and_include(tmp_path):
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "conf.d" / "extra.conf").write_text(
        "udp_send_channel {\n  host = 192.0.2.7\n  port = 8650\n}\n")
    conf = tmp_path / "gmond.conf"
    conf.write_text("""/* the Debian default, trimmed */
globals { daemonize = yes  setuid = yes  user = "ganglia" }
cluster { name = "xen lab"  owner = "unspecified" }
udp_send_channel {
  mcast_join = 239.2.11.71   # multicast
  port = 8649
  ttl = 3
}
udp_recv_channel { mcast_join = 239.2.11.71  port = 8649  bind = 239.2.11.71 }
modules { module { name = "core_metrics" } }
include ("conf.d/*.conf")
""")
    assert channels_from_conf(str(conf)) == [
        Channel("239.2.11.71", 8649, 3, multicast=True), Channel("192.0.2.7", 8650)]


def test_gmond_conf_without_send_channel_is_bad_data(tmp_path):
    conf = tmp_path / "gmond.conf"
    conf.write_text("udp_recv_channel { port = 8649 }\n")
    with pytest.raises(DataError, match="no udp_send_channel"):
        channels_from_conf(str(conf))
    with pytest.raises(UsageError):
        channels_from_conf(str(tmp_path / "missing.conf"))
    assert parse_destination("[::1]:8650") == Channel("::1", 8650)
    with pytest.raises(UsageError):
        parse_destination("host:99999")


# ----------------------------------------------------------------------------- metrics

INFO = {"total_memory": "16384", "nr_cpus": "8", "xen_major": "4", "xen_minor": "17"}


def _dom(name, domid, cpu_time=0.0, mem=1024, vcpus=1):
    return Domain(name, domid, mem, vcpus, "-b----", cpu_time)


def test_metrics_from_two_samples():
    dom0 = Domain("Domain-0", 0, 2048, 8, "r-----", 50.0)
    before = Sample(100.0, [dom0, _dom("web1", 3, 10.0, 1024, 2)], {3: 1000})
    after = Sample(110.0, [dom0, _dom("web1", 3, 15.0, 1024, 2)], {3: 21000})
    built = build_metrics(INFO, after, before, "xl-ssh")
    got = {m.name: (m.value, m.type, m.units) for m in built.metrics}
    assert got["container.mem_total"] == (str((16384 - 2048) * 1024), "uint32", "KB")
    assert got["container.cpu_num"] == ("8", "uint16", "CPUs")
    assert got["container.vms"][0] == "web1"
    assert got["container.driver.migration"][0] == "xl-ssh"
    assert got["container.type"][0] == "xen-4.17"
    assert got["container.vm.web1.cpu"] == ("50.0", "float", "%")
    assert got["container.vm.web1.mem"] == ("1048576", "uint32", "KB")
    assert got["container.vm.web1.vcpus"] == ("2", "uint16", "CPUs")
    assert got["container.vm.web1.net"] == ("2000.0", "float", "bytes/s")
    assert built.skipped == [] and built.problems == []


def test_a_restarted_guest_gets_no_made_up_cpu_figure():
    before = Sample(0.0, [_dom("web1", 3, 500.0)], {})
    after = Sample(10.0, [_dom("web1", 7, 1.0)], {})   # new domid: migrated back in
    names = {m.name for m in build_metrics(INFO, after, before, "xen").metrics}
    assert "container.vm.web1.mem" in names and "container.vm.web1.cpu" not in names


def test_unsafe_and_migrating_names_are_left_out():
    doms = [Domain("Domain-0", 0, 1024, 1, "r-----", 1.0), _dom("ok-1", 1),
            _dom("bad<script>", 2), _dom("caf\u00e9", 3), _dom("a&b", 4), _dom('q"x', 5),
            _dom("vm 1", 6), _dom("web9--incoming", 7), _dom("ok-1", 8)]
    built = build_metrics(INFO, Sample(1.0, doms), None, "xen")
    assert [s["name"] for s in built.skipped] == ["bad<script>", "caf\u00e9", "a&b", 'q"x',
                                                  "vm 1", "ok-1"]
    vms = next(m for m in built.metrics if m.name == "container.vms")
    assert vms.value == "ok-1"
    for m in built.metrics:
        assert all(32 <= ord(c) < 127 for c in m.name + m.value)
        assert not set("<>&\"'") & set(m.name + m.value)


def test_a_huge_guest_list_is_split_below_850_characters():
    names = [f"guest-number-{i:04d}-of-the-cluster" for i in range(200)]
    parts = split_guest_list(names)
    assert len(parts) > 5 and all(len(p) <= 850 for p in parts)
    assert " ".join(parts).split() == names
    doms = [Domain("Domain-0", 0, 1024, 1, "r-----", 1.0)] + \
        [_dom(n, i + 1) for i, n in enumerate(names)]
    built = build_metrics(INFO, Sample(1.0, doms), None, "xen", min_parts=12)
    vms = [m for m in built.metrics if m.name.startswith("container.vms")]
    assert [m.name for m in vms][:3] == ["container.vms", "container.vms.1", "container.vms.2"]
    assert len(vms) == 12 and vms[-1].value == ""     # stale parts of a longer list are emptied
    assert " ".join(m.value for m in vms).split() == names
    for m in built.metrics:   # every packet fits gmond's buffer
        assert len(xdr.encode_value("10.0.0.1:node-1", m.name, m.value, spoof=True)) <= 1464


def test_unknown_info_still_publishes_the_guest_list():
    built = build_metrics(None, Sample(1.0, [_dom("web1", 1)]), None, "xen")
    names = {m.name for m in built.metrics}
    assert "container.vms" in names and "container.mem_total" not in names
    assert built.problems and "not published" in built.problems[0]


def test_a_slow_toolstack_call_does_not_skew_the_cpu_figure():
    """xl reads the guests' CPU times somewhere within its call; on a loaded Domain-0 the call
    can take a large part of a second. A guest using exactly 2 CPUs, read by one slow call
    (0.6 s, read in its middle) then one fast one 1 s later, is published at 2 CPUs, not at
    the 1.3 x error of timestamping when the call returned."""
    import time
    from vmtools.gmetric.publish import Publisher, Settings

    class SlowThenFast:
        tool = "xl"

        def __init__(self):
            self.calls = 0
            self.start = time.monotonic()

        def list(self, bad):
            took = 0.6 if self.calls == 0 else 0.0
            self.calls += 1
            time.sleep(took / 2)
            read = time.monotonic()
            time.sleep(took / 2)
            return [Domain("web1", 3, 1024, 2, "r-----", 2.0 * (read - self.start))]

        def vif_bytes(self):
            return {}

    pub = Publisher(Settings(toolstack="xl"), reader=SlowThenFast())
    first = pub.sample([])
    time.sleep(1.0)
    second = pub.sample([])
    used = (second.domains[0].cpu_time - first.domains[0].cpu_time) / (second.when - first.when)
    assert abs(used - 2.0) < 0.1, used
