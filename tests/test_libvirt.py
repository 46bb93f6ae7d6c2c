"""The libvirt-ssh transport over a REAL OpenSSH sshd on 127.0.0.1 (one per simulated plain-Xen
host), with the lab's ``virsh`` stand-in on the lab user's PATH answering as virsh does.
Needs root and /usr/sbin/sshd."""

from __future__ import annotations

import json

import pytest

from tests import apply_lab
from tests.apply_lab import assert_consistent, fresh_env, ssh_args
from tests.conftest import run
from vmtools.lab import sshd
from vmtools.lab.handmade import plan_of, snapshot_of
from vmtools.model import dumps

pytestmark = [pytest.mark.sshd, pytest.mark.slow]
GUESTS = ["a", "b", "c"]

why = sshd.available()
if why:
    pytest.skip(why, allow_module_level=True)


@pytest.fixture(scope="module")
def virsh_lab():
    # the snapshot says xl-ssh (what vm-gmetric publishes); the host map names libvirt-ssh
    with apply_lab.ssh_lab("vmtools-libvirt-", {
            "n1": {"domains": {"a": {"mem_mib": 1024}, "b": {"mem_mib": 512}}},
            "n2": {"domains": {"c": {"mem_mib": 512}}},
            "n3": {}}, mib_per_s=2048, transport="libvirt-ssh") as lab:
        yield lab


@pytest.fixture
def env(virsh_lab, tmp_path):
    return fresh_env(virsh_lab, tmp_path)


def _apply(env, moves, *extra):
    plan = plan_of(snapshot_of(env["state"], "xl-ssh"), moves)
    path = env["dir"] / "plan.json"
    path.write_text(dumps(plan.to_dict()))
    return run("vm-apply", str(path), *ssh_args(env, *extra))


def test_virsh_migrate_p2p_over_ssh(env):
    proc = _apply(env, [("a", "n3"), ("c", "n1"), ("b", "n3", [1])], "--parallel", "2")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert [a["outcome"] for a in report["actions"]] == ["done"] * 3
    assert {a["transport"] for a in report["actions"]} == {"libvirt-ssh"}
    assert report["placement"] == {"a": "n3", "b": "n3", "c": "n1"}
    assert_consistent(env["state"], report, GUESTS)


def test_a_refused_virsh_migrate_is_a_failure_verified_on_the_source(env):
    with env["state"].transaction() as st:
        st["faults"] = {"refuse": {"a": "Not enough free memory"}}
    proc = _apply(env, [("a", "n3")])
    assert proc.returncode == 1
    [entry] = json.loads(proc.stdout)["actions"]
    assert entry["outcome"] == "failed" and entry["where"] == "n1"
    assert "virsh migrate exited 1: error: internal error: libxenlight failed to migrate: " \
           "Not enough free memory" in entry["error"]


def test_the_driver_reads_virsh_and_sees_an_arriving_guest_paused(env):
    from vmtools.drivers import make_driver
    from vmtools.drivers.base import Endpoint
    from vmtools.drivers.ssh import SshOptions
    lab = env["lab"]
    opts = SshOptions(user=lab.user, key=str(lab.client_key), known_hosts=[str(lab.known_hosts)])
    driver = make_driver(Endpoint("n1", "libvirt-ssh", "127.0.0.1", lab.port["n1"], "n1"), opts)
    try:
        assert driver.scheme() == "xen"
        assert driver.list_guests() == {"a", "b"}
        with env["state"].transaction() as st:
            st["hosts"]["n1"]["domains"]["c--incoming"] = {"domid": 99, "mem_mib": 512,
                                                           "vcpus": 1, "state": "--p---"}
        assert driver.list_guests() == {"a", "b", "c--incoming"}
        rc, out, _ = driver.run(["virsh", "list"], 10)
        assert rc == 0 and out.splitlines()[0].split() == ["Id", "Name", "State"]
        assert "Domain-0" in out
    finally:
        driver.close()


def test_the_orderly_shutdown_asks_virsh_whether_guests_run(env):
    from vmtools.drivers.poweroff import shutdown_host
    from vmtools.drivers.ssh import SshOptions
    from vmtools.errors import OperationFailed
    lab = env["lab"]
    opts = SshOptions(user=lab.user, key=str(lab.client_key), known_hosts=[str(lab.known_hosts)])
    with pytest.raises(OperationFailed, match="n1: not shut down: 2 guests still run here"):
        shutdown_host("n1", "127.0.0.1", lab.port["n1"], opts, toolstack="virsh")
    assert env["state"].read()["hosts"]["n1"].get("power", "on") == "on"
    shutdown_host("n3", "127.0.0.1", lab.port["n3"], opts, toolstack="virsh")
    assert env["state"].read()["hosts"]["n3"]["power"] == "off"


def test_kvm_hosts_get_a_qemu_ssh_uri(env):
    """The hypervisor comes from virsh uri: a KVM host migrates to qemu+ssh://DST/system."""
    with env["state"].transaction() as st:
        for h in ("n1", "n2", "n3"):
            st["hosts"][h]["libvirt"] = "qemu"
    proc = _apply(env, [("a", "n2")])
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["placement"]["a"] == "n2"
    from vmtools.drivers.libvirt import LibvirtDriver
    from vmtools.drivers.base import Endpoint
    from vmtools.drivers.ssh import SshOptions
    lab = env["lab"]
    driver = LibvirtDriver(Endpoint("n2", "libvirt-ssh", "127.0.0.1", lab.port["n2"], "n2"),
                           SshOptions(user=lab.user, key=str(lab.client_key),
                                      known_hosts=[str(lab.known_hosts)]))
    try:
        assert driver.scheme() == "qemu"
        rc, _, err = driver.run(["virsh", "migrate", "--live", "--p2p", "a",
                                 "xen+ssh://n3/system"], 10)
        assert rc == 1 and "runs no xen driver" in err
    finally:
        driver.close()


def _apply_file(env, plan_text: str, *extra):
    path = env["dir"] / "plan.json"
    path.write_text(plan_text)
    return run("vm-apply", str(path), *ssh_args(env, *extra))


def _plan(env, *args: str) -> str:
    snap = env["dir"] / "snap.json"
    snap.write_text(dumps(snapshot_of(env["state"], "libvirt-ssh").to_dict()))
    proc = run("vm-plan", str(snap), "--suspended", str(env["state_dir"] / "suspended.json"),
               *args)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def _virsh(env, host: str, *args: str) -> tuple[int, str, str]:
    from vmtools.drivers import make_driver
    from vmtools.drivers.base import Endpoint
    from vmtools.drivers.ssh import SshOptions
    lab = env["lab"]
    opts = SshOptions(user=lab.user, key=str(lab.client_key), known_hosts=[str(lab.known_hosts)])
    driver = make_driver(Endpoint(host, "libvirt-ssh", "127.0.0.1", lab.port[host], host), opts)
    try:
        return driver.run(["virsh", *args], 10)
    finally:
        driver.close()


def test_managedsave_then_start_and_a_checkpoint_through_virsh_over_ssh(env):
    """vm-plan --suspend | vm-apply: virsh managedsave on the guest's host (its memory freed,
    the domain defined and shut off with a managed save); vm-plan --resume | vm-apply: virsh
    start there; vm-plan --checkpoint: virsh snapshot-create-as, the guest running on. libvirt
    keeps the images: no image directory is looked at through any host."""
    before = env["state"].read()["hosts"]["n1"]
    proc = _apply_file(env, _plan(env, "--suspend", "a"))
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["summary"]["suspended"] == ["a"] and report["placement"] == {"a": None}
    assert report["actions"][0]["transport"] == "libvirt-ssh"
    after = env["state"].read()["hosts"]["n1"]
    assert "a" not in after["domains"] and after["libvirt_defined"]["a"]["managed_save"]
    assert len(after["domains"]) == len(before["domains"]) - 1
    rc, out, _ = _virsh(env, "n1", "dominfo", "a")
    assert rc == 0 and "State:          shut off" in out and "Managed save:   yes" in out
    rc, out, _ = _virsh(env, "n1", "list", "--all")
    assert any(line.split()[1:] == ["a", "shut", "off"] for line in out.splitlines()[2:]
               if line.strip())
    # resumed where libvirt keeps its managed save
    proc = _apply_file(env, _plan(env, "--resume", "a:n1"))
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["summary"]["resumed"] == ["a"] and report["placement"] == {"a": "n1"}
    spec = env["state"].read()["hosts"]["n1"]
    assert "a" in spec["domains"] and "a" not in spec.get("libvirt_defined", {})
    assert "image directory" not in proc.stderr
    assert json.loads((env["state_dir"] / "suspended.json").read_text())["guests"] == []
    # a checkpoint: a domain snapshot named after the image, the guest running on
    plan = json.loads(_plan(env, "--checkpoint", "b"))
    name = plan["actions"][0]["image"].rsplit("/", 1)[1]
    proc = _apply_file(env, json.dumps(plan))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["summary"]["checkpointed"] == ["b"]
    assert env["state"].read()["hosts"]["n1"]["libvirt_snapshots"]["b"] == [name]
    assert "b" in env["state"].read()["hosts"]["n1"]["domains"]


def test_a_resume_where_libvirt_has_no_managed_save_is_stale_and_touches_nothing(env):
    proc = _apply_file(env, _plan(env, "--suspend", "b"))
    assert proc.returncode == 0, proc.stderr
    # the managed save is on n1: vm-plan knows (the transport keeps it on that host) ...
    snap = env["dir"] / "resume-snap.json"
    snap.write_text(dumps(snapshot_of(env["state"], "libvirt-ssh").to_dict()))
    proc = run("vm-plan", str(snap), "--resume", "b:n3", "--suspended",
               str(env["state_dir"] / "suspended.json"))
    assert proc.returncode == 65 and proc.stdout == ""
    assert "b was suspended on n1, whose platform keeps the image there" in proc.stderr
    assert json.loads(_plan(env, "--resume", "b"))["actions"][0]["dst"] == "n1"
    # ... and a plan made elsewhere resuming b on n3 is refused before anything starts
    plan = json.loads(_plan(env, "--resume", "b"))
    plan["actions"][0]["dst"] = plan["placement"]["b"] = "n3"
    proc = _apply_file(env, json.dumps(plan))
    assert proc.returncode == 75, proc.stderr
    assert "b is not suspended (no saved image of it) on n3" in proc.stderr
    assert "b" not in env["state"].read()["hosts"]["n3"]["domains"]
    assert env["state"].read()["hosts"]["n1"]["libvirt_defined"]["b"]["managed_save"]


def test_virsh_start_of_a_defined_domain_and_no_memory(env):
    """create: virsh start of a domain libvirt defines (shut off, no managed save); a host
    without the memory answers as libvirt does, and nothing runs."""
    with env["state"].transaction() as st:
        st["hosts"]["n3"]["libvirt_defined"] = {"d": {"mem_mib": 512, "vcpus": 1},
                                                "huge": {"mem_mib": 10**6, "vcpus": 1}}
    rc, _, err = _virsh(env, "n3", "start", "huge")
    assert rc == 1 and "not enough memory" in err
    rc, out, _ = _virsh(env, "n3", "dominfo", "d")
    assert "Managed save:   no" in out and "State:          shut off" in out
    from vmtools.model import Action, Plan
    snap = snapshot_of(env["state"], "libvirt-ssh")
    plan = Plan(origin=snap, placement=dict({v.name: v.host for v in snap.vms}, d="n3"),
                actions=[Action(id=1, op="create", vm="d", src="", dst="n3", mem_mib=512,
                                config="/etc/libvirt/libxl/d.xml", vcpus=1, cpu=0.1)])
    proc = _apply_file(env, dumps(plan.to_dict()))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["summary"]["created"] == ["d"]
    assert env["state"].read()["hosts"]["n3"]["domains"]["d"]["state"] == "-b----"
