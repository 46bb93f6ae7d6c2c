"""Plans of one operator's action: migrate a guest to a host, suspend it, resume it, checkpoint
it (vm-plan --migrate, --suspend, --resume, --checkpoint). Each is a plan like any other:
checked by the replay checker under the rules (capacity at every moment, bans, fences, spread,
maintenance), so vm-apply runs it as it runs the planner's plans.

What the snapshot's problems name is respected as the planner respects it: a guest a problem
names is not touched, a host a problem touches (frozen) takes nothing new.

Errors: DataError (65) for what names something that is not there, or is already so (an unknown
guest or host, a guest to resume that runs); OperationFailed (1) when the action is possible in
principle but not now (no room, a rule forbids it), with the checker's reason.
"""

from __future__ import annotations

import re
import time

from vmtools.errors import DataError, OperationFailed
from vmtools.model import Action, Plan, Snapshot, path_in
from vmtools.planner.instance import problem_guests
from vmtools.rules.check import check_plan
from vmtools.rules.constraints import Constraints


def image_path(image_dir: str, vm: str, suffix: str = "save") -> str:
    return f"{image_dir.rstrip('/')}/{vm}.{suffix}"


def _plan(snap: Snapshot, cons: Constraints, actions: list[Action], what: str,
          placement: dict[str, str]) -> Plan:
    summary = {"manual": what, "actions": len(actions),
               "migrations": sum(1 for a in actions if a.op == "migrate"),
               "migrated_mib": sum(a.mem_mib for a in actions if a.op == "migrate")}
    return Plan(origin=snap, placement=placement, actions=actions, objective="manual",
                constraints=cons.to_list(), summary=summary,
                solver={"name": "manual", "status": "feasible", "method": what})


def _checked(plan: Plan, cons: Constraints, what: str) -> Plan:
    try:
        check_plan(plan, cons)
    except DataError as exc:
        raise OperationFailed(f"cannot {what}: {_one_action(exc.message)}") from None
    return plan


def _one_action(message: str) -> str:
    """The checker's reason, without its advice on ``after`` links (one action has none)."""
    return re.sub(r" while actions [0-9, ]+ run together.*$", "", message).replace(
        " may reach ", " would reach ")


def _guest(snap: Snapshot, vm: str):
    for v in snap.vms:
        if v.name == vm:
            return v
    raise DataError(f"no guest {vm} in the snapshot (names are case-sensitive)", vm)


def _host(snap: Snapshot, name: str):
    for h in snap.hosts:
        if h.name == name:
            return h
    raise DataError(f"no host {name} in the snapshot", name)


def _untouchable(snap: Snapshot, vm: str, what: str) -> None:
    vms, _ = problem_guests(snap)
    if vm in vms:
        why = next(p.message for p in snap.problems if p.vm == vm)
        raise OperationFailed(f"cannot {what}: the snapshot has a problem with {vm} ({why}); "
                              "nothing is planned for it until its host reports it again")


def _open(snap: Snapshot, host: str, what: str) -> None:
    h = _host(snap, host)
    if h.state != "online":
        raise OperationFailed(f"cannot {what}: {host} is {h.state}")
    _, frozen = problem_guests(snap)
    if host in frozen:
        raise OperationFailed(f"cannot {what}: {host} is frozen (the snapshot has a problem "
                              "there: it takes nothing new)")


def migrate_plan(snap: Snapshot, cons: Constraints, vm: str, host: str) -> Plan:
    """``vm`` live-migrated to ``host``."""
    what = f"migrate {vm} to {host}"
    v = _guest(snap, vm)
    _host(snap, host)
    if v.host == host:
        raise OperationFailed(f"cannot {what}: it runs there already")
    _untouchable(snap, vm, what)
    _open(snap, host, what)
    placement = {g.name: g.host for g in snap.vms}
    placement[vm] = host
    action = Action(id=1, vm=vm, src=v.host, dst=host, mem_mib=v.mem_mib,
                    reason=f"manual: migrate {vm} to {host}")
    return _checked(_plan(snap, cons, [action], what, placement), cons, what)


def suspend_plan(snap: Snapshot, cons: Constraints, vm: str, image_dir: str,
                 checkpoint: bool = False) -> Plan:
    """``vm`` suspended to ``image_dir/vm.save`` (or checkpointed to
    ``image_dir/vm-TIME.chk``, the guest running on)."""
    op = "checkpoint" if checkpoint else "suspend"
    what = f"{op} {vm}"
    v = _guest(snap, vm)
    _untouchable(snap, vm, what)
    image = image_path(image_dir, f"{vm}-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}",
                       "chk") if checkpoint else image_path(image_dir, vm)
    placement = {g.name: g.host for g in snap.vms if checkpoint or g.name != vm}
    action = Action(id=1, op=op, vm=vm, src=v.host, dst="", mem_mib=v.mem_mib, image=image,
                    reason=f"manual: {op} {vm}")
    return _checked(_plan(snap, cons, [action], what, placement), cons, what)


def resume_plan(snap: Snapshot, cons: Constraints, entry: dict, host: str | None,
                image_dir: str) -> Plan:
    """The suspended guest ``entry`` (from the ledger) resumed on ``host``, or on the host
    with room that the rules allow (the one it left first, then the emptiest)."""
    vm = entry["name"]
    what = f"resume {vm}" + (f" on {host}" if host else "")
    running = next((v.host for v in snap.vms if v.name == vm), None)
    if running is not None:
        raise DataError(f"{vm} already runs on {running}; only a suspended guest is resumed",
                        vm)
    if not path_in(entry["image"], image_dir):
        raise DataError(f"the image {entry['image']} of {vm} is not a file of the image "
                        f"directory {image_dir} (set {{image_dir}} to the directory every host "
                        "shares)", vm, settings=("image_dir",))
    _, frozen = problem_guests(snap)
    if host is not None:
        _open(snap, host, what)
        candidates = [host]
    else:
        use = {h.name: 0 for h in snap.hosts}
        for v in snap.vms:
            use[v.host] += v.mem_mib
        candidates = sorted((h.name for h in snap.hosts
                             if h.state == "online" and h.name not in frozen),
                            key=lambda n: (n != entry["host"],
                                           -(_host(snap, n).mem_mib - use[n]), n))
        if not candidates:
            raise OperationFailed(f"cannot {what}: no online host takes new guests")
    why: list[str] = []
    for dst in candidates:
        placement = {g.name: g.host for g in snap.vms}
        placement[vm] = dst
        action = Action(id=1, op="resume", vm=vm, src="", dst=dst, mem_mib=entry["mem_mib"],
                        image=entry["image"], vcpus=entry["vcpus"], cpu=entry["cpu"],
                        reason=f"manual: resume {vm} on {dst}")
        plan = _plan(snap, cons, [action], f"resume {vm} on {dst}", placement)
        try:
            check_plan(plan, cons)
            return plan
        except DataError as exc:
            why.append(f"{dst}: {_one_action(exc.message)}")
    shown = "; ".join(why[:4]) + (f"; and {len(why) - 4} more hosts" if len(why) > 4 else "")
    raise OperationFailed(f"cannot {what}: {shown}")


def evacuate_rules(cons: Constraints, snap: Snapshot, host: str) -> list[dict]:
    """The rules of an evacuation of ``host``: the user's plus a maintenance rule on it (the
    planner's repair objective then moves every guest off it)."""
    h = _host(snap, host)
    if h.state != "online":
        raise OperationFailed(f"cannot evacuate {host}: it is {h.state}")
    if not any(v.host == host for v in snap.vms):
        raise OperationFailed(f"cannot evacuate {host}: it runs no guest")
    rules = cons.to_list()
    if host not in cons.maintenance:
        rules.append({"rule": "maintenance", "hosts": [host]})
    return rules
