"""The session with a XCP-ng / XenServer pool master that the ``xapi`` transport
(:mod:`vmtools.drivers.xapi`) and the XAPI source (:mod:`vmtools.xapi.source`) share: the
credentials (a private file or the environment, never argv, logs or errors), TLS verified
against a CA file or a pinned certificate fingerprint (checked before a byte of the login is
sent), the official ``XenAPI`` client's session with a timeout on every call and no resending
of a call whose answer was lost, every failure turned into one vmtools error
(:meth:`XapiPool._translate`: XAPI's error codes, TLS, HTTP, a malformed answer), the records
of a class, and one pool per master URL for a whole run (:func:`pool_for`).
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
import tomllib
import urllib.parse
import xmlrpc.client
from dataclasses import dataclass, field

import XenAPI

from vmtools.inputs import check_private
from vmtools.errors import DataError, OperationFailed, Unavailable, UsageError
from vmtools.model import is_reserved_name, is_safe_name

log = logging.getLogger("vmtools.xapi")

DEFAULT_CREDENTIALS = "/etc/vmtools/xapi.toml"
USER_ENV, PASSWORD_ENV = "VMTOOLS_XAPI_USER", "VMTOOLS_XAPI_PASSWORD"
ORIGINATOR = "vmtools"
# XAPI answers larger than this are no pool's (a 40,000-guest pool's VM records are ~200 MB).
MAX_ANSWER = 512 * 1024 * 1024

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
    if not os.path.exists(path):
        raise UsageError(f"XAPI credentials {path}: no such file (write username and "
                         f"password there, chmod 600, or set {USER_ENV} and {PASSWORD_ENV})")
    check_private(path, "XAPI credentials")


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




# One pool per master URL for a whole vm-apply run (every xapi host's driver shares it).
_POOLS: dict[str, XapiPool] = {}
_POOLS_LOCK = threading.Lock()


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


__all__ = ["XapiPool", "XapiSettings", "XapiError", "Credentials", "read_credentials",
           "parse_fingerprint", "records", "is_ref", "guest_name", "pool_for", "close_pools",
           "open_connection", "CertificateMismatch"]
