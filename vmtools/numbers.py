"""Finite, bounded numbers: the one check behind every number vmtools takes in.

Options and settings (``VMTOOLS_*``, vmtools.toml), documents, CSV traces, RRDs, state files
and power models all go through :func:`problem`. ``inf``, ``nan`` and numbers far beyond any
cluster are refused with the caller's exit code (a setting: 2; data: 65) and one line naming
the option or the place, never an ``OverflowError`` or a NaN figure later.

The bounds:

- :data:`MAX_NUMBER` (1e15) caps any quantity a document or reader carries;
- :data:`MAX_INT` (2**53) any integer (the planner computes in floats);
- :data:`MAX_OPTION` (1e9) any number given as an option or setting: 31 years in seconds,
  below what a timer or ``time.sleep`` takes (``threading.TIMEOUT_MAX``);
- :data:`UINT32_MAX` what Ganglia's XDR and XML carry (TMAX, DMAX, REPORTED).
"""

from __future__ import annotations

import json
import math
from typing import Any

from vmtools.errors import DataError, OptionError

MAX_INT = 2**53
MAX_NUMBER = 1e15
MAX_OPTION = 1e9
UINT32_MAX = 2**32 - 1
_INF = math.inf


def describe(value: Any) -> str:
    """A short, safe rendering of a value for an error message."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_INT:
        return str(value) if abs(value) < 10**40 else \
            f"an integer of {len(str(abs(value)))} digits"
    if isinstance(value, str):
        return json.dumps(value if len(value) <= 40 else value[:37] + "...")
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return "an object" if isinstance(value, dict) else "a list"
    if isinstance(value, float):
        return repr(value)
    return repr(value)


def _g(bound: float) -> str:
    return f"{bound:g}" if isinstance(bound, float) else str(bound)


_DEFAULT = object()


def problem(value: Any, *, lo: float | None = None, hi: Any = _DEFAULT,
            lo_open: bool = False, integer: bool = False) -> str | None:
    """What is wrong with ``value`` as a number in [lo, hi] (``lo_open``: (lo, hi]), or
    None. ``hi`` defaults to :data:`MAX_NUMBER` (an integer: :data:`MAX_INT`); ``integer``:
    an ``int`` (JSON's ``3``, not ``3.0``)."""
    if hi is _DEFAULT:
        hi = MAX_INT if integer else MAX_NUMBER
    kind_of = type(value)
    if (kind_of is int or (kind_of is float and not integer and value == value
                           and value not in (_INF, -_INF))) \
            and (lo is None or (value > lo if lo_open else value >= lo)) \
            and (hi is None or value <= hi):
        return None                  # the common case, without building a message
    kind = "an integer" if integer else "a number"
    if isinstance(value, bool) or not isinstance(value, (int, float)) or \
            (integer and not isinstance(value, int)):
        return f"expected {kind}, got {describe(value)}"
    if isinstance(value, float) and not math.isfinite(value):
        return f"expected a finite number, got {describe(value)}"
    if lo is not None and (value <= lo if lo_open else value < lo):
        return f"expected {kind} {'>' if lo_open else '>='} {_g(lo)}, got {describe(value)}"
    if hi is not None and value > hi:
        return f"expected {kind} <= {_g(hi)}, got {describe(value)}"
    return None


def number(value: Any, where: str | None = None, *, lo: float | None = None,
           hi: float | None = MAX_NUMBER, lo_open: bool = False) -> float:
    """``value`` as a float, or :class:`DataError` at ``where``."""
    bad = problem(value, lo=lo, hi=hi, lo_open=lo_open)
    if bad:
        raise DataError(bad, where)
    return float(value)


def integer(value: Any, where: str | None = None, *, lo: int | None = None,
            hi: int | None = MAX_INT) -> int:
    """``value`` as an int, or :class:`DataError` at ``where``."""
    bad = problem(value, lo=lo, hi=hi, integer=True)
    if bad:
        raise DataError(bad, where)
    return int(value)


def parse(text: str, where: str | None = None, *, lo: float | None = None,
          hi: Any = _DEFAULT, lo_open: bool = False,
          integer: bool = False) -> float:
    """A number written as text (a CSV field, an XML attribute, an rrdtool answer), checked
    like :func:`number`; anything ``float()`` or ``int()`` refuses is a :class:`DataError`."""
    raw = str(text).strip()
    try:
        value: Any = int(raw) if integer else float(raw)
    except (ValueError, OverflowError):
        value = raw
    bad = problem(value, lo=lo, hi=hi, lo_open=lo_open, integer=integer)
    if bad:
        raise DataError(bad.replace(f"got {describe(raw)}", f"got {describe(text)}"), where)
    return value


def option(name: str, value: Any, *, lo: float | None = None, hi: float | None = MAX_OPTION,
           lo_open: bool = False, integer: bool = False) -> Any:
    """A setting's value (``name`` as a core setting, ``time_limit``), or
    :class:`OptionError`, exit 2, shown as ``--time-limit expected ...``."""
    bad = problem(value, lo=lo, hi=hi, lo_open=lo_open, integer=integer)
    if bad:
        raise OptionError(name, bad.replace("expected", "must be", 1))
    return value
