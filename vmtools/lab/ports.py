"""Loopback ports for the lab's daemons: one chosen free a moment before the daemon starts
(another process may still take it first: each lab starts its daemon again on another port
when that happens), and whether a given process really holds a port (a port merely taken,
perhaps by a parallel test's daemon, proves nothing)."""

from __future__ import annotations

import os
import socket

_LISTEN = "0A"                  # TCP_LISTEN in /proc/net/tcp


def free_port(udp_too: bool = False) -> int:
    """A port free on 127.0.0.1 for TCP (and UDP when asked) right now."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind(("127.0.0.1", 0))
            port = tcp.getsockname()[1]
            if not udp_too:
                return port
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    raise RuntimeError("no free port found")


def free_udp_port() -> int:
    """A UDP port free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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


__all__ = ["free_port", "free_udp_port", "holds_port"]
