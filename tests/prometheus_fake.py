"""A fake Prometheus HTTP API on 127.0.0.1 for the hostile-answer tests: it answers each
query of a mapping profile from a table (a healthy cluster by default) and can misbehave on
purpose (HTML, a stall, a drip, an HTTP status, an oversized body), with optional TLS and
credentials it checks."""

from __future__ import annotations

import json
import ssl
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from vmtools.prometheus.profiles import load_profile

Q = load_profile("vmtools").queries


def vec(*series):
    """An instant vector answer: series are (labels, value string)."""
    return {"status": "success", "data": {"resultType": "vector", "result": [
        {"metric": labels, "value": [time.time(), value]} for labels, value in series]}}


def healthy(now: float | None = None) -> dict[str, dict]:
    """node-1 (8 CPUs, 16 GiB for guests) runs web1 and db1; node-2 (4 CPUs) runs app1."""
    now = now or time.time()
    h1, h2 = {"host": "node-1", "instance": "n1:9782"}, {"host": "node-2", "instance": "n2:9782"}
    g = lambda h, vm: {**h, "vm": vm}  # noqa: E731
    return {
        Q["host_memory_bytes"]: vec((h1, str(16 * 2**30)), (h2, str(8 * 2**30))),
        Q["host_cpus"]: vec((h1, "8"), (h2, "4")),
        Q["host_info"]: vec(({**h1, "hypervisor": "xen-4.17", "migration": "xl-ssh"}, "1"),
                            ({**h2, "hypervisor": "xen-4.17", "migration": "xl-ssh"}, "1")),
        Q["host_complete"]: vec((h1, "1"), (h2, "1")),
        Q["host_guests"]: vec((h1, "2"), (h2, "1")),
        Q["host_last_seen"]: vec((h1, str(now - 3)), (h2, str(now - 4))),
        Q["guest_memory_bytes"]: vec((g(h1, "web1"), str(2**30)), (g(h1, "db1"), str(4 * 2**30)),
                                     (g(h2, "app1"), str(2 * 2**30))),
        Q["guest_vcpus"]: vec((g(h1, "web1"), "2"), (g(h1, "db1"), "4"), (g(h2, "app1"), "1")),
        Q["guest_cpu"]: vec((g(h1, "web1"), "0.5"), (g(h1, "db1"), "1.25"),
                            (g(h2, "app1"), "0.2")),
        Q["guest_net_bytes_per_second"]: vec((g(h1, "web1"), "1000"), (g(h1, "db1"), "0"),
                                             (g(h2, "app1"), "125000")),
    }


class FakePrometheus:
    def __init__(self, answers: dict | None = None, *, tls: tuple[str, str] | None = None,
                 user: str | None = None, password: str | None = None,
                 token: str | None = None):
        self.answers = answers if answers is not None else healthy()
        self.range_answer: dict | None = None       # query_range: a matrix
        self.misbehave: dict = {}                   # {"html"|"stall"|"drip"|"status"|"big": x}
        self.seen: list[tuple[str, dict]] = []      # (endpoint, params)
        self.auth_headers: list[str | None] = []
        expected = None
        if token:
            expected = f"Bearer {token}"
        elif user:
            import base64
            expected = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                n = int(self.headers.get("Content-Length") or 0)
                params = dict(urllib.parse.parse_qsl(self.rfile.read(n).decode()))
                endpoint = self.path.rsplit("/", 1)[-1]
                fake.seen.append((endpoint, params))
                fake.auth_headers.append(self.headers.get("Authorization"))
                if expected and self.headers.get("Authorization") != expected:
                    return self.reply(401, b"Unauthorized", "text/plain")
                m = fake.misbehave
                if "stall" in m:
                    time.sleep(m["stall"])
                if "status" in m:
                    return self.reply(m["status"], b"<html>Bad Gateway</html>", "text/html")
                if "html" in m:
                    return self.reply(200, b"<!DOCTYPE html><html><body>Log in</body></html>",
                                      "text/html; charset=utf-8")
                if "drip" in m:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.end_headers()
                    try:
                        for _ in range(int(m["drip"])):
                            self.wfile.write(b" ")
                            self.wfile.flush()
                            time.sleep(0.5)
                    except OSError:
                        pass            # the client hung up at its deadline
                    return
                if "big" in m:
                    body = b'{"status":"success","data":{"resultType":"vector","result":[' + \
                        b'{"metric":{},"value":[1,"1"]},' * m["big"] + b'{"metric":{},"value":[1,"1"]}]}}'
                    return self.reply(200, body, "application/json")
                if endpoint == "query_range":
                    doc = fake.range_answer or {"status": "success", "data": {
                        "resultType": "matrix", "result": []}}
                else:
                    doc = fake.answers.get(params.get("query"), vec())
                body = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
                self.reply(200, body, "application/json")

            def reply(self, status, body, ctype):
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", ctype)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:
                    pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        scheme = "http"
        if tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(*tls)
            self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
            scheme = "https"
        self.url = f"{scheme}://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()
