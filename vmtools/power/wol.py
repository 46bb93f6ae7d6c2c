"""Wake-on-LAN: the magic packet and its sender.

A magic packet is six ``0xff`` bytes followed by the target's MAC address sixteen times
(102 bytes), sent as one UDP datagram, by convention to port 9 (discard) and to the
broadcast address of the host's segment (``255.255.255.255``) or a directed broadcast
(``10.0.0.255``) that a router forwards. Nothing answers: whether the host woke up is told by
its transport answering afterwards (:mod:`vmtools.power.boot`).
"""

from __future__ import annotations

import ipaddress
import socket

from vmtools.drivers.hostmap import format_mac, parse_mac  # noqa: F401 - read here too
from vmtools.errors import Unavailable

DEFAULT_PORT = 9
DEFAULT_ADDRESS = "255.255.255.255"


def magic_packet(mac: bytes | str) -> bytes:
    """The 102-byte magic packet for ``mac``."""
    if isinstance(mac, str):
        mac = parse_mac(mac)
    if len(mac) != 6:
        raise ValueError("a MAC address has 6 bytes")
    return b"\xff" * 6 + mac * 16


def send_magic_packet(mac: bytes | str, address: str = DEFAULT_ADDRESS,
                      port: int = DEFAULT_PORT, count: int = 3) -> None:
    """Send the magic packet for ``mac`` to ``address:port`` ``count`` times (UDP is lossy;
    a NIC that is already awake ignores the repeats). Raises Unavailable when the packet
    cannot be sent (no route, bad address)."""
    packet = magic_packet(mac)
    try:
        family = socket.AF_INET6 if ipaddress.ip_address(address).version == 6 \
            else socket.AF_INET
    except ValueError:
        family = socket.AF_INET         # a name: resolved by sendto
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            if family == socket.AF_INET:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
            for _ in range(max(1, count)):
                sock.sendto(packet, (address, port))
    except OSError as exc:
        raise Unavailable(f"cannot send the Wake-on-LAN packet to {address}:{port}: "
                          f"{exc.strerror or exc}") from None
