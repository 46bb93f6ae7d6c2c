"""Simulated power for the lab's hosts: the state every power path changes.

A host's ``power`` in the cluster state (:mod:`vmtools.lab.cluster`) is ``on`` (the default),
``off`` or ``booting`` (switched on at ``boot_at``; the lab starts its xend, sshd and
vm-gmetric ``boot_seconds`` later and marks it ``on``). Three things change it, as on real
hardware:

- the host's BMC (:mod:`vmtools.lab.bmc`, OpenIPMI's ``ipmi_sim``) calls
  ``chassis HOST get power`` / ``chassis HOST set power 0|1`` (its ``chassis_control``
  program); a hard power-off stops the host with whatever runs on it;
- the Domain-0's own ``poweroff`` / ``shutdown -h`` (a stand-in on the SSH sessions' PATH)
  switches it off after an orderly shutdown;
- a Wake-on-LAN magic packet for its MAC (:class:`vmtools.lab.bmc.WolListener`).

A host that is not ``on`` is down (``up`` false): its xend and toolstack refuse everything.
"""

from __future__ import annotations

import os
import sys
import time

from vmtools.lab.cluster import ClusterState, go_down


def power_of(host: dict) -> str:
    return host.get("power", "on")


def switch_on(state: dict, name: str, now: float | None = None) -> bool:
    """Press the power button of ``name`` (no effect on a host already on or booting)."""
    host = state["hosts"][name]
    if power_of(host) != "off":
        return False
    host["power"] = "booting"
    host["boot_at"] = time.time() if now is None else now
    return True


def switch_off(state: dict, name: str) -> None:
    """The host stops with whatever runs on it: its guests, and the ``--incoming`` domains of
    migrations it was receiving, are gone (a migration from it fails at its sender's end)."""
    host = state["hosts"][name]
    host["power"] = "off"
    go_down(state, name)
    host.pop("boot_at", None)


def booted(state: dict, name: str, boot_seconds: float, now: float | None = None) -> bool:
    """Mark ``name`` on once it has booted; True when it just did."""
    host = state["hosts"][name]
    now = time.time() if now is None else now
    if power_of(host) == "booting" and now - host.get("boot_at", now) >= boot_seconds:
        host["power"] = "on"
        host["up"] = True
        host.pop("boot_at", None)
        return True
    return False


def chassis(argv: list[str]) -> int:
    """``chassis HOST get power`` / ``chassis HOST set power VALUE`` for ipmi_sim."""
    state = ClusterState.from_env()
    if len(argv) < 3 or argv[1] not in ("get", "set"):
        print("usage: chassis HOST get power | chassis HOST set power 0|1", file=sys.stderr)
        return 2
    name, verb, items = argv[0], argv[1], argv[2:]
    if verb == "get":
        host = state.read()["hosts"][name]
        print(f"power:{0 if power_of(host) == 'off' else 1}")
        return 0
    pairs = dict(zip(items[::2], items[1::2]))
    if "power" in pairs:
        with state.transaction() as st:
            if pairs["power"].strip('"') == "1":
                switch_on(st, name)
            else:
                switch_off(st, name)
    return 0


def poweroff(tool: str, args: list[str]) -> int:
    """The Domain-0's ``poweroff`` / ``shutdown -h now``: the host goes down a moment after
    the command returns (the lab's session ends with it)."""
    if tool == "shutdown" and "-h" not in args and "-P" not in args:
        print("shutdown: only -h (halt and power off) is simulated", file=sys.stderr)
        return 1
    name = os.environ.get("VMTOOLS_LAB_HOST", "")
    state = ClusterState.from_env()
    with state.transaction() as st:
        switch_off(st, name)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "chassis":
        return chassis(argv[1:])
    if argv and argv[0] in ("poweroff", "shutdown"):
        return poweroff(argv[0], argv[1:])
    print("usage: python -m vmtools.lab.power chassis|poweroff|shutdown ...", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
