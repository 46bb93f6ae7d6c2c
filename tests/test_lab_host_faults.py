"""The lab under host faults: a host that goes down mid-migration, and one host's xend stopped
alone. As on Xen, a host that goes down loses its domains (the paused ``--incoming`` ones
included), and the receiver of a failed transfer discards its ``--incoming`` domain."""

from __future__ import annotations

import socket
import threading
import time
import xmlrpc.client

import pytest

from vmtools.lab import power
from vmtools.lab.handmade import make_cluster, start_xends
from vmtools.lab.migrate import MigrationError, migrate_domain
from vmtools.lab.run import Lab

# 1 GiB takes 1 s; the transfers broken below are held (the lab's ``hold`` fault) until then
MIB_PER_S = 1024.0


def two_hosts(tmp_path):
    return make_cluster(tmp_path, {"n1": {"domains": {"a": {"mem_mib": 1024}}}, "n2": {}},
                        mib_per_s=MIB_PER_S)


def in_flight(state) -> dict[str, list[str]]:
    return {h: [d for d in spec["domains"] if d.endswith("--incoming")]
            for h, spec in state.read()["hosts"].items()}


def migrate_in_background(state, src="n1", vm="a", dst="n2", migrate=None):
    """Start a migration in a thread; returns (thread, outcome list) once the receiver holds
    the ``--incoming`` domain. The transfer is held in flight (however long the test takes
    to break it) until the test breaks it or takes ``vm`` off ``faults.hold``."""
    outcome: list = []
    with state.transaction() as st:
        st.setdefault("faults", {})["hold"] = [vm]

    def run() -> None:
        try:
            (migrate or (lambda: migrate_domain(state, src, vm, dst)))()
            outcome.append("done")
        except (MigrationError, xmlrpc.client.Fault) as exc:
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not in_flight(state)[dst] and thread.is_alive():
        assert time.monotonic() < deadline, "the migration never started"
        time.sleep(0.02)
    assert in_flight(state)[dst] == [vm + "--incoming"], outcome
    return thread, outcome


def lab_on(tmp_path, state) -> Lab:
    """A Lab object (nothing started) over ``state``, for its state-changing methods."""
    lab = Lab({"hosts": {}}, workdir=tmp_path / "lab")
    lab.state = state
    return lab


def test_a_held_transfer_outlasts_its_time_and_ends_when_let_go(tmp_path):
    state = two_hosts(tmp_path)
    thread, outcome = migrate_in_background(state)
    thread.join(timeout=1.5)                 # past its 1 s: still in flight, the guest on n1
    assert thread.is_alive() and not outcome
    assert in_flight(state)["n2"] == ["a--incoming"]
    assert "a" in state.read()["hosts"]["n1"]["domains"]
    with state.transaction() as st:
        st["faults"]["hold"] = []
    thread.join(timeout=30)
    assert outcome == ["done"]
    st = state.read()
    assert list(st["hosts"]["n2"]["domains"]) == ["a"] and st["hosts"]["n1"]["domains"] == {}


def test_source_going_down_mid_migration_leaves_no_incoming_domain(tmp_path):
    state = two_hosts(tmp_path)
    thread, outcome = migrate_in_background(state)
    lab_on(tmp_path, state).set_host_up("n1", False)
    thread.join(timeout=10)
    assert isinstance(outcome[0], MigrationError), outcome
    st = state.read()
    assert st["hosts"]["n2"]["domains"] == {}, "the receiver kept the --incoming domain"
    assert st["hosts"]["n1"]["domains"] == {}, "a crashed host kept its guests"


def test_destination_going_down_mid_migration_loses_the_incoming_domain(tmp_path):
    state = two_hosts(tmp_path)
    thread, outcome = migrate_in_background(state)
    lab = lab_on(tmp_path, state)
    lab.set_host_up("n2", False)
    thread.join(timeout=10)
    assert isinstance(outcome[0], MigrationError) and "reset" in outcome[0].message
    lab.set_host_up("n2", True)          # back up, and empty: the guest stayed on n1
    st = state.read()
    assert st["hosts"]["n2"]["domains"] == {}
    assert list(st["hosts"]["n1"]["domains"]) == ["a"]


def test_destination_switched_off_mid_migration_comes_back_empty(tmp_path):
    state = two_hosts(tmp_path)
    thread, outcome = migrate_in_background(state)
    with state.transaction() as st:
        power.switch_off(st, "n2")
    thread.join(timeout=10)
    assert isinstance(outcome[0], MigrationError), outcome
    with state.transaction() as st:
        power.switch_on(st, "n2", now=0)
        power.booted(st, "n2", boot_seconds=0)
    st = state.read()
    assert st["hosts"]["n2"]["up"] and st["hosts"]["n2"]["domains"] == {}
    assert list(st["hosts"]["n1"]["domains"]) == ["a"]


def test_sending_xend_stopped_mid_migration_fails_it_and_the_guest_stays(tmp_path):
    state = two_hosts(tmp_path)
    xends = start_xends(state)
    try:
        proxy = xmlrpc.client.ServerProxy(f"http://127.0.0.1:{xends['n1'].xmlrpc_port}/")
        thread, outcome = migrate_in_background(
            state, migrate=lambda: proxy.xend.domain.migrate("a", "n2", True, 0, -1, 0, 0))
        xends["n1"].stop()
        thread.join(timeout=10)
        assert outcome and outcome[0] != "done", outcome
        assert in_flight(state) == {"n1": [], "n2": []}
        assert list(state.read()["hosts"]["n1"]["domains"]) == ["a"]
    finally:
        for x in xends.values():
            x.stop()


def answers(port: int) -> bool:
    try:
        return xmlrpc.client.ServerProxy(f"http://127.0.0.1:{port}/").xend.node.info()[0] \
            == ["system", "Linux"]
    except ConnectionRefusedError:
        return False


def refuses(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


@pytest.mark.slow
def test_one_xend_stops_and_restarts_alone(make_lab):
    lab = make_lab("steady", ssh=False)
    hosts = sorted(lab.xends)
    victim, others = hosts[0], hosts[1:]
    ports = {h: (lab.xends[h].http_port, lab.xends[h].xmlrpc_port) for h in hosts}
    guests = sorted(lab.state.read()["hosts"][victim]["domains"])

    lab.stop_xend(victim)
    assert refuses(ports[victim][0]) and refuses(ports[victim][1])
    for h in others:
        assert answers(ports[h][1]), h
    # the host itself runs on: its guests are still there
    assert sorted(lab.state.read()["hosts"][victim]["domains"]) == guests

    lab.start_xend(victim)
    assert (lab.xends[victim].http_port, lab.xends[victim].xmlrpc_port) == ports[victim]
    assert answers(ports[victim][1])
    lab.start_xend(victim)               # starting a running xend changes nothing
    assert answers(ports[victim][1])
