"""The ``xen`` transport: xend's legacy HTTP/SXP server (``xend-http-server``, port 8000).

``GET /xend/domain/`` lists the domains as an SXP list of names; ``POST /xend/domain/<vm>``
with ``op=migrate`` migrates synchronously. Every field any xend version reads is sent
(3.0 wants ``resource``, 3.1+ ``port``, 3.3+ ``node`` and ``ssl``, 4.x
``change_home_server``); xend ignores the ones it does not know. A 2xx whose body holds
``xend.err`` is a failure, as libvirt's xend driver treats it.
"""

from __future__ import annotations

import http.client
import urllib.parse

from vmtools.drivers.base import Driver, MigrationRefused, migrate_call_failed, why
from vmtools.xen import DOM0_NAMES, RELOCATION_PORT
from vmtools.errors import Unavailable

# The most of one xend answer that is read (a guest list of thousands is ~1 MB of SXP).
MAX_ANSWER_BYTES = 16 * 2**20


def parse_sxp(text: str) -> list:
    """Parse one SXP expression (``(a (b 1) 'c d')``) into nested lists of strings."""
    tokens: list[str | tuple] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c.isspace():
            i += 1
        elif c in "()":
            tokens.append(c)
            i += 1
        elif c in "'\"":
            j, buf = i + 1, []
            while j < n and text[j] != c:
                if text[j] == "\\" and j + 1 < n:
                    j += 1
                buf.append(text[j])
                j += 1
            if j >= n:
                raise ValueError("unterminated string in SXP")
            tokens.append(("str", "".join(buf)))
            i = j + 1
        else:
            j = i
            while j < n and not text[j].isspace() and text[j] not in "()'\"":
                j += 1
            tokens.append(("str", text[i:j]))
            i = j
    stack: list[list] = [[]]
    for tok in tokens:
        if tok == "(":
            stack.append([])
        elif tok == ")":
            if len(stack) < 2:
                raise ValueError("unbalanced ')' in SXP")
            done = stack.pop()
            stack[-1].append(done)
        else:
            stack[-1].append(tok[1])
    if len(stack) != 1 or not stack[0]:
        raise ValueError("incomplete SXP")
    return stack[0][0]


def xend_error(body: str) -> str | None:
    """The message of a ``(xend.err 'message')`` body, or None if there is none."""
    if "xend.err" not in body:
        return None
    try:
        value = parse_sxp(body)
        if isinstance(value, list) and value and value[0] == "xend.err":
            return " ".join(str(v) for v in value[1:]) or "xend.err"
    except ValueError:
        pass
    return body.strip()


class XendHttpDriver(Driver):
    transport = "xen"

    def _request(self, method: str, path: str, body: str | None, timeout: float
                 ) -> tuple[int, str]:
        conn = http.client.HTTPConnection(self.endpoint.address, self.endpoint.port,
                                          timeout=self.connect_timeout)
        headers = {"Accept": "application/sxp"}
        if body is not None:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        try:
            conn.connect()
            conn.sock.settimeout(timeout)
            conn.request(method, path, body=body, headers=headers)
            resp = conn.getresponse()
            # At most MAX_ANSWER_BYTES: xend's answers are a few KB; a peer sending without
            # end is cut there (what follows is never read), never read into memory whole.
            return resp.status, resp.read(MAX_ANSWER_BYTES).decode("utf-8", "replace")
        finally:
            conn.close()

    def list_guests(self) -> set[str]:
        try:
            status, body = self._request("GET", "/xend/domain/", None, self.connect_timeout)
        except (OSError, http.client.HTTPException) as exc:
            raise Unavailable(f"{self.endpoint.name}: xend HTTP at {self.endpoint.address}:"
                              f"{self.endpoint.port} did not answer: {why(exc)}") from None
        if status != 200:
            raise Unavailable(f"{self.endpoint.name}: xend HTTP answered {status} to "
                              "GET /xend/domain/")
        try:
            names = parse_sxp(body)
        except ValueError as exc:
            raise Unavailable(f"{self.endpoint.name}: xend HTTP sent an unreadable domain "
                              f"list ({exc})") from None
        if isinstance(names, str):
            names = [names]
        return {n for n in names if isinstance(n, str) and n not in DOM0_NAMES}

    def migrate(self, vm: str, dst_address: str, timeout: float) -> None:
        form = urllib.parse.urlencode([
            ("op", "migrate"), ("destination", dst_address), ("live", "1"),
            ("port", str(RELOCATION_PORT)), ("node", "-1"), ("ssl", "0"),
            ("change_home_server", "0"), ("resource", "0")])
        path = "/xend/domain/" + urllib.parse.quote(vm, safe="")
        try:
            status, body = self._request("POST", path, form, timeout)
        except (OSError, http.client.HTTPException) as exc:
            raise migrate_call_failed(exc, self.endpoint.name, "xend HTTP", timeout) from None
        if status == 404:
            raise MigrationRefused(f"xend: domain {vm} does not exist on {self.endpoint.name}")
        err = xend_error(body)
        if status >= 300 or err is not None or (status == 202 and "failed" in body):
            raise MigrationRefused(f"xend: {err or body.strip() or f'HTTP {status}'}")

    # ---- the guest lifecycle: xend's HTTP server saves a domain (POST /xend/domain/<dom>
    # op=save file=...) and restores one (POST /xend/domain/ op=restore file=...), both
    # synchronous; it has no checkpoint, no create from an xm configuration file, and cannot
    # look at files (vm-apply checks and removes images through another host).
    def _post(self, path: str, form: list[tuple[str, str]], what: str, timeout: float) -> None:
        try:
            status, body = self._request("POST", path, urllib.parse.urlencode(form), timeout)
        except (OSError, http.client.HTTPException) as exc:
            raise migrate_call_failed(exc, self.endpoint.name, "xend HTTP", timeout) from None
        if status == 404:
            raise MigrationRefused(f"xend {what}: {body.strip() or 'not found'} on "
                                   f"{self.endpoint.name}")
        err = xend_error(body)
        if status >= 300 or err is not None:
            raise MigrationRefused(f"xend {what}: {err or body.strip() or f'HTTP {status}'}")

    def suspend_guest(self, vm: str, image: str, timeout: float) -> None:
        self._post("/xend/domain/" + urllib.parse.quote(vm, safe=""),
                   [("op", "save"), ("file", image)], "save", timeout)

    def resume_guest(self, vm: str, image: str, timeout: float) -> None:
        self._post("/xend/domain/", [("op", "restore"), ("file", image)], "restore", timeout)


DRIVER = XendHttpDriver
