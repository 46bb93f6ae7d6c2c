"""Helpers for the vm-apply tests: the hand-made clusters of :mod:`vmtools.lab.handmade`, and
what a test asserts about a cluster after a run."""

from __future__ import annotations

import contextlib
import json
import tempfile
from pathlib import Path
from typing import Iterator

from vmtools.lab.cluster import ClusterState, placement
from vmtools.lab.handmade import hostmap_text, make_cluster, plan_of, snapshot_of, start_xends


@contextlib.contextmanager
def ssh_lab(prefix: str, hosts: dict, mib_per_s: int, transport: str | None = None
            ) -> Iterator[dict]:
    """The hand-made cluster ``hosts`` behind one REAL sshd per host on 127.0.0.1
    (:class:`vmtools.lab.sshd.SshLab`), for a test module: ``state`` (its initial contents in
    ``initial``), ``lab``, ``hosts`` (the host map; with ``transport``, its column names it),
    ``base``, ``images`` (the image directory the stand-ins save to) and ``configs`` (a
    directory for guest configurations). Stopped at the end."""
    from vmtools.lab import sshd
    base = Path(tempfile.mkdtemp(prefix=prefix))
    base.chmod(0o755)
    (base / "state").mkdir()
    state = make_cluster(base / "state", hosts, mib_per_s=mib_per_s)
    initial = state.read()
    lab = sshd.SshLab(state.path, sorted(hosts), directory=base / "ssh").start()
    hostmap = base / "hosts.csv"
    hostmap.write_text(lab.hostmap() if transport is None else
                       "name,manage,migrate,power,bmc,mac,transport\n" + "".join(
                           f"{h},127.0.0.1:{lab.port[h]},{h},none,,,{transport}\n"
                           for h in sorted(hosts)))
    configs = base / "etc"
    configs.mkdir()
    configs.chmod(0o755)
    try:
        yield {"state": state, "lab": lab, "hosts": hostmap, "base": base, "initial": initial,
               "images": str(lab.image_dir), "configs": configs}
    finally:
        lab.stop()


def fresh_env(lab: dict, tmp_path: Path) -> dict:
    """One test's view of a module's SSH lab: the cluster back as it started, no image left,
    and the test's own directory (``dir``) and vm-apply state directory (``state_dir``)."""
    lab["state"].write(json.loads(json.dumps(lab["initial"])))
    images = Path(lab["images"])
    if images.is_dir():
        for f in images.iterdir():
            f.unlink()
    return dict(lab, dir=tmp_path, state_dir=tmp_path / "vmstate")


def ssh_args(env: dict, *extra: str) -> list[str]:
    """vm-apply's options for the SSH lab: the host map, the state directory, the lab user,
    its key and the lab's known hosts."""
    lab = env["lab"]
    return ["--hosts", str(env["hosts"]), "--state-dir", str(env["state_dir"]),
            "--ssh-user", lab.user, "--ssh-key", str(lab.client_key),
            "--known-hosts", str(lab.known_hosts), *extra]


@contextlib.contextmanager
def held(state: ClusterState, *vms: str) -> Iterator[None]:
    """Within the block the migrations of ``vms`` stay in flight (the lab's ``hold`` fault):
    a test acts while a run is mid-move however slowly this machine runs it; at the end of
    the block the transfers end."""
    with state.transaction() as st:
        st.setdefault("faults", {})["hold"] = list(vms)
    try:
        yield
    finally:
        with state.transaction() as st:
            st["faults"]["hold"] = []


def cluster_placement(state: ClusterState) -> dict[str, str]:
    return placement(state.read())


def assert_consistent(state: ClusterState, report: dict, guests: list[str]) -> None:
    """Report and simulated cluster agree; no guest lost or duplicated."""
    st = state.read()
    for vm in guests:
        on = [h for h, spec in st["hosts"].items() if vm in spec["domains"]]
        incoming = [h for h, spec in st["hosts"].items() if vm + "--incoming" in spec["domains"]]
        assert not incoming, f"{vm} still in flight on {incoming}"
        up = [h for h in on if st["hosts"][h].get("up", True)]
        assert len(up) == 1, f"{vm} is on {on} (lost or duplicated)"
        if vm in report["placement"]:
            assert report["placement"][vm] == up[0], (vm, report["placement"][vm], up[0])
    for a in report["actions"]:
        if a["outcome"] == "done":
            assert a["where"] == a["dst"]


__all__ = ["ssh_lab", "fresh_env", "ssh_args", "make_cluster", "snapshot_of", "plan_of", "start_xends", "hostmap_text",
           "cluster_placement", "assert_consistent", "held", "GUESTS", "four_hosts"]


GUESTS = ["a", "b", "c", "d"]


def four_hosts(tmp_path):
    """The lab of the vm-apply tests: 4 hosts (n1-n4), guests a-d, a simulated xend per host on
    loopback; 1 GiB migrates in 0.25 s."""
    state = make_cluster(tmp_path, {
        "n1": {"domains": {"a": {"mem_mib": 1024}, "b": {"mem_mib": 512}}},
        "n2": {"domains": {"c": {"mem_mib": 1024}}},
        "n3": {"domains": {"d": {"mem_mib": 512}}},
        "n4": {}}, mib_per_s=4096)
    labs = start_xends(state)
    hosts = tmp_path / "hosts.csv"
    hosts.write_text(hostmap_text(labs, "xen"))
    yield {"state": state, "labs": labs, "hosts": hosts, "dir": tmp_path,
           "state_dir": tmp_path / "vmstate", "locks": tmp_path / "locks"}
    for x in labs.values():
        x.stop()
