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
    from vmtools.drivers.xapi import XapiSettings, _Transport
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
        lab.wait_for_truth(30)
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
                            "--duration", "120"], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, env=env)
    try:
        deadline = time.time() + 60
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
