"""Lab scenarios: the cluster a lab starts with and how its guests' load moves over time.

A scenario is a JSON file (the built-in ones live next to this module)::

    {"name": "hotspot", "description": "...",
     "hosts":  {"node-1": {"cpus": 8, "mem_mib": 17408, "dom0_mib": 1024, "xen": "4.17",
                           "migration": "xen"}},
     "guests": {"web1": {"host": "node-1", "mem_mib": 1024, "vcpus": 1, "load": 0.15,
                         "net_mbps": 2.0}},
     "load":   [{"guests": ["web1"], "shape": "step", "at": 20, "load": [2.4]}],
     "constraints": {... a vmtools.constraints document, optional ...}}

Load shapes (``t`` = seconds since the lab started; ``load`` in physical CPUs, one value per
guest or one for all):

- ``step``: the guests' base load until ``at``, then ``load`` for good (a hotspot that lasts);
- ``pulse``: ``load`` for ``on`` seconds out of every ``period`` (load that comes and goes);
- ``diurnal``: base × (1 + ``amplitude`` × sin(2πt / ``period``)).
"""

from __future__ import annotations

import math
from pathlib import Path

from vmtools.errors import DataError
from vmtools.lab.cluster import new_state
from vmtools.model import (HOST_MAX_CPU, HOST_MAX_MIB, HOST_MIN_MIB, Reader, is_safe_name,
                           load_file)
from vmtools.numbers import MAX_OPTION, describe, number

SCENARIO_DIR = Path(__file__).resolve().parent / "scenarios"


def scenario_names() -> list[str]:
    return sorted(p.stem for p in SCENARIO_DIR.glob("*.json"))


def load_scenario(name_or_path: str) -> dict:
    """A built-in scenario by name, or a scenario file by path."""
    path = Path(name_or_path)
    if not path.suffix:
        path = SCENARIO_DIR / f"{name_or_path}.json"
    if not path.exists():
        raise FileNotFoundError(f"no scenario {name_or_path!r} (built-in: "
                                f"{', '.join(scenario_names())})")
    return load_file(str(path), "scenario", check_scenario)


SHAPES = ("step", "pulse", "diurnal")


def check_scenario(obj: object) -> dict:
    """``obj`` as a scenario, or a :class:`DataError` naming the JSON path of what is wrong
    (a scenario file is hand-written: every field is checked before the lab starts)."""
    r = Reader(obj)
    hosts = _named(r, "hosts")
    if not hosts:
        raise DataError("a scenario needs at least one host", "hosts")
    for name, spec in hosts.items():
        h = Reader(spec, f"hosts.{name}")
        mem = h.int("mem_mib", False, 16384, minimum=HOST_MIN_MIB, maximum=HOST_MAX_MIB)
        h.int("cpus", False, 8, minimum=1, maximum=HOST_MAX_CPU)
        h.int("dom0_mib", False, 1024, minimum=0, maximum=max(0, mem - 1))
        h.str("xen", False)
        h.name("migration", False)
    guests = _named(r, "guests")
    for name, spec in guests.items():
        g = Reader(spec, f"guests.{name}")
        host = g.name("host")
        if host not in hosts:
            raise DataError(f"guest {name} is on host {host!r}, which is not in hosts",
                            f"guests.{name}.host")
        g.int("mem_mib", False, 1024, minimum=1, maximum=HOST_MAX_MIB)
        g.int("vcpus", False, 1, minimum=1, maximum=HOST_MAX_CPU)
        g.num("load", False, 0.1, maximum=HOST_MAX_CPU)
        g.num("net_mbps", False, maximum=1e7)
    for where, item in r.list("load", False):
        rule = Reader(item, where)
        named = rule.list("guests")
        for w, guest in named:
            if guest not in guests:
                raise DataError(f"{guest!r} is not a guest of the scenario", w)
        shape = rule.str("shape", choices=SHAPES)
        rule.num("at", False, 0.0, maximum=MAX_OPTION)
        if shape in ("pulse", "diurnal"):
            rule.num("period", positive=True, maximum=MAX_OPTION)
        if shape == "pulse":
            rule.num("on", maximum=MAX_OPTION)
        rule.num("amplitude", False, 0.5, maximum=1.0)
        values = rule.raw("load", [])
        for i, value in enumerate(values if isinstance(values, list) else [values]):
            number(value, f"{where}.load" + (f"[{i}]" if isinstance(values, list) else ""),
                   lo=0.0, hi=HOST_MAX_CPU)
        if shape != "diurnal" and not (values if isinstance(values, list) else [values]):
            raise DataError(f"a {shape} needs load", f"{where}.load")
    if r.raw("constraints") is not None:
        Reader(r.raw("constraints"), "constraints")
    if r.raw("xapi") is not None:
        _check_xapi(Reader(r.raw("xapi"), "xapi"), hosts, guests)
    return obj


def _check_xapi(x: "Reader", hosts: dict, guests: dict) -> None:
    """The optional ``xapi`` object (vm-lab --platform xapi, :mod:`vmtools.lab.xapi`)."""
    master = x.name("master", False)
    if master is not None and master not in hosts:
        raise DataError(f"master {master!r} is not in hosts", "xapi.master")
    x.str("power_on_mode", False, choices=("", "wake-on-lan", "IPMI"))
    if x.raw("groups") is not None:
        for name, spec in _named(x, "groups").items():
            g = Reader(spec, f"xapi.groups.{name}")
            g.str("placement", False, "normal", choices=("anti_affinity", "normal"))
            for where, vm in g.list("vms"):
                if vm not in guests:
                    raise DataError(f"{vm!r} is not a guest of the scenario", where)
    if x.raw("halted") is not None:
        for name, spec in _named(x, "halted").items():
            if name in guests:
                raise DataError(f"{name} is also a running guest", f"xapi.halted.{name}")
            h = Reader(spec, f"xapi.halted.{name}")
            h.int("mem_mib", False, 1024, minimum=1, maximum=HOST_MAX_MIB)
            h.int("vcpus", False, 1, minimum=1, maximum=HOST_MAX_CPU)
            h.str("power_state", False, "Halted", choices=("Halted", "Suspended"))


def _named(r: "Reader", key: str) -> dict:
    value = r.raw(key)
    if not isinstance(value, dict):
        raise DataError(f"expected an object of {key} by name, got {describe(value)}", key)
    for name in value:
        if not is_safe_name(name):
            raise DataError(f"unsafe name {describe(name)}: names may hold only letters, "
                            "digits, '.', '_' and '-'", key)
    return value


def state_from_scenario(scenario: dict) -> dict:
    """The simulated cluster's initial state for a scenario."""
    hosts: dict[str, dict] = {name: dict(spec, domains={})
                              for name, spec in scenario["hosts"].items()}
    for guest, spec in sorted(scenario["guests"].items()):
        dom = {k: v for k, v in spec.items() if k != "host"}
        dom["base_load"] = dom.get("load", 0.1)
        hosts[spec["host"]]["domains"][guest] = dom
    return new_state(hosts)


def guest_loads(scenario: dict, t: float) -> dict[str, float]:
    """Each guest's CPU demand (physical CPUs) ``t`` seconds into the scenario."""
    loads = {g: float(spec.get("load", 0.1)) for g, spec in scenario["guests"].items()}
    for rule in scenario.get("load", []):
        guests = rule["guests"]
        values = rule.get("load", [])
        if not isinstance(values, list):
            values = [values] * len(guests)
        shape = rule["shape"]
        for i, guest in enumerate(guests):
            target = float(values[i]) if i < len(values) else None
            if shape == "step" and t >= rule.get("at", 0):
                loads[guest] = target
            elif shape == "pulse" and (t % rule["period"]) < rule["on"]:
                loads[guest] = target
            elif shape == "diurnal":
                swing = 1.0 + rule.get("amplitude", 0.5) * math.sin(2 * math.pi * t / rule["period"])
                loads[guest] = round(loads[guest] * swing, 4)
            elif shape not in ("step", "pulse", "diurnal"):
                raise ValueError(f"unknown load shape {shape!r}")
    return loads


def apply_loads(state: dict, scenario: dict, t: float) -> None:
    """Set every guest's load in ``state`` (wherever it runs now) for time ``t``."""
    loads = guest_loads(scenario, t)
    for host in state["hosts"].values():
        for guest, dom in host["domains"].items():
            if guest in loads:
                dom["load"] = loads[guest]
