"""The replay checker's rules for ``power-off`` and ``power-on`` actions (vmtools(7), SAFETY).

For every order of execution that respects ``after``:

* a ``power-off`` switches off an ``online`` host that holds no guest at that moment: every
  guest it has in the origin leaves it, by an action that must finish before the power-off
  starts; no guest ever enters it; nothing is on it in the target placement;
* a ``power-on`` wakes a ``standby`` host; a standby host holds nothing in the origin, and a
  guest enters it only through a migration ``after`` its power-on (directly or through
  other actions); a standby host without a power-on receives nothing;
* one power action per host per plan.

Raises :class:`~vmtools.errors.DataError` naming the action and the rule, like the rest of
the checker. Works on the ``Replay`` the checker already built (ids, links, topological
order), so it adds no second notion of ordering.
"""

from __future__ import annotations

from vmtools.errors import DataError
from vmtools.model import Plan
from vmtools.rules.precedence import Replay, action_label


def check_power(plan: Plan, replay: Replay) -> None:
    origin = plan.origin
    hosts = {h.name: h for h in origin.hosts}
    power = [a for a in plan.actions if a.is_power]
    if not power and not any(h.state == "standby" for h in origin.hosts):
        return
    where = "plan.actions"
    seen: dict[str, int] = {}
    for a in power:
        label = action_label(a)
        if a.host not in hosts:
            raise DataError(f"{label}: unknown host {a.host}", where)
        if a.host in seen:
            raise DataError(f"{label}: host {a.host} already has power action {seen[a.host]}",
                            where)
        seen[a.host] = a.id
        state = hosts[a.host].state
        if a.op == "power-off" and state != "online":
            raise DataError(f"{label}: {a.host} is {state}; only an online host is switched "
                            "off", where)
        if a.op == "power-on" and state != "standby":
            raise DataError(f"{label}: {a.host} is {state}; only a standby host is switched "
                            "on", where)
    for h in origin.hosts:
        if h.state == "standby":
            held = [v.name for v in origin.vms if v.host == h.name]
            if held:
                raise DataError(f"standby host {h.name} holds {', '.join(held[:5])}: a host "
                                "in standby holds nothing", "plan.origin")
    migrations = [a for a in plan.actions if not a.is_power]
    for a in power:
        label = action_label(a)
        if a.op == "power-off":
            residents = sorted(v for v, h in plan.placement.items() if h == a.host)
            if residents:
                raise DataError(f"{label}: {', '.join(residents[:5])} end on {a.host}; a host "
                                "holding a guest is never switched off", where)
            for m in migrations:
                if m.dst == a.host:
                    raise DataError(f"{label}: action {m.id} moves {m.vm} onto {a.host}, which "
                                    "is being switched off", where)
                if m.src == a.host and not replay.precedes(m.id, a.id):
                    raise DataError(f"{label}: {a.host} may still hold {m.vm} (action {m.id} "
                                    "is not before it); add after so the host is switched "
                                    "off only once its last guest has left", where)
            if any(v.host == a.host for v in origin.vms if not any(
                    m.vm == v.name for m in migrations)):
                raise DataError(f"{label}: a guest of {a.host} does not leave it", where)
        else:
            for m in migrations:
                if m.src == a.host:
                    raise DataError(f"{label}: action {m.id} moves {m.vm} off standby host "
                                    f"{a.host}, which holds nothing", where)
                if m.dst == a.host and not replay.precedes(a.id, m.id):
                    raise DataError(f"action {m.id} ({m.vm} {m.src} -> {m.dst}) may start "
                                    f"before {a.host} is switched on (action {a.id}); add "
                                    "after", where)
