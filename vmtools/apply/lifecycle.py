"""vm-apply's guest lifecycle: suspend, resume, create and checkpoint, each asked of one host
through its driver and verified by asking that host, never assumed.

- ``suspend``: the guest must run on its host; ``save`` writes the image; done when the host
  no longer runs the guest and the image is there. The guest is then recorded in the
  suspended-guests ledger (:func:`record_suspended`), which ``vm-plan --resume`` reads.
- ``checkpoint``: as a suspend, but the guest must still run afterwards.
- ``resume``: the image must exist on the target host (asked right before; a missing image
  fails the action without touching anything); ``restore``; done when the host runs the
  guest, then the image is removed (as xendomains does). A failed resume leaves the image
  where it was, and the report's error says where.
- ``create``: the configuration file must exist on the host; ``create``; done when the host
  runs the guest.

A transport that keeps images itself (the registry's ``keeps_images``: XAPI, whose suspended
guests live in the pool's storage repositories) is asked by its own driver
(:meth:`~vmtools.drivers.base.Driver.has_image`: the guest Suspended, Halted, or its
checkpoint there), never through another host's file system, and nothing is removed after
its resume.

The ledger is ``<state dir>/suspended.json``, a ``vmtools.suspended`` document
(vmtools-formats(5), SUSPENDED GUESTS): one entry per guest vm-apply suspended and has not
resumed, with its image and what it needs of a host.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
import time
from pathlib import Path

from vmtools.atomic import write_atomic
from vmtools.apply.report import Outcome
from vmtools.drivers import registry
from vmtools.drivers.base import (FILE_NEEDS, LIFECYCLE_NEEDS, MigrationRefused,
                                  MigrationUncertain)
from vmtools.errors import DataError, OperationFailed, Unavailable, VmtoolsError
from vmtools.model import (Action, Plan, dumps, load_file, parse_suspended,
                           suspended_document, utc_now)

LEDGER = "suspended.json"
_ledger_lock = threading.Lock()


def label(a: Action) -> str:
    target = a.image if a.op != "create" else a.config
    return f"{a.op} {a.vm} on {a.where} ({target})"


def refuse_incapable(run) -> None:
    """A lifecycle action on a host whose driver lacks a capability it needs
    (:data:`~vmtools.drivers.base.LIFECYCLE_NEEDS`), or images no host can look at
    (:data:`~vmtools.drivers.base.FILE_NEEDS`: the action's host, a touched host or another
    of the cluster): DataError before anything runs, naming the host, its transport
    and the op (``run`` is the :class:`vmtools.apply.run.Run`)."""
    plan = run.plan
    capabilities = _capabilities(run)
    transports = {h: e.transport for h, e in run.endpoints.items()}
    others = _other_capabilities(run)
    for i, a in enumerate(plan.actions):
        if not a.is_lifecycle or a.where not in capabilities:
            continue
        if not needs(a.op, transports[a.where]) <= capabilities[a.where]:
            able = [name for name in registry.names() if _can(name, a.op)]
            raise DataError(f"action {a.id} ({a.op} {a.vm}): the {transports[a.where]} "
                            f"transport of {a.where} cannot {a.op} guests"
                            + (f" ({', '.join(able)} can)" if able else ""),
                            f"plan.actions[{i}].op")
    if any(a.is_lifecycle and a.op != "create" and not keeps(run, a.where)
           for a in plan.actions) and not any(
            set(FILE_NEEDS) <= caps for caps in list(capabilities.values())
            + list(others.values())):
        raise DataError("no host of the cluster can look at the image directory (check an "
                        "image before a resume, remove it after): the hosts' transports "
                        f"({', '.join(sorted(set(transports.values())))}) cannot; one host "
                        "reached by xm-ssh or xl-ssh can", "plan.actions")


def needs(op: str, transport: str) -> set[str]:
    """The capabilities ``op`` needs of a driver of ``transport`` (one that keeps images
    itself looks at no file)."""
    need = set(LIFECYCLE_NEEDS[op])
    return need - set(FILE_NEEDS) if registry.keeps_images(transport) else need


def keeps(run, host: str) -> bool:
    """Whether ``host``'s transport keeps images itself (XAPI): no image directory then."""
    ep = run.endpoints.get(host)
    return ep is not None and registry.keeps_images(ep.transport)


def _can(transport: str, op: str) -> bool:
    """Whether ``transport``'s driver has what ``op`` needs (False when its module cannot be
    loaded here: a client library not installed)."""
    try:
        return needs(op, transport) <= registry.driver_class(transport).capabilities()
    except ImportError:
        return False


def image_there(run, host: str, a: Action, path: str) -> bool:
    """Whether what ``a`` reads or wrote (its image, or a create's configuration ``path``)
    is there for ``host``: asked of ``host``'s driver when its platform keeps images, else
    of a file system (a create's file on its own host, an image in the shared directory)."""
    if keeps(run, host):
        return run.drivers[host].has_image(a.op, a.vm, path)
    if a.op == "create":
        return run.drivers[host].file_exists(path)
    return files_driver(run, host).file_exists(path)


def files_driver(run, host: str):
    """The driver that looks at the shared image directory for an action on ``host``: its
    own when it can, else a touched host's, else another host's of the cluster."""
    def able(d) -> bool:
        return set(FILE_NEEDS) <= getattr(type(d), "capabilities", frozenset)()
    if able(run.drivers[host]):
        return run.drivers[host]
    for h in sorted(run.drivers):
        if h not in run.asleep and able(run.drivers[h]):
            return run.drivers[h]
    for h in run.others():
        if able(run.drivers[h]):
            return run.drivers[h]
    raise Unavailable(f"no host answers for the image directory (for {host})")


def _capabilities(run) -> dict[str, frozenset[str]]:
    """Each touched host's driver's optional capabilities (of its class when no driver is
    made: --offline)."""
    return {h: getattr(type(run.drivers[h]), "capabilities", frozenset)() if h in run.drivers
            else registry.driver_class(ep.transport).capabilities()
            for h, ep in run.endpoints.items()}


def _other_capabilities(run) -> dict[str, frozenset[str]]:
    """The optional capabilities of the transports of the cluster's other online hosts (by
    their class: nothing is reached)."""
    clusters = {run.hosts[h].cluster for h in run.touched_hosts}
    out = {}
    for name, host in run.hosts.items():
        if name in run.endpoints or host.state != "online" or host.cluster not in clusters:
            continue
        transport = run.opts.driver or host.migration
        try:
            out[name] = registry.driver_class(transport).capabilities()
        except (ImportError, VmtoolsError):
            continue
    return out


# --------------------------------------------------------------------------- before the run

def running_elsewhere(run, finished: set[int], found: dict[str, list[str]]) -> list[str]:
    """A guest the plan starts (resume, create) must run nowhere in the cluster: two
    copies of one guest on one disk would destroy it. The hosts the plan does not touch are
    asked too (those of the touched hosts' clusters)."""
    starting = {a.vm for a in run.plan.actions if a.starts_guest and a.id not in finished}
    starting -= set(found)          # already reported as stale by the touched hosts
    if not starting:
        return []
    reasons = []
    extra = run.others()
    run.asked_too = sorted(set(run.asked_too) | set(extra))
    for h, res in sorted(run.survey(extra).items()):
        if isinstance(res, set):
            for vm in sorted(starting & res):
                reasons.append(f"{vm} already runs on {h}; the plan starts it")
    return reasons

def missing_images(run, finished: set[int]) -> list[str]:
    """Each resume still to run whose image no suspend of this plan writes: the image must
    be on its target host now (and each create's configuration file)."""
    written = {a.image for a in run.plan.actions if a.op == "suspend"}
    reasons = []
    for a in run.plan.actions:
        if a.id in finished or not a.starts_guest or a.dst in run.asleep:
            continue
        path = a.image if a.op == "resume" else a.config
        if a.op == "resume" and path in written:
            continue
        try:
            there = image_there(run, a.dst, a, path)
        except (Unavailable, OperationFailed) as exc:
            reasons.append(f"{a.dst} cannot tell whether {path} exists: {exc}")
            continue
        if not there:
            what = "the image" if a.op == "resume" else "the configuration file"
            reasons.append(_absent(run, a, what, path, a.dst))
    return reasons


# --------------------------------------------------------------------------- one action

def run_lifecycle(run, a: Action) -> Outcome:
    """Carry out one lifecycle action on ``a.where`` and verify it (``run`` is the
    :class:`vmtools.apply.run.Run`)."""
    host = a.where
    driver = run.drivers[host]
    transport = run.endpoints[host].transport
    start = time.time()

    def ended(outcome: str, error: str | None, where: str | None) -> Outcome:
        end = time.time()
        if run.journal:
            run.journal.write("end", id=a.id, vm=a.vm, op=a.op, outcome=outcome, where=where,
                              error=error, seconds=round(end - start, 3))
        return Outcome(a, outcome, start, end, error, where, transport)

    refused = _refuse_start(run, a)
    if refused:
        return ended("failed", refused, a.src or None)
    if run.journal:
        run.journal.write("start", id=a.id, vm=a.vm, op=a.op, host=host, transport=transport,
                          image=a.image or None, config=a.config or None)
    error = None
    uncertain = False
    try:
        if a.op == "suspend":
            driver.suspend_guest(a.vm, a.image, run.opts.timeout)
        elif a.op == "checkpoint":
            driver.checkpoint_guest(a.vm, a.image, run.opts.timeout)
        elif a.op == "resume":
            driver.resume_guest(a.vm, a.image, run.opts.timeout)
        else:
            driver.create_guest(a.vm, a.config, run.opts.timeout)
    except MigrationUncertain as exc:
        error, uncertain = str(exc), True
    except (MigrationRefused, Unavailable, OperationFailed) as exc:   # NotSupported too
        error = str(exc)
    # a clear answer shows at once; after no answer the operation may still be running
    done, where, note = settle(run, a, run.opts.verify_timeout if uncertain
                               else min(run.opts.verify_timeout, 2.0))
    if done:
        if error:
            error = f"{error}; but {note}"
        after_done(run, a)
        return ended("done", error, where)
    why = f"{error + '; ' if error else ''}{note}"
    if a.op == "resume":
        why += (f"; {a.vm} stays suspended in the pool's storage ({transport} keeps its image)"
                if keeps(run, host) else f"; the image is left at {a.image}")
    return ended("failed", why, where)


def after_done(run, a: Action) -> None:
    """What follows a verified lifecycle action (run again by --resume for one the hosts
    show done): a suspended guest goes into the ledger; a resumed guest's image is removed
    (as xendomains does) and the guest leaves the ledger."""
    if a.op == "suspend":
        record_suspended(run, a)
    elif a.op == "resume":
        try:
            if not keeps(run, a.dst):   # XAPI destroys the suspend VDI itself
                files_driver(run, a.dst).remove_file(a.image)
        except (MigrationRefused, Unavailable, OperationFailed) as exc:
            run.problems.append(f"{a.vm} resumed on {a.dst}, but its image {a.image} was "
                                f"not removed: {exc}")
        forget_suspended(run, a.vm)


def _refuse_start(run, a: Action) -> str | None:
    """Why the action must not start now, asked of its host right before."""
    host = a.where
    seen = run.survey([host])[host]
    if isinstance(seen, Exception):
        return f"not started: {host} did not answer: {seen}"
    if a.starts_guest:
        if a.vm in seen:
            return f"not started: {a.vm} already runs on {host}"
        path = a.image if a.op == "resume" else a.config
        try:
            there = image_there(run, host, a, path)
        except (Unavailable, OperationFailed) as exc:
            return f"not started: cannot tell whether {path} exists on {host}: {exc}"
        if not there:
            what = "the image" if a.op == "resume" else "the configuration file"
            return f"not started: {_absent(run, a, what, path, host)}"
        return None
    if a.vm not in seen:
        return f"not started: {a.vm} does not run on {host}"
    return None


def _absent(run, a: Action, what: str, path: str, host: str) -> str:
    if keeps(run, host):
        state = "suspended (no saved image of it)" if a.op == "resume" else \
            "defined and stopped"
        return (f"{a.vm} is not {state} on {host} (the {run.endpoints[host].transport} "
                "platform keeps images itself: none is looked for in the image directory)")
    return f"{what} {path} of {a.vm} does not exist on {host}"


def settle(run, a: Action, wait: float) -> tuple[bool, str | None, str]:
    """Ask the host until the action shows as done, for up to ``wait`` seconds:
    (done, where the guest runs or None, what was seen last)."""
    host = a.where
    deadline = time.monotonic() + wait
    interval = run.opts.poll
    while True:
        seen = run.survey([host])[host]
        if isinstance(seen, set):
            done, where, note = _judge(run, a, a.vm in seen)
            if done:
                return done, where, note
        else:
            where, note = None, f"{host} did not answer: {seen}"
        if time.monotonic() >= deadline:
            return False, where, note
        time.sleep(interval)
        interval = min(interval * 2, 5.0)


def _judge(run, a: Action, runs: bool) -> tuple[bool, str | None, str]:
    host = a.where
    if a.starts_guest:
        if runs:
            return True, host, f"{a.vm} verified running on {host}"
        return False, None, f"{a.vm} verified not running on {host}"
    if a.op == "suspend":
        if runs:
            return False, host, f"{a.vm} verified still running on {host}"
        if _image_there(run, a):
            return True, None, f"{a.vm} verified gone from {host}, its image at {a.image}"
        return False, None, f"{a.vm} is gone from {host} but no image is at {a.image}"
    if not runs:
        return False, None, f"{a.vm} no longer runs on {host} after its checkpoint"
    if _image_there(run, a):
        return True, host, f"{a.vm} verified running on {host}, its image at {a.image}"
    return False, host, f"{a.vm} runs on {host} but no image is at {a.image}"


def _image_there(run, a: Action) -> bool:
    try:
        return image_there(run, a.where, a, a.image)
    except (Unavailable, OperationFailed):
        return False


# --------------------------------------------------------------------------- the ledger

def ledger_path(state_dir: str | os.PathLike) -> Path:
    return Path(state_dir) / LEDGER


def read_suspended(path: str | os.PathLike) -> dict[str, dict]:
    """The ledger at ``path`` as ``{vm: entry}`` (:func:`vmtools.model.parse_suspended`); an
    empty one when there is no file. DataError (65) naming the file when it is malformed."""
    if not os.path.lexists(path):
        return {}
    return load_file(str(path), "suspended-guests ledger", parse_suspended, prog="vmtools")


def _write(path: Path, guests: dict[str, dict]) -> None:
    write_atomic(path, dumps(suspended_document(guests)))


def record_suspended(run, a: Action) -> None:
    vm = next((v for v in run.plan.origin.vms if v.name == a.vm), None)
    entry = {"name": a.vm, "host": a.src, "image": a.image, "mem_mib": a.mem_mib,
             "vcpus": vm.vcpus if vm else max(1, a.vcpus), "cpu": vm.cpu if vm else a.cpu,
             "suspended": utc_now()}
    _update(run, lambda g: g.__setitem__(a.vm, entry))


def forget_suspended(run, vm: str) -> None:
    _update(run, lambda g: g.pop(vm, None))


@contextlib.contextmanager
def _ledger_held(state_dir: Path):
    """The ledger to itself: the threads of this run (a lock) and the other vm-apply runs on
    other migration domains that share the state directory (an flock on the directory, which
    leaves no file behind; held only while the ledger is read and rewritten)."""
    with _ledger_lock:
        try:
            fd = os.open(state_dir, os.O_RDONLY)
        except OSError:
            fd = None                      # no directory yet: the write below says why
        try:
            if fd is not None:
                fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            if fd is not None:
                os.close(fd)               # closing frees the flock


def _update(run, change) -> None:
    path = ledger_path(run.state_dir)
    with _ledger_held(path.parent):
        try:
            guests = read_suspended(path)
        except DataError as exc:
            run.problems.append(f"the suspended-guests ledger was not updated: {exc}")
            return
        change(guests)
        try:
            _write(path, guests)
        except OSError as exc:
            run.problems.append(f"the suspended-guests ledger {path} was not updated: {exc}")
