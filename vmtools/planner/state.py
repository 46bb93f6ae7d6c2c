"""What vm-plan keeps between cron runs (``--state DIR``): which hosts were hot in the last
snapshots, since when, where each guest was, and when each guest was last seen to move.

A move is recorded when a snapshot shows a guest on another host than the previous snapshot
did, not when a plan proposes it: a migration that failed, a plan that was only a dry run or
was never applied puts no guest in cooldown, and a move made by hand or by another tool does.

The clock is the snapshot's ``created`` time, so replaying saved snapshots behaves as the
live runs did. The file is ``DIR/vm-plan-state.json``, written atomically.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from dataclasses import dataclass, field

from vmtools.errors import DataError, LocalFailure, OptionError
from vmtools.model import Reader, Snapshot, iso_to_epoch, loads

STATE_FILE = "vm-plan-state.json"
KEEP = 50


@dataclass
class State:
    observations: list[dict] = field(default_factory=list)   # {"time": t, "hot": [hosts]}
    hot_since: dict[str, float] = field(default_factory=dict)
    moved: dict[str, float] = field(default_factory=dict)
    placement: dict[str, str] = field(default_factory=dict)  # guest -> host, last snapshot
    samples: dict[str, list] = field(default_factory=dict)   # guest -> [[time, cpu]] (demand)
    left: dict[str, list] = field(default_factory=dict)      # guest -> [host it left, time]
    hosts: dict[str, float] = field(default_factory=dict)    # host -> last time seen
    sizes: dict[str, list] = field(default_factory=dict)     # guest -> [MiB, last time seen]


def snapshot_time(snap: Snapshot) -> float:
    try:
        return iso_to_epoch(snap.created)
    except (TypeError, ValueError):
        return time.time()


def load_state(directory: str) -> State:
    """The state kept in ``directory``; a missing file is a fresh start. A file that is not
    what :func:`save_state` writes (hand-edited, truncated, another tool's) is a DataError
    naming the file and the fix: it is never half-trusted."""
    path = os.path.join(directory, STATE_FILE)
    if not os.path.isdir(directory):
        raise OptionError("state", f"{directory}: no such directory")
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except FileNotFoundError:
        return State()
    except OSError as exc:
        raise DataError(f"cannot read the state file: {exc.strerror}", path) from None
    try:
        text = data.decode("utf-8")
        return _state_from(loads(text, path), path)
    except (DataError, UnicodeDecodeError) as exc:
        what = exc.message if isinstance(exc, DataError) and exc.where == path else str(exc)
        raise DataError(f"not a vm-plan state file ({what}); remove it and vm-plan starts "
                        "afresh (it forgets recent hotspots, moves and demand history)",
                        path) from None


def _state_from(obj: object, path: str = "state") -> State:
    r = Reader(obj)
    observations = []
    for where, item in r.list("observations", False):
        o = Reader(item, where)
        hot = []
        for p, name in o.list("hot"):
            if not isinstance(name, str):
                raise DataError("expected a host name", p)
            hot.append(name)
        observations.append({"time": o.num("time", minimum=None), "hot": hot})
    return State(observations=observations, hot_since=_times(r, "hot_since"),
                 moved=_times(r, "moved"), placement=_names(r, "placement"),
                 samples=_samples(r.raw("samples", {}), path),
                 left=_left(r.raw("left", {}), path), hosts=_times(r, "hosts"),
                 sizes=_sizes(r.raw("sizes", {}), path))


def _sizes(obj: object, path: str) -> dict[str, list]:
    ok = isinstance(obj, dict) and all(
        isinstance(v, list) and len(v) == 2 and all(
            isinstance(x, (int, float)) and not isinstance(x, bool) for x in v)
        for v in obj.values())
    if not ok:
        raise DataError("sizes: expected {guest: [MiB, time]}; remove the file to start "
                        "afresh", path)
    return obj


def _left(obj: object, path: str) -> dict[str, list]:
    ok = isinstance(obj, dict) and all(
        isinstance(v, list) and len(v) == 2 and isinstance(v[0], str) and
        isinstance(v[1], (int, float)) and not isinstance(v[1], bool) for v in obj.values())
    if not ok:
        raise DataError("left: expected {guest: [host, time]}", path)
    return obj


def _times(r: Reader, key: str) -> dict[str, float]:
    sub = r.obj_(key, False)
    return {} if sub is None else {k: sub.num(k, minimum=None) for k in sub.obj}


def _names(r: Reader, key: str) -> dict[str, str]:
    sub = r.obj_(key, False)
    return {} if sub is None else {k: sub.str(k) for k in sub.obj}


def _samples(obj: object, path: str) -> dict[str, list]:
    """Samples as saved, checked: a hand-edited or truncated file is refused by name."""
    try:
        ok = isinstance(obj, dict) and all(
            isinstance(rows, list) and all(float(t) == t and float(c) == c for t, c in rows)
            for rows in obj.values())
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise DataError("samples: expected {guest: [[time, cpu], ...]}; remove the file to "
                        "start afresh", path)
    return obj


def save_state(directory: str, state: State) -> None:
    """Write the state atomically; a full disk or an unwritable directory is a
    :class:`LocalFailure` naming the directory (the old file, if any, stays whole)."""
    path = os.path.join(directory, STATE_FILE)
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=".vm-plan-state.", dir=directory)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            # dumps, not dump: only dumps takes the C encoder (1.5 s against 0.1 s for the
            # samples of 2,000 guests).
            fh.write(json.dumps({"observations": state.observations[-KEEP:],
                                 "hot_since": state.hot_since, "moved": state.moved,
                                 "placement": state.placement, "samples": state.samples,
                                 "left": state.left, "hosts": state.hosts,
                                 "sizes": state.sizes},
                                separators=(",", ":"), sort_keys=True))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        raise LocalFailure(f"--state {directory}: cannot save vm-plan's state: {exc.strerror} "
                           "(free space or fix the directory's permissions; no plan was "
                           "printed)") from None


def observe(state: State, now: float, hot: list[str]) -> None:
    """Record this snapshot's hot hosts (once per snapshot time)."""
    if state.observations and state.observations[-1]["time"] >= now:
        state.observations[-1] = {"time": now, "hot": sorted(hot)}
    else:
        state.observations.append({"time": now, "hot": sorted(hot)})
    for h in list(state.hot_since):
        if h not in hot:
            del state.hot_since[h]
    for h in hot:
        state.hot_since.setdefault(h, now)


def persistent_hotspots(state: State, now: float, window: tuple[int, int],
                        hold_minutes: float) -> set[str]:
    """Hosts hot in at least k of the last n observations, or hot for ``hold`` minutes."""
    k, n = window
    recent = state.observations[-n:]
    counts: dict[str, int] = {}
    for obs in recent:
        for h in obs["hot"]:
            counts[h] = counts.get(h, 0) + 1
    out = {h for h, c in counts.items() if c >= k}
    if hold_minutes > 0:
        out |= {h for h, since in state.hot_since.items() if now - since >= hold_minutes * 60}
    return out


def cooling(state: State, now: float, cooldown_minutes: float) -> set[str]:
    return {v for v, t in state.moved.items() if now - t < cooldown_minutes * 60}


def observe_moves(state: State, snap: Snapshot, now: float) -> None:
    """Record the guests this snapshot shows on another host than the last one did."""
    for vm in snap.vms:
        before = state.placement.get(vm.name)
        if before is not None and before != vm.host:
            state.moved[vm.name] = now
            state.left[vm.name] = [before, now]
    state.placement = {vm.name: vm.host for vm in snap.vms}
    horizon = now - 7 * 86400
    state.moved = {v: t for v, t in state.moved.items() if t >= horizon}
    state.left = {v: x for v, x in state.left.items() if x[1] >= now - 86400}


def recently_left(state: State, now: float, minutes: float) -> dict[str, str]:
    """Guest -> the host it was seen to leave less than ``minutes`` ago."""
    return {v: x[0] for v, x in state.left.items() if now - x[1] < minutes * 60}


# A host or guest gone this long is forgotten (retired, or deleted): no longer ``vanished``.
FORGET_AFTER = 86400.0


def vanished(state: State, snap: Snapshot, now: float, switched_off: set[str],
             frozen: set[str]) -> tuple[list, dict[str, str]]:
    """The ``vanished-host`` and ``vanished-guest`` problems of ``snap`` against the last runs:
    a host seen before and gone now, unless vmtools switched it off (``switched_off``); a
    guest seen before that no host lists now, whose last host is gone or ``frozen`` (a guest
    whose host reports a whole guest list without it was shut down). Then records what this
    snapshot shows. Returns the problems and the vanished guests' last hosts (to keep in
    ``placement`` until they are forgotten)."""
    from vmtools.model import Problem
    problems = []
    here = {h.name for h in snap.hosts}
    gone = set()
    for name, seen in sorted(state.hosts.items()):
        if name in here or name in switched_off or now - seen > FORGET_AFTER:
            continue
        gone.add(name)
        problems.append(Problem("vanished-host", f"host {name} was seen {now - seen:.0f} s "
                                "ago and is not in the snapshot now; vmtools did not switch it "
                                "off", host=name))
    listed = {v.name for v in snap.vms}
    named = {p.vm for p in snap.problems if p.vm}
    keep = {}
    for name, host in sorted(state.placement.items()):
        size = state.sizes.get(name)
        if name in listed or name in named or (size is not None and now - size[1] > FORGET_AFTER):
            continue
        if host in gone or host in frozen or (host not in here and host not in switched_off):
            mib = f", {size[0]} MiB when last seen" if size is not None else ""
            problems.append(Problem("vanished-guest", f"guest {name} was on host {host} at "
                                    f"the last run and no host lists it now{mib}", host=host,
                                    vm=name))
            keep[name] = host
    for h in snap.hosts:
        state.hosts[h.name] = now
    state.hosts = {h: t for h, t in state.hosts.items() if now - t <= FORGET_AFTER}
    for v in snap.vms:
        state.sizes[v.name] = [v.mem_mib, now]
    state.sizes = {v: x for v, x in state.sizes.items() if now - x[1] <= FORGET_AFTER}
    return problems, keep
