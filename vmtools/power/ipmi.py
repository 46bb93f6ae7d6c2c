"""A host's BMC over the network, through Debian's ``ipmitool -I lanplus`` (IPMI 2.0/RMCP+).

Credentials come from a file only root (or the user running vm-apply) can read; vmtools
refuses a file that its group or others may read or write, or that someone else owns. The
password reaches ipmitool through its ``IPMI_PASSWORD`` environment variable (``-E``), never
its command line (``ps`` shows argv to every user; ``/proc/PID/environ`` only to the owner),
and is never logged. The user name is passed with ``-U``: it is an account name, not a
secret. The file (TOML)::

    # /etc/vmtools/ipmi.toml  (chmod 600)
    username = "vmtools"
    password = "..."
    # cipher_suite = 17         # ipmitool -C; unset: ipmitool negotiates
    [hosts.node-7]              # optional per-host overrides
    username = "ADMIN"
    password = "..."

ipmitool runs with an argument list (no shell), bounded by ``-N``/``-R`` and a timeout.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tomllib
from dataclasses import dataclass

from vmtools import inputs
from vmtools.errors import OperationFailed, Unavailable, UsageError

log = logging.getLogger("vmtools.power")

DEFAULT_CREDENTIALS = "/etc/vmtools/ipmi.toml"
DEFAULT_PORT = 623
IPMITOOL = "ipmitool"


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str = ""
    cipher_suite: int | None = None

    def __repr__(self) -> str:            # never print the password, even in a traceback
        return f"Credentials(username={self.username!r}, password=<hidden>)"


def check_private(path: str) -> os.stat_result:
    """Raise UsageError unless ``path`` is a private file (:func:`vmtools.inputs.
    check_private`)."""
    if not os.path.exists(path):
        raise UsageError(f"IPMI credentials {path}: no such file (see vm-apply(1), POWER "
                         "MANAGEMENT)")
    return inputs.check_private(path, "IPMI credentials")


def _credentials(table: dict, where: str, base: Credentials | None) -> Credentials:
    user = table.get("username", base.username if base else None)
    password = table.get("password", base.password if base else None)
    cipher = table.get("cipher_suite", base.cipher_suite if base else None)
    if not isinstance(user, str) or not user or "\n" in user:
        raise UsageError(f"IPMI credentials {where}: username must be a non-empty string")
    if not isinstance(password, str):
        raise UsageError(f"IPMI credentials {where}: password must be a string")
    if cipher is not None and (isinstance(cipher, bool) or not isinstance(cipher, int)
                               or not 0 <= cipher <= 17):
        raise UsageError(f"IPMI credentials {where}: cipher_suite must be 0-17")
    return Credentials(user, password, cipher)


class CredentialStore:
    """The credentials file, read once: :meth:`for_host` gives a host's credentials."""

    def __init__(self, default: Credentials | None, hosts: dict[str, Credentials]):
        self.default = default
        self.hosts = hosts

    def for_host(self, name: str) -> Credentials:
        found = self.hosts.get(name, self.default)
        if found is None:
            raise UsageError(f"IPMI credentials: none for {name} (add username and password, "
                             f"or a [hosts.{name}] table)")
        return found


def read_credentials(path: str = DEFAULT_CREDENTIALS) -> CredentialStore:
    check_private(path)
    try:
        with open(path, "rb") as fh:
            doc = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        # the decoder's message names a line and column, never the value
        raise UsageError(f"IPMI credentials {path}: not valid TOML ({exc})") from None
    except OSError as exc:
        raise UsageError(f"IPMI credentials {path}: {exc.strerror}") from None
    default = _credentials(doc, path, None) if "username" in doc else None
    hosts = {}
    table = doc.get("hosts", {})
    if not isinstance(table, dict):
        raise UsageError(f"IPMI credentials {path}: hosts must be a table of [hosts.NAME]")
    for name, sub in table.items():
        if not isinstance(sub, dict):
            raise UsageError(f"IPMI credentials {path}: hosts.{name} must be a table")
        hosts[name] = _credentials(sub, f"{path} [hosts.{name}]", default)
    return CredentialStore(default, hosts)


class Bmc:
    """One host's BMC at ``address:port``."""

    def __init__(self, host: str, address: str, port: int, credentials: Credentials,
                 timeout: float = 20.0, ipmitool: str = IPMITOOL):
        self.host = host
        self.address = address
        self.port = port
        self.credentials = credentials
        self.timeout = timeout
        self.ipmitool = ipmitool

    def argv(self, *command: str) -> list[str]:
        """ipmitool's argument list: the password is not in it (``-E``)."""
        args = [self.ipmitool, "-I", "lanplus", "-H", self.address, "-p", str(self.port),
                "-U", self.credentials.username, "-E", "-N", "2", "-R", "3"]
        if self.credentials.cipher_suite is not None:
            args += ["-C", str(self.credentials.cipher_suite)]
        return args + list(command)

    def run(self, *command: str) -> str:
        if shutil.which(self.ipmitool) is None:
            raise Unavailable(f"{self.ipmitool} is not installed (apt-get install ipmitool)")
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C",
               "IPMI_PASSWORD": self.credentials.password}
        log.debug("%s: ipmitool %s", self.host, " ".join(command))
        try:
            proc = subprocess.run(self.argv(*command), env=env, capture_output=True,
                                  text=True, timeout=self.timeout, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise Unavailable(f"{self.host}: the BMC at {self.address}:{self.port} did not "
                              f"answer within {self.timeout:g}s") from None
        if proc.returncode != 0:
            lines = [ln.strip() for ln in (proc.stderr + proc.stdout).splitlines()
                     if ln.strip()]
            last = lines[-1] if lines else f"exit status {proc.returncode}"
            if any(w in last.lower() for w in ("session", "no response", "timeout",
                                               "unable to establish", "address lookup")):
                raise Unavailable(f"{self.host}: BMC {self.address}:{self.port}: {last} "
                                  "(address, credentials or cipher suite)")
            raise OperationFailed(f"{self.host}: BMC {self.address}:{self.port} refused "
                                  f"'{' '.join(command)}': {last}")
        return proc.stdout

    def power_status(self) -> str:
        """``on`` or ``off`` as the BMC sees the chassis."""
        out = self.run("chassis", "power", "status")
        text = out.strip().lower()
        if text.endswith(" on"):
            return "on"
        if text.endswith(" off"):
            return "off"
        raise OperationFailed(f"{self.host}: BMC said {out.strip()!r} to chassis power status")

    def power_on(self) -> None:
        self.run("chassis", "power", "on")

    def power_off(self) -> None:
        """A hard power-off (the chassis switch). vm-apply uses it only with --force-off:
        the orderly way is the Domain-0's own shutdown."""
        self.run("chassis", "power", "off")
