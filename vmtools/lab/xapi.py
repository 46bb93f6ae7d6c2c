"""A simulated XCP-ng / XenServer pool master, for ``vm-lab --platform xapi``.

It speaks XAPI's wire as the real master does (built from the XAPI data model,
``ocaml/idl/datamodel*.ml``, and its HTTP handlers), so the official ``XenAPI`` client and
vmtools drive it unchanged:

- XML-RPC over HTTPS on the master's address (``POST /``); every answer is
  ``{"Status": "Success", "Value": ...}`` or ``{"Status": "Failure", "ErrorDescription":
  [code, params...]}``; int64 fields travel as strings, references as ``OpaqueRef:<uuid>``;
- sessions (``session.login_with_password``/``logout``; a session unused for
  ``session_timeout`` seconds, or all of them after a fault, answer ``SESSION_INVALID``);
- the records of ``pool``, ``host``, ``host_metrics``, ``VM`` (control domains included),
  ``VM_metrics``, ``VM_group``, ``PIF``, ``network``, ``task`` with the data model's field
  names and types (the subset vmtools and XO's balancer read);
- ``VM.assert_can_migrate`` (with ``host.migrate_receive``), ``VM.pool_migrate`` and
  ``Async.VM.pool_migrate``, whose task takes time proportional to memory (the lab's
  migration rate, :mod:`vmtools.lab.migrate`) and can be cancelled (``task.cancel``);
- the guest lifecycle: ``VM.suspend`` (Running to Suspended in the lab's save time, the
  memory freed when it ends), ``VM.checkpoint(vm, name)`` (a snapshot VM ``name``,
  ``is_a_snapshot``, ``snapshot_of`` the VM, power_state Suspended; the VM runs on),
  ``VM.resume_on(vm, host, start_paused, force)`` and ``VM.start_on`` (Suspended, resp.
  Halted, to Running; the memory claimed when the call starts, ``HOST_NOT_ENOUGH_FREE_MEMORY
  [needed, free]`` when the host lacks it), each refused with ``VM_BAD_POWER_STATE [vm,
  expected, actual]`` on a VM in another state, and as ``Async`` tasks that ``task.cancel``
  stops while a ``hang`` fault holds them; the ``task_error`` fault fails them. Stopped
  guests are kept in the state's ``xapi.stopped``, checkpoints in ``xapi.checkpoints``;
- ``host.disable``/``enable``, ``host.shutdown`` (refused with ``HOST_NOT_DISABLED`` or
  ``HOST_IN_USE`` while a guest runs there, as XAPI does), ``host.power_on`` (refused with
  ``HOST_POWER_ON_MODE_DISABLED`` when the host has no power-on mode); a host switched on
  boots ``boot_seconds`` later, enabled;
- ``/rrd_updates?session_id=..&start=..&cf=AVERAGE&interval=..&host=true`` on every host's own
  address (the real endpoint serves only the host asked): the rrdtool ``xport`` XML with
  ``AVERAGE:host:<uuid>:cpuN``, ``cpu_avg``, ``memory_total_kib``, ``memory_free_kib``,
  ``pif_eth0_rx/tx`` and ``AVERAGE:vm:<uuid>:cpuN``, ``memory``, ``vif_0_rx/tx`` columns,
  newest row first; calls to a member's XML-RPC answer ``HOST_IS_SLAVE``.

Hosts and guests are the lab's shared cluster state (:mod:`vmtools.lab.cluster`) from the same
scenarios as the xend lab. A scenario's optional ``xapi`` object adds what only XAPI has::

    "xapi": {"groups": {"web-spread": {"placement": "anti_affinity",
                                       "vms": ["web1", "web2"]}},
             "halted": {"old1": {"mem_mib": 1024, "vcpus": 1, "power_state": "Halted"}},
             "master": "node-1", "power_on_mode": "wake-on-lan"}

Faults, in the state's ``faults`` under ``xapi`` (besides :mod:`vmtools.lab.migrate`'s)::

    {"hang": ["web1"],              # web1's migration task waits until cancelled (or until
                                    # the fault is lifted: then it migrates)
     "uncancellable": ["web1"],     # ... and task.cancel does not stop it
     "task_error": {"web2": ["VM_MIGRATE_FAILED", "..."]},   # the task fails so
     "expire_before": 1765000000.0, # sessions made before this time are invalid
     "raw": {"VM.get_all_records": "garbage"},   # answer a method with this, unwrapped
     "value": {"host.get_all_records": 7},       # answer with Success and this Value
     "override": {"host_metrics": {"node-2": {"memory_total": "-5"}},
                  "VM": {"web1": {"resident_on": "OpaqueRef:nowhere"}}}}
"""

from __future__ import annotations

import http.server
import logging
import secrets
import socketserver
import ssl
import subprocess
import threading
import time
import urllib.parse
import uuid as _uuid
import xmlrpc.client
from pathlib import Path

from vmtools.lab.cluster import ClusterState
from vmtools.lab.power import switch_off, switch_on
from vmtools.lab.xapi_guests import GuestCalls
from vmtools.lab.xapi_records import (TASK_AWARE, Failure, PoolRecords, _field_text, _now_iso,
                                      _where, ref_of)
from vmtools.lab.xapi_rrd import PoolRRD
from vmtools.xen import INCOMING_SUFFIX

log = logging.getLogger("vmtools.lab.xapi")


# --------------------------------------------------------------------------- TLS

def make_certificates(directory: Path, addresses: list[str]) -> tuple[Path, Path, Path]:
    """A lab CA and one server certificate for every host address (as a pool whose hosts
    carry CA-signed certificates). Returns (ca.pem, cert.pem, key.pem)."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca, key, csr, cert = (directory / n for n in
                                  ("ca.key", "ca.pem", "host.key", "host.csr", "host.pem"))
    ext = directory / "san.cnf"
    ext.write_text("subjectAltName=" + ",".join(f"IP:{a}" for a in addresses)
                   + ",DNS:localhost\nbasicConstraints=CA:FALSE\n")

    def run(*argv: str) -> None:
        subprocess.run(["openssl", *argv], check=True, capture_output=True, timeout=60)
    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(ca_key), "-out",
        str(ca), "-days", "2", "-subj", "/CN=vmtools lab pool CA")
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr),
        "-subj", "/CN=vmtools lab pool")
    run("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key),
        "-CAcreateserial", "-out", str(cert), "-days", "2", "-extfile", str(ext))
    for p in (ca_key, key):
        p.chmod(0o600)
    return ca, cert, key


# --------------------------------------------------------------------------- the pool

class Pool(PoolRecords, GuestCalls, PoolRRD):
    """The pool's XAPI objects over the shared cluster state: its records
    (:mod:`vmtools.lab.xapi_records`), its guest calls (:mod:`vmtools.lab.xapi_guests`) and
    its RRDs (:mod:`vmtools.lab.xapi_rrd`); the session, the dispatcher, the tasks and the
    host calls here."""

    def __init__(self, state: ClusterState, extras: dict, password: str,
                 boot_seconds: float = 3.0, session_timeout: float = 86400.0,
                 user: str = "root"):
        self.state = state
        self.extras = extras
        self.users = {user: password}
        self.boot_seconds = boot_seconds
        self.session_timeout = session_timeout
        self.lock = threading.RLock()
        self.sessions: dict[str, dict] = {}
        self.tasks: dict[str, dict] = {}
        self.vm_ops: dict[str, dict[str, str]] = {}       # vm name -> {task ref: op}
        self.samples: list[dict] = []                      # RRD history, oldest first
        self.stopping = threading.Event()

    # ---- the XML-RPC dispatcher
    def dispatch(self, method: str, params: tuple) -> object:
        if method == "session.login_with_password":
            return self.login(*params[:2])
        if not params:
            raise Failure("SESSION_INVALID", "")
        session, args = params[0], params[1:]
        self.check_session(session)
        if method == "session.logout":
            with self.lock:
                self.sessions.pop(session, None)
            return ""
        st = self.world()
        faults = self.faults(st)
        if method in faults.get("value", {}):
            return faults["value"][method]
        is_async = method.startswith("Async.")
        name = method[6:] if is_async else method
        cls, _, verb = name.rpartition(".")
        handler = getattr(self, f"m_{cls}_{verb}", None)
        if handler is None:
            if verb == "get_all_records" and not args:
                return self.all_records(st, cls)
            if verb == "get_all" and not args:
                return list(self.all_records(st, cls))
            if verb == "get_all_records_where" and len(args) == 1:
                terms = _where(args[0])
                return {ref: rec for ref, rec in self.all_records(st, cls).items()
                        if all(_field_text(rec.get(k)) == v for k, v in terms)}
            if verb in ("get_record",) and len(args) == 1:
                recs = self.all_records(st, cls)
                if args[0] not in recs:
                    raise Failure("HANDLE_INVALID", cls, args[0])
                return recs[args[0]]
            if verb.startswith("get_") and len(args) == 1 and cls != "task":
                recs = self.all_records(st, cls)
                if args[0] not in recs:
                    raise Failure("HANDLE_INVALID", cls, args[0])
                field = verb[4:]
                if field in recs[args[0]]:
                    return recs[args[0]][field]
            raise Failure("MESSAGE_METHOD_UNKNOWN", method)
        if is_async:
            return self.run_async(name, handler, st, args)
        return handler(st, *args)

    def login(self, user: object = None, password: object = None) -> str:
        if self.users.get(user) != password or not isinstance(password, str):
            raise Failure("SESSION_AUTHENTICATION_FAILED", user, "Authentication failure")
        ref = "OpaqueRef:" + str(_uuid.uuid4())
        with self.lock:
            self.sessions[ref] = {"user": user, "made": time.time(), "last": time.time()}
        return ref

    def check_session(self, session: object) -> None:
        now = time.time()
        st = self.state.read()
        expire_before = self.faults(st).get("expire_before")
        with self.lock:
            s = self.sessions.get(session)
            if s is not None and (now - s["last"] > self.session_timeout or
                                  (expire_before is not None and s["made"] < expire_before)):
                self.sessions.pop(session, None)
                s = None
            if s is None:
                raise Failure("SESSION_INVALID", session)
            s["last"] = now

    # ---- tasks
    def new_task(self, name: str, resident_on: str) -> tuple[str, dict]:
        ref = "OpaqueRef:" + str(_uuid.uuid4())
        task = {"uuid": str(_uuid.uuid4()), "name": name, "status": "pending", "progress": 0.0,
                "result": "", "error_info": [], "created": _now_iso(),
                "resident_on": resident_on, "cancel": threading.Event()}
        with self.lock:
            self.tasks[ref] = task
        return ref, task

    def finish(self, task: dict, status: str, result: str = "", error: list | None = None):
        with self.lock:
            task.update(status=status, result=result, error_info=error or [], progress=1.0,
                        finished=_now_iso())

    def run_async(self, name: str, handler, st: dict, args: tuple) -> str:
        ref, task = self.new_task(f"Async.{name}", ref_of("host", self.master(st)))

        def work() -> None:
            try:
                value = handler(st, *args, task=task) if name in TASK_AWARE \
                    else handler(self.world(), *args)
                if task["status"] in ("pending", "cancelling"):
                    # the result is the call's value as XML-RPC text; a void call's is ""
                    self.finish(task, "success", f"<value>{value}</value>" if value else "")
            except Failure as exc:
                self.finish(task, "cancelled" if exc.description[0] == "TASK_CANCELLED"
                            else "failure", error=exc.description)
            except Exception as exc:  # noqa: BLE001 - the simulated master must not die
                log.exception("task %s", name)
                self.finish(task, "failure", error=["INTERNAL_ERROR", str(exc)])
        threading.Thread(target=work, name=f"task-{name}", daemon=True).start()
        return ref

    def m_task_get_status(self, st, ref):
        return self._task(ref)["status"]

    def m_task_get_result(self, st, ref):
        return self._task(ref)["result"]

    def m_task_get_error_info(self, st, ref):
        return list(self._task(ref)["error_info"])

    def m_task_get_progress(self, st, ref):
        return float(self._task(ref)["progress"])

    def m_task_get_record(self, st, ref):
        return self._task_record(self._task(ref))

    def m_task_cancel(self, st, ref):
        task = self._task(ref)
        if task["status"] != "pending":
            raise Failure("OPERATION_NOT_ALLOWED", "task is not pending")
        with self.lock:
            task["status"] = "cancelling"
        task["cancel"].set()
        return ""

    def m_task_destroy(self, st, ref):
        with self.lock:
            if self.tasks.pop(ref, None) is None:
                raise Failure("HANDLE_INVALID", "task", ref)
        return ""

    def _task(self, ref) -> dict:
        with self.lock:
            task = self.tasks.get(ref)
        if task is None:
            raise Failure("HANDLE_INVALID", "task", ref)
        return task

    # ---- hosts
    def m_host_get_by_name_label(self, st, label):
        return [ref_of("host", h) for h in st["hosts"] if h == label]

    def m_host_disable(self, st, ref, *auto_enable):
        name = self.host_by_ref(st, ref)
        with self.state.transaction() as st2:
            st2["hosts"][name]["enabled"] = False
        return ""

    def m_host_enable(self, st, ref):
        name = self.host_by_ref(st, ref)
        if not self.live(st["hosts"][name]):
            raise Failure("HOST_OFFLINE", ref)
        with self.state.transaction() as st2:
            st2["hosts"][name]["enabled"] = True
        return ""

    def m_host_shutdown(self, st, ref):
        name = self.host_by_ref(st, ref)
        host = st["hosts"][name]
        if not self.live(host):
            raise Failure("HOST_OFFLINE", ref)
        if host.get("enabled", True):
            raise Failure("HOST_NOT_DISABLED")
        guests = [d for d in host["domains"]]
        if guests:
            raise Failure("HOST_IN_USE", ref, "vm", ref_of("VM", guests[0].removesuffix(
                INCOMING_SUFFIX)))

        def later() -> None:            # the real host goes down after the call returns
            time.sleep(0.3)
            with self.state.transaction() as st2:
                switch_off(st2, name)
        threading.Thread(target=later, daemon=True).start()
        return ""

    def m_host_power_on(self, st, ref):
        name = self.host_by_ref(st, ref)
        rec = self.host_record(st, name)
        if not rec["power_on_mode"]:
            raise Failure("HOST_POWER_ON_MODE_DISABLED")
        if self.live(st["hosts"][name]):
            raise Failure("HOST_IS_LIVE", ref)
        with self.state.transaction() as st2:
            switch_on(st2, name)
        return ""

    def m_host_migrate_receive(self, st, ref, network, options):
        name = self.host_by_ref(st, ref)
        if network != ref_of("network", "eth0"):
            raise Failure("HANDLE_INVALID", "network", network)
        if not self.live(st["hosts"][name]):
            raise Failure("HOST_OFFLINE", ref)
        return {"host": ref, "xenops": f"http://{st['hosts'][name]['ip']}/services/xenops",
                "SM": f"http://{st['hosts'][name]['ip']}/services/SM",
                "master": f"http://{st['hosts'][self.master(st)]['ip']}/",
                "session_id": "OpaqueRef:" + str(_uuid.uuid4())}


# --------------------------------------------------------------------------- HTTP

class _Handler(http.server.BaseHTTPRequestHandler):
    server_version = "xapi"
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):  # noqa: D401 - quiet
        log.debug("%s %s", self.address_string(), fmt % args)

    def _send(self, code: int, body: bytes, ctype: str = "text/xml") -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        pool: Pool = self.server.pool                       # type: ignore[attr-defined]
        host: str = self.server.host                        # type: ignore[attr-defined]
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        try:
            params, method = xmlrpc.client.loads(body, use_builtin_types=False)
        except Exception:  # noqa: BLE001
            self._send(400, b"bad XML-RPC")
            return
        st = pool.state.read()
        raw = pool.faults(st).get("raw", {})
        if method in raw:
            answer = raw[method]
        elif host != pool.master(st):
            answer = {"Status": "Failure", "ErrorDescription":
                      ["HOST_IS_SLAVE", st["hosts"][pool.master(st)]["ip"]]}
        else:
            try:
                answer = {"Status": "Success", "Value": pool.dispatch(method, params)}
            except Failure as exc:
                answer = {"Status": "Failure", "ErrorDescription": exc.description}
            except TypeError:
                answer = {"Status": "Failure", "ErrorDescription":
                          ["MESSAGE_PARAMETER_COUNT_MISMATCH", method, "?", str(len(params))]}
        try:
            data = xmlrpc.client.dumps((answer,), methodresponse=True, allow_none=False)
        except TypeError:
            data = xmlrpc.client.dumps(("garbage",), methodresponse=True)
        self._send(200, data.encode())

    def do_GET(self) -> None:  # noqa: N802
        pool: Pool = self.server.pool                       # type: ignore[attr-defined]
        url = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(url.query)
        if url.path != "/rrd_updates":
            self._send(404, b"not found", "text/plain")
            return
        if not pool.live(pool.state.read()["hosts"][self.server.host]):  # type: ignore
            self.close_connection = True         # a host that is off answers nothing
            return
        try:
            pool.check_session(query.get("session_id", [""])[0])
        except Failure:
            self._send(401, b"Unauthorised", "text/plain")
            return
        body = pool.rrd_updates(self.server.host, query)   # type: ignore[attr-defined]
        self._send(200, body.encode())


class _Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class XapiLab:
    """The simulated pool: the master's XML-RPC and every host's ``/rrd_updates``, on each
    host's loopback address (``127.0.1.N``), one port for all."""

    def __init__(self, state: ClusterState, extras: dict, directory: Path,
                 boot_seconds: float = 3.0, port: int = 0, tls: bool = True,
                 session_timeout: float = 86400.0):
        self.state = state
        self.dir = Path(directory)
        self.password = secrets.token_urlsafe(18)
        self.pool = Pool(state, extras, self.password, boot_seconds, session_timeout)
        self.port = port
        self.tls = tls
        self.servers: dict[str, _Server] = {}
        self.threads: list[threading.Thread] = []
        self.ca = self.cert = self.key = None
        self.credentials = self.dir / "xapi.toml"

    @property
    def master(self) -> str:
        return self.pool.master(self.state.read())

    @property
    def url(self) -> str:
        st = self.state.read()
        scheme = "https" if self.tls else "http"
        return f"{scheme}://{st['hosts'][self.pool.master(st)]['ip']}:{self.port}"

    def fingerprint(self) -> str:
        import hashlib
        der = ssl.PEM_cert_to_DER_cert(Path(self.cert).read_text())
        return hashlib.sha256(der).hexdigest()

    def start(self) -> "XapiLab":
        self.dir.mkdir(parents=True, exist_ok=True)
        st = self.state.read()
        addresses = {name: h["ip"] for name, h in st["hosts"].items()}
        if self.tls:
            self.ca, self.cert, self.key = make_certificates(self.dir / "tls",
                                                             sorted(addresses.values()))
        fd = self.credentials.open("w")
        self.credentials.chmod(0o600)
        fd.write(f'username = "root"\npassword = "{self.password}"\n')
        fd.close()
        master = self.pool.master(st)
        order = [master] + sorted(set(addresses) - {master})
        for name in order:
            server = _Server((addresses[name], self.port), _Handler)
            if self.port == 0:
                self.port = server.server_address[1]
            if self.tls:
                ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
                ctx.load_cert_chain(str(self.cert), str(self.key))
                server.socket = ctx.wrap_socket(server.socket, server_side=True)
            server.pool = self.pool              # type: ignore[attr-defined]
            server.host = name                   # type: ignore[attr-defined]
            self.servers[name] = server
            t = threading.Thread(target=server.serve_forever, name=f"xapi-{name}",
                                 daemon=True)
            t.start()
            self.threads.append(t)
        sampler = threading.Thread(target=self._sample, name="xapi-rrd", daemon=True)
        sampler.start()
        self.threads.append(sampler)
        return self

    def _sample(self) -> None:
        while not self.pool.stopping.wait(1.0):
            try:
                self.pool.world()          # boots hosts switched on
                self.pool.sample()
            except (OSError, ValueError, KeyError) as exc:
                log.debug("rrd sampler: %s", exc)

    def stop(self) -> None:
        self.pool.stopping.set()
        for server in self.servers.values():
            server.shutdown()
            server.server_close()
        self.servers.clear()
