"""The whole pipeline on the simulated XCP-ng / XenServer pool (vm-lab --platform xapi),
through real pipes: vm-snapshot --xapi | vm-plan --power | vm-apply --xapi, emptying a host and
switching it off through XAPI, then waking it through XAPI when a host goes into maintenance."""

from __future__ import annotations

import json
import os
import subprocess
import time

import pytest
import XenAPI

from tests.conftest import script
from vmtools.lab.run import Lab

SCENARIO = {
    "name": "pool3", "description": "three hosts of one pool, memory for two",
    "hosts": {f"node-{i}": {"cpus": 8, "mem_mib": 8192, "dom0_mib": 1024} for i in (1, 2, 3)},
    "guests": {"web1": {"host": "node-1", "mem_mib": 1024, "vcpus": 1, "load": 0.2},
               "web2": {"host": "node-2", "mem_mib": 1024, "vcpus": 1, "load": 0.2},
               "db1": {"host": "node-3", "mem_mib": 3072, "vcpus": 2, "load": 0.3},
               "app1": {"host": "node-2", "mem_mib": 2048, "vcpus": 1, "load": 0.1},
               "app2": {"host": "node-1", "mem_mib": 2048, "vcpus": 1, "load": 0.1}}}


def _xapi(lab):
    from vmtools.drivers.xapi_pool import XapiSettings, _Transport
    s = XenAPI.Session(lab.xapi.url + "/", transport=_Transport(
        XapiSettings(lab.xapi.url, ca_file=str(lab.xapi.ca)), 10))
    s.xenapi.login_with_password("root", lab.xapi.password, "2.21", "tests")
    return s.xenapi


def _live(x, host: str) -> bool:
    return x.host_metrics.get_live(x.host.get_metrics(x.host.get_by_name_label(host)[0]))


@pytest.mark.slow
def test_pipeline_empties_a_host_switches_it_off_and_wakes_it_through_xapi(tmp_path):
    lab = Lab(SCENARIO, workdir=tmp_path / "lab", platform="xapi", power=True,
              boot_seconds=2.0).start()
    try:
        lab.wait_for_truth(90)
        power = ["--power", "--standby-after", "0", "--reserve", "0", "--hosts",
                 str(lab.hosts_file)]
        _, plan, report, codes = lab.pipeline("consolidate", plan_extra=power)
        assert codes == {"vm-snapshot": 0, "vm-plan": 0, "vm-apply": 0}, lab.last_apply_stderr
        [off] = [a["host"] for a in plan["actions"] if a["op"] == "power-off"]
        assert off != "node-1"                       # the pool master is never switched off
        assert report["summary"]["power_off"] == [off]
        x = _xapi(lab)
        assert not _live(x, off)
        assert "host.disable, host.shutdown; XAPI reports it no longer live" in \
            lab.last_apply_stderr
        snap = lab.snapshot()
        assert {h["name"]: h["state"] for h in snap["hosts"]}[off] == "standby"
        assert snap["problems"] == []
        # the other non-master goes into XAPI's maintenance mode: its guests do not fit on
        # the master alone, so vm-plan wakes the standby host and vm-apply has XAPI do it
        other = ({"node-2", "node-3"} - {off}).pop()
        x.host.disable(x.host.get_by_name_label(other)[0])
        _, plan, report, codes = lab.pipeline("repair", plan_extra=power)
        assert codes["vm-apply"] == 0, lab.last_apply_stderr
        assert [a["host"] for a in plan["actions"] if a["op"] == "power-on"] == [off]
        assert f"{off}: host.power_on; live; host.enable" in lab.last_apply_stderr
        assert f"{other}: maintenance: host.disable" in lab.last_apply_stderr
        assert _live(x, off) and x.host.get_enabled(x.host.get_by_name_label(off)[0])
        assert other not in lab.placement().values()
        assert report["summary"]["failed"] == 0 and report["summary"]["not-run"] == 0
    finally:
        lab.stop()


@pytest.mark.slow
def test_vm_lab_platform_xapi_env_file_drives_the_pipeline(tmp_path):
    """What a user does: start the lab, source its env file, run the bare pipeline."""
    workdir = tmp_path / "pool"
    env = {k: v for k, v in os.environ.items() if not k.startswith("VMTOOLS_")}
    env["XDG_CONFIG_HOME"] = str(tmp_path / "no-config")
    lab = subprocess.Popen([script("vm-lab"), "--platform", "xapi", "--dir", str(workdir),
                            "--duration", "600"], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, env=env)
    try:
        deadline = time.time() + 180     # vm-lab itself waits up to 90 s for the truth
        while not (workdir / "env").exists():
            assert lab.poll() is None and time.time() < deadline, lab.stdout.read()
            time.sleep(0.3)
        text = (workdir / "env").read_text()
        assert "VMTOOLS_SNAPSHOT_XAPI=https://127.0.1.1:" in text
        assert "VMTOOLS_APPLY_XAPI_CREDENTIALS=" in text
        secret = (workdir / "xapi" / "xapi.toml").read_text().split('password = "')[1][:-2]
        assert secret not in text                     # the password stays in its 0600 file
        proc = subprocess.run(
            ["sh", "-c", f". {workdir}/env; PATH={script('vm-plan').rsplit('/', 1)[0]}:$PATH; "
             "vm-snapshot | vm-plan | vm-apply"], capture_output=True, text=True, env=env,
            timeout=300)
        assert proc.returncode == 0, proc.stderr
        report = json.loads(proc.stdout)
        assert report["format"] == "vmtools.report" and report["summary"]["failed"] == 0
        assert all(a["transport"] == "xapi" for a in report["actions"] if "vm" in a)
        assert secret not in proc.stdout + proc.stderr
    finally:
        lab.terminate()
        lab.wait(timeout=30)


def _vm(x, name: str) -> str:
    return x.VM.get_by_name_label(name)[0]


def _free_mib(x, host: str) -> int:
    return int(x.host_metrics.get_memory_free(x.host.get_metrics(
        x.host.get_by_name_label(host)[0]))) // 2**20


def _plan_and_apply(lab, *plan_args: str) -> tuple[dict, subprocess.CompletedProcess]:
    """vm-snapshot --xapi | vm-plan PLAN_ARGS | vm-apply --xapi, through real pipes."""
    snap = lab.run("vm-snapshot", *lab.snapshot_args())
    assert snap.returncode == 0, snap.stderr
    plan = lab.run("vm-plan", *plan_args, input=snap.stdout)
    assert plan.returncode == 0, plan.stderr
    return json.loads(plan.stdout), lab.run("vm-apply", *lab.apply_args(), input=plan.stdout)


@pytest.mark.slow
def test_suspend_and_resume_a_guest_through_xapi(tmp_path):
    """vm-plan --suspend | vm-apply has XAPI suspend the guest (Async.VM.suspend: its memory
    freed, the VM Suspended in the snapshot's stopped list and in vm-status), then vm-plan
    --resume | vm-apply resumes it (Async.VM.resume_on) on another host: no image directory
    is looked at through any host (XAPI keeps the image)."""
    lab = Lab(SCENARIO, workdir=tmp_path / "lab", platform="xapi").start()
    try:
        lab.wait_for_truth(90)
        x = _xapi(lab)
        before = _free_mib(x, "node-3")
        plan, applied = _plan_and_apply(lab, "--suspend", "db1")
        assert [a["op"] for a in plan["actions"]] == ["suspend"]
        assert applied.returncode == 0, applied.stderr
        report = json.loads(applied.stdout)
        assert report["summary"]["suspended"] == ["db1"] and report["placement"] == {"db1": None}
        assert report["actions"][0]["transport"] == "xapi"
        assert x.VM.get_power_state(_vm(x, "db1")) == "Suspended"
        assert _free_mib(x, "node-3") == before + 3072           # its memory is freed
        ledger = json.loads((lab.state_dir / "suspended.json").read_text())
        assert [g["name"] for g in ledger["guests"]] == ["db1"]
        # the snapshot reports it as suspended, apart: the planner never places it
        snap = lab.snapshot()
        assert "db1" not in {v["name"] for v in snap["vms"]}
        assert snap["version"] == "1.2"
        assert {"name": "db1", "state": "suspended", "vcpus": 2, "mem_mib": 3072} in \
            snap["stopped"]
        status = lab.run("vm-status", "--format", "json", "--suspended", "", "-",
                         input=json.dumps(snap))
        assert status.returncode == 0, status.stderr
        [entry] = json.loads(status.stdout)["suspended"]
        assert entry["name"] == "db1" and entry["seen"] == "platform"
        # a second suspend is XAPI's VM_BAD_POWER_STATE, on the wire
        with pytest.raises(XenAPI.Failure) as bad:
            x.VM.suspend(_vm(x, "db1"))
        assert bad.value.details[:1] == ["VM_BAD_POWER_STATE"]
        assert bad.value.details[2:] == ["running", "suspended"]
        # resume on node-1, through the plan's checks (no file is looked at)
        plan, applied = _plan_and_apply(lab, "--resume", "db1:node-1")
        assert [(a["op"], a["dst"]) for a in plan["actions"]] == [("resume", "node-1")]
        assert applied.returncode == 0, applied.stderr
        report = json.loads(applied.stdout)
        assert report["summary"]["resumed"] == ["db1"] and report["placement"] == {"db1": "node-1"}
        assert x.VM.get_power_state(_vm(x, "db1")) == "Running"
        assert x.VM.get_resident_on(_vm(x, "db1")) == x.host.get_by_name_label("node-1")[0]
        assert "image directory" not in applied.stderr
        assert json.loads((lab.state_dir / "suspended.json").read_text())["guests"] == []
        assert lab.placement()["db1"] == "node-1"
    finally:
        lab.stop()


@pytest.mark.slow
def test_xapi_lifecycle_calls_answer_as_xapi_does(tmp_path):
    """The simulated master's VM.suspend / resume_on / start_on / checkpoint on the wire:
    power states, memory, VM_BAD_POWER_STATE and HOST_NOT_ENOUGH_FREE_MEMORY."""
    scenario = dict(SCENARIO, xapi={"halted": {"spare1": {"mem_mib": 7000, "vcpus": 1}}})
    lab = Lab(scenario, workdir=tmp_path / "lab", platform="xapi").start()
    try:
        x = _xapi(lab)
        spare, node2 = _vm(x, "spare1"), x.host.get_by_name_label("node-2")[0]
        with pytest.raises(XenAPI.Failure) as bad:
            x.VM.resume_on(spare, node2, False, False)
        assert bad.value.details[:1] == ["VM_BAD_POWER_STATE"]
        assert bad.value.details[2:] == ["suspended", "halted"]
        with pytest.raises(XenAPI.Failure) as full:         # 7000 MiB: no host has that free
            x.VM.start_on(spare, node2, False, False)
        assert full.value.details[0] == "HOST_NOT_ENOUGH_FREE_MEMORY"
        assert int(full.value.details[1]) == 7000 * 2**20
        assert x.VM.get_power_state(spare) == "Halted"
        # an Async checkpoint: a snapshot VM, the guest running on
        task = x.Async.VM.checkpoint(_vm(x, "web1"), "web1-now.chk")
        deadline = time.time() + 20
        while x.task.get_status(task) == "pending" and time.time() < deadline:
            time.sleep(0.1)
        assert x.task.get_status(task) == "success"
        [snap] = x.VM.get_by_name_label("web1-now.chk")
        assert x.VM.get_is_a_snapshot(snap) and x.VM.get_snapshot_of(snap) == _vm(x, "web1")
        assert x.VM.get_power_state(_vm(x, "web1")) == "Running"
    finally:
        lab.stop()


@pytest.mark.slow
def test_xapi_start_of_a_halted_guest_and_a_suspend_cancelled_on_timeout(tmp_path):
    """vm-plan --add of a guest the pool defines Halted: vm-apply has XAPI start it
    (Async.VM.start_on, no configuration file looked at); a suspend whose task does not end
    within --timeout is cancelled (task.cancel) and fails, the guest still running."""
    scenario = dict(SCENARIO, xapi={"halted": {"spare1": {"mem_mib": 1024, "vcpus": 1}}})
    lab = Lab(scenario, workdir=tmp_path / "lab", platform="xapi").start()
    try:
        lab.wait_for_truth(90)
        guests = tmp_path / "guests.json"
        guests.write_text(json.dumps({"format": "vmtools.guests", "version": "1.0", "guests": [
            {"name": "spare1", "vcpus": 1, "mem_mib": 1024, "cpu": 0.1,
             "config": "/etc/xen/spare1.cfg"}]}))
        plan, applied = _plan_and_apply(lab, "--add", str(guests))
        [action] = plan["actions"]
        assert action["op"] == "create"
        assert applied.returncode == 0, applied.stderr
        assert json.loads(applied.stdout)["summary"]["created"] == ["spare1"]
        x = _xapi(lab)
        assert x.VM.get_power_state(_vm(x, "spare1")) == "Running"
        assert x.VM.get_resident_on(_vm(x, "spare1")) == \
            x.host.get_by_name_label(action["dst"])[0]
        # a suspend that hangs: cancelled after --timeout, refused, the guest runs on
        lab.set_fault("xapi", {"hang": ["web2"]})
        snap = lab.run("vm-snapshot", *lab.snapshot_args())
        planned = lab.run("vm-plan", "--suspend", "web2", input=snap.stdout)
        assert planned.returncode == 0, planned.stderr
        applied = lab.run("vm-apply", *lab.apply_args(), "--timeout", "1",
                          input=planned.stdout)
        assert applied.returncode == 1, applied.stderr
        [entry] = json.loads(applied.stdout)["actions"]
        assert entry["outcome"] == "failed"
        assert "no end within 1s: cancelled" in entry["error"]
        assert "web2 verified still running on node-2" in entry["error"]
        assert x.VM.get_power_state(_vm(x, "web2")) == "Running"
    finally:
        lab.stop()
