"""The host map (vmtools-formats(5), HOST MAP; ``vm-apply --hosts FILE``): where to reach
each host. It sits with the transports because both sides read it: vm-apply (where to send a
migration) and the power actions of :mod:`vmtools.power` (how to switch a host on and off).

CSV, one host a line, ``#`` comments and blank lines ignored, an optional header
``name,manage,migrate[,power,bmc,mac[,transport]]``::

    # name,  manage (address[:port]),  migrate,   power, bmc (address[:port]), mac
    node1,   10.0.0.1:8000,             10.1.0.1,  ipmi,  10.9.0.1,
    node2,   mgmt-node2,                ,          wol,   ,                    00:16:3e:00:00:02
    node3

- ``name``: the host as Ganglia names it;
- ``manage``: ``address[:port]`` where vmtools reaches the host's xend or sshd
  (default: the name, on the transport's default port); IPv6 as ``[addr]:port``;
- ``migrate``: the destination address handed to the hypervisor (default: the name);
- ``power``: how vmtools switches the host on: ``ipmi``, ``wol``, ``xapi`` (XAPI's own
  ``host.power_on``, for a host of a XCP-ng / XenServer pool) or ``none`` (default: never
  switched off);
- ``bmc``: the BMC's ``address[:port]`` (port 623 by default), required for ``ipmi``;
- ``mac``: the MAC address Wake-on-LAN wakes, required for ``wol``;
- ``transport``: how vm-apply reaches the host, overriding the snapshot's migration field
  (e.g. ``libvirt-ssh`` for a plain Xen or KVM host run by libvirt); default: the snapshot's.

Addresses are RFC 1123 host names, IPv4, or IPv6 without a zone or with a zone of
``[A-Za-z0-9_.-]`` (:func:`valid_address`); anything else is refused.

:func:`parse_hostmap` returns ``{name: HostEntry}``; errors are DataError at ``FILE:LINE``.
"""

from __future__ import annotations

import csv
import io
import ipaddress
import os
import re
from dataclasses import dataclass

from vmtools.errors import DataError, OptionError, UsageError
from vmtools.inputs import read_file
from vmtools.model import is_safe_name
from vmtools.drivers import registry

# RFC 1123 host names: dot-separated labels of letters, digits and inner hyphens, 1-63 each,
# 253 in all. An IPv6 zone (``fe80::1%eth0``) may hold only [A-Za-z0-9_.-]: Python's ipaddress
# takes any text after '%', and ``xl migrate`` hands the address to ``sh -c`` on the source.
_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
_ZONE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_IPV4ISH = re.compile(r"[0-9.]+")


def valid_address(text: str) -> bool:
    """True for an RFC 1123 host name, an IPv4 address, or an IPv6 address without a zone or
    with a zone of [A-Za-z0-9_.-]. Nothing else, so no accepted address carries a character a
    shell treats specially."""
    if not text or len(text) > 253 or not text.isascii() or not text.isprintable():
        return False
    if ":" in text:
        address, _, zone = text.partition("%")
        if "%" in text and not _ZONE.fullmatch(zone):
            return False
        try:
            ipaddress.IPv6Address(address)
        except ValueError:
            return False
        return True
    if _IPV4ISH.fullmatch(text):
        try:
            ipaddress.IPv4Address(text)
        except ValueError:
            return False
        return True
    return all(_LABEL.fullmatch(label) for label in text.split("."))


@dataclass(frozen=True)
class HostEntry:
    name: str
    address: str | None = None      # None: the name
    port: int | None = None         # None: the transport's default
    migrate: str | None = None      # None: the name
    power: str = "none"             # ipmi, wol or none
    bmc: str | None = None          # BMC address (ipmi)
    bmc_port: int = 623
    mac: str | None = None          # 00:16:3e:.. (wol)
    transport: str | None = None    # None: the snapshot's migration field


POWER_METHODS = ("ipmi", "wol", "xapi", "none")
HOSTMAP_COLUMNS = ("name", "manage", "migrate", "power", "bmc", "mac", "transport")


def _address(text: str, where: str, what: str) -> str:
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    if not valid_address(text):
        shown = "".join(ch if ch.isprintable() and ch.isascii() else f"\\x{ord(ch):02x}"
                        for ch in text[:60])
        raise DataError(f"{what} {shown!r} is not a host name (RFC 1123), an IPv4 address or "
                        "an IPv6 address (a zone may hold only letters, digits, '_', '.' "
                        "and '-')", where)
    return text


def parse_manage(text: str, where: str, what: str = "manage") -> tuple[str, int | None]:
    """``address[:port]`` (``[v6]:port`` for IPv6) → (address, port or None)."""
    port_text = None
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise DataError(f"{what} {text!r}: missing ']'", where)
        address, rest = text[1:end], text[end + 1:]
        if rest:
            if not rest.startswith(":"):
                raise DataError(f"{what} {text!r}: expected [address]:port", where)
            port_text = rest[1:]
    elif text.count(":") == 1:
        address, port_text = text.split(":")
    else:
        address = text
    address = _address(address, where, f"{what} address")
    port = None
    if port_text is not None:
        if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
            raise DataError(f"{what} {text!r}: port must be 1-65535", where)
        port = int(port_text)
    return address, port


def parse_hostmap(text: str, source: str = "hosts") -> dict[str, HostEntry]:
    entries: dict[str, HostEntry] = {}
    for lineno, line in enumerate(text.splitlines(), 1):
        where = f"{source}:{lineno}"
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        try:
            fields = next(csv.reader(io.StringIO(stripped), skipinitialspace=True))
        except csv.Error as exc:
            raise DataError(f"bad CSV: {exc}", where) from None
        fields = [f.strip() for f in fields]
        if [f.lower() for f in fields] == list(HOSTMAP_COLUMNS[:len(fields)]) \
                and not entries:
            continue
        if len(fields) > len(HOSTMAP_COLUMNS):
            raise DataError(f"expected {','.join(HOSTMAP_COLUMNS)}; got {len(fields)} fields",
                            where)
        fields += [""] * (len(HOSTMAP_COLUMNS) - len(fields))
        name, manage, migrate, power, bmc, mac, transport = fields
        if not is_safe_name(name):
            raise DataError(f"host name {name!r} is not safe (letters, digits, '.', '_', "
                            "'-' only)", where)
        if name in entries:
            raise DataError(f"host {name} is listed twice", where)
        address, port = parse_manage(manage, where) if manage else (None, None)
        if transport and not registry.is_transport(transport):
            raise DataError(f"transport {transport[:40]!r}: expected one of "
                            f"{', '.join(registry.names())}", where)
        entries[name] = HostEntry(name, address, port,
                                  _address(migrate, where, "migrate address") if migrate
                                  else None, **_power_columns(name, power, bmc, mac, where),
                                  transport=transport or None)
    return entries


_MAC = re.compile(r"[0-9A-Fa-f]{2}([:-])[0-9A-Fa-f]{2}(\1[0-9A-Fa-f]{2}){4}")


def parse_mac(text: str, where: str | None = None) -> bytes:
    """``00:16:3e:12:34:56`` or ``00-16-3E-12-34-56`` → 6 bytes. Refuses the broadcast
    and multicast addresses (no NIC has one as its own)."""
    if not isinstance(text, str) or not _MAC.fullmatch(text):
        raise DataError(f"MAC address {text!r} is not six hexadecimal pairs separated by "
                        "':' or '-' (e.g. 00:16:3e:12:34:56)", where)
    mac = bytes.fromhex(text.replace(":", "").replace("-", ""))
    if mac[0] & 1:
        raise DataError(f"MAC address {text} is a multicast or broadcast address, not a "
                        "network card's", where)
    return mac


def format_mac(mac: bytes) -> str:
    return ":".join(f"{b:02x}" for b in mac)


def _power_columns(name: str, power: str, bmc: str, mac: str, where: str) -> dict:
    power = power.lower() or "none"
    if power not in POWER_METHODS:
        raise DataError(f"power {power!r}: expected ipmi, wol, xapi or none", where)
    out: dict = {"power": power}
    if bmc:
        address, port = parse_manage(bmc, where, "bmc")
        out.update(bmc=address, bmc_port=port or 623)
    elif power == "ipmi":
        raise DataError(f"host {name} is switched on by ipmi but has no bmc address "
                        "(fill the bmc column, address[:port])", where)
    if mac:
        out["mac"] = format_mac(parse_mac(mac, where))
    elif power == "wol":
        raise DataError(f"host {name} is woken by wol but has no mac address (fill the mac "
                        "column, e.g. 00:16:3e:12:34:56)", where)
    return out


def read_hostmap(path: str) -> dict[str, HostEntry]:
    if not os.path.exists(path) and "\0" not in str(path):
        raise OptionError("hosts", f"{path}: no such file")
    try:
        text = read_file(path, "host map", prog="vm-apply")
    except UsageError as exc:
        raise DataError(f"cannot read the host map: {exc}", path) from None
    return parse_hostmap(text, path)
