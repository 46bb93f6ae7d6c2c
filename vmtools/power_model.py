"""How many watts a host draws: the ``vmtools.power`` document (``--power-model FILE``).

Shared by vm-replay (energy of a replay) and vm-plan (power-aware choices); it imports nothing
of either. The document (vmtools-formats(5), POWER MODEL)::

    {"format": "vmtools.power", "version": "1.0",            # both optional
     "hosts": [{"match": "g4-*", "idle_w": 86, "peak_w": 117},
               {"match": "*", "curve_w": [93.7, 97, 101, 105, 110, 116, 121, 125, 129, 133, 135]}]}

The first entry whose ``match`` (a shell-style pattern, :mod:`fnmatch`, case-sensitive) fits the
host name wins. ``idle_w``/``peak_w``: linear in CPU use; ``curve_w``: watts at 0, 10, ..., 100 %
CPU use (SPECpower style), linear between two points. CPU use is the host's CPU demand over its
CPUs, capped at 100 %. A running host with no guest draws its idle watts; a host in standby
(switched off by vmtools) draws ``standby_w`` (default 0).

Without a document, :data:`DEFAULT` applies: the SPECpower curve of the HP ProLiant ML110 G5
(Xeon 3075) that CloudSim ships and Beloglazov & Buyya (2012) use.
"""

from __future__ import annotations

import fnmatch
import math
from dataclasses import dataclass

from vmtools.errors import DataError
from vmtools.model import Reader, check_envelope
from vmtools.numbers import number

POWER_FORMAT = "vmtools.power"

# SPECpower_ssj2008 results as CloudSim's PowerModelSpecPowerHpProLiantMl110G4Xeon3040 and
# ...G5Xeon3075 carry them (watts at 0, 10, ..., 100 % load).
HP_ML110_G4 = (86.0, 89.4, 92.6, 96.0, 99.5, 102.0, 106.0, 108.0, 112.0, 114.0, 117.0)
HP_ML110_G5 = (93.7, 97.0, 101.0, 105.0, 110.0, 116.0, 121.0, 125.0, 129.0, 133.0, 135.0)


@dataclass(frozen=True)
class HostPower:
    """The power curve of the hosts one entry matches: watts at 0, 10, ..., 100 % CPU."""

    match: str
    curve: tuple[float, ...]
    standby_w: float = 0.0

    @property
    def idle_w(self) -> float:
        return self.curve[0]

    @property
    def peak_w(self) -> float:
        return self.curve[-1]

    def watts(self, utilisation: float) -> float:
        """Watts of a running host at ``utilisation`` (CPU demand / CPUs; capped to [0, 1])."""
        u = min(1.0, max(0.0, utilisation))
        if len(self.curve) == 2:
            return self.curve[0] + (self.curve[1] - self.curve[0]) * u
        x = u * 10.0
        i = min(9, int(math.floor(x)))
        return self.curve[i] + (self.curve[i + 1] - self.curve[i]) * (x - i)


@dataclass
class PowerModel:
    entries: list[HostPower]
    source: str = "default"

    def for_host(self, host: str) -> HostPower:
        for e in self.entries:
            if fnmatch.fnmatchcase(host, e.match):
                return e
        raise DataError(f"no entry matches host {host!r}; add one with \"match\": \"*\" last",
                        self.source)

    def watts(self, host: str, utilisation: float, state: str = "on") -> float:
        """Watts of ``host``: ``state`` is ``on`` (running, idle if it has no guest) or
        ``standby``."""
        e = self.for_host(host)
        return e.standby_w if state == "standby" else e.watts(utilisation)


DEFAULT = PowerModel([HostPower("*", HP_ML110_G5)], "default (HP ProLiant ML110 G5, SPECpower)")


# One host drawing more than a megawatt is a typo, not a server (every figure multiplies it).
MAX_WATTS = 1e6


def parse_power_model(obj: object, source: str = "power model") -> PowerModel:
    """A :class:`PowerModel` from a parsed ``vmtools.power`` document; DataError on a bad one
    (its ``where`` is the JSON path)."""
    r = check_envelope(obj, POWER_FORMAT) if isinstance(obj, dict) and "format" in obj \
        else Reader(obj)
    entries = []
    for path, item in r.list("hosts"):
        e = Reader(item, path)
        match = e.str("match", False, "*")
        standby = e.num("standby_w", False, 0.0, maximum=MAX_WATTS)
        if "curve_w" in e.obj:
            points = []
            for p, w in e.list("curve_w"):
                points.append(number(w, p, lo=0.0, hi=MAX_WATTS))
            if len(points) != 11:
                raise DataError(f"expected 11 values (watts at 0, 10, ..., 100 % CPU), got "
                                f"{len(points)}", e.where("curve_w"))
            curve = tuple(points)
        else:
            idle = e.num("idle_w", maximum=MAX_WATTS)
            peak = e.num("peak_w", maximum=MAX_WATTS)
            if peak < idle:
                raise DataError(f"peak_w {peak:g} is below idle_w {idle:g}", e.where("peak_w"))
            curve = (idle, peak)
        entries.append(HostPower(match, curve, standby))
    if not entries:
        raise DataError("expected at least one entry", r.where("hosts"))
    return PowerModel(entries, source)
