"""vm-lab with a real Prometheus (Debian's package) on loopback scraping every simulated
Domain-0's vm-gmetric exporter: the pipeline end to end through it; the snapshot it gives
agrees with Ganglia's of the same lab moment; and the demand window a range query gives is
what vm-plan --state gathers run after run."""

from __future__ import annotations

import json
import math
import time
import urllib.parse
import urllib.request

import pytest

from tests.conftest import run
from vmtools.lab.ganglia import binaries_missing
from vmtools.lab.prometheus import prometheus_missing

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(bool(prometheus_missing()), reason="prometheus missing")]


NOT_YET = "has no series of the"        # Prometheus has not scraped yet: unknown, exit 69


def snapshot(lab, *args: str, timeout: float = 90) -> dict:
    """vm-snapshot's document, once Prometheus has scraped something (before that it exits
    69: the cluster is unknown, not empty)."""
    deadline = time.time() + timeout
    while True:
        proc = lab.run("vm-snapshot", *args)
        if proc.returncode == 69 and NOT_YET in proc.stderr and time.time() < deadline:
            time.sleep(1.0)
            continue
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)


def scraped_after(lab, t: float) -> bool:
    """Every exporter of the lab scraped after second ``t`` (its ``up`` series' last sample)."""
    query = urllib.parse.urlencode({"query": "min(timestamp(up))"})
    with urllib.request.urlopen(f"{lab.prometheus.url}/api/v1/query?{query}", timeout=10) as r:
        result = json.load(r)["data"]["result"]
    return bool(result) and float(result[0]["value"][1]) > t


def test_the_pipeline_runs_end_to_end_through_prometheus(make_lab):
    lab = make_lab("steady", monitoring="prometheus", ssh=False)
    assert lab.ganglia is None and lab.snapshot_args()[0] == "--prometheus"
    truth = lab.wait_for_truth(90)
    assert truth["source"].startswith("prometheus http://127.0.0.1:")
    assert truth["samples"]["cpu"], "the snapshot carries the guests' recent CPU"
    origin, plan, report, codes = lab.pipeline("consolidate")
    assert codes == {"vm-snapshot": 0, "vm-plan": 0, "vm-apply": 0}, lab.last_apply_stderr
    assert plan["actions"] and {a["outcome"] for a in report["actions"]} == {"done"}
    assert lab.placement() == plan["placement"]
    # Prometheus sees the new placement once vm-gmetric has republished it
    after = lab.wait_for_truth(90)
    assert {v["name"]: v["host"] for v in after["vms"]} == plan["placement"]


@pytest.mark.ganglia
@pytest.mark.skipif(bool(binaries_missing()), reason="gmond/gmetad missing")
def test_prometheus_and_ganglia_agree_on_the_same_lab_moment(make_lab):
    lab = make_lab("steady", monitoring="both", ssh=False, interval=3.0)
    lab.wait_for_truth(90)                                  # through Ganglia
    prom = lab.prometheus_args()

    def view(doc: dict) -> tuple:
        hosts = {h["name"]: (h["cpu"], h["mem_mib"], h["hypervisor"], h["migration"], h["state"])
                 for h in doc["hosts"]}
        vms = {v["name"]: (v["host"], v["mem_mib"], v["vcpus"], v["state"]) for v in doc["vms"]}
        return hosts, vms, [p["kind"] for p in doc["problems"]]

    def cycles(doc: dict) -> dict[str, tuple]:
        """Per host: the cycle it last published (when) and its guests' CPU in that cycle."""
        return {h["name"]: (h["reported"], {v["name"]: v["cpu"] for v in doc["vms"]
                                            if v["host"] == h["name"]}) for h in doc["hosts"]}

    # Both read the same vm-gmetric daemons: the same hosts, guests and figures. CPU is
    # measured anew every cycle (3 s here), so it is compared host by host where both
    # sources hold the same cycle (the same REPORTED second): there it must be identical.
    compared: set[str] = set()
    for _ in range(60):
        ganglia = snapshot(lab, *lab.snapshot_args())
        prometheus = snapshot(lab, *prom)
        if view(ganglia) != view(prometheus):     # a guest or host still settling
            time.sleep(0.3)
            continue
        g, p = cycles(ganglia), cycles(prometheus)
        for host in g:
            if g[host][0] == p[host][0]:
                assert g[host][1] == p[host][1], f"{host}, cycle {g[host][0]}"
                compared.add(host)
        if len(compared) == len(g):
            break
        time.sleep(0.3)
    assert view(ganglia) == view(prometheus)
    assert compared == set(cycles(ganglia)), f"never the same cycle for {set(g) - compared}"
    assert view(prometheus)[2] == []
    assert len(ganglia["vms"]) == 16


def test_the_demand_window_from_range_queries_is_what_state_gathers(make_lab, tmp_path):
    lab = make_lab("diurnal", monitoring="prometheus", ssh=False)
    lab.wait_for_truth(90)
    settled = time.time()
    time.sleep(5)             # every moment asked about below is one Prometheus saw whole
    prom = ["--prometheus", lab.prometheus.url]
    state = tmp_path / "state"
    state.mkdir()
    step = 2
    # vm-plan --state, run after run, each on a snapshot of one moment on the 2 s grid
    # (taken 3 s later, when Prometheus has scraped it for sure)
    moments = []
    for _ in range(5):
        time.sleep(2.5)
        t = math.floor((time.time() - 3) / step) * step
        assert t > settled
        # Prometheus has every target's scrapes up to t once each has one after t (a
        # target's scrapes are stored in order): a loaded machine can delay one for seconds
        deadline = time.time() + 60
        while not scraped_after(lab, t):
            assert time.time() < deadline, f"a target not scraped after second {t} in 60 s"
            time.sleep(0.5)
        moments.append(t)
        snap = run("vm-snapshot", *prom, "--at", str(t), "--samples-window", "0")
        assert snap.returncode == 0, snap.stderr
        assert "samples" not in json.loads(snap.stdout)
        plan = run("vm-plan", "--objective", "balance", "--state", str(state), "--demand",
                   "max", "--demand-window", "5", input=snap.stdout)
        assert plan.returncode == 0, plan.stderr
    gathered = json.loads((state / "vmtools.state").read_text())["plan"]["samples"]
    # one snapshot at the last moment, its window from a range query on the same grid
    window = (moments[-1] - moments[0] + 4 * step) / 60
    doc = snapshot(lab, *prom, "--at", str(moments[-1]), "--samples-window", str(window),
                   "--samples-step", str(step))
    ranged = doc["samples"]["cpu"]
    assert set(ranged) == set(gathered) and len(gathered) == len(doc["vms"])
    for vm, rows in gathered.items():
        assert [r[0] for r in rows] == moments, vm
        from_range = {t: c for t, c in ranged[vm]}
        assert set(from_range) >= set(moments), f"{vm}: the range misses a moment --state saw"
        assert [[t, from_range[t]] for t in moments] == rows, vm
    # not a trivial equality: the load moved within the window
    varied = [vm for vm, rows in gathered.items() if len({c for _, c in rows}) > 1]
    assert varied, "the diurnal scenario's load should move within the window"


def test_vm_lab_refuses_an_unknown_monitoring():
    proc = run("vm-lab", "--monitoring", "nagios", "--duration", "1")
    assert proc.returncode == 2 and "expected ganglia, prometheus or both" in proc.stderr


XEN_EXPORTER_TEXT = """\
xen_host_memory_total_kib{host="xcp-1", host_uuid="h1"} 67108864
xen_host_memory_total_kib{host="xcp-2", host_uuid="h2"} 33554432
""" + "".join(f'xen_host_cpu{{cpu="{i}", host="xcp-1", host_uuid="h1"}} 0.1\n' for i in range(16)) \
    + "".join(f'xen_host_cpu{{cpu="{i}", host="xcp-2", host_uuid="h2"}} 0.1\n' for i in range(8)) \
    + """\
xen_vm_memory{vm="Control domain on host: xcp-1", vm_uuid="d1", host="xcp-1", host_uuid="h1"} 4294967296
xen_vm_memory{vm="Control domain on host: xcp-2", vm_uuid="d2", host="xcp-2", host_uuid="h2"} 2147483648
xen_vm_cpu{cpu="0", vm="Control domain on host: xcp-1", vm_uuid="d1", host="xcp-1", host_uuid="h1"} 0.9
xen_vm_memory{vm="web1", vm_uuid="v1", host="xcp-1", host_uuid="h1"} 2147483648
xen_vm_cpu{cpu="0", vm="web1", vm_uuid="v1", host="xcp-1", host_uuid="h1"} 0.25
xen_vm_cpu{cpu="1", vm="web1", vm_uuid="v1", host="xcp-1", host_uuid="h1"} 0.5
xen_vm_vif_rx{vif="0", vm="web1", vm_uuid="v1", host="xcp-1", host_uuid="h1"} 1000
xen_vm_vif_tx{vif="0", vm="web1", vm_uuid="v1", host="xcp-1", host_uuid="h1"} 3000
xen_vm_memory{vm="db1", vm_uuid="v2", host="xcp-2", host_uuid="h2"} 8589934592
xen_vm_cpu{cpu="0", vm="db1", vm_uuid="v2", host="xcp-2", host_uuid="h2"} 1
xen_vm_vif_rx{vif="0", vm="db1", vm_uuid="v2", host="xcp-2", host_uuid="h2"} 0
xen_vm_vif_tx{vif="0", vm="db1", vm_uuid="v2", host="xcp-2", host_uuid="h2"} 0
xen_host_up{host_ip="10.0.0.1"} 1
"""


def test_the_xen_exporter_profile_through_a_real_prometheus(tmp_path):
    """The built-in xen-exporter profile's PromQL, run by Prometheus itself on series shaped
    as MikeDombo/xen-exporter writes them (labels, no HELP or TYPE, Domain-0 as a VM)."""
    import http.server
    import threading
    from vmtools.lab.ganglia import free_port
    from vmtools.lab.prometheus import PrometheusLab

    class Exporter(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            body = XEN_EXPORTER_TEXT.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    port = free_port()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Exporter)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    prometheus = PrometheusLab(tmp_path / "prometheus")
    prometheus.set_targets({"pool": f"127.0.0.1:{port}"})
    try:
        prometheus.start()
        # until Prometheus has scraped the exporter (a loaded machine starts it slowly): a
        # Prometheus without the series yet exits 69 (unknown), then has part of them
        deadline = time.time() + 90
        while True:
            proc = run("vm-snapshot", "--prometheus", prometheus.url, "--prometheus-profile",
                       "xen-exporter", "--samples-step", "1")
            if proc.returncode == 69 and NOT_YET in proc.stderr and time.time() < deadline:
                time.sleep(1.0)
                continue
            assert proc.returncode == 0, proc.stderr
            doc = json.loads(proc.stdout)
            if len(doc["hosts"]) == 2 or time.time() > deadline:
                break
            time.sleep(1.0)
    finally:
        prometheus.stop()
        server.shutdown()
        server.server_close()
    assert doc["problems"] == []
    assert {h["name"]: (h["cpu"], h["mem_mib"], h["migration"]) for h in doc["hosts"]} == {
        "xcp-1": (16, 60 * 1024, "xapi"), "xcp-2": (8, 30 * 1024, "xapi")}
    assert {v["name"]: (v["host"], v["cpu"], v["vcpus"], v["mem_mib"], v["net_mbps"])
            for v in doc["vms"]} == {"web1": ("xcp-1", 0.75, 2, 2048, 0.032),
                                     "db1": ("xcp-2", 1.0, 1, 8192, 0.0)}
    assert doc["samples"]["cpu"]["web1"][-1][1] == 0.75


def test_a_domain0_whose_exporter_dies_is_named_not_hidden(make_lab):
    """Prometheus marks the series of a target it cannot scrape stale at once: the host drops
    out of instant queries. vm-snapshot still names it (vanished-host, from host_last_seen over
    the last hour), so vm-plan freezes it instead of seeing its guests' memory as free."""
    lab = make_lab("steady", monitoring="prometheus", ssh=False)
    lab.wait_for_truth(90)
    proc = lab.gmetrics["node-2"]
    proc.terminate()
    proc.wait(timeout=10)
    snap = lab.wait_until(lambda s: any(p["kind"] == "vanished-host" and p.get("host") == "node-2"
                                        for p in s["problems"]), 60, "node-2 to vanish")
    assert "node-2" not in {h["name"] for h in snap["hosts"]}
    plan = lab.run("vm-plan", "--objective", "consolidate", input=json.dumps(snap))
    assert plan.returncode == 0, plan.stderr
    doc = json.loads(plan.stdout)
    assert "node-2" in {f["host"] for f in doc["summary"].get("frozen", [])}
    assert "node-2" not in {a.get("dst") for a in doc["actions"]}


def test_a_real_prometheus_with_tls_and_basic_auth(tmp_path):
    """Prometheus as it is deployed behind its own web configuration (TLS with a certificate
    of the site's CA, basic auth with a bcrypt hash): vm-snapshot reads it with the CA file,
    the user and the password file; a wrong password or an unknown CA is exit 69, one line,
    and the password never shows."""
    import subprocess
    import bcrypt
    from vmtools.lab.prometheus import PrometheusLab
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
                    str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    secret = "correct horse battery staple"
    hashed = bcrypt.hashpw(secret.encode(), bcrypt.gensalt(rounds=4)).decode()
    web = (f"tls_server_config:\n  cert_file: {cert}\n  key_file: {key}\n"
           f"basic_auth_users:\n  vmtools: '{hashed}'\n")
    password, wrong = tmp_path / "pw", tmp_path / "wrong"
    for path, text in ((password, secret), (wrong, "nope")):
        path.write_text(text + "\n")
        path.chmod(0o600)
    prometheus = PrometheusLab(tmp_path / "prometheus", web_config=web,
                               auth=("vmtools", secret)).start()
    try:
        assert prometheus.url.startswith("https://")
        base = ["--prometheus", prometheus.url, "--prometheus-user", "vmtools", "--timeout", "20"]
        ok = run("vm-snapshot", *base, "--prometheus-password-file", str(password),
                 "--prometheus-ca-file", str(cert))
        # TLS verified and the login taken: the server answered the queries, and having
        # scraped nothing, it knows no cluster (exit 69 saying so, not a login error)
        assert ok.returncode == 69 and NOT_YET in ok.stderr, ok.stderr
        assert f"prometheus {prometheus.url}" in ok.stderr
        refused = run("vm-snapshot", *base, "--prometheus-password-file", str(wrong),
                      "--prometheus-ca-file", str(cert))
        assert refused.returncode == 69 and "refused the credentials (HTTP 401)" in \
            refused.stderr
        unknown_ca = run("vm-snapshot", *base, "--prometheus-password-file", str(password))
        assert unknown_ca.returncode == 69 and "TLS failed" in unknown_ca.stderr
        for proc in (ok, refused, unknown_ca):
            assert secret not in proc.stderr + proc.stdout and "Traceback" not in proc.stderr
    finally:
        prometheus.stop()


def test_a_prometheus_that_scrapes_nothing_is_unknown_not_an_empty_cluster(tmp_path):
    # A real Prometheus with no target: its answers are empty. That says nothing about the
    # cluster; vm-snapshot must not print a snapshot of a cluster without hosts (a planner or
    # vm-status would take it as "all is well").
    from vmtools.lab.prometheus import PrometheusLab
    prom = PrometheusLab(tmp_path / "prom").start()
    try:
        url = f"http://127.0.0.1:{prom.port}"
        alone = run("vm-snapshot", "--prometheus", url)
        assert alone.returncode == 69 and alone.stdout == ""
        assert len(alone.stderr.strip().splitlines()) == 1
        assert "has no series of the 'vmtools' profile" in alone.stderr
        view = run("vm-status", "--prometheus", url, "--runs", "")
        assert view.returncode == 69 and "has no series" in view.stderr and view.stdout == ""
        # beside a source that answers, it is a problem naming it, not silence
        both = run("vm-snapshot", "--prometheus", url, "--example", "lab")
        assert both.returncode == 0, both.stderr
        doc = json.loads(both.stdout)
        lost = [p for p in doc["problems"] if p["kind"] == "unavailable-source"]
        assert len(lost) == 1 and url in lost[0]["message"] and doc["hosts"]
    finally:
        prom.stop()
