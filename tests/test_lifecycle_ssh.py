"""The guest lifecycle through vm-apply over a REAL OpenSSH sshd on 127.0.0.1 (one per simulated
Domain-0), with the ``xm``/``xl`` stand-ins saving, restoring and creating guests as the real
ones do: image files written (and removed once a resumed guest runs), memory freed when a save
ends and claimed when a restore starts, failures injected. Needs root and /usr/sbin/sshd."""

from __future__ import annotations

import json
import os

import pytest

from tests import apply_lab
from tests.apply_lab import cluster_placement, fresh_env, snapshot_of, ssh_args
from tests.conftest import run
from vmtools.lab import sshd
from vmtools.lab.lifecycle import read_image
from vmtools.model import Action, Plan, dumps

pytestmark = [pytest.mark.sshd, pytest.mark.slow]

why = sshd.available()
if why:
    pytest.skip(why, allow_module_level=True)


@pytest.fixture(scope="module")
def ssh_lab():
    with apply_lab.ssh_lab("vmtools-lifecycle-ssh-", {
            "n1": {"mem_mib": 5120, "domains": {"a": {"mem_mib": 2048, "vcpus": 2, "load": 0.5},
                                                "b": {"mem_mib": 1024}}},
            "n2": {"mem_mib": 5120, "domains": {"c": {"mem_mib": 1024}}},
            "n3": {"mem_mib": 5120}}, mib_per_s=4096) as lab:
        yield lab


@pytest.fixture
def env(ssh_lab, tmp_path):
    return fresh_env(ssh_lab, tmp_path)


def apply_args(env, *extra):
    return ssh_args(env, "--image-dir", env["images"], "--verify-timeout", "5", *extra)


def write_plan(env, actions, placement, transport="xl-ssh"):
    snap = snapshot_of(env["state"], transport)
    plan = Plan(origin=snap, placement=placement, actions=actions)
    path = env["dir"] / "plan.json"
    path.write_text(dumps(plan.to_dict()))
    return path


def free_mib(env, host):
    spec = env["state"].read()["hosts"][host]
    return spec["mem_mib"] - spec["dom0_mib"] - sum(d["mem_mib"] for d in spec["domains"].values())


@pytest.mark.parametrize("transport", ["xl-ssh", "xm-ssh"])
def test_suspend_then_resume_elsewhere(env, transport):
    image = f"{env['images']}/a.save"
    before = free_mib(env, "n1")
    path = write_plan(env, [Action(id=1, op="suspend", vm="a", src="n1", dst="", mem_mib=2048,
                                   image=image)], {"b": "n1", "c": "n2"}, transport)
    proc = run("vm-apply", str(path), *apply_args(env))
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    (entry,) = report["actions"]
    assert entry["outcome"] == "done" and entry["image"] == image, entry
    assert report["summary"]["suspended"] == ["a"] and report["placement"] == {"a": None}
    assert "a" not in cluster_placement(env["state"])
    assert free_mib(env, "n1") == before + 2048          # memory freed when the save ended
    assert read_image(image)["name"] == "a"
    ledger = json.loads((env["state_dir"] / "suspended.json").read_text())
    assert ledger["format"] == "vmtools.suspended"
    assert [(g["name"], g["host"], g["image"], g["mem_mib"], g["vcpus"]) for g in
            ledger["guests"]] == [("a", "n1", image, 2048, 2)]

    path = write_plan(env, [Action(id=1, op="resume", vm="a", src="", dst="n3", mem_mib=2048,
                                   image=image, vcpus=2, cpu=0.5)],
                      {"a": "n3", "b": "n1", "c": "n2"}, transport)
    proc = run("vm-apply", str(path), *apply_args(env))
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["actions"][0]["outcome"] == "done", report["actions"]
    assert report["placement"] == {"a": "n3"} and report["summary"]["resumed"] == ["a"]
    assert cluster_placement(env["state"])["a"] == "n3"
    assert not os.path.exists(image)                      # removed once the guest runs
    assert json.loads((env["state_dir"] / "suspended.json").read_text())["guests"] == []


def test_a_failed_resume_is_reported_and_leaves_the_image(env):
    image = f"{env['images']}/a.save"
    path = write_plan(env, [Action(id=1, op="suspend", vm="a", src="n1", dst="", mem_mib=2048,
                                   image=image)], {"b": "n1", "c": "n2"})
    assert run("vm-apply", str(path), *apply_args(env)).returncode == 0
    with env["state"].transaction() as st:
        st["faults"]["restore_fails"] = {"a": "xc: error: Failed to allocate memory"}
    path = write_plan(env, [Action(id=1, op="resume", vm="a", src="", dst="n2", mem_mib=2048,
                                   image=image, vcpus=2, cpu=0.5)],
                      {"a": "n2", "b": "n1", "c": "n2"})
    proc = run("vm-apply", str(path), *apply_args(env))
    assert proc.returncode == 1, proc.stderr
    (entry,) = json.loads(proc.stdout)["actions"]
    assert entry["outcome"] == "failed"
    assert "xl restore exited 1" in entry["error"] and "Failed to allocate memory" in entry["error"]
    assert f"the image is left at {image}" in entry["error"]
    assert os.path.exists(image) and "a" not in cluster_placement(env["state"])
    assert free_mib(env, "n2") == 5120 - 1024 - 1024      # the claimed memory was given back
    assert [g["name"] for g in json.loads(
        (env["state_dir"] / "suspended.json").read_text())["guests"]] == ["a"]


def test_a_resume_whose_image_is_missing_touches_nothing(env):
    image = f"{env['images']}/ghost.save"
    path = write_plan(env, [Action(id=1, op="resume", vm="ghost", src="", dst="n3",
                                   mem_mib=512, image=image, vcpus=1, cpu=0.1)],
                      {"a": "n1", "b": "n1", "c": "n2", "ghost": "n3"})
    proc = run("vm-apply", str(path), *apply_args(env))
    assert proc.returncode == 75, proc.stderr
    assert f"the image {image} of ghost does not exist on n3" in proc.stderr
    assert proc.stdout == ""
    assert cluster_placement(env["state"]) == {"a": "n1", "b": "n1", "c": "n2"}


def test_an_image_outside_the_image_directory_is_refused(env):
    path = write_plan(env, [Action(id=1, op="suspend", vm="a", src="n1", dst="", mem_mib=2048,
                                   image="/tmp/a.save")], {"b": "n1", "c": "n2"})
    proc = run("vm-apply", str(path), *apply_args(env))
    assert proc.returncode == 65
    assert "image /tmp/a.save is not a file of the image directory" in proc.stderr
    assert "--image-dir" in proc.stderr and proc.stdout == ""
    assert cluster_placement(env["state"])["a"] == "n1"


def test_create_and_checkpoint(env):
    cfg = env["configs"] / "web9.cfg"
    cfg.write_text('name = "web9"\nmemory = 1024\nvcpus = 2\n')
    cfg.chmod(0o644)
    chk = f"{env['images']}/c.chk"
    path = write_plan(env, [
        Action(id=1, op="create", vm="web9", src="", dst="n3", mem_mib=1024, config=str(cfg),
               vcpus=2, cpu=0.2),
        Action(id=2, op="checkpoint", vm="c", src="n2", dst="", mem_mib=1024, image=chk)],
        {"a": "n1", "b": "n1", "c": "n2", "web9": "n3"})
    proc = run("vm-apply", str(path), *apply_args(env))
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert [e["outcome"] for e in report["actions"]] == ["done", "done"]
    assert report["placement"] == {"web9": "n3", "c": "n2"}
    where = cluster_placement(env["state"])
    assert where["web9"] == "n3" and where["c"] == "n2"
    assert env["state"].read()["hosts"]["n3"]["domains"]["web9"]["mem_mib"] == 1024
    assert read_image(chk)["name"] == "c"


def test_a_guest_already_running_is_not_created_again(env):
    cfg = env["configs"] / "c.cfg"
    cfg.write_text('name = "c"\nmemory = 1024\n')
    cfg.chmod(0o644)
    snap = snapshot_of(env["state"], "xl-ssh")
    snap.vms = [v for v in snap.vms if v.name != "c"]      # a snapshot taken before c started
    plan = Plan(origin=snap, placement={"a": "n1", "b": "n1", "c": "n3"},
                actions=[Action(id=1, op="create", vm="c", src="", dst="n3", mem_mib=1024,
                                config=str(cfg), vcpus=1, cpu=0.1)])
    path = env["dir"] / "plan.json"
    path.write_text(dumps(plan.to_dict()))
    proc = run("vm-apply", str(path), *apply_args(env))
    assert proc.returncode == 75, proc.stderr
    assert "c already runs on n2; the plan starts it" in proc.stderr
    assert cluster_placement(env["state"]) == {"a": "n1", "b": "n1", "c": "n2"}


def test_resume_of_a_run_that_died_during_a_suspend_settles_it_by_asking_the_host(env):
    image = f"{env['images']}/a.save"
    path = write_plan(env, [Action(id=1, op="suspend", vm="a", src="n1", dst="", mem_mib=2048,
                                   image=image)], {"b": "n1", "c": "n2"})
    proc = run("vm-apply", str(path), *apply_args(env))
    assert proc.returncode == 0, proc.stderr
    # the run as it would be had vm-apply died while xl save ran: no end, no finish, no ledger
    (journal,) = (env["state_dir"] / "journal").iterdir()
    events = [json.loads(ln) for ln in journal.read_text().splitlines()]
    journal.write_text("".join(json.dumps(e) + "\n" for e in events
                               if e["event"] not in ("end", "finish")))
    (env["state_dir"] / "suspended.json").unlink()
    proc = run("vm-apply", "--resume", str(journal), *apply_args(env))
    assert proc.returncode == 0, proc.stderr
    (entry,) = json.loads(proc.stdout)["actions"]
    assert entry["outcome"] == "done" and entry.get("from_journal") is True
    assert "a verified gone from n1, its image at" in entry["error"]
    assert [g["name"] for g in json.loads(
        (env["state_dir"] / "suspended.json").read_text())["guests"]] == ["a"]
