"""Pure parsers for what the Xen toolstack prints on a Domain-0.

``parse_list(text)`` reads ``xm list`` / ``xl list`` (also ``xl list -v`` and ``xm list DOM``)
and returns one :class:`Domain` per domain line, Domain-0 included::

    Domain(name="web1", domid=3, mem_mib=1024, vcpus=2, state="-b----", cpu_time=12.5)

- ``name``: the domain name as printed (``%-40s``: trailing padding removed; a longer name
  overflows the column, which the parser handles by reading the fixed fields from the right);
- ``domid``: int (a domain that is not running has no id in ``xm list`` and is not returned);
- ``mem_mib``: int, current memory in MiB; ``vcpus``: int, online vCPUs;
- ``state``: the six state letters ``rbpscd`` or ``-`` (``r-----``, ``-b----``...);
- ``cpu_time``: float seconds of CPU used since the domain started (one decimal).

``parse_info(text)`` reads ``xm info`` / ``xl info`` (``key   : value`` lines) into a dict of
strings, e.g. ``{"nr_cpus": "8", "total_memory": "16384", "xen_major": "4", ...}``.

Lines that are neither a header nor a domain (toolstack warnings, garbage) are skipped; pass a
list as ``problems`` to collect one sentence per skipped line, or ``strict=True`` to get a
:class:`~vmtools.errors.DataError` naming ``line:column`` instead.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from vmtools.errors import DataError


class Domain(NamedTuple):
    name: str
    domid: int
    mem_mib: int
    vcpus: int
    state: str
    cpu_time: float


# Read from the right: ID, Mem, VCPUs, State, Time(s) are fixed; the name is what is left.
# ``xl list -v`` appends a UUID, a reason code and a security label: allowed after the time.
_DOMAIN_LINE = re.compile(
    r"^(?P<name>\S.*?)\s+(?P<domid>\d+)\s+(?P<mem>\d+)\s+(?P<vcpus>\d+)\s+"
    r"(?P<state>[rbpscdw?-]{6})\s+(?P<time>\d+(?:\.\d+)?)(?:\s+\S.*)?$")
# ``xm list`` shows managed domains that are not running with no ID and no state.
_INACTIVE_LINE = re.compile(r"^(?P<name>\S.*?)\s+(?P<mem>\d+)\s+(?P<vcpus>\d+)\s+"
                            r"(?P<time>\d+(?:\.\d+)?)$")
_HEADER = re.compile(r"^Name\s+ID\s+Mem\s+VCPUs\s+State\s+Time\(s\)")
_INFO_LINE = re.compile(r"^(?P<key>[A-Za-z0-9_]+)\s*:\s?(?P<value>.*)$")


def _problem(problems: list | None, strict: bool, lineno: int, message: str) -> None:
    if strict:
        raise DataError(message, f"{lineno}:1")
    if problems is not None:
        problems.append(f"line {lineno}: {message}")


def _shown(line: str, limit: int = 60) -> str:
    text = line if len(line) <= limit else line[:limit] + "..."
    return "".join(ch if ch.isprintable() else f"\\x{ord(ch):02x}" for ch in text)


def parse_list(text: str, *, strict: bool = False, problems: list | None = None) -> list[Domain]:
    """Domains of an ``xm list``/``xl list`` output, in the order printed."""
    domains: list[Domain] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or _HEADER.match(stripped):
            continue
        m = _DOMAIN_LINE.match(stripped)
        if not m:
            if _INACTIVE_LINE.match(stripped):
                continue  # defined but not running: uses no resources of this host
            _problem(problems, strict, lineno, f"not a domain line: {_shown(stripped)!r}")
            continue
        domains.append(Domain(name=m["name"].rstrip(), domid=int(m["domid"]),
                              mem_mib=int(m["mem"]), vcpus=int(m["vcpus"]),
                              state=m["state"], cpu_time=float(m["time"])))
    return domains


def parse_info(text: str, *, strict: bool = False,
               problems: list | None = None) -> dict[str, str]:
    """``key : value`` pairs of ``xm info``/``xl info`` (values as printed, stripped)."""
    info: dict[str, str] = {}
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        m = _INFO_LINE.match(line.strip())
        if not m:
            _problem(problems, strict, lineno, f"not a 'key : value' line: {_shown(line)!r}")
            continue
        info.setdefault(m["key"], m["value"].strip())
    return info


def info_int(info: dict[str, str], key: str) -> int:
    """An integer field of ``parse_info``'s result, or a DataError naming the field."""
    value = info.get(key)
    if value is None:
        raise DataError(f"no {key} in the toolstack's info output", key)
    try:
        return int(value.split()[0])
    except (ValueError, IndexError):
        raise DataError(f"expected an integer, got {_shown(value)!r}", key) from None
