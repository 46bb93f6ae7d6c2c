"""The XAPI transport and source: the parsers and settings (fast), then the simulated pool
master driven by the official XenAPI client and by vm-snapshot/vm-apply through real pipes,
with bad answers from the master (slow: each starts a simulated pool on loopback)."""

from __future__ import annotations

import json
import re
import os
import subprocess
import time
from pathlib import Path

import pytest
import XenAPI

from tests.conftest import script
from vmtools.drivers.hostmap import parse_hostmap
from vmtools.drivers.xapi import (Credentials, XapiSettings, parse_fingerprint,
                                  read_credentials)
from vmtools.errors import DataError, UsageError
from vmtools.xapi.rrd import parse_rrd_updates

UUID = "ecd8d7a0-1be3-4d91-bd0e-4888c0e30ab3"
HOSTU = "a7478d33-6863-56f1-b3c9-f5bf1c7bf757"


def xport(rows: list[tuple[int, list[str]]], legend: list[str]) -> bytes:
    body = "".join(f"<row><t>{t}</t>" + "".join(f"<v>{v}</v>" for v in values) + "</row>"
                   for t, values in rows)
    entries = "".join(f"<entry>{e}</entry>" for e in legend)
    return (f"<xport><meta><start>0</start><step>5</step><end>0</end><rows>{len(rows)}</rows>"
            f"<columns>{len(legend)}</columns><legend>{entries}</legend></meta>"
            f"<data>{body}</data></xport>").encode()


# --------------------------------------------------------------------------- fast

def test_rrd_updates_means_per_column_within_the_window():
    legend = [f"AVERAGE:vm:{UUID}:cpu0", f"AVERAGE:vm:{UUID}:cpu1",
              f"AVERAGE:vm:{UUID}:vif_0_rx", f"AVERAGE:host:{HOSTU}:cpu_avg"]
    data = xport([(1010, ["0.5", "0.25", "1000", "0.1"]),
                  (1005, ["0.3", "NaN", "3000", "0.3"]),
                  (900, ["9", "9", "9", "9"])], legend)     # before the window: left out
    got = parse_rrd_updates(data, "node-1", since=1000)
    assert got[("vm", UUID)] == {"cpu0": pytest.approx(0.4), "cpu1": 0.25,
                                 "vif_0_rx": 2000.0}
    assert got[("host", HOSTU)] == {"cpu_avg": pytest.approx(0.2)}
    from vmtools.xapi.rrd import parse_rrd_export
    _, series = parse_rrd_export(data, "node-1", since=1000)
    assert series == {UUID: [(1010.0, 0.75)]}     # the row with a NaN vCPU is no sample


@pytest.mark.parametrize("data,message", [
    (b"<xport><meta>", "not well-formed"),
    (b'<!DOCTYPE x [<!ENTITY a "aaaa">]><xport/>', "DOCTYPE"),
    (b"<html>login</html>", "expected <xport>"),
    (xport([(1, ["1", "2"])], [f"AVERAGE:vm:{UUID}:cpu0"]), "2 values for 1 legend"),
    (xport([(1, ["lots"])], [f"AVERAGE:vm:{UUID}:cpu0"]), "'lots' of cpu0 is not a number"),
])
def test_rrd_updates_garbage_is_a_data_error_naming_the_host(data, message):
    with pytest.raises(DataError, match=message) as err:
        parse_rrd_updates(data, "node-2 /rrd_updates")
    assert err.value.where == "node-2 /rrd_updates"


def test_credentials_from_the_environment_or_a_private_file(tmp_path):
    env = {"VMTOOLS_XAPI_USER": "vmtools", "VMTOOLS_XAPI_PASSWORD": "s3cret"}
    creds = read_credentials(None, env)
    assert creds == Credentials("vmtools", "s3cret")
    assert "s3cret" not in repr(creds)
    f = tmp_path / "xapi.toml"
    f.write_text('username = "root"\npassword = "hunter2"\n')
    f.chmod(0o644)
    with pytest.raises(UsageError, match="mode 0644 lets others read or change it") as err:
        read_credentials(str(f), {})
    assert "hunter2" not in str(err.value)
    f.chmod(0o600)
    assert read_credentials(str(f), {}) == Credentials("root", "hunter2")
    f.write_text('username = "root"\npassword = hunter2\n')
    with pytest.raises(UsageError, match="not valid TOML") as err:
        read_credentials(str(f), {})
    assert "hunter2" not in str(err.value)


def test_settings_refuse_a_password_in_the_url_and_plain_http():
    with pytest.raises(UsageError, match="must not hold a user or password") as err:
        XapiSettings("https://root:pw@master")
    assert "pw@" not in str(err.value).split("password")[-1]
    with pytest.raises(UsageError, match="plain http would send the password in clear"):
        XapiSettings("http://master")
    assert XapiSettings("http://master", insecure=True).tls_note() == \
        "plain HTTP, NOT ENCRYPTED"


def test_fingerprints_as_openssl_prints_them():
    hexd = "ab" * 32
    assert parse_fingerprint(":".join(["AB"] * 32)) == hexd
    assert parse_fingerprint("sha256:" + hexd) == hexd
    with pytest.raises(UsageError, match="not a SHA-256 certificate fingerprint"):
        parse_fingerprint("ab:cd")


def test_hostmap_names_a_transport_and_the_xapi_power_method():
    hosts = parse_hostmap("name,manage,migrate,power,bmc,mac,transport\n"
                          "n1,10.0.0.1,10.1.0.1,none,,,libvirt-ssh\nn2,,n2,xapi\n", "h.csv")
    assert hosts["n1"].transport == "libvirt-ssh" and hosts["n2"].transport is None
    assert hosts["n2"].power == "xapi"
    with pytest.raises(DataError, match="transport 'ssh': expected one of") as err:
        parse_hostmap("n1,,,none,,,ssh\n", "h.csv")
    assert err.value.where == "h.csv:1"


# --------------------------------------------------------------------------- the pool

def _scenario(**xapi) -> dict:
    hosts = {f"node-{i}": {"cpus": 4, "mem_mib": 8192, "dom0_mib": 1024} for i in (1, 2, 3)}
    guests = {"web1": {"host": "node-1", "mem_mib": 1024, "vcpus": 1, "load": 0.2,
                       "net_mbps": 8.0},
              "web2": {"host": "node-2", "mem_mib": 1024, "vcpus": 2, "load": 0.5},
              "db1": {"host": "node-2", "mem_mib": 4096, "vcpus": 2, "load": 0.4},
              "app1": {"host": "node-3", "mem_mib": 2048, "vcpus": 1, "load": 0.1}}
    return {"name": "pool", "hosts": hosts, "guests": guests, "xapi": xapi}


@pytest.fixture
def pool(tmp_path):
    """A simulated pool master (in process) on 127.0.1.1-3 with the lab's state."""
    from vmtools.lab.cluster import ClusterState
    from vmtools.lab.scenario import state_from_scenario
    from vmtools.lab.xapi import XapiLab
    sc = _scenario(groups={"web": {"placement": "anti_affinity", "vms": ["web1", "web2"]},
                           "any": {"placement": "normal", "vms": ["db1", "app1"]}},
                   halted={"old1": {"mem_mib": 512, "power_state": "Halted"},
                           "nap1": {"mem_mib": 512, "power_state": "Suspended"}})
    state = state_from_scenario(sc)
    state["migration"] = {"mib_per_s": 4096.0, "min_seconds": 0.2}
    for name, host in state["hosts"].items():
        host.update(enabled=True, power_on_mode="" if name == "node-1" else "wake-on-lan")
    cs = ClusterState(tmp_path / "cluster.json")
    cs.write(state)
    lab = XapiLab(cs, dict(sc["xapi"], master="node-1"), tmp_path / "xapi",
                  boot_seconds=1.0).start()
    lab.state_path = cs
    deadline = time.monotonic() + 60         # two RRD samples (one a second, if not starved)
    while len(lab.pool.samples) < 2:
        assert time.monotonic() < deadline, "the pool's RRD sampler never sampled twice"
        time.sleep(0.1)
    yield lab
    lab.stop()


def _fault(lab, **faults):
    with lab.state.transaction() as st:
        st.setdefault("faults", {})["xapi"] = faults


def _session(lab):
    from vmtools.drivers.xapi_pool import XapiSettings, _Transport
    settings = XapiSettings(lab.url, ca_file=str(lab.ca))
    s = XenAPI.Session(lab.url + "/", transport=_Transport(settings, 10))
    s.xenapi.login_with_password("root", lab.password, "2.21", "tests")
    return s


@pytest.mark.slow
def test_the_official_client_sees_the_data_model(pool):
    x = _session(pool).xenapi
    hosts = x.host.get_all_records()
    assert sorted(h["name_label"] for h in hosts.values()) == ["node-1", "node-2", "node-3"]
    ref, h2 = next((r, h) for r, h in hosts.items() if h["name_label"] == "node-2")
    assert ref.startswith("OpaqueRef:") and h2["enabled"] is True
    assert len(h2["host_CPUs"]) == 4 and h2["power_on_mode"] == "wake-on-lan"
    m = x.host_metrics.get_record(h2["metrics"])
    assert m["live"] is True and m["memory_total"] == str(8192 * 1024 * 1024)   # int64: string
    vms = x.VM.get_all_records()
    controls = [v for v in vms.values() if v["is_control_domain"]]
    assert len(controls) == 3 and all(v["power_state"] == "Running" for v in controls)
    web2 = next(v for v in vms.values() if v["name_label"] == "web2")
    assert web2["resident_on"] == ref and web2["VCPUs_max"] == "2"
    assert next(v for v in vms.values() if v["name_label"] == "nap1")["resident_on"] == \
        "OpaqueRef:NULL"
    groups = x.VM_group.get_all_records()
    assert {g["placement"] for g in groups.values()} == {"anti_affinity", "normal"}
    with pytest.raises(XenAPI.Failure) as err:
        x.VM.get_record("OpaqueRef:nonexistent")
    assert err.value.details == ["HANDLE_INVALID", "VM", "OpaqueRef:nonexistent"]


@pytest.mark.slow
def test_async_pool_migrate_is_a_task_and_xapi_refuses_as_it_does(pool):
    x = _session(pool).xenapi
    host = {x.host.get_name_label(r): r for r in x.host.get_all()}
    db1 = x.VM.get_by_name_label("db1")[0]
    web1 = x.VM.get_by_name_label("web1")[0]
    net = next(p["network"] for p in x.PIF.get_all_records().values()
               if p["host"] == host["node-3"])
    dest = x.host.migrate_receive(host["node-3"], net, {})
    x.VM.assert_can_migrate(db1, dest, True, {}, {}, {})
    task = x.Async.VM.pool_migrate(db1, host["node-3"], {"live": "true"})
    assert task.startswith("OpaqueRef:") and x.task.get_status(task) == "pending"
    assert "pool_migrate" in x.VM.get_current_operations(db1).values()
    deadline = time.time() + 10
    while x.task.get_status(task) == "pending" and time.time() < deadline:
        time.sleep(0.1)
    assert x.task.get_status(task) == "success"
    assert x.VM.get_resident_on(db1) == host["node-3"]
    # node-3 now has 8 GiB - 1 GiB (dom0) - 2 GiB (app1) - 4 GiB (db1) = 1 GiB free
    web2 = x.VM.get_by_name_label("web2")[0]
    x.VM.pool_migrate(web1, host["node-3"], {"live": "true"})          # the sync call
    assert x.VM.get_resident_on(web1) == host["node-3"]
    with pytest.raises(XenAPI.Failure) as err:
        x.VM.assert_can_migrate(web2, dest, True, {}, {}, {})
    assert err.value.details == ["HOST_NOT_ENOUGH_FREE_MEMORY", str(1024 * 2**20), "0"]
    x.host.disable(host["node-1"])
    with pytest.raises(XenAPI.Failure) as err:
        x.VM.assert_can_migrate(web2, x.host.migrate_receive(host["node-1"], net, {}), True,
                                {}, {}, {})
    assert err.value.details == ["HOST_DISABLED", host["node-1"]]
    x.host.enable(host["node-1"])
    with pytest.raises(XenAPI.Failure) as err:
        x.VM.pool_migrate(x.VM.get_by_name_label("nap1")[0], host["node-1"], {})
    assert err.value.details[0] == "VM_BAD_POWER_STATE"
    assert err.value.details[2:] == ["running", "suspended"]
    with pytest.raises(XenAPI.Failure) as err:
        x.host.shutdown(host["node-2"])
    assert err.value.details == ["HOST_NOT_DISABLED"]
    x.host.disable(host["node-2"])
    with pytest.raises(XenAPI.Failure) as err:
        x.host.shutdown(host["node-2"])
    assert err.value.details[:3] == ["HOST_IN_USE", host["node-2"], "vm"]
    with pytest.raises(XenAPI.Failure) as err:
        x.host.power_on(host["node-1"])
    assert err.value.details == ["HOST_POWER_ON_MODE_DISABLED"]


@pytest.mark.slow
def test_a_wrong_password_and_a_member_are_refused_as_xapi_does(pool):
    from vmtools.drivers.xapi_pool import XapiSettings, _Transport
    settings = XapiSettings(pool.url, ca_file=str(pool.ca))
    s = XenAPI.Session(pool.url + "/", transport=_Transport(settings, 10))
    with pytest.raises(XenAPI.Failure) as err:
        s.xenapi.login_with_password("root", "wrong", "2.21", "tests")
    assert err.value.details[0] == "SESSION_AUTHENTICATION_FAILED"
    member = pool.url.replace("127.0.1.1", "127.0.1.2")
    s = XenAPI.Session(member + "/", transport=_Transport(XapiSettings(
        member, ca_file=str(pool.ca)), 10))
    with pytest.raises(XenAPI.Failure) as err:
        s.xenapi.login_with_password("root", pool.password, "2.21", "tests")
    assert err.value.details == ["HOST_IS_SLAVE", "127.0.1.1"]


def run(argv: list[str], env_extra: dict | None = None, timeout: float = 120,
        input: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VMTOOLS_")}
    env["XDG_CONFIG_HOME"] = "/nonexistent"
    env.update(env_extra or {})
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env,
                          input=input)


def snapshot(pool, *extra: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return run([script("vm-snapshot"), "--xapi", pool.url, "--xapi-ca", str(pool.ca),
                "--xapi-credentials", str(pool.credentials), "--xapi-window", "30", *extra],
               env_extra=env)


@pytest.mark.slow
def test_vm_snapshot_reads_the_pool(pool):
    _session(pool).xenapi.host.disable(_session(pool).xenapi.host.get_by_name_label("node-3")[0])
    proc = snapshot(pool, "-v")
    assert proc.returncode == 0, proc.stderr
    snap = json.loads(proc.stdout)
    assert snap["source"] == f"xapi {pool.url}" and snap["version"] == "1.2"
    hosts = {h["name"]: h for h in snap["hosts"]}
    assert hosts["node-2"] == {**hosts["node-2"], "state": "online", "cpu": 4.0,
                               "mem_mib": 8192 - 1024 - 64, "migration": "xapi",
                               "cluster": "lab-pool"}
    # the pool is the hosts' migration domain (its uuid: two pools may share a label)
    assert len({h["domain"] for h in snap["hosts"]}) == 1
    assert re.fullmatch(r"xapi-pool:[0-9a-f-]{36}", hosts["node-2"]["domain"])
    vms = {v["name"]: v for v in snap["vms"]}
    assert set(vms) == {"web1", "web2", "db1", "app1"}           # no control domain, no halted
    assert vms["web2"]["cpu"] == pytest.approx(0.5, abs=0.01)    # 2 vCPUs at 25 %
    assert vms["db1"]["mem_mib"] == 4096 and vms["web2"]["vcpus"] == 2
    assert vms["web1"]["net_mbps"] == pytest.approx(8.0, rel=0.01)
    assert snap["rules"] == [{"rule": "spread", "vms": ["web1", "web2"]},
                             {"rule": "maintenance", "hosts": ["node-3"]}]
    assert snap["problems"] == []
    web2 = snap["samples"]["cpu"]["web2"]         # each RRD row a CPU sample, oldest first
    assert len(web2) >= 1 and [t for t, _ in web2] == sorted(t for t, _ in web2)
    assert all(cpu == pytest.approx(0.5, abs=0.01) for _, cpu in web2)
    assert "2 guest(s) not running, not placed: nap1 (Suspended), old1 (Halted)" in proc.stderr
    # ... and reported as such in the snapshot, apart from the placed guests
    assert snap["stopped"] == [
        {"name": "nap1", "state": "suspended", "vcpus": 1, "mem_mib": 512},
        {"name": "old1", "state": "halted", "vcpus": 1, "mem_mib": 512}]
    # vm-plan obeys the pool's rules: node-3 is evacuated, web1 and web2 never meet
    plan = run([script("vm-plan"), "--objective", "consolidate"], input=proc.stdout)
    assert plan.returncode == 0, plan.stderr
    doc = json.loads(plan.stdout)
    assert doc["placement"]["app1"] != "node-3"
    assert doc["placement"]["web1"] != doc["placement"]["web2"]


@pytest.mark.slow
def test_bad_figures_unknown_refs_and_names_are_problems_not_crashes(pool):
    _fault(pool, override={
        "host_metrics": {"node-3": {"memory_total": "-5"}},
        "host": {"node-1": {"host_CPUs": "many"}},
        "VM": {"web2": {"resident_on": "OpaqueRef:nowhere"},
               "db1": {"VCPUs_max": str(10**30)}}})
    proc = snapshot(pool)
    assert proc.returncode == 0, proc.stderr
    snap = json.loads(proc.stdout)
    assert [h["name"] for h in snap["hosts"]] == ["node-2"] and snap["vms"] == []
    messages = " | ".join(p["message"] for p in snap["problems"])
    assert "host node-3: memory_total -5 is outside" in messages
    assert "host node-1: host_CPUs many is not a list" in messages
    assert "guest web2 is Running but resident_on OpaqueRef:nowhere is no host" in messages
    assert f"guest db1: VCPUs_max {10**30} is outside 1..65535" in messages
    # vm-plan does not act on hosts it cannot see: it refuses (65) or plans nothing (75)
    plan = run([script("vm-plan")], input=proc.stdout)
    assert plan.returncode in (65, 75), plan.stderr
    assert "node-2" in plan.stderr or "db1" in plan.stderr


@pytest.mark.slow
@pytest.mark.parametrize("faults,code,words", [
    ({"raw": {"VM.get_all_records": "garbage"}}, 65, "the answer is not a XAPI result"),
    ({"value": {"host.get_all_records": 7}}, 65, "expected a struct of records, got int"),
    ({"expire_before": 4e9}, 69, "the session keeps expiring"),
    ({"rrd": {"node-2": "<html>"}}, 0, None),
])
def test_a_master_that_answers_badly(pool, faults, code, words):
    _fault(pool, **faults)
    proc = snapshot(pool)
    assert proc.returncode == code, proc.stderr
    assert pool.password not in proc.stderr + proc.stdout
    if words:
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("vm-snapshot: error: "), proc.stderr
        assert words in lines[0] and "Traceback" not in proc.stderr
        assert proc.stdout == ""
    else:          # one host's RRDs are garbage: its guests are no-data problems
        kinds = {(p["kind"], p.get("host")) for p in json.loads(proc.stdout)["problems"]}
        assert ("no-data", "node-2") in kinds


@pytest.mark.slow
def test_an_expired_session_is_renewed(pool):
    from vmtools.drivers.xapi_pool import XapiPool, XapiSettings, records
    xp = XapiPool(XapiSettings(pool.url, ca_file=str(pool.ca),
                               credentials=str(pool.credentials)))
    assert len(records(xp, "host")) == 3
    _fault(pool, expire_before=time.time() + 0.01)
    time.sleep(0.05)
    _fault(pool)                 # sessions made from now on are valid again
    with pool.pool.lock:
        assert all(s["made"] < time.time() for s in pool.pool.sessions.values())
    _fault(pool, expire_before=time.time())
    assert len(records(xp, "host")) == 3       # SESSION_INVALID: the client logged in again
    xp.close()


@pytest.mark.slow
def test_tls_and_login_failures_are_one_line_without_the_secret(pool, tmp_path):
    # a pinned fingerprint that is not the pool's
    proc = run([script("vm-snapshot"), "--xapi", pool.url, "--xapi-fingerprint", "00" * 32,
                "--xapi-credentials", str(pool.credentials)])
    assert proc.returncode == 69
    assert "not a pinned one: refusing to send the credentials" in proc.stderr
    assert pool.fingerprint().upper()[:2] in proc.stderr.upper()
    # the right fingerprint
    proc = run([script("vm-snapshot"), "--xapi", pool.url, "--xapi-fingerprint",
                pool.fingerprint(), "--xapi-credentials", str(pool.credentials)])
    assert proc.returncode == 0, proc.stderr
    # the system CAs do not know the lab's CA
    proc = run([script("vm-snapshot"), "--xapi", pool.url,
                "--xapi-credentials", str(pool.credentials)])
    assert proc.returncode == 69 and "the certificate does not verify" in proc.stderr
    assert "--xapi-ca" in proc.stderr
    # insecure: works, and says so loudly
    proc = run([script("vm-snapshot"), "--xapi", pool.url, "--xapi-insecure",
                "--xapi-credentials", str(pool.credentials)])
    assert proc.returncode == 0 and "TLS NOT VERIFIED" in proc.stderr
    # a wrong password from the environment
    proc = run([script("vm-snapshot"), "--xapi", pool.url, "--xapi-ca", str(pool.ca)],
               env_extra={"VMTOOLS_XAPI_USER": "root", "VMTOOLS_XAPI_PASSWORD": "Wr0ngPass"})
    assert proc.returncode == 69 and "login refused" in proc.stderr
    assert "Wr0ngPass" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    # a credentials file others may read
    loose = tmp_path / "loose.toml"
    loose.write_text(Path(pool.credentials).read_text())
    loose.chmod(0o644)
    proc = run([script("vm-snapshot"), "--xapi", pool.url, "--xapi-ca", str(pool.ca),
                "--xapi-credentials", str(loose)])
    assert proc.returncode == 2 and "chmod 600" in proc.stderr
    assert pool.password not in proc.stderr


# --------------------------------------------------------------------------- vm-apply

def _repair_plan_of(pool, host: str) -> str:
    """``host`` disabled in XAPI: the snapshot's maintenance rule makes vm-plan evacuate it."""
    x = _session(pool).xenapi
    x.host.disable(x.host.get_by_name_label(host)[0])
    snap = snapshot(pool)
    assert snap.returncode == 0, snap.stderr
    plan = run([script("vm-plan"), "--objective", "repair"], input=snap.stdout)
    assert plan.returncode == 0, plan.stderr
    return plan.stdout


def _repair_plan(pool, tmp_path) -> str:
    """node-3 disabled in XAPI: the snapshot's maintenance rule makes vm-plan move app1."""
    plan = _repair_plan_of(pool, "node-3")
    actions = json.loads(plan)["actions"]
    assert [(a["vm"], a["src"]) for a in actions] == [("app1", "node-3")]
    return plan


def _apply(pool, tmp_path, plan: str, *extra: str) -> tuple[subprocess.CompletedProcess, dict]:
    proc = run([script("vm-apply"), "--xapi", pool.url, "--xapi-ca", str(pool.ca),
                "--xapi-credentials", str(pool.credentials), "--state-dir",
                str(tmp_path / "state"), *extra], input=plan)
    assert pool.password not in proc.stdout + proc.stderr
    return proc, (json.loads(proc.stdout) if proc.stdout.strip() else {})


def _resident(pool, vm: str) -> str:
    x = _session(pool).xenapi
    return x.host.get_name_label(x.VM.get_resident_on(x.VM.get_by_name_label(vm)[0]))


@pytest.mark.slow
def test_vm_apply_migrates_through_xapi_and_journals(pool, tmp_path):
    plan = _repair_plan(pool, tmp_path)
    proc, report = _apply(pool, tmp_path, plan)
    assert proc.returncode == 0, proc.stderr
    [entry] = report["actions"]
    assert entry["outcome"] == "done" and entry["transport"] == "xapi"
    assert _resident(pool, "app1") == entry["where"] != "node-3"
    assert "node-3: maintenance: host.disable" in proc.stderr
    journal = next((tmp_path / "state" / "journal").glob("*.jsonl"))
    events = [json.loads(line)["event"] for line in journal.read_text().splitlines()]
    assert events[0] == "begin" and "maintenance" in events and events[-1] == "finish"


@pytest.mark.slow
def test_a_task_that_never_ends_is_cancelled_on_timeout(pool, tmp_path):
    plan = _repair_plan(pool, tmp_path)
    _fault(pool, hang=["app1"])
    t0 = time.monotonic()
    proc, report = _apply(pool, tmp_path, plan, "--timeout", "2", "--verify-timeout", "5")
    assert proc.returncode == 1, proc.stderr
    [entry] = report["actions"]
    assert entry["outcome"] == "failed" and entry["where"] == "node-3"
    assert "no end within 2s: cancelled" in entry["error"]
    assert _resident(pool, "app1") == "node-3"
    with pool.pool.lock:
        assert [t["status"] for t in pool.pool.tasks.values()] == []     # destroyed
    assert time.monotonic() - t0 < 60


@pytest.mark.slow
def test_a_task_that_ignores_cancel_is_uncertain_and_the_hosts_are_asked(pool, tmp_path):
    plan = _repair_plan(pool, tmp_path)
    _fault(pool, hang=["app1"], uncancellable=["app1"])
    proc, report = _apply(pool, tmp_path, plan, "--timeout", "1", "--verify-timeout", "2",
                          "--connect-timeout", "2")
    assert proc.returncode == 1, proc.stderr
    [entry] = report["actions"]
    assert entry["outcome"] == "failed"
    assert "task.cancel asked, but the task still runs" in entry["error"]
    # XAPI shows app1 migrating, so vm-apply could not say where it is
    assert "in flight" in entry["error"] or entry["where"] is None, entry


@pytest.mark.slow
@pytest.mark.parametrize("faults,words", [
    ({"task_error": {"app1": ["VM_MIGRATE_FAILED", "x", "y", "z", "xenopsd error"]}},
     "failed: XAPI VM.pool_migrate: VM_MIGRATE_FAILED"),
    ({"override": {"host_metrics": {h: {"memory_free": "0"} for h in
                                    ("node-1", "node-2", "node-3")}}},
     "refused: XAPI VM.assert_can_migrate: HOST_NOT_ENOUGH_FREE_MEMORY"),
])
def test_xapi_error_codes_become_outcomes(pool, tmp_path, faults, words):
    plan = _repair_plan(pool, tmp_path)
    _fault(pool, **faults)
    proc, report = _apply(pool, tmp_path, plan, "--verify-timeout", "5")
    assert proc.returncode == 1, proc.stderr
    [entry] = report["actions"]
    assert entry["outcome"] == "failed" and entry["where"] == "node-3"
    assert words in entry["error"], entry["error"]


@pytest.mark.slow
def test_a_run_killed_mid_task_is_resumed_from_its_journal(pool, tmp_path):
    """vm-apply dies while XAPI's task runs; the task ends by itself; --resume asks XAPI where
    the guest is and records the action done without migrating it again."""
    import signal
    plan = _repair_plan(pool, tmp_path)
    _fault(pool, hang=["app1"])
    env = {k: v for k, v in os.environ.items() if not k.startswith("VMTOOLS_")}
    env["XDG_CONFIG_HOME"] = "/nonexistent"
    args = ["--xapi", pool.url, "--xapi-ca", str(pool.ca), "--xapi-credentials",
            str(pool.credentials), "--state-dir", str(tmp_path / "state")]
    proc = subprocess.Popen([script("vm-apply"), *args], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    proc.stdin.write(plan)
    proc.stdin.close()
    deadline = time.time() + 30
    journal = None
    while time.time() < deadline:
        found = list((tmp_path / "state" / "journal").glob("*.jsonl")) \
            if (tmp_path / "state" / "journal").exists() else []
        with pool.pool.lock:
            running = any(t["status"] == "pending" for t in pool.pool.tasks.values())
        if found and '"event": "start"' in found[0].read_text() and running:
            journal = found[0]            # the run has started XAPI's task
            break
        time.sleep(0.1)
    assert journal is not None, proc.stderr.read() if proc.poll() is not None else ""
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    _fault(pool)                                # XAPI's task goes on and ends
    deadline = time.time() + 15
    while _resident(pool, "app1") == "node-3" and time.time() < deadline:
        time.sleep(0.2)
    moved_to = _resident(pool, "app1")
    assert moved_to != "node-3"
    resumed = run([script("vm-apply"), *args, "--resume", str(journal)])
    assert resumed.returncode == 0, resumed.stderr
    [entry] = json.loads(resumed.stdout)["actions"]
    assert entry["outcome"] == "done" and entry["where"] == moved_to
    with pool.pool.lock:
        migrations = [t for t in pool.pool.tasks.values() if t["name"] == "Async.VM.pool_migrate"]
    assert len(migrations) <= 1                 # not migrated a second time


@pytest.mark.slow
def test_power_off_refused_by_xapi_leaves_the_host_as_it_was(pool):
    """XAPI refuses host.shutdown while a guest runs (HOST_IN_USE): the driver says so and
    enables the host again only if it was enabled before."""
    from vmtools.drivers.base import Endpoint
    from vmtools.drivers.xapi import XapiDriver, XapiPool, XapiSettings
    from vmtools.errors import OperationFailed
    xp = XapiPool(XapiSettings(pool.url, ca_file=str(pool.ca), credentials=str(pool.credentials)))
    x = _session(pool).xenapi
    node2 = x.host.get_by_name_label("node-2")[0]
    driver = XapiDriver(Endpoint("node-2", "xapi", "127.0.1.2", 443, "node-2"), xp)
    with pytest.raises(OperationFailed, match="not shut down: XAPI host.shutdown: HOST_IN_USE"):
        driver.shutdown_host(5, poll=0.2)
    assert x.host.get_enabled(node2) is True
    x.host.disable(node2)                        # in maintenance: stays so
    with pytest.raises(OperationFailed, match="HOST_IN_USE"):
        driver.shutdown_host(5, poll=0.2)
    assert x.host.get_enabled(node2) is False
    master = XapiDriver(Endpoint("node-1", "xapi", "127.0.1.1", 443, "node-1"), xp)
    with pytest.raises(OperationFailed, match="power_on_mode is empty"):
        master.shutdown_host(5, poll=0.2)
    xp.close()


@pytest.mark.slow
def test_vm_apply_without_the_master_says_which_option(pool, tmp_path):
    plan = _repair_plan(pool, tmp_path)
    proc = run([script("vm-apply"), "--state-dir", str(tmp_path / "state")], input=plan)
    assert proc.returncode == 2 and proc.stdout == ""
    import re
    assert re.fullmatch(r"vm-apply: error: host node-\d is managed through XAPI: give the "
                        r"pool master's URL \(--xapi\)", proc.stderr.strip()), proc.stderr
    assert _resident(pool, "app1") == "node-3"


@pytest.mark.slow
def test_a_guest_whose_label_is_free_text_goes_by_its_uuid(pool, tmp_path):
    """XAPI's name_label is free text ("App #1 (prod)"): the snapshot names such a guest by
    its uuid, vm-plan moves it under that name, vm-apply finds it by uuid and migrates it."""
    x = _session(pool).xenapi
    app1 = x.VM.get_by_name_label("app1")[0]
    uuid = x.VM.get_uuid(app1)
    _fault(pool, override={"VM": {"app1": {"name_label": "App #1 (prod)"}}})
    plan = _repair_plan_of(pool, "node-3")
    assert [(a["vm"], a["src"]) for a in json.loads(plan)["actions"]] == [(uuid, "node-3")]
    proc, report = _apply(pool, tmp_path, plan)
    assert proc.returncode == 0, proc.stderr
    [entry] = report["actions"]
    assert entry["outcome"] == "done"
    assert x.host.get_name_label(x.VM.get_resident_on(app1)) == entry["where"] != "node-3"


@pytest.mark.parametrize("xapi,where", [
    ({"master": "zz"}, "xapi.master"),
    ({"groups": {"w": {"placement": "anti_affinity", "vms": ["nope"]}}}, "xapi.groups.w.vms[0]"),
    ({"groups": {"w": {"placement": "spread", "vms": []}}}, "xapi.groups.w.placement"),
    ({"halted": {"web1": {}}}, "xapi.halted.web1"),
    ({"halted": {"old": {"power_state": "Running"}}}, "xapi.halted.old.power_state"),
])
def test_a_scenarios_xapi_block_is_checked_before_the_lab_starts(xapi, where):
    from vmtools.lab.scenario import check_scenario
    with pytest.raises(DataError) as err:
        check_scenario(dict(_scenario(), xapi=xapi))
    assert err.value.where == where


def test_a_master_that_is_not_there_is_69_in_one_line():
    proc = run([script("vm-snapshot"), "--xapi", "https://127.0.0.1:1", "--timeout", "3"],
               env_extra={"VMTOOLS_XAPI_USER": "root", "VMTOOLS_XAPI_PASSWORD": "S3cretPw"})
    assert proc.returncode == 69 and proc.stdout == ""
    assert proc.stderr.strip() == ("vm-snapshot: error: XAPI at https://127.0.0.1:1: "
                                   "connection refused (is it the pool master, and is xapi "
                                   "running?)")


@pytest.mark.slow
def test_a_member_given_as_master_names_the_master(pool):
    member = pool.url.replace("127.0.1.1", "127.0.1.2")
    proc = run([script("vm-snapshot"), "--xapi", member, "--xapi-ca", str(pool.ca),
                "--xapi-credentials", str(pool.credentials)])
    assert proc.returncode == 69
    assert "is not the pool master (the master is 127.0.1.1): give the master's URL" in \
        proc.stderr and pool.password not in proc.stderr


@pytest.mark.slow
def test_a_stopped_guest_with_bad_figures_is_a_problem_not_a_crash(pool):
    """A Halted VM whose memory is negative, a Suspended one labelled with shell characters:
    problems naming them (one left out, one under its uuid), the rest of the snapshot read,
    and vm-plan plans it."""
    _fault(pool, override={"VM": {"old1": {"memory_static_max": "-5"},
                                  "nap1": {"name_label": "nap; rm -rf /"}}})
    proc = snapshot(pool)
    assert proc.returncode == 0, proc.stderr
    snap = json.loads(proc.stdout)
    names = [e["name"] for e in snap["stopped"]]
    assert "old1" not in names and len(names) == 1 and names[0] != "nap; rm -rf /"
    assert any(p["kind"] == "bad-value" and "old1" in p["message"] and
               "memory_static_max" in p["message"] for p in snap["problems"])
    plan = run([script("vm-plan")], input=proc.stdout)
    assert plan.returncode == 0, plan.stderr
