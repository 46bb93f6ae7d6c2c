"""GangliaLab: a real gmond and gmetad on free loopback ports, fed with the real gmetric.

Usable from tests, benchmarks and scripts alike::

    with GangliaLab() as lab:
        lab.publish("10.9.0.1", "node-1", "container.cpu_num", 8, "uint16")
        lab.wait_for_metric("node-1", "container.cpu_num")
        xml = lab.gmetad_xml()            # what gmetad's XML port serves
        xml = lab.query("/xen-lab")       # gmetad's interactive port

gmond is ``mute`` (it reports nothing of its own), not deaf, loads no modules, and listens
on one free port for both UDP (metrics in) and TCP (XML out), bound to 127.0.0.1. gmetad
polls it every second (``step``) and serves its XML and interactive ports on free ports
(gmetad has no bind option: they listen on every address). Everything lives in a temporary
directory, removed by :meth:`stop`. Daemons are stopped with terminate() + wait().

Spoofed hosts are keyed by IP in gmond: give every host name its own IP (any address works,
it is never contacted).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterable

from vmtools.ganglia import names
from vmtools.lab.ports import free_port

GMOND = "/usr/sbin/gmond"
GMETAD = "/usr/sbin/gmetad"
GMETRIC = "/usr/bin/gmetric"


def recv_buffer(wanted: int = 4 << 20) -> int:
    """The UDP receive buffer to ask gmond for: ``wanted``, capped by the kernel's
    net.core.rmem_max (gmond exits when the kernel grants less than it asked for)."""
    try:
        cap = int(Path("/proc/sys/net/core/rmem_max").read_text())
    except (OSError, ValueError):
        return 212992
    return min(wanted, cap)


def binaries_missing() -> list[str]:
    """The Ganglia programs this lab needs that are not installed (empty when all are)."""
    return [path for path in (GMOND, GMETAD, GMETRIC)
            if not (os.path.exists(path) or shutil.which(os.path.basename(path)))]


def _binary(path: str) -> str:
    return path if os.path.exists(path) else (shutil.which(os.path.basename(path)) or path)


class _Exited(RuntimeError):
    """A lab daemon ended before it answered (most often: its port was taken meanwhile)."""


def read_port(port: int, request: bytes | None = None, timeout: float = 5.0) -> bytes:
    """Connect to 127.0.0.1:port, send an optional request, read to EOF."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        if request:
            sock.sendall(request)
        chunks = []
        while True:
            chunk = sock.recv(1 << 16)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)


class GangliaLab:
    """A gmond + gmetad pair on loopback. ``start()``/``stop()`` or use as a context manager."""

    def __init__(self, cluster: str = "xen-lab", grid: str = "lab-grid", step: int = 1,
                 host_tmax: int = 20, workdir: str | os.PathLike | None = None):
        self.cluster = cluster
        self.grid = grid
        self.step = step
        self.host_tmax = host_tmax
        self._own_dir = workdir is None
        self.dir = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="ganglia-lab-"))
        self.gmond_port = 0
        self.xml_port = 0
        self.interactive_port = 0
        self.gmond: subprocess.Popen | None = None
        self.gmetad: subprocess.Popen | None = None
        self.gmetric_conf = self.dir / "gmetric.conf"

    # ----------------------------------------------------------------- lifecycle

    def __enter__(self) -> "GangliaLab":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> "GangliaLab":
        missing = binaries_missing()
        if missing:
            raise RuntimeError("Ganglia is not installed (missing " + ", ".join(missing) +
                               "): apt-get install ganglia-monitor gmetad")
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "rrds").mkdir(exist_ok=True)
        try:
            # A port free when chosen may be taken by a parallel test's daemon before ours
            # binds it (the daemon then exits at once): start again on other ports.
            self._on_free_ports(self._start_gmond_anew)
            self._on_free_ports(self._start_gmetad)
        except BaseException:
            self.stop()
            raise
        return self

    @staticmethod
    def _on_free_ports(start: Callable[[], None], attempts: int = 3) -> None:
        for attempt in range(attempts):
            try:
                start()
                return
            except _Exited:
                if attempt == attempts - 1:
                    raise

    def _start_gmond_anew(self) -> None:
        self.gmond_port = free_port(udp_too=True)
        self.gmetric_conf.write_text(
            f"udp_send_channel {{\n  host = 127.0.0.1\n  port = {self.gmond_port}\n}}\n")
        self.start_gmond()

    def _start_gmetad(self) -> None:
        self.xml_port = free_port()
        self.interactive_port = free_port()
        while self.interactive_port == self.xml_port:
            self.interactive_port = free_port()
        self._write_gmetad_conf()
        self.gmetad = subprocess.Popen(
            [_binary(GMETAD), "-c", str(self.dir / "gmetad.conf"), "-d", "1"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=open(self.dir / "gmetad.log", "ab"))
        self._wait(lambda: self._answers(self.xml_port), "gmetad's XML port", self.gmetad)

    def _write_gmetad_conf(self) -> None:
        (self.dir / "gmetad.conf").write_text(
            f'data_source "{self.cluster}" {self.step} 127.0.0.1:{self.gmond_port}\n'
            f'gridname "{self.grid}"\n'
            'authority "http://127.0.0.1/ganglia/"\n'
            "trusted_hosts 127.0.0.1\n"
            "setuid off\n"
            f"xml_port {self.xml_port}\n"
            f"interactive_port {self.interactive_port}\n"
            "server_threads 2\n"
            f'rrd_rootdir "{self.dir / "rrds"}"\n'
            # gmetad's own archives keep a year (630 KB per metric, 250 MB for a lab of
            # four Domain-0s); a lab keeps each step for 1.6 h at the lab's step and a
            # minute's average for a day (58 KB per metric), all vm-replay --rrd reads of it
            f'RRAs "RRA:AVERAGE:0.5:1:5856" "RRA:AVERAGE:0.5:{max(1, 60 // self.step)}:1440"\n'
            "case_sensitive_hostnames 1\n")

    def start_gmond(self) -> None:
        # A collector gmond wants a large receive buffer (Ganglia's own gmond.conf says so),
        # and the lab gets bursts from several Domain-0s at once on a busy 2-core machine.
        """Start (or restart, after :meth:`kill_gmond`) gmond on the lab's port."""
        conf = self.dir / "gmond.conf"
        conf.write_text(
            "globals {\n  daemonize = no\n  setuid = no\n  debug_level = 0\n"
            "  max_udp_msg_len = 1472\n  mute = yes\n  deaf = no\n  allow_extra_data = yes\n"
            f"  host_dmax = 86400\n  host_tmax = {self.host_tmax}\n  cleanup_threshold = 300\n"
            "  gexec = no\n  send_metadata_interval = 0\n}\n"
            f'cluster {{\n  name = "{self.cluster}"\n  owner = "lab"\n'
            '  latlong = "unspecified"\n  url = "unspecified"\n}\n'
            'host {\n  location = "unspecified"\n}\n'
            f"udp_recv_channel {{\n  port = {self.gmond_port}\n  bind = 127.0.0.1\n"
            f"  buffer = {recv_buffer()}\n}}\n"
            f"tcp_accept_channel {{\n  port = {self.gmond_port}\n  bind = 127.0.0.1\n}}\n")
        self.gmond = subprocess.Popen(
            [_binary(GMOND), "-c", str(conf), "-f"], stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=open(self.dir / "gmond.log", "ab"))
        self._wait(lambda: self._answers(self.gmond_port), "gmond", self.gmond)

    def kill_gmond(self) -> None:
        """Stop gmond only: gmetad keeps serving its last data (a stale cluster)."""
        self._stop(self.gmond)
        self.gmond = None

    def stop(self) -> None:
        """Stop both daemons (terminate, then wait) and remove the lab directory."""
        self._stop(self.gmetad)
        self._stop(self.gmond)
        self.gmetad = self.gmond = None
        if self._own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    @staticmethod
    def _stop(proc: subprocess.Popen | None) -> None:
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)

    @staticmethod
    def _answers(port: int) -> bool:
        try:
            return bool(read_port(port, timeout=1.0))
        except OSError:
            return False

    def _wait(self, ready: Callable[[], bool], what: str, proc: subprocess.Popen,
              timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise _Exited(f"{what} exited with status {proc.returncode}; see {self.dir}")
            if ready():
                return
            time.sleep(0.05)
        raise RuntimeError(f"{what} did not answer within {timeout:g} s")

    # ----------------------------------------------------------------- publishing

    def publish(self, host_ip: str, host_name: str, metric: str, value: object,
                type: str = "string", units: str = "", slope: str = "both", tmax: int = 60,
                dmax: int = 0, group: str = "xen") -> None:
        """Send one metric for a spoofed host with the real gmetric (raises on failure)."""
        args = [_binary(GMETRIC), "-c", str(self.gmetric_conf), "-S", f"{host_ip}:{host_name}",
                "-n", metric, "-v", str(value), "-t", type, "-s", slope, "-x", str(tmax),
                "-d", str(dmax)]
        if units:
            args += ["-u", units]
        if group:
            args += ["-g", group]
        proc = subprocess.run(args, capture_output=True, timeout=10)
        if proc.returncode != 0:
            raise RuntimeError(f"gmetric {metric}={value!r} for {host_name} failed: "
                               f"{proc.stderr.decode(errors='replace').strip()}")

    def publish_many(self, host_ip: str, host_name: str,
                     metrics: Iterable[tuple[str, object, str]], **options) -> None:
        """Publish (metric, value, type) triples for one host."""
        for metric, value, type_ in metrics:
            self.publish(host_ip, host_name, metric, value, type_, **options)

    def publish_container(self, host_ip: str, host_name: str, *, cpus: int, mem_kb: int,
                          vms: dict[str, dict], hypervisor: str = "xen-4.17",
                          migration: str = "xl-ssh") -> None:
        """Publish what vm-gmetric publishes for a Domain-0: the five container metrics and,
        per guest (``{"web1": {"cpu": 85.0, "mem": 1048576, "vcpus": 2, "net": 4000.0}}``),
        the ``container.vm.<name>.*`` metrics."""
        metrics: list[tuple[str, object, str]] = [
            (names.MEM_TOTAL, mem_kb, "uint32"), (names.CPU_NUM, cpus, "uint16"),
            (names.VMS, " ".join(vms), "string"),
            (names.DRIVER_MIGRATION, migration, "string"),
            (names.TYPE, hypervisor, "string")]
        types = {"cpu": "float", "mem": "uint32", "vcpus": "uint16", "net": "float"}
        for name, fields in vms.items():
            for key, val in fields.items():
                metrics.append((names.guest_metric(name, key), val, types.get(key, "float")))
        self.publish_many(host_ip, host_name, metrics)

    # ----------------------------------------------------------------- reading

    def gmond_xml(self) -> bytes:
        return read_port(self.gmond_port)

    def gmetad_xml(self) -> bytes:
        return read_port(self.xml_port)

    def query(self, path: str) -> bytes:
        """One request line on gmetad's interactive port (e.g. ``/xen-lab``)."""
        return read_port(self.interactive_port, path.encode() + b"\n")

    def wait_until(self, ready: Callable[[], bool], timeout: float = 15.0,
                   what: str = "condition") -> None:
        deadline = time.monotonic() + timeout
        while True:
            if ready():
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what} not met within {timeout:g} s")
            time.sleep(0.2)

    def _host_xml(self, host: str) -> bytes:
        """gmetad's ``<HOST>`` element of ``host`` now (empty when gmetad has none)."""
        data = self.gmetad_xml()
        start = data.find(f'<HOST NAME="{host}"'.encode())
        return data[start:data.find(b"</HOST>", start)] if start >= 0 else b""

    def wait_for_metric(self, host: str, metric: str, value: object | None = None,
                        timeout: float = 15.0) -> None:
        """Wait until gmetad serves ``metric`` for ``host`` (with ``value`` when given)."""
        needle = f'NAME="{metric}" VAL="{value}"' if value is not None else f'NAME="{metric}"'
        self.wait_until(lambda: needle.encode() in self._host_xml(host), timeout,
                        f"{host} {metric} in gmetad")

    def wait_for_metrics(self, host: str, metrics: Iterable[str],
                         timeout: float = 15.0) -> None:
        """Wait until gmetad serves every one of ``metrics`` for ``host``. Packets that a
        publisher has sent may still sit in gmond's socket, and gmetad polls gmond when its
        step says: until then gmetad shows part of a cycle."""
        wanted = {f'NAME="{m}"'.encode() for m in metrics}
        missing: set[bytes] = set(wanted)

        def ready() -> bool:
            nonlocal missing
            section = self._host_xml(host)
            missing = {w for w in wanted if w not in section}
            return not missing

        try:
            self.wait_until(ready, timeout, f"{host}'s metrics in gmetad")
        except TimeoutError as exc:
            names = sorted(m.decode()[6:-1] for m in missing)
            raise TimeoutError(f"{exc}: {len(names)} missing, e.g. {', '.join(names[:3])}") \
                from None

    @property
    def gmetad_address(self) -> str:
        return f"127.0.0.1:{self.xml_port}"

    @property
    def interactive_address(self) -> str:
        return f"127.0.0.1:{self.interactive_port}"

    @property
    def gmond_address(self) -> str:
        return f"127.0.0.1:{self.gmond_port}"


__all__ = ["GangliaLab", "binaries_missing", "free_port", "read_port"]
