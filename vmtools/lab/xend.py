"""A simulated xend for ONE Domain-0 of the shared lab cluster, on loopback.

It serves, each on its own port, the two legacy interfaces vm-apply drives (reference §3.2,
§3.3):

- the HTTP/SXP server (``xend-http-server``, port 8000 on a real host):
  ``GET /xend/domain/`` → ``(name1 name2 ...)``; ``?detail=1`` → every domain as SXP;
  ``GET /xend/domain/<dom>`` → one SXP (404 text/plain when unknown); ``GET /xend/node/``;
  ``POST /xend/domain/<dom>`` with ``op=save file=...`` and ``POST /xend/domain/`` with
  ``op=restore file=...`` (as the lab's ``xm save``/``xm restore``);
  ``POST /xend/domain/<dom>`` with ``op=migrate`` and the fields the host's Xen version
  requires (missing ones fail with ``Missing parameter: port``, unknown ones are ignored).
  Failures inside an op come back as a 200 whose body is ``(xend.err 'message')``; unknown op
  is 501, no op 406. SXP is sent when the request has no User-Agent, no Accept, or accepts
  ``application/sxp``; HTML otherwise.
- the XML-RPC server (``xend-tcp-xmlrpc-server``, port 8006): ``xend.domains``,
  ``xend.domain``, ``xend.domain.migrate`` (positional, signature by Xen version),
  ``xend.domain.save`` (dom, file, checkpoint) and ``xend.domain.restore`` (file, paused), as
  the lab's ``xm save``/``xm restore`` do them (:mod:`vmtools.lab.lifecycle`),
  ``xend.node.info``, ``system.listMethods``; faults 1 (internal, unknown method), 2 (generic),
  3 (invalid domain: faultString is the domain asked for); ``None`` travels as ``<nil/>``.

Both migrate calls are synchronous (they return when the transfer is over) and take time
proportional to the guest's memory (:func:`vmtools.lab.migrate.migrate_domain`). When the
host is down (``"up": false`` in the state) connections are accepted and closed unanswered.
"""

from __future__ import annotations

import http.server
import socketserver
import sys
import threading
import urllib.parse
import xmlrpc.client
import xmlrpc.server
from typing import Any

from vmtools.lab.cluster import ClusterState
from vmtools.lab.migrate import MigrationError, find_domain, migrate_domain
from vmtools.xen import DOM0


# --------------------------------------------------------------------------- SXP

def sxp_show(value: Any) -> str:
    """Render an SXP list as xend's ``sxp.show`` does (strings quoted when needed)."""
    if isinstance(value, list):
        return "(" + " ".join(sxp_show(v) for v in value) + ")"
    if isinstance(value, bool):
        return "1" if value else "0"
    text = str(value)
    if text == "" or any(c in text for c in " \t\n()'\"\\"):
        return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"
    return text


def _version(host: dict) -> tuple[int, int]:
    major, _, minor = str(host.get("xen", "4.17")).partition(".")
    try:
        return int(major), int(minor or 0)
    except ValueError:
        return 4, 0


def domain_sxp(host: dict, name: str) -> list:
    """One domain as xend's legacy SXP (``XendConfig.to_sxp``)."""
    if name == DOM0:
        dom = {"domid": 0, "mem_mib": host.get("dom0_mib", 1024), "vcpus": host.get("cpus", 1),
               "cpu_time": 0.0, "state": "r-----"}
    else:
        dom = host["domains"][name]
    return ["domain", ["domid", dom["domid"]], ["cpu_weight", 256], ["cpu_cap", 0],
            ["uuid", f"00000000-0000-0000-0000-{dom['domid']:012d}"],
            ["vcpus", dom.get("vcpus", 1)], ["name", name],
            ["on_poweroff", "destroy"], ["on_reboot", "restart"], ["on_crash", "restart"],
            ["maxmem", dom["mem_mib"]], ["memory", dom["mem_mib"]],
            ["cpu_time", dom.get("cpu_time", 0.0)], ["online_vcpus", dom.get("vcpus", 1)],
            ["status", 2], ["state", dom.get("state", "-b----")]]


def domain_names(host: dict) -> list[str]:
    return [DOM0] + sorted(host["domains"], key=lambda n: host["domains"][n]["domid"])


def node_info(name: str, host: dict) -> list[list]:
    """``xend.node.info()``: a list of [key, value] pairs, ``system`` first."""
    major, minor = _version(host)
    used = sum(d["mem_mib"] for d in host["domains"].values())
    return [["system", "Linux"], ["host", name], ["release", "3.2.0-4-amd64"],
            ["version", "#1 SMP Debian 3.2.65-1"], ["machine", "x86_64"],
            ["nr_cpus", host.get("cpus", 1)], ["nr_nodes", 1], ["cores_per_socket", 4],
            ["threads_per_core", 1], ["cpu_mhz", 2400], ["total_memory", host["mem_mib"]],
            ["free_memory", host["mem_mib"] - host.get("dom0_mib", 0) - used],
            ["xen_major", major], ["xen_minor", minor], ["xen_extra", ".0"],
            ["xen_caps", "xen-3.0-x86_64 hvm-3.0-x86_64"], ["xen_scheduler", "credit"],
            ["xend_config_format", 4]]


# fields xend's SrvDomain.op_migrate reads, by version (reference §3.3)
def migrate_fields(version: tuple[int, int]) -> tuple[str, ...]:
    if version < (3, 1):
        return ("destination", "live", "resource")
    if version < (3, 3):
        return ("destination", "live", "resource", "port")
    if version < (4, 0):
        return ("destination", "live", "port", "node", "ssl")
    return ("destination", "live", "port", "node", "ssl", "change_home_server")


def migrate_arity(version: tuple[int, int]) -> int:
    """How many positional arguments ``xend.domain.migrate`` takes (reference §0.9)."""
    if version < (3, 1):
        return 4
    if version < (3, 3):
        return 5
    if version < (4, 0):
        return 6
    return 7


# --------------------------------------------------------------------------- servers

class _Quiet:
    def handle_error(self, request, client_address) -> None:
        # a client that timed out and hung up before xend answered: as xend, say nothing
        exc = sys.exc_info()[1]
        if not isinstance(exc, (BrokenPipeError, ConnectionResetError)):
            super().handle_error(request, client_address)  # type: ignore[misc]


class _ThreadingHTTPServer(_Quiet, socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class _ThreadingXMLRPCServer(_Quiet, socketserver.ThreadingMixIn,
                             xmlrpc.server.SimpleXMLRPCServer):
    daemon_threads = True
    allow_reuse_address = True


class XendLab:
    """The simulated xend of host ``host``: ``start()`` binds both servers on free ports
    (``http_port``, ``xmlrpc_port``) and serves in threads; ``stop()`` closes them."""

    def __init__(self, state: ClusterState | str, host: str, address: str = "127.0.0.1",
                 http_port: int = 0, xmlrpc_port: int = 0):
        self.state = state if isinstance(state, ClusterState) else ClusterState(state)
        self.host = host
        self.address = address
        self._ports = (http_port, xmlrpc_port)
        self._servers: list[socketserver.BaseServer] = []
        self._threads: list[threading.Thread] = []
        self.http_port = 0
        self.xmlrpc_port = 0
        self._stopping = threading.Event()

    # ---- shared helpers
    def host_state(self) -> dict:
        return self.state.read()["hosts"][self.host]

    def is_up(self) -> bool:
        try:
            return bool(self.host_state().get("up", True))
        except KeyError:
            return False

    def migrate(self, dom: str, destination: str, live: bool) -> None:
        # xend does the transfer itself: when it stops, the migration fails and the
        # receiver discards its --incoming domain; the guest stays on this host
        migrate_domain(self.state, self.host, dom, destination, live,
                       aborted=self._stopping.is_set)

    # ---- lifecycle
    def running(self) -> bool:
        return bool(self._servers)

    def start(self) -> "XendLab":
        """Bind and serve; after a ``stop()`` this binds the same ports again (a restarted
        xend). Starting a running xend does nothing."""
        if self._servers:
            return self
        self._stopping.clear()
        lab = self

        class HTTPHandler(_XendHTTPHandler):
            xend = lab

        class RPCHandler(xmlrpc.server.SimpleXMLRPCRequestHandler):
            rpc_paths = ("/RPC2", "/")

            def handle(self) -> None:
                if not lab.is_up():
                    return
                super().handle()

            def log_message(self, *args: Any) -> None:
                pass

        httpd = _ThreadingHTTPServer((self.address, self._ports[0]), HTTPHandler)
        rpcd = _ThreadingXMLRPCServer((self.address, self._ports[1]), RPCHandler,
                                      allow_none=True, logRequests=False)
        rpcd.register_introspection_functions()
        rpcd.register_instance(_XendRPC(self))
        self.http_port = httpd.server_address[1]
        self.xmlrpc_port = rpcd.server_address[1]
        for server in (httpd, rpcd):
            t = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                                 name=f"xend-{self.host}", daemon=True)
            t.start()
            self._servers.append(server)
            self._threads.append(t)
        return self

    def stop(self) -> None:
        """Close both ports (connections are refused until ``start()``) and fail the
        migrations this xend is sending."""
        self._stopping.set()
        if self._servers:
            self._ports = (self.http_port, self.xmlrpc_port)
        for server in self._servers:
            server.shutdown()
            server.server_close()
        for t in self._threads:
            t.join(timeout=5)
        self._servers.clear()
        self._threads.clear()

    def __enter__(self) -> "XendLab":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


class _XendRPC:
    """The legacy XML-RPC methods; the dispatcher turns errors into xend's faults."""

    def __init__(self, lab: XendLab):
        self.lab = lab

    def _dispatch(self, method: str, params: tuple) -> Any:
        handlers = {"xend.domains": self.domains, "xend.domain": self.domain,
                    "xend.domain.migrate": self.migrate, "xend.node.info": self.node_info,
                    "xend.domains_with_state": self.domains_with_state,
                    "xend.domain.save": self.save, "xend.domain.restore": self.restore}
        func = handlers.get(method)
        if func is None:
            raise xmlrpc.client.Fault(1, f'method "{method}" is not supported')
        try:
            return func(*params)
        except MigrationError as exc:
            raise xmlrpc.client.Fault(exc.code, exc.message) from None
        except xmlrpc.client.Fault:
            raise
        except Exception as exc:  # noqa: BLE001 - xend turns any other exception into fault 1
            raise xmlrpc.client.Fault(1, str(exc)) from None

    def _listMethods(self) -> list[str]:  # noqa: N802 - SimpleXMLRPCServer's hook
        return ["xend.domain", "xend.domain.migrate", "xend.domain.restore",
                "xend.domain.save", "xend.domains", "xend.domains_with_state",
                "xend.node.info"]

    def domains(self, detail: bool = True, full: bool = False) -> list:
        host = self.lab.host_state()
        names = domain_names(host)
        return [domain_sxp(host, n) for n in names] if detail else names

    def domains_with_state(self, detail: bool = True, state: Any = "all",
                           full: bool = False) -> list:
        return self.domains(detail, full)

    def domain(self, dom: Any, full: int = 0) -> list:
        host = self.lab.host_state()
        name = find_domain({"hosts": {self.lab.host: host}}, self.lab.host, str(dom))
        if name is None:
            raise xmlrpc.client.Fault(3, str(dom))
        return domain_sxp(host, name)

    def migrate(self, dom: Any, dst: str, live: bool = False, *rest: Any) -> None:
        arity = migrate_arity(_version(self.lab.host_state()))
        if 3 + len(rest) > arity:
            raise TypeError(f"domain_migrate() takes at most {arity + 1} arguments "
                            f"({4 + len(rest)} given)")
        self.lab.migrate(str(dom), str(dst), bool(live))
        return None

    def save(self, dom: Any, dst: str, checkpoint: bool = False) -> None:
        """xend's domain_save: the image written as xm save writes it (lab.lifecycle)."""
        from vmtools.lab import lifecycle
        rc, _, err = lifecycle.save("xm", ["-c", str(dom), str(dst)] if checkpoint
                                    else [str(dom), str(dst)], self.lab.host, self.lab.state)
        self._answer(rc, err, dom)

    def restore(self, src: str, paused: bool = False) -> None:
        from vmtools.lab import lifecycle
        rc, _, err = lifecycle.restore("xm", ["-p", str(src)] if paused else [str(src)],
                                       self.lab.host, self.lab.state)
        self._answer(rc, err, None)

    @staticmethod
    def _answer(rc: int, err: str, dom: Any) -> None:
        if rc == 0:
            return None
        if rc == 3 and dom is not None:
            raise xmlrpc.client.Fault(3, str(dom))
        raise xmlrpc.client.Fault(2, err.strip().removeprefix("Error: "))

    def node_info(self, show_numa: int = 1) -> list:
        return node_info(self.lab.host, self.lab.host_state())


class _XendHTTPHandler(http.server.BaseHTTPRequestHandler):
    xend: XendLab
    protocol_version = "HTTP/1.1"
    server_version = "xend/3.0"

    def log_message(self, *args: Any) -> None:
        pass

    def handle(self) -> None:
        if not self.xend.is_up():
            return
        super().handle()

    def _wants_sxp(self) -> bool:
        accept = self.headers.get("Accept")
        return (self.headers.get("User-Agent") is None or accept is None
                or "application/sxp" in accept)

    def _send(self, status: int, body: str, ctype: str = "application/sxp") -> None:
        data = body.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _reply(self, value: Any) -> None:
        if self._wants_sxp():
            self._send(200, sxp_show(value) + "\n")
        else:
            self._send(200, f"<html><body><pre>{sxp_show(value)}</pre></body></html>\n",
                       "text/html")

    def _split(self) -> tuple[list[str], dict[str, list[str]]]:
        url = urllib.parse.urlsplit(self.path)
        parts = [urllib.parse.unquote(p) for p in url.path.split("/") if p]
        return parts, urllib.parse.parse_qs(url.query)

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        parts, query = self._split()
        host = self.xend.host_state()
        if parts[:2] == ["xend", "node"]:
            self._reply(["node"] + node_info(self.xend.host, host))
        elif parts == ["xend", "domain"]:
            if query.get("detail", ["0"])[0] == "1":
                body = "".join(sxp_show(domain_sxp(host, n)) + "\n" for n in domain_names(host))
                self._send(200, body)
            else:
                self._reply(domain_names(host))
        elif len(parts) == 3 and parts[:2] == ["xend", "domain"]:
            name = find_domain({"hosts": {self.xend.host: host}}, self.xend.host, parts[2])
            if name is None:
                self._send(404, f"Not found: {parts[2]}\n", "text/plain")
            else:
                self._reply(domain_sxp(host, name))
        else:
            self._send(404, "Not found\n", "text/plain")

    def _lifecycle(self, op: str, args: list[str]) -> None:
        """op=save and op=restore, as the lab's xm save/restore do them; a failure is a 200
        whose body is (xend.err 'message'), as xend answers."""
        from vmtools.lab import lifecycle
        run = lifecycle.save if op == "save" else lifecycle.restore
        rc, _, err = run("xm", args, self.xend.host, self.xend.state)
        if rc == 0:
            self._send(200, "0\n")
        else:
            self._send(200, sxp_show(["xend.err", err.strip().removeprefix("Error: ")]) + "\n")

    def do_POST(self) -> None:  # noqa: N802
        parts, _ = self._split()
        length = int(self.headers.get("Content-Length") or 0)
        form = urllib.parse.parse_qs(self.rfile.read(length).decode("latin-1"),
                                     keep_blank_values=True)
        if parts == ["xend", "domain"] and form.get("op") == ["restore"]:
            self._lifecycle("restore", [form.get("file", [""])[0]])
            return
        if len(parts) != 3 or parts[:2] != ["xend", "domain"]:
            self._send(404, "Not found\n", "text/plain")
            return
        host = self.xend.host_state()
        name = find_domain({"hosts": {self.xend.host: host}}, self.xend.host, parts[2])
        if name is None:
            self._send(404, f"Not found: {parts[2]}\n", "text/plain")
            return
        ops = form.get("op", [])
        if len(ops) != 1:
            self._send(406, "Not acceptable: exactly one op is needed\n", "text/plain")
            return
        if ops[0] == "save":
            self._lifecycle("save", [name, form.get("file", [""])[0]])
            return
        if ops[0] != "migrate":
            self._send(501, f"Operation not implemented: {ops[0]}\n", "text/plain")
            return
        for field in migrate_fields(_version(host)):
            if field not in form:
                self._send(200, sxp_show(["xend.err", f"Missing parameter: {field}"]) + "\n")
                return
        live = form["live"][0] not in ("0", "", "False", "false")
        try:
            self.xend.migrate(name, form["destination"][0], live)
        except MigrationError as exc:
            message = f"Domain '{exc.message}' does not exist." if exc.code == 3 \
                else exc.message
            self._send(200, sxp_show(["xend.err", message]) + "\n")
            return
        self._send(200, "\n")
