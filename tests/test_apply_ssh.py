"""vm-apply over a REAL OpenSSH sshd on 127.0.0.1 (one per simulated Domain-0), with the
``xm``/``xl`` stand-ins on the lab user's PATH. Needs root and /usr/sbin/sshd."""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from tests import apply_lab
from tests.apply_lab import (assert_consistent, cluster_placement, fresh_env, held, plan_of,
                             snapshot_of, ssh_args)
from tests.conftest import run, script
from vmtools.lab import sshd
from vmtools.model import dumps

pytestmark = [pytest.mark.sshd, pytest.mark.slow]
GUESTS = ["a", "b", "c"]

why = sshd.available()
if why:
    pytest.skip(why, allow_module_level=True)


@pytest.fixture(scope="module")
def ssh_lab():
    with apply_lab.ssh_lab("vmtools-apply-ssh-", {
            "n1": {"domains": {"a": {"mem_mib": 1024}, "b": {"mem_mib": 512}}},
            "n2": {"domains": {"c": {"mem_mib": 512}}},
            "n3": {}}, mib_per_s=2048) as lab:
        yield lab


@pytest.fixture
def env(ssh_lab, tmp_path):
    return fresh_env(ssh_lab, tmp_path)


def plan_file(env, moves, migration):
    plan = plan_of(snapshot_of(env["state"], migration), moves)
    path = env["dir"] / "plan.json"
    path.write_text(dumps(plan.to_dict()))
    return path


@pytest.mark.parametrize("transport", ["xm-ssh", "xl-ssh"])
def test_plan_runs_over_ssh(env, transport):
    path = plan_file(env, [("a", "n3"), ("c", "n1"), ("b", "n3", [1])], transport)
    proc = run("vm-apply", str(path), *ssh_args(env, "--parallel", "2"))
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert [a["outcome"] for a in report["actions"]] == ["done"] * 3
    assert {a["transport"] for a in report["actions"]} == {transport}
    assert report["placement"] == {"a": "n3", "b": "n3", "c": "n1"}
    assert_consistent(env["state"], report, GUESTS)


def test_refused_migration_over_ssh_reports_xm_error(env):
    with env["state"].transaction() as st:
        st["faults"]["refuse"] = {"c": "Not enough free memory"}
    path = plan_file(env, [("c", "n3"), ("a", "n2")], "xm-ssh")
    proc = run("vm-apply", str(path), *ssh_args(env, "--parallel", "2"))
    assert proc.returncode == 1
    report = json.loads(proc.stdout)
    c, a = report["actions"]
    assert c["outcome"] == "failed" and "xm migrate exited 1" in c["error"]
    assert "Not enough free memory" in c["error"] and c["where"] == "n2"
    assert a["outcome"] == "done"
    assert_consistent(env["state"], report, GUESTS)


def test_unknown_host_key_is_refused_and_nothing_moves(env):
    path = plan_file(env, [("a", "n3")], "xm-ssh")
    empty = env["dir"] / "empty_known_hosts"
    empty.write_text("")
    lab = env["lab"]
    args = ["--hosts", str(env["hosts"]), "--state-dir", str(env["state_dir"]),
            "--ssh-user", lab.user, "--ssh-key", str(lab.client_key), "--known-hosts", str(empty)]
    proc = run("vm-apply", str(path), *args, env={"HOME": str(env["dir"])})
    assert proc.returncode == 69
    assert "unknown SSH host key" in proc.stderr and "--accept-new-host-keys" in proc.stderr
    assert cluster_placement(env["state"])["a"] == "n1"
    # opting in accepts the key, records it, and runs
    proc = run("vm-apply", str(path), *args, "--accept-new-host-keys",
               env={"HOME": str(env["dir"])})
    assert proc.returncode == 0, proc.stderr
    recorded = empty.read_text()
    for host in ("n1", "n3"):
        assert f"[127.0.0.1]:{lab.port[host]} ssh-ed25519 " in recorded
    assert "accepted the new host key" in proc.stderr
    assert_consistent(env["state"], json.loads(proc.stdout), GUESTS)


def test_changed_host_key_is_always_refused(env):
    lab = env["lab"]
    wrong = env["dir"] / "wrong_known_hosts"
    other = lab.known_hosts.read_text().splitlines()
    # give every host the key of another host
    keys = [ln.split(" ", 1)[1] for ln in other]
    wrong.write_text("".join(f"{ln.split(' ', 1)[0]} {keys[(i + 1) % len(keys)]}\n"
                             for i, ln in enumerate(other)))
    path = plan_file(env, [("a", "n3")], "xm-ssh")
    proc = run("vm-apply", str(path), "--hosts", str(env["hosts"]), "--state-dir",
               str(env["state_dir"]), "--ssh-user", lab.user, "--ssh-key", str(lab.client_key),
               "--known-hosts", str(wrong), "--accept-new-host-keys",
               env={"HOME": str(env["dir"])})
    assert proc.returncode == 69
    assert "does not match known_hosts" in proc.stderr
    assert cluster_placement(env["state"])["a"] == "n1"


@pytest.mark.parametrize("transport,outcome,where", [("xm-ssh", "done", "n3"),
                                                     ("xl-ssh", "failed", "n1")])
def test_ssh_connection_dropped_during_migration(env, transport, outcome, where):
    """xm hands the migration to xend, which finishes it although the session died; xl does
    the transfer itself and stops, the guest resuming on the sender. vm-apply cannot know
    which: it asks the hosts, and reports what they say."""
    path = plan_file(env, [("a", "n3")], transport)
    with held(env["state"], "a"):                   # in flight until the session is dropped
        proc = subprocess.Popen([script("vm-apply"), str(path),
                                 *ssh_args(env, "--verify-timeout", "20")],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 120
            while "a--incoming" not in env["state"].read()["hosts"]["n3"]["domains"]:
                assert time.monotonic() < deadline and proc.poll() is None, \
                    "the migration never started"
                time.sleep(0.05)
            assert env["lab"].drop_sessions("n1") >= 1
        except BaseException:
            proc.kill()
            raise
    out, err = proc.communicate(timeout=60)
    report = json.loads(out)
    action = report["actions"][0]
    assert action["outcome"] == outcome, err
    assert "dropped" in action["error"] or "failed" in action["error"]
    assert action["where"] == where and report["placement"]["a"] == where
    assert proc.returncode == (0 if outcome == "done" else 1)
    # only the hosts' answer counts: wait for any leftover stand-in (an aborted transfer
    # discards its incoming domain as it ends), then compare
    deadline = time.monotonic() + 30
    while any(d.endswith("--incoming") for h in env["state"].read()["hosts"].values()
              for d in h["domains"]) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert_consistent(env["state"], report, GUESTS)
