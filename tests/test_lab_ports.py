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
