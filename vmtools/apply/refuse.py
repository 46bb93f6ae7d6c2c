"""What vm-apply refuses before it touches anything: hostile names, hosts the snapshot does
not know, Domain-0, ops other than ``migrate``, the lifecycle ops (``suspend``, ``resume``,
``create``, ``checkpoint``), ``power-off`` and ``power-on``, an image outside the image
directory, and any plan the replay checker refuses."""

from __future__ import annotations

import json

from vmtools.errors import DataError
from vmtools.model import Plan, is_safe_name, path_in
from vmtools.rules.check import check_plan
from vmtools.xen import DOM0_NAMES


def refuse_bad_input(plan: Plan) -> None:
    """Hostile names, unknown hosts, Domain-0, unsupported ops: DataError naming them."""
    bad: list[str] = []

    def check(name: object, where: str) -> None:
        if not is_safe_name(name):
            bad.append(f"{json.dumps(name) if isinstance(name, str) else repr(name)} ({where})")

    for i, h in enumerate(plan.origin.hosts):
        check(h.name, f"origin.hosts[{i}].name")
    for i, v in enumerate(plan.origin.vms):
        check(v.name, f"origin.vms[{i}].name")
        check(v.host, f"origin.vms[{i}].host")
    for i, a in enumerate(plan.actions):
        keys = ("host",) if a.is_power else (("vm", "dst") if a.starts_guest else ("vm", "src"))\
            if a.is_lifecycle else ("vm", "src", "dst")
        for key in keys:
            check(getattr(a, key), f"actions[{i}].{key}")
    for vm, host in plan.placement.items():
        check(vm, "placement")
        check(host, f"placement.{vm}" if is_safe_name(vm) else "placement")
    if bad:
        raise DataError("unsafe names refused (names may hold only letters, digits, '.', '_' "
                        "and '-'): " + ", ".join(bad[:10]) + (" ..." if len(bad) > 10 else ""),
                        "plan")
    hosts = {h.name for h in plan.origin.hosts}
    for i, a in enumerate(plan.actions):
        if a.is_power:
            if a.host not in hosts:
                raise DataError(f"action {a.id}: host {a.host} is not in the plan's snapshot",
                                f"plan.actions[{i}].host")
            continue
        if a.op != "migrate" and not a.is_lifecycle:
            raise DataError(f"op {a.op!r} is not supported by this vm-apply (only migrate, "
                            "suspend, resume, create, checkpoint, power-off and power-on)",
                            f"plan.actions[{i}].op")
        if a.vm in DOM0_NAMES:
            raise DataError(f"action {a.id} moves {a.vm}: Domain-0 never migrates",
                            f"plan.actions[{i}].vm")
        for key in (("dst",) if a.starts_guest else ("src",)) if a.is_lifecycle \
                else ("src", "dst"):
            if getattr(a, key) not in hosts:
                raise DataError(f"action {a.id}: host {getattr(a, key)} is not in the plan's "
                                "snapshot", f"plan.actions[{i}].{key}")


def refuse_outside_images(plan: Plan, image_dir: str) -> None:
    """Every image a plan reads or writes is a file directly inside ``image_dir`` (the
    directory every host may resume from, vm-apply's --image-dir): DataError naming it."""
    for i, a in enumerate(plan.actions):
        if a.is_lifecycle and a.op != "create" and not path_in(a.image, image_dir):
            raise DataError(f"action {a.id} ({a.op} {a.vm}): image {a.image} is not a file of "
                            f"the image directory {image_dir} (set {{image_dir}} to the "
                            "directory every host shares)", f"plan.actions[{i}].image",
                            settings=("image_dir",))


def check(plan: Plan, image_dir: str | None = None) -> None:
    """Everything that makes a plan unfit to run, as DataError (65)."""
    refuse_bad_input(plan)
    if image_dir is not None:
        refuse_outside_images(plan, image_dir)
    check_plan(plan)
