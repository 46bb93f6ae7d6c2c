"""PrometheusLab: a real Prometheus server (Debian's ``prometheus``) on a free loopback port,
scraping every simulated Domain-0's vm-gmetric exporter.

Its configuration and its TSDB live in the lab's directory (``DIR/prometheus/``); it scrapes
every ``scrape_interval`` seconds (1 by default, so a lab settles in seconds) and its web API
is what ``vm-snapshot --prometheus`` reads. Targets are a file_sd file the lab rewrites when a
host is added (Prometheus re-reads it by itself). Stopped with terminate() + wait().
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Callable

from vmtools.lab.ganglia import free_port
from vmtools.lab.ports import holds_port

PROMETHEUS = "/usr/bin/prometheus"


def prometheus_missing() -> str | None:
    """Why this machine cannot run the lab's Prometheus, or None."""
    if os.path.exists(PROMETHEUS) or shutil.which("prometheus"):
        return None
    return "prometheus is not installed (Debian: apt-get install prometheus)"


class PrometheusLab:
    def __init__(self, workdir: Path, scrape_interval: float = 1.0,
                 web_config: str | None = None, auth: tuple[str, str] | None = None):
        """``web_config``: a Prometheus web configuration (YAML: ``tls_server_config``,
        ``basic_auth_users``), as a server is deployed with TLS and basic auth; ``auth``: the
        user and password the lab itself uses to see that the server is ready."""
        self.dir = Path(workdir)
        self.scrape_interval = scrape_interval
        self.web_config = web_config
        self.auth = auth
        self.port = 0
        self.proc: subprocess.Popen | None = None
        self.targets: dict[str, str] = {}       # host -> ADDR:PORT of its exporter

    @property
    def url(self) -> str:
        scheme = "https" if self.web_config and "tls_server_config" in self.web_config \
            else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    def _open(self, path: str, data: bytes | None = None):
        import base64
        import ssl
        req = urllib.request.Request(f"{self.url}{path}", data)
        if self.auth:
            token = base64.b64encode(f"{self.auth[0]}:{self.auth[1]}".encode()).decode()
            req.add_header("Authorization", f"Basic {token}")
        context = None
        if self.url.startswith("https"):      # the lab's own readiness check, not vmtools'
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return urllib.request.urlopen(req, timeout=5, context=context)

    def set_targets(self, targets: dict[str, str]) -> None:
        self.targets = dict(targets)
        self.dir.mkdir(parents=True, exist_ok=True)
        groups = [{"targets": [addr], "labels": {"lab_host": host}}
                  for host, addr in sorted(self.targets.items())]
        tmp = self.dir / ".targets.json.tmp"
        tmp.write_text(json.dumps(groups, indent=1))
        os.replace(tmp, self.dir / "targets.json")

    def start(self) -> "PrometheusLab":
        why = prometheus_missing()
        if why:
            raise RuntimeError(why)
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "data").mkdir(exist_ok=True)
        if not (self.dir / "targets.json").exists():
            self.set_targets(self.targets)
        every = f"{self.scrape_interval:g}s"
        (self.dir / "prometheus.yml").write_text(
            "# written by vm-lab: scrape every simulated Domain-0's vm-gmetric exporter\n"
            f"global:\n  scrape_interval: {every}\n  evaluation_interval: {every}\n"
            f"  scrape_timeout: {every}\n"
            "scrape_configs:\n  - job_name: vmtools\n    file_sd_configs:\n"
            f"      - files: ['{self.dir / 'targets.json'}']\n        refresh_interval: 1s\n")
        extra = []
        if self.web_config:
            (self.dir / "web.yml").write_text(self.web_config)
            extra.append(f"--web.config.file={self.dir / 'web.yml'}")
        # The port was free when chosen; a parallel test's daemon may take it before
        # Prometheus binds it (it then exits at once): start again on another port.
        for attempt in range(3):
            self.port = free_port()
            if self._run(extra, last=attempt == 2):
                return self
        raise AssertionError("unreachable")

    def _run(self, extra: list[str], last: bool) -> bool:
        """Start Prometheus on ``self.port``; True once ready, False when it could not bind
        (and ``last`` is false); raises otherwise."""
        log = open(self.dir / "prometheus.log", "ab")
        self.proc = subprocess.Popen(
            [shutil.which("prometheus") or PROMETHEUS,
             f"--config.file={self.dir / 'prometheus.yml'}",
             f"--storage.tsdb.path={self.dir / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}",
             "--storage.tsdb.retention.time=1d", "--log.level=warn", *extra],
            stdout=log, stderr=log, stdin=subprocess.DEVNULL, cwd=self.dir)
        log.close()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                tail = (self.dir / "prometheus.log").read_text(errors="replace")[-500:]
                if not last and "address already in use" in tail:
                    return False
                raise RuntimeError(f"prometheus exited {self.proc.returncode}: {tail}")
            try:
                with self._open("/-/ready") as r:
                    if r.status == 200:
                        return True
            except OSError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError("prometheus did not become ready within 60 s")

    def query(self, promql: str) -> list:
        """An instant query's result list (for tests and waiting)."""
        data = urllib.parse.urlencode({"query": promql}).encode()
        with self._open("/api/v1/query", data) as r:
            return json.loads(r.read())["data"]["result"]

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


def exporters_listening(prometheus: PrometheusLab, procs: dict[str, subprocess.Popen],
                        ports: dict[str, int], restart: Callable[[str], subprocess.Popen],
                        log_of: Callable[[str], Path], attempts: int = 3) -> None:
    """Wait until every Domain-0's vm-gmetric (``procs``) holds its exporter port (``ports``,
    updated in place). One that could not listen (the port was taken between choosing and
    starting: vm-gmetric exits 69) is ``restart``ed on another port, and ``prometheus`` is
    given the new target. A CI run once failed on one exporter Prometheus never saw."""
    for attempt in range(attempts):
        pending = dict(ports)
        failed = []
        deadline = time.time() + 60
        while pending and time.time() < deadline:
            for name, port in list(pending.items()):
                if holds_port(procs[name].pid, port, "tcp"):
                    del pending[name]
                elif procs[name].poll() is not None:
                    failed.append(name)
                    del pending[name]
            if pending:
                time.sleep(0.1)
        if pending:
            raise RuntimeError("vm-gmetric's exporter did not listen within 60 s on "
                               + ", ".join(f"{n} (127.0.0.1:{p})" for n, p in pending.items()))
        if not failed:
            return
        if attempt == attempts - 1:
            tail = log_of(failed[0]).read_text(errors="replace").strip().splitlines()[-1:]
            raise RuntimeError(f"vm-gmetric's exporter on {failed[0]} could not listen: "
                               + (tail[0] if tail else "no log"))
        for name in failed:
            ports[name] = free_port()
        prometheus.set_targets({n: f"127.0.0.1:{p}" for n, p in ports.items()})
        for name in failed:
            procs[name] = restart(name)
