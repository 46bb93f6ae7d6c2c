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

from vmtools.lab.ganglia import free_port

PROMETHEUS = "/usr/bin/prometheus"


def prometheus_missing() -> str | None:
    """Why this machine cannot run the lab's Prometheus, or None."""
    if os.path.exists(PROMETHEUS) or shutil.which("prometheus"):
        return None
    return "prometheus is not installed (Debian: apt-get install prometheus)"


class PrometheusLab:
    def __init__(self, workdir: Path, scrape_interval: float = 1.0):
        self.dir = Path(workdir)
        self.scrape_interval = scrape_interval
        self.port = 0
        self.proc: subprocess.Popen | None = None
        self.targets: dict[str, str] = {}       # host -> ADDR:PORT of its exporter

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

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
        self.port = free_port()
        log = open(self.dir / "prometheus.log", "ab")
        self.proc = subprocess.Popen(
            [shutil.which("prometheus") or PROMETHEUS,
             f"--config.file={self.dir / 'prometheus.yml'}",
             f"--storage.tsdb.path={self.dir / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}",
             "--storage.tsdb.retention.time=1d", "--log.level=warn"],
            stdout=log, stderr=log, stdin=subprocess.DEVNULL, cwd=self.dir)
        log.close()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                tail = (self.dir / "prometheus.log").read_text(errors="replace")[-500:]
                raise RuntimeError(f"prometheus exited {self.proc.returncode}: {tail}")
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as r:
                    if r.status == 200:
                        return self
            except OSError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError("prometheus did not become ready within 60 s")

    def query(self, promql: str) -> list:
        """An instant query's result list (for tests and waiting)."""
        data = urllib.parse.urlencode({"query": promql}).encode()
        with urllib.request.urlopen(f"{self.url}/api/v1/query", data, timeout=10) as r:
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

