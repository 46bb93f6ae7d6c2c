"""The ``xapi`` transport: a XCP-ng / XenServer pool through its master's XAPI (XML-RPC over
HTTPS), with the official ``XenAPI`` client package.

What the ``XenAPI`` package does for vmtools: the session (``session.login_with_password``,
``logout``), the ``{"Status": "Success", "Value": ...}`` / ``{"Status": "Failure",
"ErrorDescription": [code, params...]}`` envelope of every answer (a failure becomes
``XenAPI.Failure(details)``), the ``Async.*`` namespace, and logging in again when the master
answers ``SESSION_INVALID`` (a session that expired or a master that restarted). What vmtools
adds around it: TLS verified against a CA file or a pinned certificate fingerprint (checked
before a byte of the login is sent), timeouts on every call, no resending of a call whose
answer was lost, credentials from a private file or the environment (never argv, logs or
errors), and every answer validated (a non-struct, a wrong type, an unknown ref: one clear
error, never a traceback).

:class:`XapiPool` is one session with one master, shared by every host's driver (XAPI is
asked once for the whole pool); :class:`XapiDriver` is one host of it as vm-apply's
:class:`~vmtools.drivers.base.Driver`:

- ``list_guests``: the running (and paused) guests whose ``resident_on`` is this host
  (``VM.get_all_records_where('field "resident_on" = "<host>"')``: one host's records),
  control domains left out; a guest XAPI is migrating (``pool_migrate`` or ``migrate_send``
  among its ``current_operations``) is listed with vmtools' in-flight name
  ``<vm>--migratedaway`` too, so vm-apply never starts a second move of it;
- ``migrate``: ``VM.assert_can_migrate(vm, dest, true, {}, {}, {})`` with ``dest`` from
  ``host.migrate_receive`` on the destination over its management network (memory, power
  state, storage, networks checked by XAPI before anything moves: a failure here is a
  refusal), then ``Async.VM.pool_migrate(vm, host, {"live": "true"})``; the task is polled,
  and cancelled (``task.cancel``) when ``timeout`` passes;
- ``shutdown_host``: ``host.disable`` then ``host.shutdown`` (XAPI itself refuses while a guest
  runs there: ``HOST_IN_USE``), then ``host_metrics.live`` must turn false;
- ``power_on_host``: ``host.power_on`` (the host's own ``power_on_mode``: Wake-on-LAN or IPMI,
  which XAPI drives), then ``host.enable`` once ``host_metrics.live`` is true again;
- ``disable``: ``host.disable`` (the ``maintenance`` rule: XAPI places nothing new there);
  ``enable``: ``host.enable``, when vm-web ends a host's maintenance;
- the guest lifecycle, each an ``Async`` call whose task is polled and cancelled on
  ``timeout`` as a migration's: ``suspend_guest`` is ``VM.suspend`` (Running to Suspended,
  the memory written to the VM's suspend VDI and freed), ``checkpoint_guest``
  ``VM.checkpoint(vm, NAME)`` (a snapshot VM named after the image's file name, the guest
  running on), ``resume_guest`` ``VM.resume_on(vm, host, false, false)``, ``create_guest``
  ``VM.start_on(vm, host, false, false)`` of a Halted VM (XAPI defines guests itself: the
  configuration path is not read). XAPI keeps the images in its storage repositories (the
  transport's ``keeps_images``): ``has_image`` answers from the VM's ``power_state`` (or its
  snapshot), and nothing is removed after a resume (XAPI destroys the suspend VDI itself).
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import re
import socket
import ssl
import threading
import time
import tomllib
import urllib.parse
import xmlrpc.client
from dataclasses import dataclass, field

import XenAPI

from vmtools.drivers.base import (Driver, Endpoint, MigrationRefused, MigrationUncertain,
                                  checkpoint_name)
from vmtools.errors import DataError, OperationFailed, Unavailable, UsageError
from vmtools.model import is_reserved_name, is_safe_name
from vmtools.xen import IN_FLIGHT_SUFFIXES

log = logging.getLogger("vmtools.xapi")

DEFAULT_CREDENTIALS = "/etc/vmtools/xapi.toml"
USER_ENV, PASSWORD_ENV = "VMTOOLS_XAPI_USER", "VMTOOLS_XAPI_PASSWORD"
ORIGINATOR = "vmtools"
MIGRATING_OPERATIONS = frozenset({"pool_migrate", "migrate_send"})
MIGRATED_AWAY = IN_FLIGHT_SUFFIXES[1]
# XAPI answers larger than this are no pool's (a 40,000-guest pool's VM records are ~200 MB).
MAX_ANSWER = 512 * 1024 * 1024

# What an error code of a migration means for vm-apply. Refused: XAPI said no before
# anything moved (the guest is where it was). Every other failure of the task is "failed"
# (vm-apply asks the hosts where the guest is); no answer is "uncertain".
REFUSED_CODES = frozenset({
    "HOST_NOT_ENOUGH_FREE_MEMORY", "HOST_NOT_ENOUGH_PCPUS", "VM_BAD_POWER_STATE",
    "HOST_NOT_LIVE", "HOST_OFFLINE", "HOST_DISABLED", "HOST_DISABLED_UNTIL_REBOOT",
    "VM_REQUIRES_SR", "VM_REQUIRES_NETWORK", "VM_REQUIRES_GPU", "VM_REQUIRES_VGPU",
    "VM_HOST_INCOMPATIBLE_VERSION", "VM_INCOMPATIBLE_WITH_THIS_HOST", "VM_IS_TEMPLATE",
    "OPERATION_NOT_ALLOWED", "OPERATION_BLOCKED", "OTHER_OPERATION_IN_PROGRESS",
    "HANDLE_INVALID", "RBAC_PERMISSION_DENIED", "VM_MIGRATE_CONTACT_REMOTE_SERVICE_FAILED",
    "HOST_CANNOT_ATTACH_NETWORK", "VM_HAS_PCI_ATTACHED", "VM_HAS_VGPU", "VM_LACKS_FEATURE",
    "VM_NO_CRASHDUMP_SR", "VM_NO_EMPTY_CD_VBD", "VM_IS_PROTECTED", "HA_OPERATION_WOULD_BREAK_FAILOVER_PLAN",
})
# Words for the codes an operator meets most.
CODE_WORDS = {
    "HOST_NOT_ENOUGH_FREE_MEMORY": "the destination has not enough free memory",
    "VM_BAD_POWER_STATE": "the guest is not in the power state this call needs",
    "HOST_NOT_LIVE": "the host is not live",
    "HOST_OFFLINE": "the host cannot be contacted",
    "HOST_DISABLED": "the destination is disabled (maintenance)",
    "HOST_IN_USE": "guests still run there",
    "HOST_NOT_DISABLED": "the host is not disabled",
    "HOST_POWER_ON_MODE_DISABLED": "the host has no power-on mode (set one in XAPI: "
                                   "Wake-on-LAN or IPMI)",
    "TASK_CANCELLED": "the task was cancelled",
    "RBAC_PERMISSION_DENIED": "the XAPI user's role does not allow this call",
    "SESSION_AUTHENTICATION_FAILED": "the user name or password is wrong",
    "HANDLE_INVALID": "the object no longer exists",
    "HOST_IS_SLAVE": "this host is not the pool master",
}


# --------------------------------------------------------------------------- settings

@dataclass(frozen=True)
class Credentials:
    username: str
    password: str = field(repr=False)

    def __repr__(self) -> str:              # never print the password, even in a traceback
        return f"Credentials(username={self.username!r}, password=<hidden>)"


def _check_private(path: str) -> None:
    import stat
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise UsageError(f"XAPI credentials {path}: no such file (write username and "
                         f"password there, chmod 600, or set {USER_ENV} and {PASSWORD_ENV})"
                         ) from None
    except OSError as exc:
        raise UsageError(f"XAPI credentials {path}: {exc.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise UsageError(f"XAPI credentials {path}: not a regular file")
    if st.st_uid not in (0, os.geteuid()):
        raise UsageError(f"XAPI credentials {path}: owned by uid {st.st_uid}, not by root or "
                         "the user running vmtools (chown it)")
    if st.st_mode & 0o077:
        raise UsageError(f"XAPI credentials {path}: mode {stat.S_IMODE(st.st_mode):04o} lets "
                         f"others read it; chmod 600 {path}")


def read_credentials(path: str | None, environ=os.environ) -> Credentials:
    """The XAPI user and password: from ``VMTOOLS_XAPI_USER`` and ``VMTOOLS_XAPI_PASSWORD``
    when both are set, else from ``path`` (TOML ``username``/``password``, private to root or
    the user), by default /etc/vmtools/xapi.toml."""
    user, password = environ.get(USER_ENV), environ.get(PASSWORD_ENV)
    if user and password is not None and path is None:
        return Credentials(user, password)
    path = path or DEFAULT_CREDENTIALS
    _check_private(path)
    try:
        with open(path, "rb") as fh:
            doc = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:     # names a line and column, never the value
        raise UsageError(f"XAPI credentials {path}: not valid TOML ({exc})") from None
    except OSError as exc:
        raise UsageError(f"XAPI credentials {path}: {exc.strerror}") from None
    user, password = doc.get("username"), doc.get("password")
    if not isinstance(user, str) or not user or "\n" in user:
        raise UsageError(f"XAPI credentials {path}: username must be a non-empty string")
    if not isinstance(password, str):
        raise UsageError(f"XAPI credentials {path}: password must be a string")
    return Credentials(user, password)


_FINGERPRINT = re.compile(r"(?:sha256:)?([0-9A-Fa-f]{2}(?::?[0-9A-Fa-f]{2}){31})")


def parse_fingerprint(text: str) -> str:
    """A SHA-256 certificate fingerprint as ``openssl x509 -fingerprint -sha256`` prints it
    (``AB:CD:...``, with or without colons, optional ``sha256:``) → 64 lower-case hex digits."""
    m = _FINGERPRINT.fullmatch(text.strip())
    if not m:
        raise UsageError(f"{text[:80]!r} is not a SHA-256 certificate fingerprint (64 hex "
                         "digits, colons allowed; openssl x509 -noout -fingerprint -sha256)")
    return m.group(1).replace(":", "").lower()


@dataclass
class XapiSettings:
    """How to reach and trust a pool master."""

    url: str
    credentials: str | None = None          # file; None: the environment, else the default file
    ca_file: str | None = None
    fingerprints: tuple[str, ...] = ()      # pinned SHA-256 fingerprints (hex)
    insecure: bool = False                  # no TLS verification at all (loud)
    timeout: float = 10.0
    environ: dict | None = None             # for tests: the environment to read

    def __post_init__(self) -> None:
        parsed = urllib.parse.urlsplit(self.url)
        if parsed.scheme not in ("https", "http") or not parsed.hostname:
            raise UsageError(f"XAPI URL {self.url!r}: expected https://MASTER[:PORT]")
        if parsed.username or parsed.password:
            raise UsageError("the XAPI URL must not hold a user or password (they would show "
                             f"in ps and logs): use {USER_ENV}/{PASSWORD_ENV} or the "
                             "credentials file")
        if parsed.scheme == "http" and not self.insecure:
            raise UsageError(f"XAPI URL {self.url}: plain http would send the password in "
                             "clear; use https (or {xapi_insecure}, only for a lab)",
                             settings=("xapi_insecure",))
        if self.ca_file is not None and not os.path.isfile(self.ca_file):
            raise UsageError(f"XAPI CA file {self.ca_file}: no such file")
        self.fingerprints = tuple(parse_fingerprint(f) if len(f) != 64 else f.lower()
                                  for f in self.fingerprints)

    @property
    def base(self) -> str:
        p = urllib.parse.urlsplit(self.url)
        return f"{p.scheme}://{p.netloc}"

    def tls_note(self) -> str:
        if urllib.parse.urlsplit(self.url).scheme == "http":
            return "plain HTTP, NOT ENCRYPTED"
        if self.insecure:
            return "TLS NOT VERIFIED"
        if self.fingerprints:
            return "pinned certificate"
        return f"CA {self.ca_file}" if self.ca_file else "system CAs"


class CertificateMismatch(ssl.SSLError):
    pass


def _context(settings: XapiSettings) -> ssl.SSLContext:
    if settings.insecure or settings.fingerprints:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE        # the pinned fingerprint is checked instead
        return ctx
    try:
        return ssl.create_default_context(cafile=settings.ca_file)
    except (ssl.SSLError, OSError) as exc:
        raise UsageError(f"XAPI CA file {settings.ca_file}: not a PEM certificate bundle "
                         f"({exc.__class__.__name__})") from None


def open_connection(settings: XapiSettings, host: str, port: int | None,
                    timeout: float) -> http.client.HTTPConnection:
    """A connection to ``host`` (the master or a pool member) whose certificate has been
    verified (CA, or pinned fingerprint compared right after the handshake, before any byte
    of a request is sent)."""
    scheme = urllib.parse.urlsplit(settings.url).scheme
    if scheme == "http":
        return http.client.HTTPConnection(host, port, timeout=timeout)
    return _PinnedHTTPS(host, port, timeout=timeout, context=_context(settings),
                        pins=settings.fingerprints if not settings.insecure else ())


class _PinnedHTTPS(http.client.HTTPSConnection):
    def __init__(self, *args, pins: tuple[str, ...] = (), **kwargs):
        super().__init__(*args, **kwargs)
        self.pins = pins

    def connect(self) -> None:
        super().connect()
        if self.pins:
            der = self.sock.getpeercert(binary_form=True) or b""
            got = hashlib.sha256(der).hexdigest()
            if got not in self.pins:
                self.sock.close()
                raise CertificateMismatch(
                    f"the certificate of {self.host}:{self.port} has SHA-256 fingerprint "
                    f"{_colons(got)}, not a pinned one")


def _port(parsed: urllib.parse.SplitResult) -> int:
    """The URL's port, else its scheme's (given explicitly: http.client would take the last
    group of an IPv6 literal for a port)."""
    return parsed.port or (80 if parsed.scheme == "http" else 443)


def _colons(hexdigest: str) -> str:
    return ":".join(hexdigest[i:i + 2] for i in range(0, len(hexdigest), 2)).upper()


class _Transport(xmlrpc.client.Transport):
    """XML-RPC over a verified connection, a timeout on every call, never sent twice (the
    stock transport resends a request whose connection was reset: a migration must not)."""

    def __init__(self, settings: XapiSettings, timeout: float):
        super().__init__()
        self.settings = settings
        self.timeout = timeout

    def request(self, host, handler, request_body, verbose=False):  # type: ignore[override]
        return self.single_request(host, handler, request_body, verbose)

    def make_connection(self, host):  # type: ignore[override]
        if self._connection and host == self._connection[0]:
            return self._connection[1]
        _chost, self._extra_headers, _x509 = self.get_host_info(host)
        # always the master of the settings (an IPv6 literal keeps its colons)
        parsed = urllib.parse.urlsplit(self.settings.url)
        conn = open_connection(self.settings, parsed.hostname, _port(parsed), self.timeout)
        self._connection = host, conn
        return conn

    def parse_response(self, response):  # type: ignore[override]
        # the stock parser reads without bound: a runaway master must not fill memory
        length = response.getheader("Content-Length")
        if length and length.isdigit() and int(length) > MAX_ANSWER:
            raise DataError(f"the pool master's answer is {int(length)} bytes, more than any "
                            "pool's", self.settings.base)
        return super().parse_response(response)


# --------------------------------------------------------------------------- the session

class XapiError(OperationFailed):
    """XAPI answered a call with a failure: ``code`` and ``params`` from ErrorDescription."""

    def __init__(self, call: str, code: str, params: list[str]):
        self.call, self.code, self.params = call, code, params
        words = CODE_WORDS.get(code)
        shown = ", ".join(_short(p) for p in params[:4])
        super().__init__(f"XAPI {call}: {code}" + (f" [{shown}]" if shown else "")
                         + (f" ({words})" if words else ""))


def _short(value: object) -> str:
    text = str(value)
    text = "".join(ch if ch.isprintable() else "?" for ch in text)
    return text if len(text) <= 60 else text[:57] + "..."


class XapiPool:
    """One logged-in session with a pool master, shared by threads (calls are serialised:
    they are short; a migration is an ``Async`` task polled between other calls)."""

    def __init__(self, settings: XapiSettings):
        self.settings = settings
        self._lock = threading.RLock()
        self._session: XenAPI.Session | None = None
        self._credentials: Credentials | None = None
        if settings.insecure:
            log.warning("XAPI at %s: %s: the master's identity is not checked, the password "
                        "may go to anyone on the path", settings.base, settings.tls_note())

    # ---- connection
    def _connect(self) -> XenAPI.Session:
        if self._session is not None:
            return self._session
        if self._credentials is None:
            self._credentials = read_credentials(self.settings.credentials,
                                                 self.settings.environ or os.environ)
        session = XenAPI.Session(self.settings.base + "/",
                                 transport=_Transport(self.settings, self.settings.timeout))
        creds = self._credentials
        try:
            session.xenapi.login_with_password(creds.username, creds.password, "2.21",
                                               ORIGINATOR)
        except Exception as exc:  # noqa: BLE001 - translated; the password is in no message
            raise self._translate("session.login_with_password", exc) from None
        self._session = session
        return session

    def call(self, method: str, *args):
        """``session.xenapi.<method>(*args)``; XapiError for a XAPI failure, Unavailable when
        the master cannot be reached or trusted, DataError for an answer that is no XAPI
        answer."""
        with self._lock:
            session = self._connect()
            fn = session.xenapi
            for part in method.split("."):
                fn = getattr(fn, part)
            try:
                return fn(*args)
            except Exception as exc:  # noqa: BLE001 - translated below
                if isinstance(exc, (OSError, http.client.HTTPException)) and \
                        not isinstance(exc, ssl.SSLError):
                    self._session = None        # the connection is gone: log in again next
                raise self._translate(method, exc) from None

    def _translate(self, method: str, exc: BaseException) -> Exception:
        base = self.settings.base
        if isinstance(exc, XenAPI.Failure):
            details = exc.details if isinstance(exc.details, list) else [exc.details]
            code = str(details[0]) if details else "UNKNOWN"
            # a session handle is as good as the password while it lives: never shown
            handle = getattr(self._session, "_session", None) if self._session else None
            params = ["<session>" if handle and str(p) == handle else str(p)
                      for p in details[1:]]
            if code == "SESSION_AUTHENTICATION_FAILED":
                return Unavailable(f"XAPI at {base}: login refused: the user name or password "
                                   f"is wrong (check {USER_ENV}/{PASSWORD_ENV} or the "
                                   "credentials file)")
            if code == "HOST_IS_SLAVE":
                return Unavailable(f"XAPI at {base} is not the pool master (the master is "
                                   f"{_short(params[0]) if params else 'elsewhere'}): give "
                                   "the master's URL")
            return XapiError(method, code, params)
        if isinstance(exc, CertificateMismatch):
            return Unavailable(f"XAPI at {base}: {exc.args[0]}: refusing to send the "
                               "credentials (if the pool's certificate was renewed, pin the "
                               "new fingerprint)")
        if isinstance(exc, ssl.SSLCertVerificationError):
            return Unavailable(f"XAPI at {base}: the certificate does not verify "
                               f"({exc.verify_message}): pass the pool's CA with {{xapi_ca}}, "
                               "or pin its fingerprint with {xapi_fingerprint}",
                               settings=("xapi_ca", "xapi_fingerprint"))
        if isinstance(exc, ssl.SSLError):
            return Unavailable(f"XAPI at {base}: TLS failed ({exc.reason or exc.__class__.__name__})")
        if isinstance(exc, xmlrpc.client.Fault):
            if exc.faultCode == 500 and "session" in str(exc.faultString):
                return Unavailable(f"XAPI at {base}: the session keeps expiring (logged in "
                                   "again 3 times); the master may be restarting")
            return DataError(f"XAPI {method}: the answer is not a XAPI result "
                             f"(fault {exc.faultCode})", base)
        if isinstance(exc, xmlrpc.client.ProtocolError):
            return Unavailable(f"XAPI at {base}: HTTP {exc.errcode} {_short(exc.errmsg)}")
        if isinstance(exc, (TimeoutError, socket.timeout)):
            return Unavailable(f"XAPI at {base}: no answer to {method} within "
                               f"{self.settings.timeout:g}s")
        if isinstance(exc, ConnectionRefusedError):
            return Unavailable(f"XAPI at {base}: connection refused (is it the pool master, "
                               "and is xapi running?)")
        if isinstance(exc, (OSError, http.client.HTTPException)):
            return Unavailable(f"XAPI at {base}: {exc.__class__.__name__}: "
                               f"{_short(exc) or 'connection lost'}")
        if isinstance(exc, (TypeError, ValueError, KeyError, IndexError, AttributeError,
                            OverflowError)) or exc.__class__.__name__ == "ExpatError":
            # XenAPI's own unwrapping of a malformed answer (a non-struct, no Status)
            return DataError(f"XAPI {method}: the answer is not a XAPI result "
                             f"({exc.__class__.__name__})", base)
        if isinstance(exc, (DataError, Unavailable, UsageError)):
            return exc
        return Unavailable(f"XAPI at {base}: {method} failed: {exc.__class__.__name__}")

    def get(self, path: str, query: dict, address: str | None = None,
            limit: int = 64 * 1024 * 1024) -> bytes:
        """An HTTP GET on the master (or on pool member ``address``, same scheme and port)
        with the session's id, as ``/rrd_updates`` wants it."""
        with self._lock:
            session = self._connect()
            ref = session._session
        parsed = urllib.parse.urlsplit(self.settings.url)
        host = address or parsed.hostname
        q = urllib.parse.urlencode({"session_id": ref, **query})
        try:
            conn = open_connection(self.settings, host, _port(parsed), self.settings.timeout)
            try:
                conn.request("GET", f"{path}?{q}", headers={"originator": ORIGINATOR})
                resp = conn.getresponse()
                body = resp.read(limit + 1)
            finally:
                conn.close()
        except Exception as exc:  # noqa: BLE001
            raise self._translate(f"GET {path} on {host}", exc) from None
        if resp.status != 200:
            raise Unavailable(f"XAPI at {host}: GET {path}: HTTP {resp.status}")
        if len(body) > limit:
            raise DataError(f"GET {path}: more than {limit} bytes", host)
        return body

    def close(self) -> None:
        with self._lock:
            session, self._session = self._session, None
        if session is not None:
            try:
                session.xenapi.session.logout()
            except Exception:  # noqa: BLE001 - a session that cannot log out expires anyway
                pass


# --------------------------------------------------------------------------- records

_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def guest_name(rec: dict) -> str | None:
    """The name vmtools gives a XAPI guest: its ``name_label`` when that is a safe name
    (model.is_safe_name, not a reserved one), else its ``uuid`` (XAPI's labels are free text:
    "Windows Server 2019 (1)"), else None. The source and the driver both name guests so."""
    label = rec.get("name_label")
    if is_safe_name(label) and not is_reserved_name(label) and not _UUID.fullmatch(label):
        return label
    uuid = rec.get("uuid")
    return uuid if isinstance(uuid, str) and _UUID.fullmatch(uuid) else None


def is_ref(value) -> bool:
    return isinstance(value, str) and value.startswith("OpaqueRef:") and \
        value != "OpaqueRef:NULL" and len(value) < 100


def records(pool: XapiPool, cls: str, where: str | None = None) -> dict[str, dict]:
    """``CLS.get_all_records`` (or ``get_all_records_where(where)``, XAPI's query language)
    checked: a struct of OpaqueRef → struct."""
    call = f"{cls}.get_all_records_where" if where is not None else f"{cls}.get_all_records"
    got = pool.call(call, where) if where is not None else pool.call(call)
    if not isinstance(got, dict):
        raise DataError(f"{call} returned {type(got).__name__}, not a struct",
                        pool.settings.base)
    out = {}
    for ref, rec in got.items():
        if is_ref(ref) and isinstance(rec, dict):
            out[ref] = rec
    return out


# --------------------------------------------------------------------------- the driver

def require_settings(host: str, xapi: "XapiSettings | None") -> None:
    if xapi is None:
        raise UsageError(f"host {host} is managed through XAPI: give the pool master's URL "
                         "({xapi})", settings=("xapi",))


class _NoPool:
    """The pool of a driver made without the master's settings: every call says so."""

    def __init__(self, host: str):
        self.host = host

    def call(self, *_args):
        require_settings(self.host, None)

    get = call

    def close(self) -> None:
        pass


class XapiDriver(Driver):
    """One host of a pool, through the pool master."""

    transport = "xapi"

    def __init__(self, endpoint: Endpoint, pool: XapiPool, connect_timeout: float = 10.0,
                 poll: float = 0.5):
        super().__init__(endpoint, connect_timeout)
        self.pool = pool
        self.poll = poll

    @classmethod
    def for_endpoint(cls, endpoint: Endpoint, connect_timeout: float = 10.0, *,
                     xapi: XapiSettings | None = None, **_settings) -> "XapiDriver":
        """The hosts of one master share one session (:func:`pool_for`). Without the
        master's settings the driver is made, but its first call is a UsageError (vm-apply
        checks before anything runs: :func:`require_settings`)."""
        return cls(endpoint, pool_for(xapi) if xapi is not None else _NoPool(endpoint.name),
                   connect_timeout)

    # ---- lookups
    def host_ref(self, name: str | None = None) -> str:
        name = name or self.endpoint.name
        refs = self.pool.call("host.get_by_name_label", name)
        if not isinstance(refs, list):
            raise DataError("host.get_by_name_label returned no list", self.pool.settings.base)
        refs = [r for r in refs if is_ref(r)]
        if len(refs) != 1:
            raise Unavailable(f"{name}: the pool has {len(refs) or 'no'} host"
                              f"{'s' if len(refs) > 1 else ''} named so"
                              + (" (is it in this pool?)" if not refs else ""))
        return refs[0]

    def vm_ref(self, name: str) -> str:
        """The guest vmtools calls ``name`` (:func:`guest_name`: its label, or its uuid)."""
        if _UUID.fullmatch(name):
            try:
                refs = [self.pool.call("VM.get_by_uuid", name)]
            except XapiError as exc:
                if exc.code != "UUID_INVALID":
                    raise
                refs = []
        else:
            refs = self.pool.call("VM.get_by_name_label", name)
        if not isinstance(refs, list):
            raise DataError("VM.get_by_name_label returned no list", self.pool.settings.base)
        guests = []
        for ref in (r for r in refs if is_ref(r)):
            rec = self.pool.call("VM.get_record", ref)
            if isinstance(rec, dict) and not rec.get("is_control_domain") and \
                    not rec.get("is_a_template") and not rec.get("is_a_snapshot") and \
                    guest_name(rec) == name:
                guests.append(ref)
        if len(guests) != 1:
            raise MigrationRefused(f"XAPI: {len(guests) or 'no'} guest{'s' if len(guests) > 1 else ''}"
                                   f" named {name} in the pool")
        return guests[0]

    def management_network(self, host: str) -> str:
        """The network of ``host``'s management interface (what ``host.migrate_receive``
        needs to describe the destination)."""
        for rec in records(self.pool, "PIF").values():
            if rec.get("host") == host and rec.get("management") is True and \
                    is_ref(rec.get("network")):
                return rec["network"]
        raise MigrationRefused(f"XAPI: the destination has no management interface")

    # ---- the driver interface
    def list_guests(self) -> set[str]:
        try:
            me = self.host_ref()
            # only this host's guests cross the wire (not the whole pool's, every poll)
            vms = records(self.pool, "VM", f'field "resident_on" = "{me}"')
        except XapiError as exc:
            raise Unavailable(f"{self.endpoint.name}: {exc}") from None
        except DataError as exc:
            raise Unavailable(f"{self.endpoint.name}: {exc}") from None
        names: set[str] = set()
        for rec in vms.values():
            if rec.get("resident_on") != me or rec.get("is_control_domain") is not False:
                continue
            if rec.get("power_state") not in ("Running", "Paused"):
                continue
            name = guest_name(rec)
            if name is None:
                continue
            names.add(name)
            ops = rec.get("current_operations")
            if isinstance(ops, dict) and MIGRATING_OPERATIONS & {str(v) for v in ops.values()}:
                names.add(name + MIGRATED_AWAY)
        return names

    def migrate(self, vm: str, dst_address: str, timeout: float) -> None:
        try:
            ref = self.vm_ref(vm)
            dst = self.host_ref(dst_address)
            rec = self.pool.call("VM.get_record", ref)
            if isinstance(rec, dict) and rec.get("resident_on") != self.host_ref():
                raise MigrationRefused(f"XAPI: {vm} is not resident on {self.endpoint.name}")
            dest = self.pool.call("host.migrate_receive", dst, self.management_network(dst),
                                  {})
            self.pool.call("VM.assert_can_migrate", ref, dest, True, {}, {}, {})
        except XapiError as exc:
            raise MigrationRefused(f"refused: {exc}") from None
        except (Unavailable, DataError) as exc:
            raise MigrationRefused(f"refused: {exc}") from None
        try:
            task = self.pool.call("Async.VM.pool_migrate", ref, dst, {"live": "true"})
        except XapiError as exc:
            raise MigrationRefused(f"refused: {exc}") from None
        except Unavailable as exc:
            # the call may have reached the master and started the task
            raise MigrationUncertain(f"{exc} (the migration may have started)") from None
        if not is_ref(task):
            raise MigrationUncertain("XAPI Async.VM.pool_migrate returned no task reference")
        try:
            self._wait(task, vm, timeout)
        finally:
            try:
                self.pool.call("task.destroy", task)
            except (XapiError, Unavailable, DataError):
                pass

    def _wait(self, task: str, vm: str, timeout: float, call: str = "VM.pool_migrate",
              what: str = "migration") -> None:
        deadline = time.monotonic() + timeout
        status = self._status(task, what)
        while status == "pending":
            if time.monotonic() >= deadline:
                self._cancel(task, vm, timeout, call, what)
                return
            time.sleep(min(self.poll, max(0.0, deadline - time.monotonic())))
            status = self._status(task, what)
        self._ended(task, status, vm, call, what)

    def _status(self, task: str, what: str = "migration") -> str:
        try:
            status = self.pool.call("task.get_status", task)
        except (XapiError, Unavailable, DataError) as exc:
            raise MigrationUncertain(f"lost track of the {what} task: {exc}") from None
        if status not in ("pending", "success", "failure", "cancelling", "cancelled"):
            raise MigrationUncertain(f"the {what} task's status is {_short(status)!r}")
        return "pending" if status == "cancelling" else status

    def _ended(self, task: str, status: str, vm: str, call: str = "VM.pool_migrate",
               what: str = "migration") -> None:
        if status == "success":
            return
        if status == "cancelled":
            raise MigrationRefused(f"XAPI: the {what} of {vm} was cancelled")
        try:
            info = self.pool.call("task.get_error_info", task)
        except (XapiError, Unavailable, DataError):
            info = []
        info = [str(x) for x in info] if isinstance(info, list) else []
        code = info[0] if info else "UNKNOWN"
        err = XapiError(call, code, info[1:])
        if code in REFUSED_CODES:
            raise MigrationRefused(f"refused: {err}")
        raise MigrationRefused(f"failed: {err}")

    def _cancel(self, task: str, vm: str, timeout: float, call: str = "VM.pool_migrate",
                what: str = "migration") -> None:
        """--timeout passed: ask XAPI to cancel the task, and believe only its answer."""
        try:
            self.pool.call("task.cancel", task)
        except XapiError as exc:
            log.info("task.cancel: %s", exc)       # e.g. the task had just ended
        except (Unavailable, DataError) as exc:
            raise MigrationUncertain(f"no end within {timeout:g}s and the task could not be "
                                     f"cancelled ({exc}); the {what} may still run") from None
        end = time.monotonic() + max(5.0, self.connect_timeout)
        status = self._status(task, what)
        while status == "pending" and time.monotonic() < end:
            time.sleep(self.poll)
            status = self._status(task, what)
        if status == "pending":
            raise MigrationUncertain(f"no end within {timeout:g}s; task.cancel asked, but "
                                     f"the task still runs (the {what} may still end)")
        if status == "success":
            return
        if status in ("cancelled", "failure"):
            try:
                self._ended(task, status, vm, call, what)
            except MigrationRefused as exc:
                raise MigrationRefused(f"no end within {timeout:g}s: cancelled ({exc})"
                                       ) from None

    # ---- the guest lifecycle (XAPI keeps the images: a suspended VM's memory is its
    # suspend VDI in a storage repository, a checkpoint is a snapshot VM; the plan's image
    # path only names it)
    def _lifecycle(self, call: str, what: str, vm: str, timeout: float, *args,
                   resident: bool = False) -> None:
        """``Async.<call>(vm, *args)``, its task polled and cancelled after ``timeout``."""
        try:
            ref = self.vm_ref(vm)
            if resident:
                rec = self.pool.call("VM.get_record", ref)
                if isinstance(rec, dict) and rec.get("resident_on") != self.host_ref():
                    raise MigrationRefused(f"XAPI: {vm} is not resident on "
                                           f"{self.endpoint.name}")
            args = tuple(self.host_ref() if a is _HERE else a for a in args)
            task = self.pool.call(f"Async.{call}", ref, *args)
        except XapiError as exc:
            raise MigrationRefused(f"refused: {exc}") from None
        except DataError as exc:
            raise MigrationRefused(f"refused: {exc}") from None
        except Unavailable as exc:
            raise MigrationUncertain(f"{exc} (the {what} may have started)") from None
        if not is_ref(task):
            raise MigrationUncertain(f"XAPI Async.{call} returned no task reference")
        try:
            self._wait(task, vm, timeout, call, what)
        finally:
            try:
                self.pool.call("task.destroy", task)
            except (XapiError, Unavailable, DataError):
                pass

    def suspend_guest(self, vm: str, image: str, timeout: float) -> None:
        self._lifecycle("VM.suspend", "suspend", vm, timeout, resident=True)

    def checkpoint_guest(self, vm: str, image: str, timeout: float) -> None:
        self._lifecycle("VM.checkpoint", "checkpoint", vm, timeout, checkpoint_name(image),
                        resident=True)

    def resume_guest(self, vm: str, image: str, timeout: float) -> None:
        self._lifecycle("VM.resume_on", "resume", vm, timeout, _HERE, False, False)

    def create_guest(self, vm: str, config: str, timeout: float) -> None:
        self._lifecycle("VM.start_on", "start", vm, timeout, _HERE, False, False)

    def has_image(self, op: str, vm: str, path: str) -> bool:
        """From the guest's state: a resume's (or a suspend's) image is there when the VM is
        Suspended, a create's configuration when it is Halted (XAPI defines guests itself),
        a checkpoint's when the VM has a snapshot named :func:`checkpoint_name`."""
        try:
            ref = self.vm_ref(vm)
            if op == "checkpoint":
                found = self.pool.call("VM.get_by_name_label", checkpoint_name(path))
                for snap in (r for r in (found if isinstance(found, list) else [])
                             if is_ref(r)):
                    rec = self.pool.call("VM.get_record", snap)
                    if isinstance(rec, dict) and rec.get("is_a_snapshot") is True and \
                            rec.get("snapshot_of") == ref:
                        return True
                return False
            power = self.pool.call("VM.get_power_state", ref)
        except MigrationRefused:
            return False                       # no such guest: nothing of it is there
        except (XapiError, DataError) as exc:
            raise Unavailable(f"{self.endpoint.name}: {exc}") from None
        return power == ("Halted" if op == "create" else "Suspended")

    # ---- power and maintenance (vmtools.power.execute calls these for xapi hosts)
    def _metrics(self, host: str) -> dict:
        ref = self.pool.call("host.get_metrics", host)
        rec = self.pool.call("host_metrics.get_record", ref) if is_ref(ref) else None
        return rec if isinstance(rec, dict) else {}

    def is_live(self) -> bool:
        try:
            return self._metrics(self.host_ref()).get("live") is True
        except (XapiError, Unavailable, DataError):
            return False

    def disable(self) -> str:
        try:
            self.pool.call("host.disable", self.host_ref())
        except XapiError as exc:
            raise OperationFailed(f"{self.endpoint.name}: {exc}") from None
        return "host.disable"

    def enable(self) -> str:
        """The end of a maintenance: ``host.enable`` (XAPI places guests there again)."""
        try:
            self.pool.call("host.enable", self.host_ref())
        except XapiError as exc:
            raise OperationFailed(f"{self.endpoint.name}: {exc}") from None
        return "host.enable (XAPI places guests there again)"

    def shutdown_host(self, off_timeout: float, poll: float = 1.0) -> str:
        host = self.host_ref()
        mode = self.pool.call("host.get_power_on_mode", host)
        if mode in ("", None):
            raise OperationFailed(f"{self.endpoint.name}: not shut down: its power_on_mode is "
                                  "empty, so XAPI could not switch it on again (set "
                                  "Wake-on-LAN or IPMI in XAPI)")
        pool_refs = self.pool.call("pool.get_all")
        if isinstance(pool_refs, list) and pool_refs and is_ref(pool_refs[0]) and \
                self.pool.call("pool.get_master", pool_refs[0]) == host:
            raise OperationFailed(f"{self.endpoint.name} is the pool master: vmtools never "
                                  "shuts it down")
        was_enabled = self.pool.call("host.get_enabled", host) is True
        try:
            self.pool.call("host.disable", host)
            self.pool.call("host.shutdown", host)
        except XapiError as exc:
            if was_enabled:                          # back as it was (a host in maintenance
                try:                                 # stays disabled)
                    self.pool.call("host.enable", host)
                except (XapiError, Unavailable, DataError):
                    pass
            raise OperationFailed(f"{self.endpoint.name}: not shut down: {exc}") from None
        deadline = time.monotonic() + off_timeout
        while self.is_live():
            if time.monotonic() >= deadline:
                raise OperationFailed(f"{self.endpoint.name}: host.shutdown accepted, but "
                                      f"XAPI still reports it live after {off_timeout:g}s")
            time.sleep(poll)
        return "host.disable, host.shutdown; XAPI reports it no longer live"

    def power_on_host(self, boot_timeout: float, poll: float = 1.0) -> str:
        host = self.host_ref()
        if not self.is_live():
            try:
                self.pool.call("host.power_on", host)
            except XapiError as exc:
                raise OperationFailed(f"{self.endpoint.name}: not switched on: {exc}") from None
            how = "host.power_on"
        else:
            how = "already live"
        deadline = time.monotonic() + boot_timeout
        while not self.is_live():
            if time.monotonic() >= deadline:
                raise OperationFailed(f"{self.endpoint.name} did not come up within "
                                      f"{{boot_timeout}} {boot_timeout:g}s after {how} (XAPI "
                                      "does not report it live); the migrations that needed "
                                      "it are not run", settings=("boot_timeout",))
            time.sleep(poll)
        try:
            self.pool.call("host.enable", host)
        except XapiError as exc:
            raise OperationFailed(f"{self.endpoint.name} is live but host.enable failed: {exc}"
                                  ) from None
        return f"{how}; live; host.enable"

    def close(self) -> None:
        """The pool's session is shared: closed by whoever made the pool."""


# One pool per master URL for a whole vm-apply run (every xapi host's driver shares it).
_POOLS: dict[str, XapiPool] = {}
_POOLS_LOCK = threading.Lock()


_HERE = object()        # stands for this driver's host among a call's arguments


def pool_for(settings: XapiSettings) -> XapiPool:
    with _POOLS_LOCK:
        pool = _POOLS.get(settings.base)
        if pool is None:
            pool = _POOLS[settings.base] = XapiPool(settings)
        return pool


def close_pools() -> None:
    with _POOLS_LOCK:
        pools = list(_POOLS.values())
        _POOLS.clear()
    for pool in pools:
        pool.close()


DRIVER = XapiDriver

__all__ = ["DRIVER", "XapiDriver", "XapiPool", "XapiSettings", "XapiError", "Credentials",
           "read_credentials", "parse_fingerprint", "records", "is_ref", "guest_name", "pool_for",
           "close_pools", "require_settings"]
