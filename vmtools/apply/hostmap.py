"""The host map (vmtools-formats(5), HOST MAP; ``vm-apply --hosts FILE``): where to reach
each host.

CSV, one host a line, ``#`` comments and blank lines ignored, an optional header
``name,manage,migrate[,power,bmc,mac]``::

    # name,  manage (address[:port]),  migrate,   power, bmc (address[:port]), mac
    node1,   10.0.0.1:8000,             10.1.0.1,  ipmi,  10.9.0.1,
    node2,   mgmt-node2,                ,          wol,   ,                    00:16:3e:00:00:02
    node3

- ``name``: the host as Ganglia names it;
- ``manage``: ``address[:port]`` where vmtools reaches the host's xend or sshd
  (default: the name, on the transport's default port); IPv6 as ``[addr]:port``;
- ``migrate``: the destination address handed to the hypervisor (default: the name);
- ``power``: how vmtools switches the host on: ``ipmi``, ``wol`` or ``none`` (default:
  never switched off);
- ``bmc``: the BMC's ``address[:port]`` (port 623 by default), required for ``ipmi``;
- ``mac``: the MAC address Wake-on-LAN wakes, required for ``wol``.

:func:`parse_hostmap` returns ``{name: HostEntry}``; errors are DataError at ``FILE:LINE``.
"""

from __future__ import annotations

import csv
import io
import ipaddress
import re
from dataclasses import dataclass

from vmtools.errors import DataError, OptionError
from vmtools.model import is_safe_name

_ADDRESS = re.compile(r"[A-Za-z0-9][A-Za-z0-9.-]{0,252}")


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


POWER_METHODS = ("ipmi", "wol", "none")
HOSTMAP_COLUMNS = ("name", "manage", "migrate", "power", "bmc", "mac")


def _address(text: str, where: str, what: str) -> str:
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    try:
        ipaddress.ip_address(text)
        return text
    except ValueError:
        pass
    if not _ADDRESS.fullmatch(text):
        raise DataError(f"{what} {text!r} is not a host name or IP address", where)
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
        name, manage, migrate, power, bmc, mac = fields
        if not is_safe_name(name):
            raise DataError(f"host name {name!r} is not safe (letters, digits, '.', '_', "
                            "'-' only)", where)
        if name in entries:
            raise DataError(f"host {name} is listed twice", where)
        address, port = parse_manage(manage, where) if manage else (None, None)
        entries[name] = HostEntry(name, address, port,
                                  _address(migrate, where, "migrate address") if migrate
                                  else None, **_power_columns(name, power, bmc, mac, where))
    return entries


def _power_columns(name: str, power: str, bmc: str, mac: str, where: str) -> dict:
    from vmtools.power.wol import format_mac, parse_mac
    power = power.lower() or "none"
    if power not in POWER_METHODS:
        raise DataError(f"power {power!r}: expected ipmi, wol or none", where)
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
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except FileNotFoundError:
        raise OptionError("hosts", f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read the host map: {exc}", path) from None
    return parse_hostmap(text, path)
