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

import json
import math
from pathlib import Path

from vmtools.lab.cluster import new_state

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
    with open(path, encoding="utf-8") as fh:
        scenario = json.load(fh)
    for guest, spec in scenario["guests"].items():
        if spec["host"] not in scenario["hosts"]:
            raise ValueError(f"{path}: guest {guest} is on unknown host {spec['host']}")
    return scenario


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
