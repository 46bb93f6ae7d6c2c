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


# Read from the right: ID, Mem, VCPUs, State, Time(s) are the last five fields (``xl list -v``
# appends a UUID, a reason code and a security label after the time) and the name is all that is
# left. The name is greedy, so a domain named ``web1 2 64 1 r----- 0.0`` cannot pass its own name
# off as another domain's fields. Numbers are bounded (a Xen domid is below 32768, a Time(s) has
# one decimal): a 4,300-digit figure is garbage, not a domain.
_FIELDS = (r"\s+(?P<domid>\d{1,5})\s+(?P<mem>\d{1,10})\s+(?P<vcpus>\d{1,5})\s+"
           r"(?P<state>[rbpscdw?-]{6})\s+(?P<time>\d{1,15}(?:\.\d{1,6})?)")
_DOMAIN_LINE = re.compile(r"^(?P<name>\S.*)" + _FIELDS + r"$")
_DOMAIN_LINE_V = re.compile(r"^(?P<name>\S.*)" + _FIELDS + r"(?:\s+\S+){1,3}$")
# ``xm list`` shows managed domains that are not running with no ID and no state.
_INACTIVE_LINE = re.compile(r"^(?P<name>\S.*)\s+(?P<mem>\d{1,10})\s+(?P<vcpus>\d{1,5})\s+"
                            r"(?P<time>\d{1,15}(?:\.\d{1,6})?)$")
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
        m = _DOMAIN_LINE.match(stripped) or _DOMAIN_LINE_V.match(stripped)
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


def info_int(info: dict[str, str], key: str, low: int = 0, high: int = 2**32 - 1) -> int:
    """An integer field of ``parse_info``'s result within ``[low, high]``, or a DataError
    naming the field (``nr_cpus: -1`` or a 4,300-digit figure is never published)."""
    value = info.get(key)
    if value is None:
        raise DataError(f"no {key} in the toolstack's info output", key)
    first = value.split()[0] if value.split() else ""
    if not re.fullmatch(r"-?\d{1,12}", first):
        raise DataError(f"expected an integer, got {_shown(value)!r}", key)
    number = int(first)
    if not low <= number <= high:
        raise DataError(f"expected an integer from {low} to {high}, got {_shown(first)}", key)
    return number
