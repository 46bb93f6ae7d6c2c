"""The Ganglia XML parser and the interpretation rules on small hand-written documents."""

from __future__ import annotations

import io

import pytest

from vmtools.errors import DataError
from vmtools.ganglia.interpret import interpret
from vmtools.ganglia.xml import parse_ganglia

PROLOG = b'<?xml version="1.0" encoding="ISO-8859-1" standalone="yes"?>\n'


def metric(name, val, type_="string"):
    return (f'<METRIC NAME="{name}" VAL="{val}" TYPE="{type_}" UNITS="" TN="1" TMAX="60" '
            f'DMAX="0" SLOPE="both" SOURCE="gmond"/>\n')


def host(name, metrics="", tn=1, tmax=20, ip="10.0.0.1"):
    return (f'<HOST NAME="{name}" IP="{ip}" REPORTED="1000" TN="{tn}" TMAX="{tmax}" DMAX="0" '
            f'LOCATION="x" GMOND_STARTED="0" TAGS="">\n{metrics}</HOST>\n')


def hypervisor(name, vms, cpus=8, mem_kb=16 * 1024 * 1024, guests=None, **kw):
    m = (metric("container.mem_total", mem_kb, "uint32") + metric("container.cpu_num", cpus)
         + metric("container.vms", vms) + metric("container.driver.migration", "xen")
         + metric("container.type", "xen-3.3"))
    for g, (cpu, mem) in (guests or {}).items():
        m += metric(f"container.vm.{g}.cpu", cpu) + metric(f"container.vm.{g}.mem", mem)
    return host(name, m, **kw)


def doc(body: str, grid_time=1000) -> bytes:
    return PROLOG + (f'<GANGLIA_XML VERSION="3.7.2" SOURCE="gmetad">\n'
                     f'<GRID NAME="g" AUTHORITY="a" LOCALTIME="{grid_time}">\n{body}'
                     '</GRID>\n</GANGLIA_XML>\n').encode()


def cluster(name, hosts, localtime=1000):
    return (f'<CLUSTER NAME="{name}" LOCALTIME="{localtime}" OWNER="o" LATLONG="l" URL="u">\n'
            f'{hosts}</CLUSTER>\n')


def snap(data: bytes, **kw):
    recover = kw.pop("recover", False)
    return interpret([parse_ganglia(io.BytesIO(data), "t.xml", recover=recover)], **kw)


def test_nested_grids_and_several_clusters():
    inner = ('<GRID NAME="remote" AUTHORITY="b" LOCALTIME="990">\n'
             + cluster("c2", hypervisor("n2", "b", guests={"b": (10, 1048576)}), 985)
             + "</GRID>\n")
    s = snap(doc(cluster("c1", hypervisor("n1", "a", guests={"a": (50, 2097152)})) + inner))
    assert [(h.name, h.cluster) for h in s.hosts] == [("n1", "c1"), ("n2", "c2")]
    assert [(v.name, v.host, v.cpu, v.mem_mib) for v in s.vms] == [
        ("a", "n1", 0.5, 2048), ("b", "n2", 0.1, 1024)]
    assert s.problems == []


def test_stale_is_measured_against_the_outermost_grid():
    s = snap(doc(cluster("c1", hypervisor("n1", ""), localtime=800)), stale_after=120)
    assert [p.kind for p in s.problems] == ["stale-cluster"]
    assert snap(doc(cluster("c1", hypervisor("n1", ""), localtime=900))).problems == []


def test_offline_host_keeps_guests_as_unknown():
    s = snap(doc(cluster("c", hypervisor("n1", "a", tn=81, tmax=20,
                                         guests={"a": (5, 1048576)}))))
    assert s.hosts[0].state == "offline" and s.vms[0].state == "unknown"
    assert [p.kind for p in s.problems] == ["offline-host"]
    s = snap(doc(cluster("c", hypervisor("n1", "a", tn=80, tmax=20,
                                         guests={"a": (5, 1048576)}))))
    assert s.hosts[0].state == "online" and s.problems == []


def test_unsafe_host_name_never_reaches_the_snapshot():
    s = snap(doc(cluster("c", hypervisor("n1;rm -rf", "") + hypervisor("ok", "", ip="10.0.0.2"))))
    assert [h.name for h in s.hosts] == ["ok"]
    assert s.problems[0].kind == "unsafe-name" and s.problems[0].host is None


def test_same_host_from_two_sources_is_a_problem():
    data = doc(cluster("c", hypervisor("n1", "")))
    d1 = parse_ganglia(data, "gmetad://a:8651")
    d2 = parse_ganglia(data, "gmetad://b:8651")
    s = interpret([d1, d2])
    assert len(s.hosts) == 1
    assert [p.kind for p in s.problems] == ["duplicate-host"]
    assert "gmetad://b:8651" in s.problems[0].message


def test_host_net_capacity_only_from_the_extension_metric():
    plain = snap(doc(cluster("c", hypervisor("n1", ""))))
    assert plain.hosts[0].net_mbps is None
    m = hypervisor("n1", "").replace("</HOST>", metric("container.net_mbps", 10000) + "</HOST>")
    assert snap(doc(cluster("c", m))).hosts[0].net_mbps == 10000.0


@pytest.mark.parametrize("body, fragment", [
    (b"", "empty input"),
    (b"   \n", "empty input"),
    (PROLOG + b"<GANGLIA_XML><CLUSTER NAME='x'>", "malformed XML"),
    (PROLOG + b'<!DOCTYPE GANGLIA_XML SYSTEM "http://127.0.0.1:9/x.dtd">\n<GANGLIA_XML/>',
     "external DTD"),
])
def test_bad_documents(body, fragment):
    with pytest.raises(DataError) as info:
        parse_ganglia(body, "t.xml")
    assert fragment in str(info.value)


def test_recover_drops_a_cluster_whose_tag_is_broken():
    good = cluster("c1", hypervisor("n1", ""))
    bad = cluster("c<2", hypervisor("n2", "", ip="10.0.0.2"))
    s = snap(doc(good + bad), recover=True)
    assert [h.name for h in s.hosts] == ["n1"]
    assert [p.kind for p in s.problems] == ["dropped-cluster"]


def test_streaming_parser_reads_from_a_pipe_like_stream():
    class Trickle(io.RawIOBase):
        def __init__(self, data):
            self.data = data

        def readable(self):
            return True

        def read(self, n=-1):
            chunk, self.data = self.data[:7], self.data[7:]
            return chunk

    data = doc(cluster("c", "".join(hypervisor(f"n{i}", "", ip=f"10.0.0.{i}")
                                    for i in range(50))))
    dump = parse_ganglia(Trickle(data), "pipe")
    assert len(dump.clusters[0].hosts) == 50
