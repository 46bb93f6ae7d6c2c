"""Where Ganglia XML comes from: gmetad's XML port, gmetad's interactive port, gmond, a file.

Each source is a small value object with ``name`` (used in messages and in the snapshot's
``source``) and ``open()`` returning a binary stream. Network sources read the whole answer
with a connect timeout, a timeout on every read, an overall deadline and a size limit
(:data:`MAX_ANSWER_BYTES`, spooled to disk beyond :data:`SPOOL_BYTES`); any failure to get
an answer is :class:`~vmtools.errors.Unavailable` naming the address.
"""

from __future__ import annotations

import re
import socket
import tempfile
import time
from dataclasses import dataclass
from importlib import resources
from typing import BinaryIO

from vmtools.errors import DataError, OptionError, Unavailable
from vmtools.ganglia.names import GMETAD_INTERACTIVE_PORT, GMETAD_XML_PORT, GMOND_PORT
from vmtools.inputs import input_name, open_input

DEFAULT_TIMEOUT = 10.0
# gmetad's answer for 1,000 hosts and 100,000 guests is ~100 MiB of XML; five times that is a
# broken or hostile peer. The answer is spooled to a temporary file beyond SPOOL_BYTES, so
# memory stays flat whatever the peer sends.
MAX_ANSWER_BYTES = 512 * 2**20
SPOOL_BYTES = 16 * 2**20
# A whole answer must arrive within this many read timeouts (a trickling peer is not a source).
DEADLINE_FACTOR = 30
EXAMPLES = {"lab": "lab-gmetad.xml", "hotspot": "lab-gmetad-hotspot.xml"}
# gmetad refuses these in a path; '/' would change the query; spaces are allowed in names.
_BAD_PATH_CHARS = set('>!@#$%`;|"\'<\\/&?*') | {chr(c) for c in range(32)} | {chr(127)}


def parse_address(text: str, default_port: int, option: str) -> tuple[str, int]:
    """``HOST``, ``HOST:PORT``, ``[V6]:PORT`` -> (host, port); ``option`` names the setting
    in an error."""
    text = text.strip()
    m = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\](?::(\d+))?", text)
    if m:
        host, port = m.group(1), m.group(2)
    elif text.count(":") == 1:
        host, port = text.split(":")
    else:
        host, port = text, None
    if not host or not re.fullmatch(r"[A-Za-z0-9_.:-]+", host):
        raise OptionError(option, f"{text!r}: expected HOST or HOST:PORT")
    if port is None:
        return host, default_port
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise OptionError(option, f"{text!r}: the port must be a number from 1 to 65535")
    return host, int(port)


def _netloc(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def fetch(host: str, port: int, name: str, request: bytes | None = None,
          timeout: float = DEFAULT_TIMEOUT, limit: int = MAX_ANSWER_BYTES) -> BinaryIO:
    """Connect, optionally send one request line, read to EOF (at most ``limit`` bytes,
    within the deadline); the answer as a stream positioned at its start. Errors name
    ``name``: no answer is :class:`Unavailable`, an answer beyond ``limit`` a
    :class:`DataError`."""
    deadline = time.monotonic() + timeout * DEADLINE_FACTOR
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except socket.gaierror as exc:
        raise Unavailable(f"{name}: cannot resolve {host}: {exc.strerror}") from None
    except ConnectionRefusedError:
        raise Unavailable(f"{name}: connection refused (is the daemon running and listening "
                          "on that port?)") from None
    except socket.timeout:
        raise Unavailable(f"{name}: no connection within {timeout:g} s (--timeout)") from None
    except OSError as exc:
        raise Unavailable(f"{name}: cannot connect: {exc.strerror or exc}") from None
    answer = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)
    got = 0
    with sock:
        try:
            if request is not None:
                sock.sendall(request)
            while True:
                if time.monotonic() > deadline:
                    raise Unavailable(f"{name}: the answer took longer than "
                                      f"{timeout * DEADLINE_FACTOR:g} s; giving up")
                chunk = sock.recv(1 << 16)
                if not chunk:
                    break
                got += len(chunk)
                if got > limit:
                    answer.close()
                    raise DataError(f"the answer is larger than {limit // 2**20} MiB: not a "
                                    "Ganglia answer (a broken or hostile peer); giving up", name)
                answer.write(chunk)
        except socket.timeout:
            answer.close()
            raise Unavailable(f"{name}: no data for {timeout:g} s (--timeout); got "
                              f"{got} bytes") from None
        except Unavailable:
            answer.close()
            raise
        except OSError as exc:
            answer.close()
            raise Unavailable(f"{name}: connection failed while reading: "
                              f"{exc.strerror or exc}") from None
    if not got:
        answer.close()
        raise Unavailable(f"{name}: closed the connection without an answer (is this machine "
                          "in gmetad's trusted_hosts?)")
    answer.seek(0)
    return answer


@dataclass(frozen=True)
class GmetadSource:
    host: str
    port: int = GMETAD_XML_PORT
    timeout: float = DEFAULT_TIMEOUT

    @property
    def name(self) -> str:
        return f"gmetad://{_netloc(self.host, self.port)}"

    def open(self) -> BinaryIO:
        return fetch(self.host, self.port, self.name, None, self.timeout)


@dataclass(frozen=True)
class ClusterSource:
    """One cluster through gmetad's interactive port: the request line ``/CLUSTER``."""

    host: str
    cluster: str
    port: int = GMETAD_INTERACTIVE_PORT
    timeout: float = DEFAULT_TIMEOUT

    def __post_init__(self) -> None:
        if not self.cluster or self.cluster.strip() != self.cluster or \
                any(ch in _BAD_PATH_CHARS for ch in self.cluster) or not self.cluster.isascii():
            raise OptionError("cluster", f"{self.cluster!r}: a cluster name cannot hold control "
                              "characters, leading or trailing spaces, or any of "
                              "> ! @ # $ % ` ; | \" ' < \\ / & ? *")

    @property
    def name(self) -> str:
        return f"gmetad://{_netloc(self.host, self.port)}/{self.cluster}"

    def open(self) -> BinaryIO:
        request = f"/{self.cluster}\n".encode("ascii")
        return fetch(self.host, self.port, self.name, request, self.timeout)


@dataclass(frozen=True)
class GmondSource:
    host: str
    port: int = GMOND_PORT
    timeout: float = DEFAULT_TIMEOUT

    @property
    def name(self) -> str:
        return f"gmond://{_netloc(self.host, self.port)}"

    def open(self) -> BinaryIO:
        return fetch(self.host, self.port, self.name, None, self.timeout)


@dataclass(frozen=True)
class FileSource:
    """A saved dump; ``-`` is standard input. Read as a stream, never whole."""

    path: str

    @property
    def name(self) -> str:
        return input_name(self.path)

    def open(self) -> BinaryIO:
        return open_input(self.path, "vm-snapshot", "Ganglia XML")


@dataclass(frozen=True)
class ExampleSource:
    """A gmetad dump shipped with vmtools (captured from the real daemons)."""

    example: str

    def __post_init__(self) -> None:
        if self.example not in EXAMPLES:
            raise OptionError("example", f"{self.example!r}: unknown example; choose one of "
                              f"{', '.join(EXAMPLES)}")

    @property
    def name(self) -> str:
        return f"example:{self.example}"

    def open(self) -> BinaryIO:
        return resources.files("vmtools").joinpath("examples", EXAMPLES[self.example]).open("rb")


def example_path(example: str) -> str:
    """The file of a shipped example (for documentation and tests)."""
    return str(resources.files("vmtools").joinpath("examples", EXAMPLES[example]))


__all__ = ["GmetadSource", "ClusterSource", "GmondSource", "FileSource", "ExampleSource",
           "parse_address", "fetch", "example_path", "EXAMPLES", "DEFAULT_TIMEOUT",
           "GMETAD_XML_PORT", "GMETAD_INTERACTIVE_PORT", "GMOND_PORT"]
