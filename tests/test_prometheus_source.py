"""vm-snapshot --prometheus against a fake Prometheus API on 127.0.0.1: healthy answers, and
hostile ones (HTML, NaN, +Inf, 1e308, repeated series, a 30-second stall, a drip, a refusal,
an oversized answer) get the documented handling: a snapshot problem, or exit 65/69 with one
line, never a traceback. Credentials from files, TLS with a CA file."""

from __future__ import annotations

import json
import os
import subprocess
import time

import pytest

from tests.conftest import run
from tests.prometheus_fake import Q, FakePrometheus, healthy, vec


@pytest.fixture
def fake():
    server = FakePrometheus()
    yield server
    server.close()


def snapshot(fake: FakePrometheus, *args: str, timeout: float = 60):
    proc = run("vm-snapshot", "--prometheus", fake.url, *args, timeout=timeout)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def kinds(doc: dict) -> set[tuple]:
    return {(p["kind"], p.get("host"), p.get("vm")) for p in doc["problems"]}


def test_a_healthy_answer_is_the_cluster(fake):
    proc = snapshot(fake)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert {h["name"]: (h["cpu"], h["mem_mib"], h["migration"]) for h in doc["hosts"]} == {
        "node-1": (8, 16384, "xl-ssh"), "node-2": (4, 8192, "xl-ssh")}
    assert {v["name"]: (v["host"], v["cpu"], v["mem_mib"], v["vcpus"]) for v in doc["vms"]} == {
        "web1": ("node-1", 0.5, 1024, 2), "db1": ("node-1", 1.25, 4096, 4),
        "app1": ("node-2", 0.2, 2048, 1)}
    assert doc["problems"] == []
    endpoints = [e for e, _ in fake.seen]
    assert endpoints.count("query") == len(Q) and endpoints[-1] == "query_range"
    # every instant query at the same moment, the one "created" names
    times = {p["time"] for e, p in fake.seen if e == "query"}
    assert len(times) == 1
    from vmtools.model import iso_to_epoch
    assert float(times.pop()) == iso_to_epoch(doc["created"])


@pytest.mark.slow  # several commands through real pipes: seconds on a loaded machine
def test_the_snapshot_carries_the_range_query_samples_and_vm_plan_uses_them(fake):
    now = int(time.time())
    fake.range_answer = {"status": "success", "data": {"resultType": "matrix", "result": [
        {"metric": {"host": "node-1", "vm": "web1"},
         "values": [[now - 120, "0.5"], [now - 60, "3.5"], [now, "0.5"]]},
        {"metric": {"host": "node-1", "vm": "db1"},
         "values": [[now - 120, "1"], [now - 60, "NaN"], [now, "+Inf"]]},
        {"metric": {"host": "node-9", "vm": "gone"}, "values": [[now, "1"]]}]}}
    proc = snapshot(fake, "--samples-window", "2", "--samples-step", "60")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["samples"]["cpu"]["web1"] == [[now - 120, 0.5], [now - 60, 3.5], [now, 0.5]]
    assert doc["samples"]["cpu"]["db1"] == [[now - 120, 1.0]]      # NaN, +Inf dropped
    assert "gone" not in doc["samples"]["cpu"]
    assert "2 CPU sample(s) of the demand window were not plausible" in proc.stderr
    _, params = fake.seen[-1]
    assert params["query"] == Q["guest_cpu"] and params["step"] == "60"
    assert float(params["end"]) - float(params["start"]) == 120
    # vm-plan plans web1 on its peak (3.5 CPUs) from this first run, without --state
    plan = run("vm-plan", "--objective", "balance", "--demand", "max", "--demand-window",
               "120", "--explain", input=proc.stdout)
    assert plan.returncode == 0, plan.stderr
    assert json.loads(plan.stdout)["summary"]["demand"] == "max over 120 min"
    last = run("vm-plan", "--objective", "balance", "--demand", "last", input=proc.stdout)
    assert json.loads(last.stdout)["summary"]["demand"] == "last over 120 min"


@pytest.mark.parametrize("query, series, kind, host, vm", [
    (Q["guest_cpu"], [({"host": "node-1", "vm": "web1"}, "NaN")], "not-a-number", "node-1",
     "web1"),
    (Q["guest_memory_bytes"], [({"host": "node-1", "vm": "web1"}, "1e308")], "bad-value",
     "node-1", "web1"),
    (Q["host_cpus"], [({"host": "node-1"}, "+Inf")], "not-a-number", "node-1", None),
    (Q["guest_cpu"], [({"host": "node-1", "vm": "web1"}, "-1")], "bad-value", "node-1", "web1"),
])
def test_hostile_values_are_problems_and_never_used(fake, query, series, kind, host, vm):
    answers = healthy()
    base = [s for s in answers[query]["data"]["result"]
            if not (s["metric"].get("host") == host and s["metric"].get("vm") == vm)]
    answers[query] = vec(*[(s["metric"], s["value"][1]) for s in base], *series)
    fake.answers = answers
    proc = snapshot(fake)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert (kind, host, vm) in kinds(doc)
    if vm:
        assert vm not in {v["name"] for v in doc["vms"]}
        assert ("no-data", host, vm) in kinds(doc)
    else:
        assert host not in {h["name"] for h in doc["hosts"]}
    assert "problem" in proc.stderr


def test_a_series_repeated_per_guest_is_a_duplicate_series(fake):
    answers = healthy()
    web1 = {"host": "node-1", "vm": "web1"}
    answers[Q["guest_cpu"]] = vec(({**web1, "job": "a"}, "0.5"), ({**web1, "job": "b"}, "0.9"),
                                  ({"host": "node-1", "vm": "db1"}, "1"),
                                  ({"host": "node-1", "vm": "db1", "job": "b"}, "1"),
                                  ({"host": "node-2", "vm": "app1"}, "0.2"))
    fake.answers = answers
    doc = json.loads(snapshot(fake).stdout)
    assert ("duplicate-series", "node-1", "web1") in kinds(doc)
    assert ("duplicate-series", "node-1", "db1") in kinds(doc)
    names = {v["name"]: v for v in doc["vms"]}
    assert "web1" not in names and names["db1"]["cpu"] == 1.0     # copies agree: used


@pytest.mark.slow  # several commands through real pipes: seconds on a loaded machine
def test_missing_guests_stale_and_incomplete_hosts(fake):
    now = time.time()
    answers = healthy(now)
    answers[Q["host_guests"]] = vec(({"host": "node-1"}, "3"), ({"host": "node-2"}, "1"))
    answers[Q["host_last_seen"]] = vec(({"host": "node-1"}, str(now - 2)),
                                       ({"host": "node-2"}, str(now - 900)),
                                       ({"host": "node-3"}, str(now - 1800)))
    fake.answers = answers
    doc = json.loads(snapshot(fake).stdout)
    assert ("no-data", "node-1", None) in kinds(doc)             # 3 listed, 2 with figures
    assert ("stale-host", "node-2", None) in kinds(doc)
    assert ("vanished-host", "node-3", None) in kinds(doc)       # vanished: named, not hidden
    hosts = {h["name"]: h for h in doc["hosts"]}
    assert "node-2" in hosts and "node-3" not in hosts

    answers = healthy()
    answers[Q["host_complete"]] = vec(({"host": "node-1"}, "0"), ({"host": "node-2"}, "1"))
    fake.answers = answers
    doc = json.loads(snapshot(fake).stdout)
    assert ("incomplete-host", "node-1", None) in kinds(doc)
    assert {v["host"] for v in doc["vms"]} == {"node-2"}


@pytest.mark.parametrize("misbehave, code, text", [
    ({"html": True}, 65, "not a Prometheus answer: text/html"),
    ({"status": 502}, 69, "HTTP 502"),
    ({"status": 404}, 65, "HTTP 404"),
])
def test_garbage_answers_are_one_line_and_their_exit_code(fake, misbehave, code, text):
    fake.misbehave = misbehave
    proc = snapshot(fake)
    assert proc.returncode == code and text in proc.stderr, proc.stderr
    assert proc.stdout == "" and len(proc.stderr.strip().splitlines()) == 1


def test_a_prometheus_error_names_the_query(fake):
    fake.answers[Q["host_cpus"]] = {"status": "error", "errorType": "bad_data",
                                    "error": "parse error at char 3"}
    proc = snapshot(fake)
    assert proc.returncode == 65
    assert "Prometheus refused the query (bad_data: parse error at char 3)" in proc.stderr
    assert "vmtools_host_cpus" in proc.stderr


@pytest.mark.slow
@pytest.mark.parametrize("misbehave", [{"stall": 30}, {"drip": 60}])
def test_a_stall_or_a_drip_ends_at_the_one_deadline(fake, misbehave):
    fake.misbehave = misbehave
    started = time.monotonic()
    proc = snapshot(fake, "--timeout", "2")
    took = time.monotonic() - started
    assert proc.returncode == 69, proc.stderr
    assert "no complete answer within the deadline (--timeout)" in proc.stderr
    assert took < 10, f"the read took {took:.1f} s against a 2 s deadline"


def test_an_oversized_answer_is_refused():
    from vmtools.errors import DataError
    from vmtools.prometheus.query import Client
    server = FakePrometheus()
    server.misbehave = {"big": 2000}
    try:
        client = Client(server.url, time.monotonic() + 10, max_bytes=10_000)
        with pytest.raises(DataError, match="over the limit of 10000"):
            client.instant("up", time.time())
    finally:
        server.close()


@pytest.mark.slow  # several commands through real pipes: seconds on a loaded machine
def test_credentials_come_from_files_never_the_url(tmp_path):
    token = tmp_path / "token"
    token.write_text("s3cret-token\n")
    token.chmod(0o600)
    server = FakePrometheus(token="s3cret-token")
    try:
        proc = run("vm-snapshot", "--prometheus", server.url, "--prometheus-token-file",
                   str(token))
        assert proc.returncode == 0, proc.stderr
        assert set(server.auth_headers) == {"Bearer s3cret-token"}
        bad = tmp_path / "bad"
        bad.write_text("wrong\n")
        bad.chmod(0o600)
        refused = run("vm-snapshot", "--prometheus", server.url, "--prometheus-token-file",
                      str(bad))
        assert refused.returncode == 69 and "refused the credentials (HTTP 401)" in \
            refused.stderr and "--prometheus-token-file" in refused.stderr
        assert "wrong" not in refused.stderr and "s3cret" not in refused.stderr
    finally:
        server.close()
    url = run("vm-snapshot", "--prometheus", "http://admin:pw@127.0.0.1:9/")
    assert url.returncode == 2 and "credentials in the URL" in url.stderr
    assert "pw" not in url.stderr.replace("--prometheus-password-file", "")
    token.chmod(0o644)
    loose = run("vm-snapshot", "--prometheus", "http://127.0.0.1:9", "--prometheus-token-file",
                str(token))
    assert loose.returncode == 2 and "mode 0644 lets others read or change it" in loose.stderr
    assert loose.stderr.count("\n") == 1 and "--prometheus-token-file" in loose.stderr
    token.chmod(0o640)                  # the group too: as ssh, as XAPI's and IPMI's files
    group = run("vm-snapshot", "--prometheus", "http://127.0.0.1:9", "--prometheus-token-file",
                str(token))
    assert group.returncode == 2 and "mode 0640" in group.stderr


@pytest.mark.slow  # several commands through real pipes: seconds on a loaded machine
def test_basic_auth_user_and_password_file(tmp_path):
    password = tmp_path / "pw"
    password.write_text("hunter2\n")
    password.chmod(0o600)
    server = FakePrometheus(user="vmtools", password="hunter2")
    try:
        proc = run("vm-snapshot", "--prometheus", server.url, "--prometheus-user", "vmtools",
                   "--prometheus-password-file", str(password))
        assert proc.returncode == 0, proc.stderr
        alone = run("vm-snapshot", "--prometheus", server.url, "--prometheus-user", "vmtools")
        assert alone.returncode == 2 and "go together" in alone.stderr
    finally:
        server.close()


@pytest.mark.slow
def test_tls_with_a_ca_file(tmp_path):
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
                    str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True,
                   capture_output=True)
    server = FakePrometheus(tls=(str(cert), str(key)))
    try:
        unknown = run("vm-snapshot", "--prometheus", server.url, "--timeout", "5")
        assert unknown.returncode == 69 and "TLS failed" in unknown.stderr, unknown.stderr
        ok = run("vm-snapshot", "--prometheus", server.url, "--prometheus-ca-file", str(cert))
        assert ok.returncode == 0, ok.stderr
        assert len(json.loads(ok.stdout)["vms"]) == 3
    finally:
        server.close()
    plain = run("vm-snapshot", "--prometheus", "http://127.0.0.1:9", "--prometheus-ca-file",
                str(cert))
    assert plain.returncode == 2 and "needs an https:// URL" in plain.stderr


def test_an_unreachable_server_is_69():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = run("vm-snapshot", "--prometheus", f"http://127.0.0.1:{port}")
    assert proc.returncode == 69 and f"127.0.0.1:{port}" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_profiles_and_bad_profiles(tmp_path, fake):
    proc = run("vm-snapshot", "--prometheus", fake.url, "--prometheus-profile", "nope")
    assert proc.returncode == 2 and "neither a built-in profile (vmtools, xen-exporter)" in \
        proc.stderr
    bad = tmp_path / "p.toml"
    bad.write_text('[queries]\nhost_cpus = "x"\n')
    proc = run("vm-snapshot", "--prometheus", fake.url, "--prometheus-profile", str(bad))
    assert proc.returncode == 2 and "lacks host_memory_bytes" in proc.stderr


@pytest.mark.slow  # several commands through real pipes: seconds on a loaded machine
def test_hostile_labels_never_reach_the_snapshot(fake):
    answers = healthy()
    evil_host = {"host": "node-1; rm -rf /"}
    evil_vm = {"host": "node-1", "vm": "<script>alert(1)</script>"}
    for q, value in ((Q["host_memory_bytes"], str(2**34)), (Q["host_cpus"], "8"),
                     (Q["host_last_seen"], str(time.time()))):
        answers[q]["data"]["result"].append({"metric": evil_host, "value": [0, value]})
    for q, value in ((Q["guest_memory_bytes"], str(2**30)), (Q["guest_vcpus"], "1"),
                     (Q["guest_cpu"], "0.1")):
        answers[q]["data"]["result"].append({"metric": evil_vm, "value": [0, value]})
    fake.answers = answers
    proc = snapshot(fake)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert {h["name"] for h in doc["hosts"]} == {"node-1", "node-2"}
    assert "<script>" not in {v["name"] for v in doc["vms"]}
    assert [p["kind"] for p in doc["problems"]].count("unsafe-name") == 2
    assert all(p.get("host") in (None, "node-1", "node-2") for p in doc["problems"])
    plan = run("vm-plan", input=proc.stdout)               # the snapshot is a valid document
    assert plan.returncode in (0, 75), plan.stderr


@pytest.mark.parametrize("answer, text", [
    ({"status": "success", "data": {"resultType": "string", "result": [1, "x"]}},
     "expected an instant vector, got a string"),
    ({"status": "success", "data": {"resultType": "vector",
                                    "result": [{"metric": {"host": 1}, "value": [1, "8"]}]}},
     "a series whose labels are not strings"),
    ({"status": "success", "data": {"resultType": "vector",
                                    "result": [{"metric": {"host": "node-1"}, "value": 8}]}},
     "a sample that is not [time, \"value\"]"),
    (b'{"status": "success", "data": {"resultType": "vector", "result": '
     b'[{"metric": {"host": "node-1"}, "value": [1e999, "8"]}]}}',
     "a sample that is not [time, \"value\"]"),
    (b'{"status": "success", "data": {"resultType": "vector", "result": '
     b'[{"metric": {"host": "node-1"}, "value": [NaN, "8"]}]}}', "not JSON"),
    ([1, 2, 3], "no \"status\" of success or error"),
])
def test_json_of_another_shape_is_65_naming_the_query(fake, answer, text):
    fake.answers[Q["host_cpus"]] = answer if isinstance(answer, bytes) else \
        json.dumps(answer).encode()
    proc = snapshot(fake)
    assert proc.returncode == 65 and text in proc.stderr, proc.stderr
    assert "vmtools_host_cpus" in proc.stderr and proc.stdout == ""


def test_the_host_info_cluster_label_is_the_migration_domain(fake):
    h1, h2 = {"host": "node-1", "instance": "n1:9782"}, {"host": "node-2", "instance": "n2:9782"}
    fake.answers[Q["host_info"]] = vec(
        ({**h1, "hypervisor": "xen-4.17", "migration": "xl-ssh", "cluster": "paris"}, "1"),
        ({**h2, "hypervisor": "xen-4.17", "migration": "xl-ssh", "cluster": "a\x1bb"}, "1"))
    proc = snapshot(fake)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert {h["name"]: h.get("domain", "") for h in doc["hosts"]} == {"node-1": "paris",
                                                                     "node-2": ""}
    # a label that is not printable is no domain: a problem names (and freezes) the host
    assert ("bad-value", "node-2", None) in kinds(doc)
    assert "\x1b" not in proc.stdout and "\x1b" not in proc.stderr
