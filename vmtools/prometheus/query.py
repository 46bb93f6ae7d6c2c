"""A Prometheus HTTP API client for hostile networks: instant and range queries
(``/api/v1/query``, ``/api/v1/query_range``) under one deadline for the whole read, with a
bounded answer size, basic auth or a bearer token read from files, and TLS with a CA file.

What a server answers is checked before it is believed: an HTTP status other than 200, a body
that is not JSON (an HTML login page, a proxy's error), a JSON that is not the API's envelope
(``status``, ``data.resultType``, ``data.result``), a label that is not a string, a sample that
is not ``[time, "value"]``. Values are returned as the strings Prometheus sends ("NaN", "+Inf"
and "1e308" included): judging them is the caller's business (:mod:`vmtools.prometheus.source`).

Errors: :class:`~vmtools.errors.Unavailable` (69) when the server cannot be reached, refuses
the credentials, answers 5xx or does not finish within the deadline;
:class:`~vmtools.errors.DataError` (65) when it answers something that is not a Prometheus
answer, too large an answer, or refuses a query (``bad_data``: the profile's query is wrong).
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import math
import os
import socket
import ssl
import threading
import time
import urllib.parse
from dataclasses import dataclass

from vmtools.errors import DataError, OptionError, Unavailable, UsageError
from vmtools.inputs import check_private

MAX_ANSWER_BYTES = 128 << 20      # one answer; 40,000 guests x 121 samples fit
MAX_SERIES = 1_000_000
MAX_SECRET_BYTES = 4096
USER_AGENT = "vmtools (vm-snapshot --prometheus)"


@dataclass
class Auth:
    """Basic auth (``user`` and ``password``) or a bearer ``token``; both read from files."""
    user: str | None = None
    password: str | None = None
    token: str | None = None

    def header(self) -> str | None:
        if self.token is not None:
            return f"Bearer {self.token}"
        if self.user is not None:
            raw = f"{self.user}:{self.password or ''}".encode("utf-8")
            return "Basic " + base64.b64encode(raw).decode("ascii")
        return None


def read_secret(path: str, setting: str) -> str:
    """The first line of a credentials file (a password or a token), bounded; never echoed.
    A file others can read is refused, as ssh refuses such a key
    (:func:`vmtools.inputs.check_private`)."""
    try:
        with open(path, "rb") as fh:
            st = os.fstat(fh.fileno())
            data = fh.read(MAX_SECRET_BYTES + 1)
    except OSError as exc:
        raise OptionError(setting, f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        check_private(path, st=st)
    except UsageError as exc:
        raise OptionError(setting, str(exc)) from None
    if len(data) > MAX_SECRET_BYTES:
        raise OptionError(setting, f"{path}: longer than {MAX_SECRET_BYTES} bytes: not a "
                          "password or token file")
    try:
        text = data.decode("utf-8").splitlines()[0].strip() if data.strip() else ""
    except UnicodeDecodeError:
        raise OptionError(setting, f"{path}: not UTF-8 text") from None
    if not text or any(ord(ch) < 32 or ord(ch) == 127 for ch in text):
        raise OptionError(setting, f"{path}: empty, or holds control characters")
    return text


class Client:
    """Queries to one Prometheus server, all before ``deadline`` (``time.monotonic()``)."""

    def __init__(self, url: str, deadline: float, auth: Auth | None = None,
                 ca_file: str | None = None, max_bytes: int = MAX_ANSWER_BYTES):
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise OptionError("prometheus", f"{url!r}: expected http://HOST[:PORT][/PATH] or "
                              "https://...")
        if parts.username is not None or parts.password is not None:
            raise OptionError("prometheus", "credentials in the URL would show in ps and "
                              "logs: give {prometheus-user} and {prometheus-password-file} "
                              "(or {prometheus-token-file}) instead",
                              settings=("prometheus-user", "prometheus-password-file",
                                        "prometheus-token-file"))
        if parts.query or parts.fragment:
            raise OptionError("prometheus", f"{url!r}: no ?query or #fragment in the base URL")
        try:
            self.port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            raise OptionError("prometheus", f"{url!r}: not a valid port") from None
        self.scheme, self.host = parts.scheme, parts.hostname
        self.prefix = parts.path.rstrip("/")
        self.name = f"{parts.scheme}://{parts.netloc}{self.prefix}"
        self.deadline = deadline
        self.auth = auth
        self.max_bytes = max_bytes
        self.context = None
        if parts.scheme == "https":
            try:
                self.context = ssl.create_default_context(cafile=ca_file)
            except (OSError, ssl.SSLError) as exc:
                raise OptionError("prometheus-ca-file", f"{ca_file}: not a usable CA file "
                                  f"({exc})") from None
        elif ca_file is not None:
            raise OptionError("prometheus-ca-file", "a CA file needs an https:// URL")

    # ------------------------------------------------------------------ the API

    def instant(self, query: str, at: float) -> list[tuple[dict[str, str], str]]:
        """``query`` evaluated at ``at`` (Unix time): [(labels, value string)]."""
        data = self._api("query", {"query": query, "time": _time(at)}, query)
        if data["resultType"] == "scalar":
            return [({}, _sample(data["result"], query)[1])]
        if data["resultType"] != "vector":
            raise DataError(f"expected an instant vector, got a {data['resultType']}",
                            self._where(query))
        return [(_labels(item, query, self), _sample(item.get("value"), query, self)[1])
                for item in _items(data, query, self)]

    def range(self, query: str, start: float, end: float, step: float
              ) -> list[tuple[dict[str, str], list[tuple[float, str]]]]:
        """``query`` evaluated every ``step`` seconds from ``start`` to ``end``."""
        data = self._api("query_range", {"query": query, "start": _time(start),
                                         "end": _time(end), "step": f"{step:g}"}, query)
        if data["resultType"] != "matrix":
            raise DataError(f"expected a range vector (matrix), got a {data['resultType']}",
                            self._where(query))
        out = []
        for item in _items(data, query, self):
            values = item.get("values")
            if not isinstance(values, list):
                raise DataError("a series without its values list", self._where(query))
            out.append((_labels(item, query, self), _samples(values, query, self)))
        return out

    # ------------------------------------------------------------------ HTTP

    def _where(self, query: str) -> str:
        shown = query if len(query) <= 80 else query[:77] + "..."
        return f"{self.name} ({shown})"

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def _api(self, endpoint: str, params: dict[str, str], query: str) -> dict:
        body = self._post(f"{self.prefix}/api/v1/{endpoint}",
                          urllib.parse.urlencode(params).encode("ascii"), query)
        try:
            doc = json.loads(body.decode("utf-8"), parse_constant=_no_constant)
        except (UnicodeDecodeError, ValueError, RecursionError):
            raise DataError(f"not a Prometheus answer: not JSON (starts {_start(body)})",
                            self._where(query)) from None
        if not isinstance(doc, dict) or doc.get("status") not in ("success", "error"):
            raise DataError("not a Prometheus answer: no \"status\" of success or error",
                            self._where(query))
        if doc["status"] == "error":
            kind, error = str(doc.get("errorType", "?"))[:40], str(doc.get("error", ""))[:300]
            if kind in ("timeout", "canceled", "unavailable"):
                raise Unavailable(f"Prometheus could not answer ({kind}: {error})",
                                  ) from None
            raise DataError(f"Prometheus refused the query ({kind}: {error}); check the "
                            "profile's queries", self._where(query))
        data = doc.get("data")
        if not isinstance(data, dict) or not isinstance(data.get("resultType"), str) or \
                "result" not in data:
            raise DataError("not a Prometheus answer: no data.resultType and data.result",
                            self._where(query))
        return data

    def _post(self, path: str, body: bytes, query: str) -> bytes:
        left = self.remaining()
        if left <= 0:
            raise Unavailable(f"{self.name}: no complete answer within the deadline "
                              "({timeout}): nothing is trusted", settings=("timeout",))
        if self.scheme == "https":
            conn = http.client.HTTPSConnection(self.host, self.port, timeout=left,
                                               context=self.context)
        else:
            conn = http.client.HTTPConnection(self.host, self.port, timeout=left)
        headers = {"Content-Type": "application/x-www-form-urlencoded",
                   "Accept": "application/json", "User-Agent": USER_AGENT}
        if self.auth is not None and self.auth.header() is not None:
            headers["Authorization"] = self.auth.header()
        # One deadline for the whole read: a server that drips a byte a second, or stalls
        # mid-answer, is cut off when the deadline passes, not after every read's timeout.
        timer = threading.Timer(left, _cut, (conn,))
        timer.daemon = True
        timer.start()
        try:
            conn.request("POST", path, body=body, headers=headers)
            resp = conn.getresponse()
            status = resp.status
            ctype = resp.getheader("Content-Type", "")
            length = resp.getheader("Content-Length")
            if length is not None and length.isdigit() and int(length) > self.max_bytes:
                raise DataError(f"the answer is {int(length)} bytes, over the limit of "
                                f"{self.max_bytes}: narrow the profile's queries",
                                self._where(query))
            chunks, size = [], 0
            while True:
                if self.remaining() <= 0:
                    raise socket.timeout()
                if conn.sock is not None:
                    conn.sock.settimeout(max(0.01, self.remaining()))
                chunk = resp.read1(65536)
                if not chunk:
                    break
                size += len(chunk)
                if size > self.max_bytes:
                    raise DataError(f"the answer is over the limit of {self.max_bytes} "
                                    "bytes: narrow the profile's queries", self._where(query))
                chunks.append(chunk)
        except (socket.timeout, TimeoutError):
            raise Unavailable(f"{self.name}: no complete answer within the deadline "
                              "({timeout}): nothing is trusted", settings=("timeout",)) from None
        except ssl.SSLError as exc:
            raise Unavailable(f"{self.name}: TLS failed: {exc.reason or exc} "
                              "({prometheus-ca-file} names the CA that signed the server's "
                              "certificate)", settings=("prometheus-ca-file",)) from None
        except (OSError, http.client.HTTPException) as exc:
            if self.remaining() <= 0:
                raise Unavailable(f"{self.name}: no complete answer within the deadline "
                                  "({timeout}): nothing is trusted", settings=("timeout",)) from None
            raise Unavailable(f"{self.name}: {getattr(exc, 'strerror', None) or exc or type(exc).__name__}") from None
        finally:
            timer.cancel()
            conn.close()
        data = b"".join(chunks)
        if status in (401, 403):
            raise Unavailable(f"{self.name}: the server refused the credentials (HTTP "
                              f"{status}); check {{prometheus-user}} and "
                              "{prometheus-password-file}, or {prometheus-token-file}",
                              settings=("prometheus-user", "prometheus-password-file",
                                        "prometheus-token-file"))
        if status >= 500 or status in (408, 429):
            raise Unavailable(f"{self.name}: HTTP {status}: the server could not answer now")
        if status in (400, 422) and "json" in ctype:
            return data             # the API's own error envelope: read and reported above
        if status != 200:
            raise DataError(f"not a Prometheus answer: HTTP {status} (a proxy, or not the "
                            "Prometheus API?)", self._where(query))
        if "json" not in ctype.lower():
            raise DataError(f"not a Prometheus answer: {ctype[:60] or 'no content type'}, "
                            f"starting {_start(data)}", self._where(query))
        return data


def _cut(conn) -> None:
    sock = conn.sock
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


def _no_constant(name: str):
    raise ValueError(f"{name} is not JSON")


def _time(t: float) -> str:
    return f"{t:.3f}"


def _start(data: bytes) -> str:
    text = data[:40].decode("utf-8", "replace")
    return repr("".join(ch if ch.isprintable() else "?" for ch in text))


def _items(data: dict, query: str, client: Client) -> list[dict]:
    result = data["result"]
    if not isinstance(result, list) or not all(isinstance(x, dict) for x in result):
        raise DataError("data.result is not a list of series", client._where(query))
    if len(result) > MAX_SERIES:
        raise DataError(f"{len(result)} series: more than {MAX_SERIES}", client._where(query))
    return result


def _labels(item: dict, query: str, client: Client) -> dict[str, str]:
    labels = item.get("metric", {})
    if not isinstance(labels, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                               for k, v in labels.items()):
        raise DataError("a series whose labels are not strings", client._where(query))
    return labels


def _samples(values: list, query: str, client: Client) -> list[tuple[float, str]]:
    """A series' [time, "value"] pairs (the common shape checked inline: 121 samples of
    40,000 guests are 5 million of them)."""
    out = []
    isfinite = math.isfinite
    for v in values:
        if type(v) is list and len(v) == 2 and type(v[1]) is str and len(v[1]) <= 64 and \
                type(v[0]) in (int, float) and isfinite(v[0]):
            out.append((float(v[0]), v[1]))
        else:
            out.append(_sample(v, query, client))
    return out


def _sample(value, query: str, client: Client | None = None) -> tuple[float, str]:
    ok = (isinstance(value, list) and len(value) == 2 and isinstance(value[1], str)
          and isinstance(value[0], (int, float)) and not isinstance(value[0], bool)
          and math.isfinite(value[0]) and len(value[1]) <= 64)
    if not ok:
        where = client._where(query) if client else query
        raise DataError("a sample that is not [time, \"value\"]", where)
    return float(value[0]), value[1]
