"""vm-gmetric against the real things: packets byte-identical to /usr/bin/gmetric's; a real
gmond + gmetad fed by vm-gmetric for several spoofed Domain-0s (stand-in xl/xm/xenstore on
PATH), read back from gmetad's XML and through vm-snapshot; hostile toolstacks (unsafe names,
a huge guest list, garbage lines, a command that hangs, a command that fails)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
from lxml import etree

from tests.conftest import run, script
from tests.ganglia_lab import GangliaLab, binaries_missing
from vmtools.ganglia.names import HOST_METRICS
from vmtools.ganglia import xdr
from vmtools.lab.cluster import ClusterState, new_state
from vmtools.lab.standin import install_standins
from vmtools.model import is_safe_name

# The real gmetric, gmond and gmetad, and stand-in toolstacks run by vm-gmetric.
pytestmark = pytest.mark.slow

GMETRIC = shutil.which("gmetric") or "/usr/bin/gmetric"


class Dom0Lab:
    """A simulated cluster state, the stand-in toolstack and one sysfs root per host."""

    def __init__(self, root: Path, hosts: dict):
        self.root = root
        self.state_path = root / "cluster.json"
        self.state = ClusterState(self.state_path)
        self.state.write(new_state(hosts))
        self.bin = install_standins(root / "bin")

    def ip(self, host: str) -> str:
        return self.state.read()["hosts"][host]["ip"]

    def sysfs(self, host: str) -> Path:
        return self.root / f"sysfs-{host}"

    def env(self, host: str) -> dict:
        return {"PATH": f"{self.bin}:{os.environ['PATH']}",
                "VMTOOLS_LAB_STATE": str(self.state_path), "VMTOOLS_LAB_HOST": host,
                "VMTOOLS_LAB_SYSFS": str(self.sysfs(host))}

    def args(self, host: str, *extra: str) -> list[str]:
        return ["--spoof", f"{self.ip(host)}:{host}", "--sysfs-root", str(self.sysfs(host)),
                *extra]

    def fault(self, host: str, command: str, fault: dict) -> None:
        with self.state.transaction() as st:
            st.setdefault("faults", {}).setdefault("toolstack", {}).setdefault(
                host, {})[command] = fault


class Capture:
    """A UDP socket on loopback standing where gmond would listen."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.3)
        self.address = f"127.0.0.1:{self.sock.getsockname()[1]}"

    def packets(self) -> list[bytes]:
        out = []
        while True:
            try:
                out.append(self.sock.recv(65536))
            except socket.timeout:
                return out

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def capture():
    c = Capture()
    yield c
    c.close()


def values(packets: list[bytes]) -> dict[str, object]:
    return {p.name: p.fields["value"] for p in map(xdr.decode, packets) if p.id != xdr.METADATA}


# ----------------------------------------------------------------------------- packets

@pytest.mark.skipif(not os.path.exists(GMETRIC), reason="gmetric (ganglia-monitor) missing")
@pytest.mark.parametrize("spoofed", [True, False])
def test_packets_are_byte_identical_to_gmetric(tmp_path, capture, spoofed):
    lab = Dom0Lab(tmp_path, {"node-1": {"domains": {
        "web1": {"mem_mib": 1024, "vcpus": 2, "load": 0.5, "net_mbps": 4.0},
        "db.eu-1": {"mem_mib": 4096, "vcpus": 4, "load": 1.5}}}})
    args = lab.args("node-1") if spoofed else ["--sysfs-root", str(lab.sysfs("node-1"))]
    by_name: dict[str, list] = {}
    ours_bytes: dict[str, list[bytes]] = {}
    # vm-gmetric reads the same gmond.conf gmetric reads: only a udp_send_channel.
    conf = tmp_path / "gmetric.conf"
    conf.write_text(f"udp_send_channel {{\n  host = 127.0.0.1\n  port = "
                    f"{capture.address.split(':')[1]}\n}}\n")
    proc = run("vm-gmetric", "--once", "--window", "0.5", "--config", str(conf),
               "--metadata-interval", "0", *args, env=lab.env("node-1"))
    assert proc.returncode == 0, proc.stderr
    sent = capture.packets()
    for data in sent:
        p = xdr.decode(data)
        ours_bytes.setdefault(p.name, []).append(data)
        by_name.setdefault(p.name, []).append(p)
    if spoofed:   # the heartbeat is a uint32 packet (gmetric -H would send a string)
        hb = by_name.pop("heartbeat")
        ours_bytes.pop("heartbeat")
        assert [p.id for p in hb] == [xdr.METADATA, xdr.UINT]
        assert abs(hb[1].fields["value"] - time.time()) < 30
    else:
        assert "heartbeat" not in by_name
    assert {"container.vms", "container.vm.web1.cpu", "container.vm.db.eu-1.net"} <= set(by_name)
    for name, pkts in by_name.items():
        meta, value = pkts
        assert (meta.id, value.id) == (xdr.METADATA, xdr.STRING)
        f = meta.fields
        cmd = [GMETRIC, "-c", str(conf), "-n", name, "-v", value.fields["value"],
               "-t", f["type"], "-s", f["slope"], "-x", str(f["tmax"]), "-d", str(f["dmax"]),
               "-g", "xen"]
        if f["units"]:
            cmd += ["-u", f["units"]]
        if spoofed:
            cmd += ["-S", f"{lab.ip('node-1')}:node-1"]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
        assert done.returncode == 0, done.stderr
        theirs = capture.packets()
        assert theirs == ours_bytes[name], f"{name}: vm-gmetric and gmetric packets differ"


# ----------------------------------------------------------------------------- hostile

def test_hung_toolstack_is_killed_and_once_exits_69(tmp_path, capture):
    lab = Dom0Lab(tmp_path, {"node-1": {"domains": {"web1": {}}}})
    lab.fault("node-1", "xl list", {"hang": 60})
    started = time.monotonic()
    proc = run("vm-gmetric", "--once", "--toolstack", "xl", "--timeout", "1", "--window", "0",
               "--gmond", capture.address, *lab.args("node-1"), env=lab.env("node-1"))
    assert proc.returncode == 69
    assert time.monotonic() - started < 15
    assert "xl list: no answer within 1 s, killed" in proc.stderr
    assert "Traceback" not in proc.stderr
    left = subprocess.run(["pgrep", "-f", "vmtools.lab.standin xl"], capture_output=True,
                          text=True)
    mine = [pid for pid in left.stdout.split()
            if str(lab.state_path) in Path(f"/proc/{pid}/environ").read_bytes().decode(
                errors="replace")] if left.stdout else []
    assert mine == [], "the hung xl was not killed"
    # What was known (the host's static metrics) was still published.
    got = values(capture.packets())
    assert got["container.cpu_num"] == "8" and "container.vms" not in got


def test_garbage_lines_publish_no_guest_list_and_say_why_then_exit_69(tmp_path, capture):
    lab = Dom0Lab(tmp_path, {"node-1": {"domains": {"web1": {"mem_mib": 512}}}})
    # A line the parser refuses may be a running guest (here one with a huge figure): the
    # list without it would hide its memory, so no list is published this cycle.
    lab.fault("node-1", "xl list", {"append": "libxl: error: garbage here\n"
                                              "web9  7  99999999999999  1  -b----  1.0\n"})
    proc = run("vm-gmetric", "--once", "--window", "0.2", "--gmond", capture.address,
               *lab.args("node-1"), env=lab.env("node-1"))
    assert proc.returncode == 69
    assert "not a domain line: 'libxl: error: garbage here'" in proc.stderr
    got = values(capture.packets())
    assert "container.vms" not in got
    assert got["container.problem"] == "xl list: 2 lines not parsed"
    assert got["container.vm.web1.mem"] == "524288"
    assert got["container.mem_total"] and got["container.cpu_num"] == "8"
    # A whole list again: published, and the problem metric is empty.
    with lab.state.transaction() as st:
        st["faults"] = {}
    proc = run("vm-gmetric", "--once", "--window", "0.2", "--gmond", capture.address,
               *lab.args("node-1"), env=lab.env("node-1"))
    assert proc.returncode == 0, proc.stderr
    got = values(capture.packets())
    assert got["container.vms"] == "web1" and got["container.problem"] == ""


def test_unsafe_names_are_skipped_with_a_warning_and_nothing_unsafe_is_sent(tmp_path, capture):
    lab = Dom0Lab(tmp_path, {"node-1": {"domains": {
        "ok1": {}, "bad<x>": {}, "caf\u00e9": {}, "tom&jerry": {}, "it's": {}}}})
    proc = run("vm-gmetric", "--once", "--window", "0.2", "--gmond", capture.address,
               *lab.args("node-1"), env=lab.env("node-1"))
    assert proc.returncode == 0, proc.stderr
    for name in ("'bad<x>'", "'caf\u00e9'", "'tom&jerry'", '"it\'s"'):
        assert f"guest {name}" in proc.stderr and "skipped: unsafe name" in proc.stderr
    packets = capture.packets()
    # Four running guests could not be published: the list without them would hide them.
    assert "container.vms" not in values(packets)
    assert values(packets)["container.problem"] == \
        "4 running guests not publishable (name or figures)"
    for data in packets:
        assert len(data) <= 1464
        p = xdr.decode(data)
        texts = [p.host, p.name, str(p.fields.get("value", "")), p.fields.get("units", "")]
        texts += [t for pair in p.fields.get("extra", []) for t in pair]
        for text in texts:
            assert text.isascii() and text.isprintable() and not set("<>&\"'") & set(text)


def test_dry_run_shows_the_split_of_a_huge_guest_list(tmp_path):
    guests = {f"guest-with-a-rather-long-name-{i:03d}": {"mem_mib": 256} for i in range(120)}
    lab = Dom0Lab(tmp_path, {"node-1": {"mem_mib": 65536, "domains": guests}})
    proc = run("vm-gmetric", "--dry-run", "--window", "0", "--gmond", "127.0.0.1:9",
               *lab.args("node-1"), env=lab.env("node-1"))
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    parts = [m for m in doc["metrics"] if m["name"].startswith("container.vms")]
    assert len(parts) >= 5 and all(len(m["value"]) <= 850 for m in parts)
    assert sorted(" ".join(m["value"] for m in parts).split()) == sorted(guests)
    table = run("vm-gmetric", "--dry-run", "--window", "0", "-f", "table", "--gmond",
                "127.0.0.1:9", *lab.args("node-1"), env=lab.env("node-1"))
    assert "container.vms.4" in table.stdout and "packets" in table.stdout


def test_daemon_survives_a_failing_toolstack(tmp_path, capture):
    lab = Dom0Lab(tmp_path, {"node-1": {"domains": {"web1": {}}}})
    lab.fault("node-1", "xl list", {"rc": 1, "stderr": "libxl: error: cannot get domain list\n"})
    proc = run("vm-gmetric", "--toolstack", "xl", "--interval", "0.3", "--window", "0",
               "--cycles", "3", "-v", "--gmond", capture.address, *lab.args("node-1"),
               env=lab.env("node-1"))
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count("xl list: exit 1: libxl: error: cannot get domain list") >= 3
    assert "cycle 3:" in proc.stderr
    names = [xdr.decode(p).name for p in capture.packets()]
    assert names.count("heartbeat") >= 6          # metadata + value, every cycle
    assert "container.type" in names and "container.vms" not in names


def test_once_without_any_toolstack_exits_69(tmp_path, capture):
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    proc = run("vm-gmetric", "--once", "--gmond", capture.address,
               env={"PATH": f"{empty}:/usr/local/bin:/bin"})
    assert proc.returncode == 69
    assert "no working toolstack (tried xl and xm)" in proc.stderr
    assert capture.packets() == []


# ----------------------------------------------------------------------------- gmond+gmetad

LAB_HOSTS = {
    "node-1": {"cpus": 8, "mem_mib": 16384, "dom0_mib": 1024, "xen": "4.17", "domains": {
        "web1": {"mem_mib": 1024, "vcpus": 2, "load": 0.5, "net_mbps": 8.0},
        "web2": {"mem_mib": 2048, "vcpus": 1, "load": 1.0, "net_mbps": 0.0}}},
    "node-2": {"cpus": 16, "mem_mib": 65536, "dom0_mib": 2048, "xen": "3.3", "domains": {
        "db.eu-1": {"mem_mib": 8192, "vcpus": 4, "load": 2.0, "net_mbps": 40.0}}},
    "node-3": {"cpus": 4, "mem_mib": 8192, "dom0_mib": 512, "domains": {
        "ok3": {"mem_mib": 512, "load": 0.2}, "bad<x>": {}, "caf\u00e9": {}}},
    "node-4": {"cpus": 64, "mem_mib": 262144, "domains": {
        f"guest-with-a-rather-long-name-{i:03d}": {"mem_mib": 512, "load": 0.1}
        for i in range(110)}},
}


def _gmetad_tree(data: bytes):
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    return etree.fromstring(data, parser)


@pytest.mark.ganglia
@pytest.mark.skipif(bool(binaries_missing()), reason="gmond/gmetad not installed")
def test_real_gmond_gmetad_and_vm_snapshot_show_exactly_the_cluster(tmp_path):
    lab = Dom0Lab(tmp_path, LAB_HOSTS)
    with GangliaLab(workdir=tmp_path / "ganglia") as ganglia:
        procs = {}
        for host in LAB_HOSTS:
            toolstack = "xm" if LAB_HOSTS[host].get("xen") == "3.3" else "xl"
            cmd = [script("vm-gmetric"), "--once", "--window", "2", "--toolstack", toolstack,
                   "--gmond", ganglia.gmond_address, *lab.args(host)]
            procs[host] = subprocess.Popen(cmd, env=dict(os.environ, **lab.env(host)),
                                           stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                           text=True)
        for host, proc in procs.items():
            out, err = proc.communicate(timeout=60)
            assert proc.returncode == 0, f"{host}: {err}"
            if host == "node-3":
                assert "guest 'bad<x>'" in err and "guest 'caf\u00e9'" in err
        for host, spec in LAB_HOSTS.items():     # everything sent, through gmond and gmetad
            wanted = set(HOST_METRICS) | {f"container.vm.{vm}.{m}" for vm in spec["domains"]
                                          if is_safe_name(vm) for m in ("cpu", "mem", "vcpus")}
            if host == "node-3":     # two guests it cannot publish: no guest list
                wanted = (wanted - {"container.vms"}) | {"container.problem"}
            if host == "node-4":
                wanted |= {f"container.vms.{i}" for i in range(1, 5)}
            ganglia.wait_for_metrics(host, wanted, timeout=30)
        data = ganglia.gmetad_xml()
        root = _gmetad_tree(data)                 # well-formed: nothing unsafe got through
        hosts = {h.get("NAME"): h for h in root.iter("HOST")}
        assert set(hosts) == set(LAB_HOSTS)
        for name, host in hosts.items():
            assert host.get("IP") == lab.ip(name)
            assert abs(int(host.get("GMOND_STARTED")) - time.time()) < 120
        m1 = {m.get("NAME"): m for m in hosts["node-1"].iter("METRIC")}
        assert m1["container.mem_total"].get("VAL") == str((16384 - 1024) * 1024)
        assert m1["container.mem_total"].get("TYPE") == "uint32"
        assert m1["container.mem_total"].get("UNITS") == "KB"
        assert m1["container.cpu_num"].get("VAL") == "8"
        assert sorted(m1["container.vms"].get("VAL").split()) == ["web1", "web2"]
        assert m1["container.driver.migration"].get("VAL") == "xl-ssh"
        assert m1["container.type"].get("VAL") == "xen-4.17"
        assert m1["container.vm.web1.mem"].get("VAL") == "1048576"
        assert m1["container.vm.web1.vcpus"].get("VAL") == "2"
        assert abs(float(m1["container.vm.web1.cpu"].get("VAL")) - 50) < 10
        assert abs(float(m1["container.vm.web1.net"].get("VAL")) - 1e6) < 1.5e5
        m2 = {m.get("NAME"): m for m in hosts["node-2"].iter("METRIC")}
        assert m2["container.type"].get("VAL") == "xen-3.3"
        assert m2["container.driver.migration"].get("VAL") == "xm-ssh"
        assert m2["container.vms"].get("VAL") == "db.eu-1"
        assert abs(float(m2["container.vm.db.eu-1.cpu"].get("VAL")) - 200) < 10
        m3 = {m.get("NAME") for m in hosts["node-3"].iter("METRIC")}
        assert not any("bad" in n or "caf" in n for n in m3)
        assert "container.vms" not in m3
        assert b"bad" not in data and b"caf" not in data

        proc = run("vm-snapshot", "--gmetad", ganglia.gmetad_address)
        assert proc.returncode == 0, proc.stderr
        snap = json.loads(proc.stdout)
    # node-3 runs two guests vm-gmetric cannot publish: its guest list is unknown.
    assert {(p["kind"], p["host"]) for p in snap["problems"]} == {
        ("partial-container", "node-3"), ("incomplete-host", "node-3")}
    assert "2 running guests not publishable" in " ".join(p["message"]
                                                          for p in snap["problems"])
    got_hosts = {h["name"]: h for h in snap["hosts"]}
    assert set(got_hosts) == set(LAB_HOSTS)
    for name, spec in LAB_HOSTS.items():
        h = got_hosts[name]
        assert (h["state"], h["cpu"]) == ("online", spec["cpus"])
        assert h["mem_mib"] == spec["mem_mib"] - spec.get("dom0_mib", 1024)
        assert h["hypervisor"] == f"xen-{spec.get('xen', '4.17')}"
    expected = {vm: host for host, spec in LAB_HOSTS.items() for vm in spec["domains"]
                if host != "node-3"}
    got_vms = {v["name"]: v for v in snap["vms"]}
    assert {n: v["host"] for n, v in got_vms.items()} == expected
    for name, host in expected.items():
        spec = LAB_HOSTS[host]["domains"][name]
        vm = got_vms[name]
        assert vm["mem_mib"] == spec.get("mem_mib", 1024)
        assert vm["vcpus"] == spec.get("vcpus", 1)
        assert abs(vm["cpu"] - spec.get("load", 0.1)) < 0.1, name
    assert abs(got_vms["web1"]["net_mbps"] - 8.0) < 1.2
    assert abs(got_vms["db.eu-1"]["net_mbps"] - 40.0) < 6


@pytest.mark.ganglia
@pytest.mark.skipif(bool(binaries_missing()), reason="gmond/gmetad not installed")
def test_metadata_is_resent_after_a_gmond_restart(tmp_path):
    lab = Dom0Lab(tmp_path, {"node-1": {"domains": {"web1": {"load": 0.3}}}})
    with GangliaLab(workdir=tmp_path / "ganglia") as ganglia:
        daemon = subprocess.Popen(
            [script("vm-gmetric"), "--interval", "0.5", "--window", "0",
             "--metadata-interval", "2", "--cycles", "400", "--gmond", ganglia.gmond_address,
             *lab.args("node-1")], env=dict(os.environ, **lab.env("node-1")),
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            in_gmond = lambda: b'NAME="container.vm.web1.mem"' in ganglia.gmond_xml()  # noqa
            ganglia.wait_until(in_gmond, 30, "metrics in gmond")
            # vm-gmetric paused over the restart: its metadata, resent every 2 s, would
            # otherwise land now and then between gmond's start and the look below.
            daemon.send_signal(signal.SIGSTOP)
            try:
                ganglia.kill_gmond()
                ganglia.start_gmond()
                assert not in_gmond()         # the restarted gmond knows nothing
            finally:
                daemon.send_signal(signal.SIGCONT)
            ganglia.wait_until(in_gmond, 30, "metrics in the restarted gmond")
        finally:
            daemon.terminate()
            _, err = daemon.communicate(timeout=15)
        assert daemon.returncode == 0, err   # SIGTERM is a clean stop
