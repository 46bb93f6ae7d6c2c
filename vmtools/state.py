"""The vmtools.state document: what vm-plan keeps between cron runs (``--state DIR``), one
versioned file, ``DIR/vmtools.state`` (vmtools-formats(5), STATE).

Two parts, each read and written whole:

- ``plan`` (:class:`PlanMemory`): the hot hosts of the last snapshots and since when, where
  each guest was, when each guest was last seen to move and which host it left, each
  guest's recent CPU samples (vm-plan's demand window), when each host was last seen and each
  guest's size when last seen (what vanished since);
- ``power`` (:class:`PowerState`): the hosts vm-plan switched off (``standby``, with the
  capacity they had), those it is waking and those that failed to boot, how long online hosts
  have been empty, and the last capacity of every host it may switch.

vm-plan reads and writes it; vm-status reads it (which hosts are standby). A document that is
not one (hand-edited, truncated, another tool's) is a DataError (exit 65) naming the file and
the fix, for every reader: it is never half-trusted.

Whoever reads, changes and writes it back (vm-plan for its whole run, vm-web recording a host
it switched) holds :func:`state_lock`, an exclusive ``flock`` on ``DIR/.vmtools.state.lock``,
so neither overwrites what the other recorded meanwhile.

The two files earlier versions wrote, ``vm-plan-state.json`` and ``vm-plan-power.json``, are
read when there is no ``vmtools.state`` yet, once: the next write replaces them with it.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterable, Iterator
from typing import Any

from vmtools import __version__
from vmtools.atomic import write_atomic
from vmtools.errors import DataError, LocalFailure, OptionError, TemporaryFailure, VmtoolsError
from vmtools.inputs import MAX_DOCUMENT_BYTES, decode, read_limited
from vmtools.model import (MAX_DOMAIN_CHARS, SUPPORTED_MAJOR, Reader, check_envelope, is_safe_name,
                           loads)
from vmtools.numbers import describe, problem

STATE_FORMAT = "vmtools.state"
STATE_FILE = "vmtools.state"
STATE_VERSION = "1.0"
LEGACY_PLAN_FILE = "vm-plan-state.json"
LEGACY_POWER_FILE = "vm-plan-power.json"
LOCK_FILE = ".vmtools.state.lock"
KEEP = 50                      # observations kept
# A host or guest gone this long is forgotten (retired, or deleted): no longer ``vanished``.
FORGET_AFTER = 86400.0
# A migration domain's name as vm-rebalance's DOMAINS accepts it: the only names a domain's
# own state directory (STATE/NAME) is looked for under
DOMAIN_DIR_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}")
FORGETS = {"plan": "recent hotspots, moves and demand history",
           "power": "which hosts it switched off"}


@dataclass
class PlanMemory:
    observations: list[dict] = field(default_factory=list)   # {"time": t, "hot": [hosts]}
    hot_since: dict[str, float] = field(default_factory=dict)
    moved: dict[str, float] = field(default_factory=dict)
    placement: dict[str, str] = field(default_factory=dict)  # guest -> host, last snapshot
    samples: dict[str, list] = field(default_factory=dict)   # guest -> [[time, cpu]] (demand)
    left: dict[str, list] = field(default_factory=dict)      # guest -> [host it left, time]
    hosts: dict[str, float] = field(default_factory=dict)    # host -> last time seen
    sizes: dict[str, list] = field(default_factory=dict)     # guest -> [MiB, last time seen]
    # host -> its migration domain when last seen (hosts in a named domain only): a host
    # missing because its domain's source did not answer is not a vanished one
    domains: dict[str, str] = field(default_factory=dict)


@dataclass
class PowerState:
    """What vm-plan remembers about power between runs."""

    empty_since: dict[str, float] = field(default_factory=dict)
    standby: dict[str, dict] = field(default_factory=dict)   # host -> {"since", capacity...}
    waking: dict[str, dict] = field(default_factory=dict)    # host -> {"since": power-on, ...}
    boot_failed: dict[str, dict] = field(default_factory=dict)
    known: dict[str, dict] = field(default_factory=dict)     # host -> last capacity seen


@dataclass
class State:
    plan: PlanMemory = field(default_factory=PlanMemory)
    power: PowerState = field(default_factory=PowerState)


# ----------------------------------------------------------------------------- reading

def _fix(path: str, parts: tuple[str, ...] = ("plan", "power")) -> str:
    return (f"remove it and vm-plan starts afresh (it forgets "
            f"{' and '.join(FORGETS[p] for p in parts)})")


def _read_json(path: str, what: str) -> Any | None:
    """The JSON in ``path``, None when there is no such file."""
    try:
        with open(path, "rb") as fh:
            data = read_limited(fh, path, what, MAX_DOCUMENT_BYTES)
    except FileNotFoundError:
        return None
    except IsADirectoryError:
        raise DataError(f"a directory, not a {what}; {_fix(path)}", path) from None
    except OSError as exc:
        raise DataError(f"cannot read the {what}: {exc.strerror}", path) from None
    return loads(decode(data, path, what), path)


def read_state(directory: str) -> State:
    """The state kept in ``directory`` (a fresh one when it holds none)."""
    if not os.path.isdir(directory):
        raise OptionError("state", f"{directory}: no such directory")
    path = os.path.join(directory, STATE_FILE)
    try:
        obj = _read_json(path, "state document")
        if obj is not None:
            return state_from_document(obj)
    except DataError as exc:
        what = exc.message if exc.where in (path, None) else f"{exc.where}: {exc.message}"
        raise DataError(f"not a {STATE_FORMAT} document ({what}); {_fix(path)}", path) \
            from None
    return _read_legacy(directory)


def _read_legacy(directory: str) -> State:
    state = State()
    state.plan = _read_legacy_part(directory, LEGACY_PLAN_FILE, "state file", plan_memory_from,
                                   "not a vm-plan state file", "plan", state.plan)
    state.power = _read_legacy_part(directory, LEGACY_POWER_FILE, "power state",
                                    power_state_from, "unreadable power state", "power",
                                    state.power)
    return state


def _read_legacy_part(directory: str, name: str, what: str, parse, refusal: str, key: str,
                      default):
    """One of the two files vmtools.state replaces, parsed, or ``default`` when absent."""
    path = os.path.join(directory, name)
    try:
        obj = _read_json(path, what)
        return default if obj is None else parse(obj)
    except DataError as exc:
        why = exc.message if exc.where in (path, None) else f"{exc.where}: {exc.message}"
        raise DataError(f"{refusal} ({why}); {_fix(path, (key,))}", path) from None


def state_from_document(obj: Any) -> State:
    r = check_envelope(obj, STATE_FORMAT)
    plan = r.obj_("plan", False)
    power = r.obj_("power", False)
    return State(plan=plan_memory_from(plan.obj, "plan") if plan else PlanMemory(),
                 power=power_state_from(power.obj, "power") if power else PowerState())


def _number(value: Any, where: str, lo: float | None = None) -> float:
    bad = problem(value, lo=lo)
    if bad:
        raise DataError(bad, where)
    return value


def _host_name(name: str, where: str) -> str:
    if not is_safe_name(name):
        raise DataError(f"{describe(name)} is not a host name", where)
    return name


def plan_memory_from(obj: Any, path: str = "") -> PlanMemory:
    r = Reader(obj, path)
    observations = []
    for where, item in r.list("observations", False):
        o = Reader(item, where)
        hot = []
        for p, name in o.list("hot"):
            if not isinstance(name, str):
                raise DataError("expected a host name", p)
            hot.append(name)
        observations.append({"time": o.num("time", minimum=None), "hot": hot})
    return PlanMemory(observations=observations, hot_since=_times(r, "hot_since"),
                      moved=_times(r, "moved"), placement=_names(r, "placement"),
                      samples=_samples(r.raw("samples", {}), r.where("samples")),
                      left=_left(r.raw("left", {}), r.where("left")), hosts=_times(r, "hosts"),
                      sizes=_sizes(r.raw("sizes", {}), r.where("sizes")),
                      domains=_domains(r.raw("domains", {}), r.where("domains")))


def _domains(obj: object, where: str) -> dict[str, str]:
    if not isinstance(obj, dict) or not all(
            isinstance(k, str) and isinstance(v, str) and v.isprintable() and
            len(v) <= MAX_DOMAIN_CHARS for k, v in obj.items()):
        raise DataError("expected {host: domain}", where)
    return obj


def _sizes(obj: object, where: str) -> dict[str, list]:
    ok = isinstance(obj, dict) and all(
        isinstance(v, list) and len(v) == 2 and all(problem(x) is None for x in v)
        for v in obj.values())
    if not ok:
        raise DataError("expected {guest: [MiB, time]}", where)
    return obj


def _left(obj: object, where: str) -> dict[str, list]:
    ok = isinstance(obj, dict) and all(
        isinstance(v, list) and len(v) == 2 and isinstance(v[0], str) and
        problem(v[1]) is None for v in obj.values())
    if not ok:
        raise DataError("expected {guest: [host, time]}", where)
    return obj


def _times(r: Reader, key: str) -> dict[str, float]:
    sub = r.obj_(key, False)
    return {} if sub is None else {k: sub.num(k, minimum=None) for k in sub.obj}


def _names(r: Reader, key: str) -> dict[str, str]:
    sub = r.obj_(key, False)
    return {} if sub is None else {k: sub.str(k) for k in sub.obj}


def _samples(obj: object, where: str) -> dict[str, list]:
    ok = isinstance(obj, dict) and all(
        isinstance(rows, list) and all(
            isinstance(row, list) and len(row) == 2 and problem(row[0]) is None and
            problem(row[1]) is None for row in rows)
        for rows in obj.values())
    if not ok:
        raise DataError("expected {guest: [[time, cpu], ...]}", where)
    return obj


# A host's record in the power part: what each field may hold.
_RECORD_NUMBERS = {"since": None, "cpu": 0.0, "mem_mib": 0.0, "net_mbps": 0.0}
_RECORD_TEXTS = ("cluster", "domain", "hypervisor", "migration")


def power_state_from(obj: Any, path: str = "") -> PowerState:
    r = Reader(obj, path)
    out = PowerState()
    empty = r.obj_("empty_since", False)
    if empty is not None:
        out.empty_since = {_host_name(k, empty.where(k)): _number(v, empty.where(k))
                           for k, v in empty.obj.items()}
    for part in ("standby", "waking", "boot_failed", "known"):
        sub = r.obj_(part, False)
        if sub is None:
            continue
        records = {}
        for name, rec in sub.obj.items():
            where = sub.where(name)
            _host_name(name, where)
            rr = Reader(rec, where)
            for key, lo in _RECORD_NUMBERS.items():
                value = rr.raw(key)
                if value is not None:
                    _number(value, rr.where(key), lo)
            for key in _RECORD_TEXTS:
                value = rr.raw(key)
                if value is not None and not isinstance(value, str):
                    raise DataError(f"expected text, got {describe(value)}", rr.where(key))
            records[name] = dict(rec)
        setattr(out, part, records)
    return out


# ----------------------------------------------------------------------------- writing

def state_document(state: State) -> dict:
    p = state.plan
    return {"format": STATE_FORMAT, "version": STATE_VERSION,
            "generator": f"vm-plan {__version__}",
            "plan": {"observations": p.observations[-KEEP:], "hot_since": p.hot_since,
                     "moved": p.moved, "placement": p.placement, "samples": p.samples,
                     "left": p.left, "hosts": p.hosts, "sizes": p.sizes,
                     **({"domains": p.domains} if p.domains else {})},
            "power": {"empty_since": state.power.empty_since, "standby": state.power.standby,
                      "waking": state.power.waking, "boot_failed": state.power.boot_failed,
                      "known": state.power.known}}


def write_state(directory: str, state: State) -> None:
    """Write ``DIR/vmtools.state`` atomically (and remove the files of earlier versions it
    replaces); a full disk or an unwritable directory is a :class:`LocalFailure` naming the
    directory (the old document, if any, stays whole)."""
    # dumps, not dump: only dumps takes the C encoder (1.5 s against 0.1 s for the samples
    # of 2,000 guests).
    text = json.dumps(state_document(state), separators=(",", ":"), sort_keys=True)
    try:
        write_atomic(os.path.join(directory, STATE_FILE), text)
        for old in (LEGACY_PLAN_FILE, LEGACY_POWER_FILE):
            try:
                os.unlink(os.path.join(directory, old))
            except FileNotFoundError:
                pass
    except OSError as exc:
        raise LocalFailure(f"{{state}} {directory}: cannot save vm-plan's state: "
                           f"{exc.strerror} (free space or fix the directory's permissions; "
                           "no plan was printed)", settings=("state",)) from None


def unanswered_hosts(memory: PlanMemory, snap) -> dict[str, str]:
    """The hosts vm-plan saw before that are missing from ``snap`` because their migration
    domain's source did not answer (an ``unavailable-source`` problem naming that domain,
    or, when a source was lost without naming one, a domain none of whose hosts is in the
    snapshot): host -> domain. They are out of this run, not vanished: nothing is planned
    for them and they freeze nothing (vm-plan), and vm-status shows them as unanswered."""
    unanswered = [p for p in snap.problems if p.kind == "unavailable-source"]
    if not unanswered:
        return {}
    lost = {p.domain for p in unanswered if p.domain is not None}
    here = {h.name for h in snap.hosts}
    present = {h.domain for h in snap.hosts}
    return {name: d for name, d in sorted(memory.domains.items())
            if name not in here and (d in lost or d not in present)}


def domain_dirs(state_dir: str | None, domains: Iterable[str]) -> dict[str, str]:
    """vm-rebalance's domain mode (DOMAINS): each migration domain's own vm-plan state
    directory, ``STATE_DIR/NAME`` (its standby hosts, its history, its maintenance.json), for
    each of ``domains`` whose name vm-rebalance accepts (letters, digits, ``_`` and ``-``,
    starting with a letter or digit) and whose directory exists; a domain whose name is none
    (``xapi-pool:UUID``) is found by what the subdirectories' vm-plans recorded. No domain's
    name is ever made a path: "", "..", "a/b" are left out. {} without STATE_DIR."""
    if not state_dir:
        return {}
    out = {}
    wanted = {d for d in domains if isinstance(d, str) and d}
    for name in sorted(wanted):
        if DOMAIN_DIR_NAME.fullmatch(name):
            path = os.path.join(state_dir, name)
            if os.path.isdir(path):
                out[name] = path
    if wanted - set(out):
        out.update(_recorded_domains(state_dir, wanted - set(out), set(out.values())))
    return out


def _recorded_domains(state_dir: str, wanted: set[str], taken: set[str]) -> dict[str, str]:
    """A domain whose name is no directory name (a XAPI pool's ``xapi-pool:UUID``, run by
    vm-rebalance as DOMAINS name ``pool-a``): the subdirectory ``STATE_DIR/NAME`` (a name
    vm-rebalance accepts) whose vm-plan recorded that domain for its hosts. A subdirectory
    whose state cannot be read is passed over (its own vm-plan says what is wrong)."""
    out: dict[str, str] = {}
    try:
        names = sorted(os.listdir(state_dir))
    except OSError:
        return out
    for name in names:
        path = os.path.join(state_dir, name)
        if not DOMAIN_DIR_NAME.fullmatch(name) or path in taken or not os.path.isdir(path) \
                or not os.path.isfile(os.path.join(path, STATE_FILE)):
            continue
        try:
            recorded = set(read_state(path).plan.domains.values())
        except VmtoolsError:
            continue
        for domain in sorted(wanted & recorded):
            out.setdefault(domain, path)
    return out


@contextmanager
def state_lock(directory: str, wait: float = 300.0) -> Iterator[None]:
    """Hold the state directory's lock while reading, changing and writing the state back;
    waits up to ``wait`` seconds for another holder (a vm-plan run holds it for the run), then
    :class:`TemporaryFailure` (exit 75: try again at the next run). The kernel releases the
    lock however the holder ends."""
    path = os.path.join(directory, LOCK_FILE)
    try:
        os.makedirs(directory, exist_ok=True)   # a first run: as vm-apply makes --state-dir
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise LocalFailure(f"{{state}} {directory}: cannot make it or open its lock {LOCK_FILE}: "
                           f"{exc.strerror}", settings=("state",)) from None
    try:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise TemporaryFailure(
                        f"{{state}} {directory}: another vm-plan run or vm-web holds it "
                        f"({LOCK_FILE}) for more than {wait:g} s; nothing was planned (the "
                        "next run will)", settings=("state",)) from None
                time.sleep(0.1)
        yield
    finally:
        os.close(fd)


__all__ = ["State", "PlanMemory", "PowerState", "read_state", "write_state", "state_document",
           "state_from_document", "plan_memory_from", "power_state_from", "STATE_FILE",
           "STATE_FORMAT", "LEGACY_PLAN_FILE", "LEGACY_POWER_FILE", "LOCK_FILE", "SUPPORTED_MAJOR",
           "state_lock"]
