"""A whole simulated Xen cluster on this machine, wired to the real pipeline.

``Lab(scenario).start()`` brings up, on loopback:

- the shared cluster state (:mod:`vmtools.lab.cluster`) from a scenario file, whose guests'
  load then follows the scenario's shapes (:mod:`vmtools.lab.scenario`);
- the monitoring (``monitoring``): a real gmond and gmetad
  (:class:`vmtools.lab.ganglia.GangliaLab`, the default ``ganglia``), or a real Prometheus
  server scraping each Domain-0's vm-gmetric exporter (:class:`vmtools.lab.prometheus.
  PrometheusLab`, ``prometheus``), or both at once (``both``: vm-gmetric feeds both);
- per Domain-0: a simulated xend (HTTP and XML-RPC, :class:`vmtools.lab.xend.XendLab`), a real
  sshd with the ``xm``/``xl`` stand-ins on its PATH when this machine allows it (root,
  openssh-server; :class:`vmtools.lab.sshd.SshLab`), and a real ``vm-gmetric`` daemon publishing
  as that host (spoofed name and IP) from the stand-in toolstack;
- a host map for ``vm-apply --hosts`` pointing each host at the transport its scenario names;
- with ``power=True``, simulated power (:mod:`vmtools.lab.power`): each host's BMC is OpenIPMI's
  ``ipmi_sim`` on loopback (a scenario host's ``power_method``: ``ipmi``, the default) or a
  Wake-on-LAN listener on a loopback UDP port (``wol``, with its ``mac``); a host switched off
  stops its xend, sshd and vm-gmetric, and one switched on starts them ``boot_seconds`` later.

Then ``snapshot()``, ``plan()``, ``apply()`` or ``pipeline()`` run the installed commands
through real pipes, exactly as cron would. Only the hypervisor is simulated.

Over 500 lines because the lab's lifecycle (daemons, Domain-0s, the scenario's clock, the
pipeline) is one object the tests drive; it is test equipment, not a command's core.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable

from vmtools.lab import sshd as sshlab
from vmtools.lab import power as labpower
from vmtools.lab.clock import ScenarioClock
from vmtools.lab.cluster import ClusterState, differences, go_down, placement
from vmtools.lab.ganglia import GangliaLab
from vmtools.lab.ports import free_port
from vmtools.lab.prometheus import PrometheusLab, exporters_listening
from vmtools.lab.scenario import apply_loads, load_scenario, state_from_scenario
from vmtools.lab.standin import install_standins
from vmtools.lab.xend import XendLab

log = logging.getLogger("vmtools.lab")

SSH_DRIVERS = ("xm-ssh", "xl-ssh", "libvirt-ssh")
# xend: xend, xm/xl/virsh over SSH, Ganglia and vm-gmetric per Domain-0; xapi: a simulated
# XCP-ng / XenServer pool master (vmtools.lab.xapi) and nothing else.
PLATFORMS = ("xend", "xapi")
MONITORING = ("ganglia", "prometheus", "both")


def command(name: str) -> str:
    """The installed vmtools command ``name`` next to this interpreter, else on PATH."""
    here = Path(sys.executable).parent / name
    if here.exists():
        return str(here)
    found = shutil.which(name)
    if not found:
        raise RuntimeError(f"{name} is not installed (pip install vmtools)")
    return found


class LabError(RuntimeError):
    pass


class Lab:
    """A running lab. Use as a context manager, or ``start()`` then ``stop()``."""

    def __init__(self, scenario: str | dict = "steady", workdir: str | os.PathLike | None = None,
                 ssh: bool | None = None, interval: float = 2.0,
                 mib_per_s: float = 8192.0, gmetad_step: int = 1, power: bool = False,
                 boot_seconds: float = 3.0, platform: str = "xend",
                 monitoring: str = "ganglia"):
        if monitoring not in MONITORING:
            raise LabError(f"monitoring {monitoring!r}: expected one of {', '.join(MONITORING)}")
        self.monitoring = monitoring
        self.scenario = load_scenario(scenario) if isinstance(scenario, str) else scenario
        self._own_dir = workdir is None
        self.dir = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="vmtools-lab-"))
        self.want_ssh = ssh
        self.interval = interval
        self.mib_per_s = mib_per_s
        self.gmetad_step = gmetad_step
        self.state = ClusterState(self.dir / "cluster.json")
        self.ganglia: GangliaLab | None = None
        self.prometheus: PrometheusLab | None = None
        self.exporter_ports: dict[str, int] = {}     # host -> its vm-gmetric exporter
        self.xends: dict[str, XendLab] = {}
        self.ssh: sshlab.SshLab | None = None
        self.gmetrics: dict[str, subprocess.Popen] = {}
        self.hosts_file = self.dir / "hosts.csv"
        self.constraints_file: Path | None = None
        self.state_dir = self.dir / "state"
        self.plan_state = self.dir / "plan-state"
        self.last_apply_stderr = ""
        self.power = power
        self.boot_seconds = boot_seconds
        self.bmcs = None
        self.wol = None
        self.down: set[str] = set()            # hosts whose services are stopped (power off)
        self.macs: dict[str, str] = {}
        self._power_lock = threading.Lock()
        self._stop = threading.Event()
        self._driver: threading.Thread | None = None
        self.clock = ScenarioClock(on_change=self._tick)   # tests may hold it (lab/clock.py)
        if platform not in PLATFORMS:
            raise LabError(f"unknown platform {platform!r} (expected {', '.join(PLATFORMS)})")
        self.platform = platform
        self.xapi = None                       # vmtools.lab.xapi.XapiLab

    # ------------------------------------------------------------------ lifecycle

    def __enter__(self) -> "Lab":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> "Lab":
        self.dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.dir, 0o700)          # keys, state and logs: the operator's alone
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        state = state_from_scenario(self.scenario)
        state["migration"] = {"mib_per_s": self.mib_per_s, "min_seconds": 0.2}
        if self.platform == "xapi":
            self._start_xapi(state)
            return
        ssh_ok = self.want_ssh
        why = sshlab.available()
        if ssh_ok is None:
            ssh_ok = why is None
        elif ssh_ok and why:
            raise LabError(f"the lab cannot use SSH here: {why}")
        if not ssh_ok:
            for name, host in state["hosts"].items():
                if host.get("migration") in SSH_DRIVERS:
                    log.warning("%s: %s unavailable (%s); using xend's HTTP interface instead",
                                name, host["migration"], why or "--no-ssh")
                    host["migration"] = "xen"
        self.state.write(state)
        self._start_clock()

        hosts = sorted(state["hosts"])
        if self.monitoring in ("ganglia", "both"):
            self.ganglia = GangliaLab(cluster="xen-lab", grid="lab-grid",
                                      step=self.gmetad_step,
                                      workdir=self.dir / "ganglia").start()
        if self.monitoring in ("prometheus", "both"):
            self.exporter_ports = {name: free_port() for name in hosts}
            self.prometheus = PrometheusLab(self.dir / "prometheus")
            self.prometheus.set_targets({n: f"127.0.0.1:{p}"
                                         for n, p in self.exporter_ports.items()})
            self.prometheus.start()
        for name in hosts:
            self.xends[name] = XendLab(self.state, name).start()
        if ssh_ok:
            self.ssh = sshlab.SshLab(self.state.path, hosts, directory=self.dir / "ssh").start()
        if self.power:
            self._start_power(state)
        self._write_hostmap(state)
        for name in hosts:
            self._start_gmetric(name, state["hosts"][name])
        if self.prometheus is not None:      # each holds its port, or starts on another
            exporters_listening(self.prometheus, self.gmetrics, self.exporter_ports,
                                lambda name: self._start_gmetric(name, state["hosts"][name]),
                                lambda name: self.dir / "dom0" / name / "vm-gmetric.log")

    def _start_clock(self) -> None:
        """What every platform's lab needs before its daemons: the scenario's rules file,
        the state directories, and the clock that drives the guests' load."""
        if "constraints" in self.scenario:
            self.constraints_file = self.dir / "constraints.json"
            self.constraints_file.write_text(json.dumps(self.scenario["constraints"], indent=1))
        self.state_dir.mkdir(exist_ok=True)
        self.plan_state.mkdir(exist_ok=True)
        self.clock.start()
        self._tick()
        self._driver = threading.Thread(target=self._drive, name="lab-load", daemon=True)
        self._driver.start()

    def _start_xapi(self, state: dict) -> None:
        from vmtools.lab.xapi import XapiLab
        extras = dict(self.scenario.get("xapi", {}))
        master = extras.get("master") or sorted(state["hosts"])[0]
        extras["master"] = master
        for name, host in state["hosts"].items():
            host["migration"] = "xapi"
            host["enabled"] = True
            # the master is never switched off: XAPI could not switch it on again
            host.setdefault("power_on_mode", "" if name == master else
                            extras.get("power_on_mode", "wake-on-lan"))
        self.state.write(state)
        self._start_clock()
        self.xapi = XapiLab(self.state, extras, self.dir / "xapi",
                            boot_seconds=self.boot_seconds).start()
        lines = ["# vm-apply --hosts: the pool's hosts, reached through the master's XAPI",
                 "name,manage,migrate,power"]
        for name in sorted(state["hosts"]):
            power = "none" if name == master else "xapi"
            lines.append(f"{name},,{name},{power}")
        self.hosts_file.write_text("\n".join(lines) + "\n")

    def xapi_args(self) -> list[str]:
        return ["--xapi", self.xapi.url, "--xapi-ca", str(self.xapi.ca),
                "--xapi-credentials", str(self.xapi.credentials)]

    def _write_hostmap(self, state: dict) -> None:
        lines = ["# vm-apply --hosts: each simulated Domain-0 behind the transport it publishes",
                 "name,manage,migrate"]
        for name, host in sorted(state["hosts"].items()):
            how = host.get("migration", "xen")
            if how in SSH_DRIVERS and self.ssh:
                port = self.ssh.port[name]
            elif how == "xend-xmlrpc":
                port = self.xends[name].xmlrpc_port
            else:
                port = self.xends[name].http_port
            power = ""
            if self.bmcs and name in self.bmcs.port:
                power = f",ipmi,127.0.0.1:{self.bmcs.port[name]},"
            elif self.wol and name in self.macs:
                power = f",wol,,{self.macs[name]}"
            lines.append(f"{name},127.0.0.1:{port},{name}{power}")
        self.hosts_file.write_text("\n".join(lines) + "\n")

    def _start_power(self, state: dict) -> None:
        from vmtools.lab.bmc import BmcLab, WolListener
        ipmi = sorted(n for n, h in self.scenario["hosts"].items()
                      if h.get("power_method", "ipmi") == "ipmi")
        self.macs = {n: h.get("mac", f"02:00:00:00:{i // 256:02x}:{i % 256:02x}")
                     for i, (n, h) in enumerate(sorted(self.scenario["hosts"].items()))
                     if h.get("power_method") == "wol"}
        if ipmi:
            self.bmcs = BmcLab(self.state.path, ipmi, self.dir / "bmc").start()
        if self.macs:
            self.wol = WolListener(self.state.path, self.macs).start()

    def _start_gmetric(self, name: str, host: dict) -> subprocess.Popen:
        bin_dir = install_standins(self.dir / "dom0" / name / "bin", self.state.path, name)
        sysfs = self.dir / "dom0" / name / "sysfs"
        sysfs.mkdir(parents=True, exist_ok=True)
        toolstack = "xm" if str(host.get("xen", "4.17")).startswith("3.") else "xl"
        env = dict(os.environ, PATH=f"{bin_dir}:{os.environ.get('PATH', '/usr/bin:/bin')}",
                   VMTOOLS_LAB_STATE=str(self.state.path), VMTOOLS_LAB_HOST=name,
                   VMTOOLS_LAB_SYSFS=str(sysfs))
        for key in [k for k in env if k.startswith("VMTOOLS_") and not k.startswith("VMTOOLS_LAB")]:
            del env[key]          # the operator's own settings are not the lab's
        env["XDG_CONFIG_HOME"] = str(self.dir / "no-config")
        argv = [command("vm-gmetric")]
        if self.ganglia is not None:
            argv += ["--gmond", self.ganglia.gmond_address]
        if self.prometheus is not None:
            argv += ["--prometheus-listen", f"127.0.0.1:{self.exporter_ports[name]}"]
        argv += ["--spoof", f"{host['ip']}:{name}", "--interval", str(self.interval),
                "--window", str(min(1.0, self.interval)), "--toolstack", toolstack,
                "--migration", host.get("migration", "xen"), "--sysfs-root", str(sysfs), "-q"]
        logfile = open(self.dir / "dom0" / name / "vm-gmetric.log", "ab")
        self.gmetrics[name] = subprocess.Popen(argv, env=env, stdout=logfile, stderr=logfile,
                                               stdin=subprocess.DEVNULL)
        logfile.close()
        return self.gmetrics[name]

    def stop(self) -> None:
        self._stop.set()
        if self._driver:
            self._driver.join(timeout=5)
        if self.xapi:
            self.xapi.stop()
            self.xapi = None
        if self.wol:
            self.wol.stop()
            self.wol = None
        if self.bmcs:
            self.bmcs.stop()
            self.bmcs = None
        for proc in self.gmetrics.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.gmetrics.values():
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.gmetrics.clear()
        if self.ssh:
            self.ssh.stop()
            self.ssh = None
        for xend in self.xends.values():
            xend.stop()
        self.xends.clear()
        if self.ganglia:
            self.ganglia.stop()
            self.ganglia = None
        if self.prometheus:
            self.prometheus.stop()
            self.prometheus = None
        if self._driver:
            self._driver.join(timeout=5)
            self._driver = None

    def cleanup(self) -> None:
        """Stop, and remove the working directory if the lab made it."""
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    # ------------------------------------------------------------------ the simulated world

    def _tick(self) -> None:
        with self.state.transaction() as st:     # advanced to now, then the new loads
            apply_loads(st, self.scenario, self.clock.now())

    def _drive(self) -> None:
        while not self._stop.wait(0.5):
            try:
                self._tick()
                if self.power:
                    self._power_tick()
            except (OSError, ValueError) as exc:       # a torn read while stopping
                log.debug("lab load driver: %s", exc)

    def _power_tick(self) -> None:
        """Hosts switched off lose their services; booted hosts get them back."""
        with self._power_lock:
            with self.state.transaction() as st:
                booted = [n for n in st["hosts"]
                          if labpower.booted(st, n, self.boot_seconds)]
                off = [n for n, h in st["hosts"].items() if labpower.power_of(h) != "on"]
                hosts = dict(st["hosts"])
            for name in off:
                if name not in self.down and (self.ganglia or self.prometheus) is not None:
                    self._services(name, hosts[name], up=False)
            for name in booted:
                if name in self.down:
                    self._services(name, hosts[name], up=True)

    def _services(self, name: str, host: dict, up: bool) -> None:
        if not up:
            self.down.add(name)
            proc = self.gmetrics.pop(name, None)
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            if self.ssh:
                self.ssh.stop_host(name)
            xend = self.xends.pop(name, None)
            if xend is not None:
                xend.stop()
                self.xends[name] = XendLab(self.state, name, http_port=xend.http_port,
                                           xmlrpc_port=xend.xmlrpc_port)
            log.info("%s is off: xend, sshd and vm-gmetric stopped", name)
            return
        self.xends[name].start()
        if self.ssh:
            self.ssh.start_host(name)
        self._start_gmetric(name, host)
        self.down.discard(name)
        log.info("%s booted: xend, sshd and vm-gmetric started", name)

    def placement(self) -> dict[str, str]:
        return placement(self.state.read())

    def host_of(self, vm: str) -> list[str]:
        return [h for h, spec in self.state.read()["hosts"].items() if vm in spec["domains"]]

    def set_fault(self, key: str, value: Any) -> None:
        with self.state.transaction() as st:
            st.setdefault("faults", {})[key] = value

    def set_host_up(self, host: str, up: bool) -> None:
        """Crash ``host`` (``up=False``: it loses its guests and the ``--incoming`` domains of
        migrations it was receiving; its xend and toolstack stop answering) or bring it back
        (``up=True``, empty)."""
        with self.state.transaction() as st:
            if up:
                st["hosts"][host]["up"] = True
            else:
                go_down(st, host)

    def stop_xend(self, host: str) -> None:
        """Stop ``host``'s xend alone: its HTTP and XML-RPC ports refuse connections, the
        migrations it was sending fail (the guests stay), the host and its guests run on."""
        with self._power_lock:
            self.xends[host].stop()

    def start_xend(self, host: str) -> None:
        """Start ``host``'s xend again, on the same ports (no effect when it runs)."""
        with self._power_lock:
            self.xends[host].start()

    # ------------------------------------------------------------------ the pipeline

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("VMTOOLS_")}
        env["XDG_CONFIG_HOME"] = str(self.dir / "no-config")
        env["VMTOOLS_STATE_DIR"] = str(self.state_dir)
        return env

    def run(self, name: str, *args: str, input: str | None = None,
            timeout: float = 300) -> subprocess.CompletedProcess:
        return subprocess.run([command(name), *args], input=input, capture_output=True,
                              text=True, timeout=timeout, env=self.env())

    def snapshot_args(self) -> list[str]:
        if self.platform == "xapi":
            return self.xapi_args() + ["--xapi-window", "10"]
        if self.ganglia is None:
            return self.prometheus_args()
        return ["--gmetad", self.ganglia.gmetad_address]

    def prometheus_args(self) -> list[str]:
        """vm-snapshot's arguments to read the lab's Prometheus (the guests' CPU samples
        every 2 s over the demand window)."""
        return ["--prometheus", self.prometheus.url, "--samples-step", "2", "--timeout", "30"]

    def apply_args(self) -> list[str]:
        args = ["--hosts", str(self.hosts_file), "--state-dir", str(self.state_dir)]
        if self.platform == "xapi":
            return args + self.xapi_args()
        if self.bmcs:
            args += ["--ipmi-credentials", str(self.bmcs.credentials)]
        if self.wol:
            args += ["--wol-address", "127.0.0.1", "--wol-port", str(self.wol.port)]
        if self.ssh:
            args += ["--ssh-user", self.ssh.user, "--ssh-key", str(self.ssh.client_key),
                     "--known-hosts", str(self.ssh.known_hosts)]
        return args

    def plan_args(self, objective: str = "consolidate") -> list[str]:
        args = ["--objective", objective, "--state", str(self.plan_state)]
        if self.platform == "xapi" and self.power:
            args += ["--hosts", str(self.hosts_file)]
        if self.constraints_file:
            args += ["--constraints", str(self.constraints_file)]
        return args

    def snapshot(self) -> dict:
        proc = self.run("vm-snapshot", *self.snapshot_args())
        if proc.returncode != 0:
            raise LabError(f"vm-snapshot exited {proc.returncode}: {proc.stderr.strip()}")
        return json.loads(proc.stdout)

    def wait_until(self, ready: Callable[[dict], bool], timeout: float = 60.0,
                   what: str = "the snapshot to settle") -> dict:
        """Take snapshots until ``ready(snapshot)``; returns that snapshot."""
        deadline = time.time() + timeout
        last: dict | None = None
        error = ""
        while True:
            try:
                last = self.snapshot()
                error = ""
                if ready(last):
                    return last
            except LabError as exc:
                log.debug("waiting: %s", exc)
                error = str(exc)
            if time.time() > deadline:
                problems = (last or {}).get("problems")
                raise LabError(f"timed out after {timeout:.0f} s waiting for {what}"
                               + (f"; problems: {problems}" if problems else "")
                               + (f"; last: {error}" if error else ""))
            time.sleep(0.5)

    def wait_for_truth(self, timeout: float = 60.0) -> dict:
        """Wait until the monitoring shows the cluster exactly as the simulation has it; on
        timeout, the error says how it differs."""
        differs = [""]

        def truthful(snap: dict) -> bool:
            differs[0] = differences(self.placement(), snap, self.scenario["hosts"])
            return not differs[0] and not snap["problems"]
        source = "XAPI" if self.platform == "xapi" else \
            "Ganglia" if self.ganglia is not None else "Prometheus"
        try:
            return self.wait_until(truthful, timeout, f"{source} to show the simulated cluster")
        except LabError as exc:
            raise LabError(f"{exc}; {differs[0]}" if differs[0] else str(exc)) from None

    def pipeline(self, objective: str = "consolidate", plan_extra: list[str] = (),
                 apply_extra: list[str] = (), snapshot: dict | None = None
                 ) -> tuple[dict, dict, dict | None, dict]:
        """``vm-snapshot | vm-plan | vm-apply`` through real pipes (with ``snapshot``, vm-plan
        reads that document, one a test already judged). Returns (snapshot, plan, report or
        None when the plan was empty, exit codes by command)."""
        env = self.env()
        feed = {"input": json.dumps(snapshot)} if snapshot is not None else {}
        snap = None if feed else subprocess.Popen(
            [command("vm-snapshot"), *self.snapshot_args()], stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, env=env)
        planned = subprocess.run([command("vm-plan"), *self.plan_args(objective), *plan_extra],
                                 stdin=snap and snap.stdout, capture_output=True, text=True,
                                 env=env, timeout=300, **feed)
        codes, snap_err = {"vm-plan": planned.returncode}, ""
        if snap is not None:
            snap.stdout.close()
            snap_err = snap.stderr.read().decode()
            snap.stderr.close()
            codes = {"vm-snapshot": snap.wait(), **codes}
        if codes.get("vm-snapshot", 0) != 0 or codes["vm-plan"] != 0:
            raise LabError(f"pipeline failed {codes}: {snap_err.strip()} "
                           f"{planned.stderr.strip()}")
        plan = json.loads(planned.stdout)
        if not plan["actions"]:
            return plan["origin"], plan, None, codes
        applied = subprocess.run([command("vm-apply"), *self.apply_args(), *apply_extra],
                                 input=planned.stdout, capture_output=True, text=True,
                                 env=env, timeout=600)
        codes["vm-apply"] = applied.returncode
        self.last_apply_stderr = applied.stderr
        report = json.loads(applied.stdout) if applied.stdout.strip() else None
        return plan["origin"], plan, report, codes
