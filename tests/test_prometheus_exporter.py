"""vm-gmetric --prometheus-listen: the exporter a Prometheus scrapes on a Domain-0 without
Ganglia. The same figures as sent to gmond, in the text exposition format promtool accepts;
a toolstack read that failed or listed garbage serves no guest list (complete 0)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import urllib.request

import pytest

from tests.conftest import run, script
from tests.test_gmetric_lab import Dom0Lab
from vmtools.lab.ports import free_port, holds_port
from vmtools.prometheus import names as N

pytestmark = pytest.mark.slow
PROMTOOL = shutil.which("promtool")


def parse(text: str) -> dict[tuple, float]:
    """{(name, ((label, value), ...)): value} of an exposition text."""
    from prometheus_client.parser import text_string_to_metric_families
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


class Exporter:
    def __init__(self, lab: Dom0Lab, host: str, *extra: str):
        self.port = free_port()
        env = dict(os.environ, **lab.env(host), XDG_CONFIG_HOME="/nonexistent")
        self.proc = subprocess.Popen(
            [script("vm-gmetric"), "--prometheus-listen", f"127.0.0.1:{self.port}",
             "--interval", "0.5", "--window", "0.3", *lab.args(host), *extra],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def scrape(self, until=lambda text: True, timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        while True:
            try:
                # its own port (chosen outside the kernel's ephemeral range, lab/ports.py),
                # not whatever else may have taken it first
                if holds_port(self.proc.pid, self.port):
                    with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics",
                                                timeout=10) as r:
                        text = r.read().decode()
                    if until(text):
                        return text
            except OSError:
                pass
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise AssertionError(f"no scrape as expected; stderr: {self.stop()}")
            time.sleep(0.2)

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.proc.terminate()
        _, err = self.proc.communicate(timeout=10)
        return err


def test_the_exporter_serves_the_figures_sent_to_gmond(tmp_path):
    lab = Dom0Lab(tmp_path, {"node-1": {"domains": {"web1": {"mem_mib": 512, "vcpus": 2},
                                                     "db1": {"mem_mib": 2048}}}})
    exporter = Exporter(lab, "node-1")
    try:
        text = exporter.scrape(lambda t: N.GUEST_CPU + "{" in t)
    finally:
        err = exporter.stop()
    assert exporter.proc.returncode == 0, err
    got = parse(text)
    host = (("host", "node-1"),)
    assert got[(N.HOST_CPUS, host)] == 8
    assert got[(N.HOST_COMPLETE, host)] == 1 and got[(N.HOST_GUESTS, host)] == 2
    assert got[(N.HOST_INFO, (("host", "node-1"), ("hypervisor", "xen-4.17"),
                              ("migration", "xl-ssh")))] == 1
    web1 = (("host", "node-1"), ("vm", "web1"))
    assert got[(N.GUEST_MEMORY, web1)] == 512 * 2**20
    assert got[(N.GUEST_VCPUS, web1)] == 2
    # the same figures vm-gmetric would send to gmond (its dry run), in base units
    dry = run("vm-gmetric", "--dry-run", "--window", "0", "--gmond", "127.0.0.1:9",
              *lab.args("node-1"), env=lab.env("node-1"))
    sent = {m["name"]: m["value"] for m in __import__("json").loads(dry.stdout)["metrics"]}
    assert got[(N.HOST_MEMORY, host)] == int(sent["container.mem_total"]) * 1024
    assert got[(N.GUEST_MEMORY, (("host", "node-1"), ("vm", "db1")))] == \
        int(sent["container.vm.db1.mem"]) * 1024
    assert 0 <= got[(N.GUEST_CPU, web1)] <= 8


@pytest.mark.skipif(PROMTOOL is None, reason="promtool (Debian prometheus) missing")
def test_promtool_accepts_the_exposition(tmp_path):
    lab = Dom0Lab(tmp_path, {"node-1": {"domains": {f"g{i}": {} for i in range(5)}}})
    exporter = Exporter(lab, "node-1")
    try:
        text = exporter.scrape(lambda t: N.GUEST_NET + "{" in t)
    finally:
        exporter.stop()
    check = subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True,
                           text=True, timeout=30)
    assert check.returncode == 0, check.stdout + check.stderr


def test_garbage_in_the_guest_list_serves_no_guest_list(tmp_path):
    lab = Dom0Lab(tmp_path, {"node-1": {"domains": {"web1": {"mem_mib": 512}}}})
    lab.fault("node-1", "xl list", {"append": "libxl: error: garbage here\n"})
    exporter = Exporter(lab, "node-1", "--toolstack", "xl")
    try:
        text = exporter.scrape(lambda t: N.HOST_CYCLE_TIME + "{" in t)
    finally:
        exporter.stop()
    got = parse(text)
    host = (("host", "node-1"),)
    assert got[(N.HOST_COMPLETE, host)] == 0 and got[(N.HOST_PROBLEMS, host)] >= 1
    assert not any(name.startswith("vmtools_guest_") for name, _ in got), \
        "a guest list hiding a running guest was served"
    assert (N.HOST_GUESTS, host) not in got
    assert got[(N.HOST_CPUS, host)] == 8          # what is known is still served


def test_a_failing_toolstack_serves_complete_0_and_the_daemon_lives_on(tmp_path):
    lab = Dom0Lab(tmp_path, {"node-1": {"domains": {"web1": {}}}})
    lab.fault("node-1", "xl list", {"rc": 1, "stderr": "libxl: error: no list\n"})
    exporter = Exporter(lab, "node-1", "--toolstack", "xl")
    try:
        first = exporter.scrape(lambda t: N.HOST_CYCLE_TIME + "{" in t)
        assert parse(first)[(N.HOST_COMPLETE, (("host", "node-1"),))] == 0
        lab.fault("node-1", "xl list", {})            # the toolstack answers again
        again = exporter.scrape(lambda t: N.GUEST_MEMORY + "{" in t)
        assert parse(again)[(N.HOST_COMPLETE, (("host", "node-1"),))] == 1
    finally:
        exporter.stop()


@pytest.mark.parametrize("args, code, text", [
    (["--prometheus-listen", "127.0.0.1:99999"], 2, "is not a TCP port"),
    (["--prometheus-listen", "node-1:9782"], 2, "is not an IP address"),
    (["--prometheus-listen", ":9782", "--once"], 2, "run vm-gmetric as a daemon"),
])
def test_bad_listen_settings_are_one_line(tmp_path, args, code, text):
    proc = run("vm-gmetric", *args)
    assert proc.returncode == code and text in proc.stderr and "Traceback" not in proc.stderr


def test_a_port_in_use_exits_69(tmp_path):
    lab = Dom0Lab(tmp_path, {"node-1": {"domains": {}}})
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = run("vm-gmetric", "--prometheus-listen", f"127.0.0.1:{port}", "--window", "0",
                   *lab.args("node-1"), env=lab.env("node-1"), timeout=30)
    assert proc.returncode == 69 and "cannot listen on 127.0.0.1" in proc.stderr
