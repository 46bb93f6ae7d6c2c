"""Loopback ports for the lab's daemons: one chosen free a moment before the daemon starts
(another process may still take it first: each lab starts its daemon again on another port
when that happens), and whether a given process really holds a port (a port merely taken,
perhaps by a parallel test's daemon, proves nothing).

Ports are chosen outside the kernel's ephemeral range (``ip_local_port_range``): a port the
kernel handed out for ``bind(0)`` and that was let go is the very kind of port the kernel
hands out next for an outgoing connection (a Prometheus scrape, a snapshot's HTTP request),
and one such connection between choosing and starting took a vm-gmetric exporter's port.
Outside that range only another explicit choice can collide; one process never hands out
the same port twice."""

from __future__ import annotations

import os
import random
import socket
import time

_LISTEN = "0A"                  # TCP_LISTEN in /proc/net/tcp
_LOWEST = 10000                 # below: well-known and registered services' habits
_given: set[int] = set()        # handed out by this process (never twice)
_random = random.SystemRandom()


def _candidates() -> range:
    """Ports the kernel never hands out on its own: below the ephemeral range, or above it."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as fh:
            low, high = (int(x) for x in fh.read().split())
    except (OSError, ValueError):
        low, high = 32768, 60999                 # Linux's default
    if low - _LOWEST >= 1000:
        return range(_LOWEST, low)
    if 65535 - high >= 1000:
        return range(high + 1, 65536)
    return range(0)                              # a range that leaves no room: bind(0)


def _bindable(port: int, kind: int) -> bool:
    with socket.socket(socket.AF_INET, kind) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _choose(tcp: bool, udp: bool) -> int:
    ports = _candidates()
    for _ in range(200 if ports else 0):
        port = _random.choice(ports)
        if port in _given:
            continue
        if (not tcp or _bindable(port, socket.SOCK_STREAM)) and \
                (not udp or _bindable(port, socket.SOCK_DGRAM)):
            _given.add(port)
            return port
    for _ in range(50):                          # no room outside: the kernel's choice
        kind = socket.SOCK_STREAM if tcp else socket.SOCK_DGRAM
        with socket.socket(socket.AF_INET, kind) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _given and (not (tcp and udp) or _bindable(port, socket.SOCK_DGRAM)):
            _given.add(port)
            return port
    raise RuntimeError("no free port found")


def free_port(udp_too: bool = False) -> int:
    """A port free on 127.0.0.1 for TCP (and UDP when asked) right now."""
    return _choose(tcp=True, udp=udp_too)


def free_udp_port() -> int:
    """A UDP port free on 127.0.0.1 right now."""
    return _choose(tcp=False, udp=True)


def holds_port(pid: int, port: int, proto: str = "tcp") -> bool:
    """Whether process ``pid`` itself has a socket bound to ``port`` (``tcp``: listening;
    ``udp``: bound), read from /proc."""
    inodes = set()
    try:
        with open(f"/proc/net/{proto}") as fh:
            next(fh)
            for line in fh:
                fields = line.split()
                if int(fields[1].rsplit(":", 1)[1], 16) != port:
                    continue
                if proto == "tcp" and fields[3] != _LISTEN:
                    continue
                inodes.add(fields[9])
        if not inodes:
            return False
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if link.startswith("socket:[") and link[8:-1] in inodes:
                return True
    except (OSError, StopIteration, IndexError, ValueError):
        return False
    return False


def wait_holding(proc, port: int, proto: str = "tcp", timeout: float = 30.0) -> bool:
    """Wait until the process ``proc`` (a Popen) itself holds ``port`` (:func:`holds_port`):
    True then; False when it exited first (a port free when chosen can be taken before the
    daemon binds it, and the daemon exits at once) or did not within ``timeout``."""
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        if holds_port(proc.pid, port, proto):
            return True
        time.sleep(0.05)
    return False


__all__ = ["free_port", "free_udp_port", "holds_port", "wait_holding"]
