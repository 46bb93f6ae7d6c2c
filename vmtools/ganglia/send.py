"""A thin UDP sender for gmond packets, configured like gmetric: from the
``udp_send_channel`` blocks of gmond.conf, or from explicit ``HOST:PORT`` destinations.

gmond.conf is libconfuse syntax (sections ``name { key = value ... }``, ``#``/``//``/``/* */``
comments, quoted strings, ``include ("glob")``). Only ``udp_send_channel`` is read:
``host`` (unicast) or ``mcast_join`` (multicast group), ``port`` (default 8649) and ``ttl``
(multicast TTL, default 1). Other sections are ignored.
"""

from __future__ import annotations

import glob
import logging
import os
import re
import socket
import time
from dataclasses import dataclass
from typing import Iterable

from vmtools.errors import DataError, OptionError, Unavailable, UsageError
from vmtools.ganglia.names import GMOND_PORT
from vmtools.inputs import MAX_FILE_BYTES, open_input, read_limited

log = logging.getLogger("vmtools.ganglia.send")

DEFAULT_PORT = GMOND_PORT


@dataclass(frozen=True)
class Channel:
    host: str
    port: int = DEFAULT_PORT
    ttl: int = 1
    multicast: bool = False

    def __str__(self) -> str:
        kind = f" (multicast, ttl {self.ttl})" if self.multicast else ""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}{kind}"


# ----------------------------------------------------------------------------- gmond.conf

_TOKEN = re.compile(r'''\s+|\#[^\n]*|//[^\n]*|/\*.*?\*/|(?P<str>"(?:[^"\\]|\\.)*")
                        |(?P<punct>[{}=(),])|(?P<word>[^\s{}=(),"\#]+)''', re.S | re.X)


def _tokens(text: str, where: str) -> list[tuple[str, int]]:
    out, pos = [], 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m:
            line = text.count("\n", 0, pos) + 1
            raise DataError(f"unexpected {text[pos]!r}", f"{where}:{line}")
        line = text.count("\n", 0, pos) + 1
        if m["str"] is not None:
            out.append((bytes(m["str"][1:-1], "utf-8").decode("unicode_escape"), line))
        elif m["punct"] or m["word"]:
            out.append((m["punct"] or m["word"], line))
        pos = m.end()
    return out


def parse_gmond_conf(text: str, where: str = "gmond.conf",
                     base_dir: str | None = None, _depth: int = 0) -> list[tuple[str, dict]]:
    """Top-level sections of a gmond.conf as ``[(name, {key: value})]`` (nested sections are
    skipped); ``include`` globs are followed relative to ``base_dir``."""
    toks = _tokens(text, where)
    sections: list[tuple[str, dict]] = []
    i = 0

    def fail(msg: str, idx: int) -> DataError:
        line = toks[min(idx, len(toks) - 1)][1] if toks else 1
        return DataError(msg, f"{where}:{line}")

    def skip_block(j: int) -> int:  # j at "{": return index after the matching "}"
        depth = 0
        while j < len(toks):
            if toks[j][0] == "{":
                depth += 1
            elif toks[j][0] == "}":
                depth -= 1
                if depth == 0:
                    return j + 1
            j += 1
        raise fail("missing '}'", j)

    while i < len(toks):
        word = toks[i][0]
        nxt = toks[i + 1][0] if i + 1 < len(toks) else None
        if word == "include" and nxt == "(":
            if i + 3 >= len(toks) or toks[i + 3][0] != ")":
                raise fail("include needs (\"path\")", i)
            pattern = toks[i + 2][0]
            if not os.path.isabs(pattern) and base_dir:
                pattern = os.path.join(base_dir, pattern)
            if _depth < 8:
                for path in sorted(glob.glob(pattern)):
                    sections += parse_gmond_conf(_conf_text(path), path,
                                                 os.path.dirname(path), _depth + 1)
            i += 4
            continue
        if nxt == "{":
            body: dict = {}
            j = i + 2
            while j < len(toks) and toks[j][0] != "}":
                key = toks[j][0]
                if j + 1 < len(toks) and toks[j + 1][0] == "{":
                    j = skip_block(j + 1)
                elif j + 2 < len(toks) and toks[j + 1][0] == "=":
                    body.setdefault(key, toks[j + 2][0])
                    j += 3
                else:
                    raise fail(f"expected 'key = value' in {word} {{ }}", j)
            if j >= len(toks):
                raise fail(f"missing '}}' for {word}", j)
            sections.append((word, body))
            i = j + 1
            continue
        if nxt == "=":
            i += 3
            continue
        raise fail(f"unexpected {word!r}", i)
    return sections


def _conf_text(path: str) -> str:
    """A gmond.conf (or a file it includes), read bounded like every file vmtools reads; bytes
    that are not UTF-8 are replaced (gmond itself does not care)."""
    stream = open_input(path, "vm-gmetric", "gmond.conf")
    with stream:
        return read_limited(stream, path, "gmond.conf", MAX_FILE_BYTES).decode("utf-8",
                                                                               "replace")


def channels_from_conf(path: str) -> list[Channel]:
    """The ``udp_send_channel`` destinations of a gmond.conf file."""
    if not os.path.exists(path):
        raise UsageError(f"{path}: no such gmond.conf (give --config FILE or --gmond "
                         "HOST:PORT)")
    text = _conf_text(path)
    channels = []
    for name, body in parse_gmond_conf(text, path, os.path.dirname(os.path.abspath(path))):
        if name != "udp_send_channel":
            continue
        group, host = body.get("mcast_join"), body.get("host")
        if not group and not host:
            raise DataError("udp_send_channel has neither host nor mcast_join", path)
        try:
            port = int(body.get("port", DEFAULT_PORT))
            ttl = int(body.get("ttl", 1))
        except ValueError:
            raise DataError("udp_send_channel port and ttl must be integers", path) from None
        channels.append(Channel(group or host, port, ttl, multicast=bool(group)))
    if not channels:
        raise DataError("no udp_send_channel: nowhere to send (give --gmond HOST:PORT)", path)
    return channels


def parse_destination(text: str) -> Channel:
    """``HOST:PORT``, ``HOST`` (port 8649) or ``[IPv6]:PORT`` as a unicast channel."""
    m = re.fullmatch(r"\[(?P<h6>[0-9A-Fa-f:.]+)\](?::(?P<p6>\d+))?|(?P<h>[^:\s]+)(?::(?P<p>\d+))?",
                     text.strip())
    if not m:
        raise OptionError("gmond", f"{text!r}: expected HOST:PORT")
    port = int(m["p6"] or m["p"] or DEFAULT_PORT)
    if not 0 < port < 65536:
        raise OptionError("gmond", f"{text!r}: port out of range")
    return Channel(m["h6"] or m["h"], port)


# ----------------------------------------------------------------------------- sending

class Sender:
    """Sends packets to every channel; one socket per channel, resolved once.

    Sending is paced to at most ``rate`` packets a second per channel, in bursts of ``burst``:
    the kernel queues only ~200 small datagrams for a gmond socket whose receive buffer is the
    default (rmem_default / per-packet overhead), and a Domain-0 with a hundred guests sends
    about 900 packets in its first cycle. Unpaced, gmond loses some of them (seen in the lab:
    guests without their CPU metric; seen in CI with a fixed 2 ms pause after every 32
    packets: a host without ``container.driver.migration``). At the default rate that first
    cycle takes a quarter of a second of a 15 s interval. Each burst waits for its slot on the
    clock, so slow sleeps do not slow the pace, and a sender that was descheduled carries on
    at the pace instead of bursting to catch up."""

    def __init__(self, channels: Iterable[Channel], rate: float = 4000.0, burst: int = 16):
        self.channels = list(channels)
        self.rate, self.burst = rate, max(1, burst)
        self._targets: list[tuple[Channel, socket.socket, tuple]] = []
        for ch in self.channels:
            try:
                family, _, _, _, addr = socket.getaddrinfo(ch.host, ch.port,
                                                           type=socket.SOCK_DGRAM)[0]
            except socket.gaierror as exc:
                self.close()
                raise Unavailable(f"gmond {ch}: cannot resolve: {exc.strerror}") from None
            sock = socket.socket(family, socket.SOCK_DGRAM)
            if ch.multicast:
                if family == socket.AF_INET6:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, ch.ttl)
                else:
                    sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, ch.ttl)
            self._targets.append((ch, sock, addr))
        self.sent = 0
        self.errors = 0

    def send(self, packets: Iterable[bytes]) -> int:
        """Send each packet to every channel; returns how many sends failed (logged)."""
        failed = 0
        due = time.monotonic()
        for count, packet in enumerate(packets):
            if self.rate and count and count % self.burst == 0:
                due += self.burst / self.rate
                now = time.monotonic()
                if due > now:
                    time.sleep(due - now)
                else:       # descheduled: carry on at the pace, never burst to catch up
                    due = now
            for ch, sock, addr in self._targets:
                try:
                    sock.sendto(packet, addr)
                    self.sent += 1
                except OSError as exc:
                    failed += 1
                    log.debug("send to %s failed: %s", ch, exc)
        if failed:
            self.errors += failed
            log.warning("%d sends to gmond failed (gmond down or network unreachable?)",
                        failed)
        return failed

    def close(self) -> None:
        for _, sock, _ in self._targets:
            sock.close()
        self._targets = []

    def __enter__(self) -> "Sender":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
