"""Each lab host's BMC: OpenIPMI's ``ipmi_sim`` on 127.0.0.1, driven by the real ``ipmitool``;
and a Wake-on-LAN listener on a loopback UDP socket.

``BmcLab(state_path, hosts, directory).start()`` runs one ``ipmi_sim`` per host (its own UDP
port, an admin user with a random password) whose ``chassis_control`` program is
:func:`vmtools.lab.power.chassis` on the shared cluster state; ``credentials`` is the
root-only TOML file vm-apply reads (``--ipmi-credentials``). ipmi_sim does not answer
ipmitool's "Get Channel Cipher Suites", so the file names cipher suite 3 (what ipmitool
falls back to after its retries).

``WolListener(state_path, macs).start()`` receives magic packets on 127.0.0.1 and switches on
the host whose MAC they carry (packets that are not exactly a magic packet are counted and
ignored).
"""

from __future__ import annotations

import os
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

from vmtools.lab.cluster import ClusterState
from vmtools.lab.ports import free_udp_port, wait_holding
from vmtools.lab.power import switch_on

IPMI_SIM = "ipmi_sim"
USER = "vmtools"

_EMU = """mc_setbmc 0x20
mc_add 0x20 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02
mc_enable 0x20
"""


def available() -> str | None:
    """None when ipmi_sim and ipmitool are installed, else what is missing."""
    for tool, package in ((IPMI_SIM, "openipmi"), ("ipmitool", "ipmitool")):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (apt-get install {package})"
    return None


class _ExitedEarly(RuntimeError):
    """ipmi_sim ended before it listened (most often: its port was taken meanwhile)."""


def _quote_conf(text: str) -> str:
    if '"' in text or "\n" in text:
        raise ValueError("ipmi_sim configuration values may not hold quotes or newlines")
    return f'"{text}"'


class BmcLab:
    def __init__(self, state_path: str | os.PathLike, hosts: list[str],
                 directory: str | os.PathLike, python: str | None = None):
        self.state_path = Path(state_path).resolve()
        self.hosts = list(hosts)
        self.dir = Path(directory)
        self.python = python or sys.executable
        self.password = secrets.token_urlsafe(12)
        self.port: dict[str, int] = {}
        self.procs: dict[str, subprocess.Popen] = {}
        self.credentials = self.dir / "ipmi.toml"

    def start(self) -> "BmcLab":
        why = available()
        if why:
            raise RuntimeError(why)
        self.dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.credentials, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(f'username = "{USER}"\npassword = "{self.password}"\ncipher_suite = 3\n')
        try:
            for host in self.hosts:
                self._start_host(host)
            for host in self.hosts:
                self._wait_ready_or_restart(host)
        except BaseException:
            self.stop()
            raise
        return self

    def _start_host(self, host: str) -> None:
        d = self.dir / host
        (d / "state").mkdir(parents=True, exist_ok=True)
        root = Path(__file__).resolve().parent.parent.parent
        chassis = d / "chassis"
        chassis.write_text(
            "#!/bin/sh\n"
            f"VMTOOLS_LAB_STATE={shlex.quote(str(self.state_path))}; export VMTOOLS_LAB_STATE\n"
            f"PYTHONPATH={shlex.quote(str(root))}; export PYTHONPATH\n"
            f"exec {shlex.quote(self.python)} -S -c 'import sys, vmtools.lab.power as p; "
            f"sys.exit(p.main())' chassis {shlex.quote(host)} \"$@\"\n")
        chassis.chmod(0o755)
        port = free_udp_port()
        conf = d / "lan.conf"
        conf.write_text(
            f"name {_quote_conf(host)}\n"
            "set_working_mc 0x20\n"
            "  startlan 1\n"
            f"    addr 127.0.0.1 {port}\n"
            "    priv_limit admin\n"
            "    allowed_auths_callback md5\n    allowed_auths_user md5\n"
            "    allowed_auths_operator md5\n    allowed_auths_admin md5\n"
            "    guid a123456789abcdefa123456789abcdef\n"
            "  endlan\n"
            f"  chassis_control {_quote_conf(str(chassis))}\n"
            f"  user 2 true \"{USER}\" {_quote_conf(self.password)} admin 10 md5\n")
        conf.chmod(0o600)
        emu = d / "bmc.emu"
        emu.write_text(_EMU)
        log = open(d / "ipmi_sim.log", "ab")
        self.procs[host] = subprocess.Popen(
            [IPMI_SIM, "-c", str(conf), "-f", str(emu), "-s", str(d / "state"), "-n"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
        log.close()
        self.port[host] = port

    def _wait_ready_or_restart(self, host: str, attempts: int = 5) -> None:
        # The port was free when chosen, but another process (a parallel test's gmond or
        # ipmi_sim) may bind it before this ipmi_sim does; it then exits at once. Start it
        # again on another port rather than fail the lab.
        for attempt in range(attempts):
            try:
                self._wait_ready(host)
                return
            except _ExitedEarly:
                if attempt == attempts - 1:
                    raise
                self._start_host(host)

    def _wait_ready(self, host: str, timeout: float = 30.0) -> None:
        # ipmi_sim binds its UDP port once it has read its configuration
        proc = self.procs[host]
        if wait_holding(proc, self.port[host], "udp", timeout):
            return
        if proc.poll() is not None:
            raise _ExitedEarly(f"ipmi_sim for {host} exited with status {proc.returncode}; "
                               f"see {self.dir / host / 'ipmi_sim.log'}")
        raise RuntimeError(f"ipmi_sim for {host} did not open its port within {timeout:g}s")

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.procs.clear()


def is_magic_packet(data: bytes) -> bytes | None:
    """The MAC a datagram wakes, or None when it is not exactly a magic packet."""
    if len(data) != 102 or data[:6] != b"\xff" * 6:
        return None
    mac = data[6:12]
    return mac if data[6:] == mac * 16 else None


class WolListener:
    """Magic packets on 127.0.0.1:``port`` (0: a free one) switch lab hosts on."""

    def __init__(self, state_path: str | os.PathLike, macs: dict[str, str], port: int = 0):
        self.state = ClusterState(state_path)
        self.hosts = {bytes.fromhex(mac.replace(":", "")): name for name, mac in macs.items()}
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", port))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.received: list[bytes] = []
        self.ignored = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> "WolListener":
        self._thread = threading.Thread(target=self._run, name="lab-wol", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data, _ = self.sock.recvfrom(2048)
            except socket.timeout:
                continue
            except OSError:
                return
            self.received.append(data)
            mac = is_magic_packet(data)
            name = self.hosts.get(mac) if mac else None
            if name is None:
                self.ignored += 1
                continue
            with self.state.transaction() as st:
                switch_on(st, name)

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=2)
        self.sock.close()
