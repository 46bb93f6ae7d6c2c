"""The simulated Xen side and the pieces vm-apply parses: xm/xl migrate answers, xend's
XML-RPC faults and HTTP bodies, SXP, the host map."""

from __future__ import annotations

import http.client
import xmlrpc.client

import pytest

from tests.apply_lab import make_cluster, start_xends
from vmtools.drivers.xend_http import parse_sxp, xend_error
from vmtools.errors import DataError
from vmtools.drivers.hostmap import parse_hostmap
from vmtools.lab import migrate


@pytest.fixture
def state(tmp_path):
    return make_cluster(tmp_path, {"n1": {"domains": {"web1": {"mem_mib": 256}}},
                                   "n2": {"xen": "3.2", "ip": "10.9.0.2"}}, mib_per_s=8192)


def test_xm_and_xl_migrate_answer_like_the_real_ones(state):
    assert migrate.run("xm", ["migrate", "-l", "nope", "n2"], "n1", state) == \
        (3, "", "Error: Domain 'nope' does not exist.\n")
    rc, out, err = migrate.run("xl", ["migrate", "nope", "n2"], "n1", state)
    assert (rc, err) == (1, "nope is an invalid domain identifier (rc=-6)\n")
    rc, _, err = migrate.run("xm", ["migrate", "Domain-0", "n2"], "n1", state)
    assert rc == 1 and err.startswith("Error: Cannot migrate privileged domain 0\nUsage: xm migrate")
    rc, _, err = migrate.run("xm", ["migrate", "web1"], "n1", state)
    assert rc == 1 and "requires 2 arguments" in err
    # the migration address may be the host's IP (a dedicated link)
    rc, out, err = migrate.run("xl", ["migrate", "web1", "10.9.0.2"], "n1", state)
    assert rc == 0 and out == "" and err.endswith("Migration successful.\n")
    assert "web1" in state.read()["hosts"]["n2"]["domains"]
    assert migrate.run("xm", ["migrate", "--live", "web1", "n1"], "n2", state) == (0, "", "")


def test_xend_xmlrpc_faults_and_http_bodies(state):
    labs = start_xends(state)
    try:
        rpc = xmlrpc.client.ServerProxy(f"http://127.0.0.1:{labs['n1'].xmlrpc_port}/RPC2",
                                        allow_none=True)
        assert "xend.domain.migrate" in rpc.system.listMethods()
        assert rpc.xend.domains(0) == ["Domain-0", "web1"]
        for call, code, text in [(lambda: rpc.xend.domain("zz"), 3, "zz"),
                                 (lambda: rpc.xend.domain.migrate("Domain-0", "n2", True), 2,
                                  "Cannot migrate privileged domain 0"),
                                 (lambda: rpc.xend.nosuch(), 1,
                                  'method "xend.nosuch" is not supported')]:
            with pytest.raises(xmlrpc.client.Fault) as info:
                call()
            assert (info.value.faultCode, info.value.faultString) == (code, text)
        assert rpc.xend.domain.migrate("web1", "n2", True) is None      # <nil/>: done
        # xen 3.2's HTTP server wants resource and port: a missing field is a 200 xend.err
        conn = http.client.HTTPConnection("127.0.0.1", labs["n2"].http_port)
        conn.request("POST", "/xend/domain/web1", "op=migrate&destination=n1&live=1",
                     {"Content-Type": "application/x-www-form-urlencoded"})
        resp = conn.getresponse()
        body = resp.read().decode()
        assert resp.status == 200 and xend_error(body) == "Missing parameter: resource"
        conn = http.client.HTTPConnection("127.0.0.1", labs["n2"].http_port)
        conn.request("GET", "/xend/domain/zz")
        assert conn.getresponse().status == 404
        conn = http.client.HTTPConnection("127.0.0.1", labs["n2"].http_port)
        conn.request("GET", "/xend/domain/")
        assert parse_sxp(conn.getresponse().read().decode()) == ["Domain-0", "web1"]
    finally:
        for lab in labs.values():
            lab.stop()


def test_sxp_parser():
    assert parse_sxp("(domain (name 'a b') (memory 512))") == \
        ["domain", ["name", "a b"], ["memory", "512"]]
    assert xend_error("(xend.err 'Domain is not running')") == "Domain is not running"
    assert xend_error("(ok)") is None
    with pytest.raises(ValueError):
        parse_sxp("(a (b)")


def test_host_map():
    hosts = parse_hostmap("name,manage,migrate\n# comment\n\nn1,10.0.0.1:8000,10.1.0.1\n"
                          "n2\nn3,[fe80::1]:2222,\n", "h.csv")
    assert (hosts["n1"].address, hosts["n1"].port, hosts["n1"].migrate) == \
        ("10.0.0.1", 8000, "10.1.0.1")
    assert (hosts["n2"].address, hosts["n2"].port, hosts["n2"].migrate) == (None, None, None)
    assert (hosts["n3"].address, hosts["n3"].port) == ("fe80::1", 2222)
    for text, where in [("n1,a b\n", "h.csv:1"), ("n1\nn1\n", "h.csv:2"),
                        ("n1,h:0\n", "h.csv:1"), ("n1,h,x,y\n", "h.csv:1"),
                        ("n;1\n", "h.csv:1")]:
        with pytest.raises(DataError) as info:
            parse_hostmap(text, "h.csv")
        assert info.value.where == where
