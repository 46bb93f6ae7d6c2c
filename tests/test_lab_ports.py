"""The labs start their daemons on ports chosen free a moment before; a parallel test's daemon
may take such a port first (a full CI run once failed so). Each lab then starts its daemon
again on another port instead of failing, and calls it ready only when that daemon answers."""

from __future__ import annotations

import socket
import tempfile
from pathlib import Path

import pytest

from vmtools.lab import ganglia, prometheus, sshd
from vmtools.lab.handmade import make_cluster

pytestmark = pytest.mark.slow          # real daemons


def _taken_tcp_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    return s, s.getsockname()[1]


def _first(monkeypatch, module, port):
    """``module.free_port`` answers ``port`` once, then a really free one."""
    real = module.free_port
    chosen = iter([port])
    monkeypatch.setattr(module, "free_port", lambda *a, **k: next(chosen, None) or real(*a, **k))


@pytest.mark.skipif(bool(ganglia.binaries_missing()), reason="needs gmond and gmetad")
def test_gmond_whose_port_was_taken_starts_on_another(tmp_path, monkeypatch):
    sock, busy = _taken_tcp_port()
    with sock:
        _first(monkeypatch, ganglia, busy)
        lab = ganglia.GangliaLab(workdir=tmp_path).start()
        try:
            assert lab.gmond_port != busy
            assert "tcp_accept_channel" in (tmp_path / "gmond.log").read_text()
            assert b"<GANGLIA_XML" in ganglia.read_port(lab.xml_port)
        finally:
            lab.stop()


@pytest.mark.skipif(bool(prometheus.prometheus_missing()), reason="needs prometheus")
def test_prometheus_whose_port_was_taken_starts_on_another(tmp_path, monkeypatch):
    sock, busy = _taken_tcp_port()
    with sock:
        _first(monkeypatch, prometheus, busy)
        lab = prometheus.PrometheusLab(tmp_path).start()
        try:
            assert lab.port != busy
            assert "address already in use" in (tmp_path / "prometheus.log").read_text()
            assert lab.query("vector(1)")[0]["value"][1] == "1"
        finally:
            lab.stop()


@pytest.mark.skipif(bool(sshd.available()), reason="needs sshd and root")
def test_sshd_whose_port_was_taken_starts_on_another(monkeypatch):
    base = Path(tempfile.mkdtemp(prefix="vmtools-lab-ports-"))
    base.chmod(0o755)
    (base / "state").mkdir()
    state = make_cluster(base / "state", {"n1": {}})
    sock, busy = _taken_tcp_port()
    with sock:
        _first(monkeypatch, sshd, busy)
        lab = sshd.SshLab(state.path, ["n1"], directory=base / "ssh").start()
        try:
            assert lab.port["n1"] != busy
            assert f":{lab.port['n1']} " in lab.known_hosts.read_text()
            with socket.create_connection(("127.0.0.1", lab.port["n1"]), timeout=5) as c:
                assert c.recv(64).startswith(b"SSH-2.0-OpenSSH")
        finally:
            lab.stop()


@pytest.mark.skipif(bool(prometheus.prometheus_missing()), reason="needs prometheus")
def test_an_exporter_whose_port_was_taken_starts_on_another(monkeypatch):
    """A vm-gmetric exporter's port, chosen before the lab's other daemons start, can be taken
    by the time vm-gmetric listens (a full CI run once failed so: Prometheus never saw that
    host). The lab starts it again on another port and Prometheus scrapes it there."""
    from vmtools.lab import run as labrun
    sock, busy = _taken_tcp_port()
    with sock:
        _first(monkeypatch, labrun, busy)
        lab = labrun.Lab("steady", monitoring="prometheus", ssh=False).start()
        try:
            first = sorted(lab.exporter_ports)[0]
            assert lab.exporter_ports[first] != busy
            assert "cannot listen" in (lab.dir / "dom0" / first / "vm-gmetric.log").read_text()
            snap = lab.wait_for_truth(90)
            assert first in {h["name"] for h in snap["hosts"]}
        finally:
            lab.cleanup()


def test_ports_are_chosen_where_the_kernel_does_not_choose_for_itself():
    """An outgoing connection takes its local port from the ephemeral range; the labs choose
    outside it, and never the same port twice."""
    from vmtools.lab import ports
    low, high = (int(x) for x in open("/proc/sys/net/ipv4/ip_local_port_range").read().split())
    chosen = [ports.free_port() for _ in range(20)] + [ports.free_port(udp_too=True)
                                                       for _ in range(5)]
    chosen += [ports.free_udp_port() for _ in range(5)]
    assert len(set(chosen)) == len(chosen)
    assert not [p for p in chosen if low <= p <= high]
