"""Power mechanisms against real parts: magic packets on a loopback UDP socket (byte for
byte), OpenIPMI's ipmi_sim as a BMC driven by the real ipmitool, the host map's power
columns, the credentials file's checks."""

from __future__ import annotations

import logging
import os
import socket

import pytest

from vmtools.errors import DataError, OperationFailed, Unavailable, UsageError
from vmtools.drivers.hostmap import parse_hostmap
from vmtools.lab import bmc as lab_bmc
from vmtools.lab.cluster import ClusterState, new_state
from vmtools.power import ipmi, wol
from vmtools.power.boot import answers, wait_until

MAC = "00:16:3e:5a:01:02"


# --------------------------------------------------------------------------- Wake-on-LAN

def test_magic_packet_received_byte_for_byte_on_loopback():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rx:
        rx.bind(("127.0.0.1", 0))
        rx.settimeout(5)
        port = rx.getsockname()[1]
        wol.send_magic_packet("00-16-3E-5A-01-02", "127.0.0.1", port, count=2)
        got = [rx.recvfrom(4096)[0] for _ in range(2)]
    expected = bytes([0xFF] * 6) + bytes([0x00, 0x16, 0x3E, 0x5A, 0x01, 0x02]) * 16
    assert len(expected) == 102
    assert got == [expected, expected]


@pytest.mark.parametrize("bad", ["00:16:3e:5a:01", "00:16:3e:5a:01:0g", "0016.3e5a.0102",
                                 "00:16-3e:5a:01:02", "ff:ff:ff:ff:ff:ff",
                                 "01:00:5e:00:00:01", "", "00:16:3e:5a:01:02:03"])
def test_bad_mac_refused(bad):
    with pytest.raises(DataError):
        wol.parse_mac(bad)


def test_wol_unreachable_address_is_unavailable():
    with pytest.raises(Unavailable):
        wol.send_magic_packet(MAC, "no-such-host.invalid", 9)


def test_lab_wol_listener_switches_on_only_its_mac(tmp_path):
    state = ClusterState(tmp_path / "cluster.json")
    state.write(new_state({"n1": {"power": "off", "up": False},
                           "n2": {"power": "off", "up": False}}))
    listener = lab_bmc.WolListener(state.path, {"n1": MAC, "n2": "00:16:3e:5a:01:03"}).start()
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
            tx.sendto(b"\xff" * 6 + bytes.fromhex("00163e5a0102") * 15, ("127.0.0.1",
                                                                         listener.port))
        wol.send_magic_packet(MAC, "127.0.0.1", listener.port, count=1)
        assert wait_until(lambda: state.read()["hosts"]["n1"]["power"] == "booting", 5, 0.05)
    finally:
        listener.stop()
    hosts = state.read()["hosts"]
    assert hosts["n2"]["power"] == "off"
    assert listener.ignored == 1          # the short packet


# --------------------------------------------------------------------------- host map

def test_hostmap_power_columns():
    hosts = parse_hostmap("name,manage,migrate,power,bmc,mac\n"
                          "n1,10.0.0.1:8000,,ipmi,10.9.0.1\n"
                          "n2,,,WOL,,00-16-3E-00-00-02\n"
                          "n3,,,none\nn4\n")
    assert (hosts["n1"].power, hosts["n1"].bmc, hosts["n1"].bmc_port) == ("ipmi", "10.9.0.1", 623)
    assert (hosts["n2"].power, hosts["n2"].mac) == ("wol", "00:16:3e:00:00:02")
    assert hosts["n3"].power == hosts["n4"].power == "none"


@pytest.mark.parametrize("line,message", [
    ("n1,,,ipmi", "no bmc address"),
    ("n1,,,wol", "no mac address"),
    ("n1,,,sleep", "expected ipmi, wol, xapi or none"),
    ("n1,,,ipmi,10.0.0.1:0", "port must be 1-65535"),
    ("n1,,,ipmi,bad host!", "not a host name"),
    ("n1,,,wol,,ff:ff:ff:ff:ff:ff", "broadcast"),
    ("n1,,,wol,,00:16:3e", "six hexadecimal pairs"),
    ("n1,,,none,,,extra", "transport 'extra': expected one of"),
    ("n1,,,none,,,xapi,more", "got 8 fields"),
])
def test_hostmap_power_columns_validated(line, message):
    with pytest.raises(DataError, match=message) as err:
        parse_hostmap("# header\n" + line + "\n", "hosts.csv")
    assert err.value.where == "hosts.csv:2"


# --------------------------------------------------------------------------- credentials

def _write(path, text, mode=0o600):
    path.write_text(text)
    os.chmod(path, mode)
    return str(path)


def test_credentials_file_must_be_private(tmp_path):
    path = _write(tmp_path / "ipmi.toml", 'username = "a"\npassword = "b"\n', 0o640)
    with pytest.raises(UsageError, match="chmod 600"):
        ipmi.read_credentials(path)
    os.chmod(path, 0o600)
    store = ipmi.read_credentials(path)
    assert store.for_host("x").username == "a"
    assert "b" not in repr(store.for_host("x"))


def test_credentials_per_host_and_missing(tmp_path):
    path = _write(tmp_path / "ipmi.toml", '[hosts.n1]\nusername = "u1"\npassword = "p1"\n')
    store = ipmi.read_credentials(path)
    assert store.for_host("n1").password == "p1"
    with pytest.raises(UsageError, match="none for n2"):
        store.for_host("n2")
    with pytest.raises(UsageError, match="no such file"):
        ipmi.read_credentials(str(tmp_path / "absent.toml"))


def test_password_never_in_ipmitool_argv():
    bmc = ipmi.Bmc("n1", "127.0.0.1", 623, ipmi.Credentials("admin", "pa55word-xyz", 3))
    argv = bmc.argv("chassis", "power", "status")
    assert not any("pa55word" in a for a in argv)
    assert "-E" in argv and "-P" not in argv


# --------------------------------------------------------------------------- ipmi_sim

needs_ipmi = pytest.mark.skipif(lab_bmc.available() is not None,
                                reason=str(lab_bmc.available()))


@pytest.fixture
def bmc_lab(tmp_path):
    state = ClusterState(tmp_path / "cluster.json")
    state.write(new_state({"n1": {"power": "off", "up": False}, "n2": {}}))
    lab = lab_bmc.BmcLab(state.path, ["n1", "n2"], tmp_path / "bmc").start()
    yield state, lab
    lab.stop()


@pytest.mark.slow           # ipmi_sim is a daemon
@needs_ipmi
def test_ipmi_power_cycle_through_ipmi_sim(bmc_lab, caplog):
    state, lab = bmc_lab
    store = ipmi.read_credentials(str(lab.credentials))
    bmc = ipmi.Bmc("n1", "127.0.0.1", lab.port["n1"], store.for_host("n1"), timeout=20)
    caplog.set_level(logging.DEBUG, logger="vmtools.power")
    assert bmc.power_status() == "off"
    bmc.power_on()
    assert state.read()["hosts"]["n1"]["power"] == "booting"
    assert bmc.power_status() == "on"
    bmc.power_off()
    assert state.read()["hosts"]["n1"]["power"] == "off"
    assert bmc.power_status() == "off"
    other = ipmi.Bmc("n2", "127.0.0.1", lab.port["n2"], store.for_host("n2"))
    assert other.power_status() == "on"
    assert lab.password not in caplog.text


@pytest.mark.slow           # ipmi_sim is a daemon
@needs_ipmi
def test_ipmi_wrong_password_is_unavailable(bmc_lab):
    _, lab = bmc_lab
    bmc = ipmi.Bmc("n1", "127.0.0.1", lab.port["n1"], ipmi.Credentials("vmtools", "wrong", 3),
                   timeout=20)
    with pytest.raises(Unavailable) as err:
        bmc.power_status()
    assert "wrong" not in str(err.value)


@pytest.mark.slow           # ipmi_sim is a daemon
@needs_ipmi
def test_a_bmc_whose_port_was_taken_meanwhile_starts_on_another(tmp_path, monkeypatch):
    # A parallel test's daemon may bind the port between choosing it and ipmi_sim binding it
    # (a full CI run once failed so). The lab starts that ipmi_sim again on another port, and
    # only calls a BMC ready when ipmi_sim itself holds its port.
    state = ClusterState(tmp_path / "cluster.json")
    state.write(new_state({"n1": {}}))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        busy = taken.getsockname()[1]
        chosen = iter([busy])
        real = lab_bmc.free_udp_port
        monkeypatch.setattr(lab_bmc, "free_udp_port", lambda: next(chosen, None) or real())
        lab = lab_bmc.BmcLab(state.path, ["n1"], tmp_path / "bmc").start()
        try:
            assert lab.port["n1"] != busy
            assert "Address already in use" in (tmp_path / "bmc/n1/ipmi_sim.log").read_text()
            store = ipmi.read_credentials(str(lab.credentials))
            bmc = ipmi.Bmc("n1", "127.0.0.1", lab.port["n1"], store.for_host("n1"), timeout=20)
            assert bmc.power_status() == "on"
        finally:
            lab.stop()


# --------------------------------------------------------------------------- boot wait

def test_wait_until_transport_answers():
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        port = srv.getsockname()[1]
        assert not answers("127.0.0.1", port, 0.5)
        srv.listen()
        assert wait_until(lambda: answers("127.0.0.1", port, 0.5), 2, 0.05)
    t = [0.0]
    assert not wait_until(lambda: False, 3, 1, clock=lambda: t[0],
                          sleep=lambda s: t.__setitem__(0, t[0] + s))
    assert t[0] == 3


def test_ipmi_failure_messages_are_typed(tmp_path):
    fake = tmp_path / "ipmitool"
    fake.write_text("#!/bin/sh\necho 'Set Chassis Power Control to Up/On failed: "
                    "Invalid data field in request' >&2\nexit 1\n")
    fake.chmod(0o755)
    bmc = ipmi.Bmc("n1", "127.0.0.1", 623, ipmi.Credentials("a", "b"), ipmitool=str(fake))
    with pytest.raises(OperationFailed, match="Invalid data field"):
        bmc.power_on()
