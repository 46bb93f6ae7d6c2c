"""What vm-plan learns from each snapshot between cron runs: which hosts were hot in the last
snapshots, since when, where each guest was, and when each guest was last seen to move. The
memory itself is the ``plan`` part of the vmtools.state document (:mod:`vmtools.state`);
this module updates it and answers questions about it.

A move is recorded when a snapshot shows a guest on another host than the previous snapshot
did, not when a plan proposes it: a migration that failed, a plan that was only a dry run or
was never applied puts no guest in cooldown, and a move made by hand or by another tool does.

The clock is the snapshot's ``created`` time, so replaying saved snapshots behaves as the
live runs did.
"""

from __future__ import annotations

import time

from vmtools.model import Snapshot, iso_to_epoch
from vmtools.state import FORGET_AFTER, unanswered_hosts
from vmtools.state import PlanMemory as State


def snapshot_time(snap: Snapshot) -> float:
    try:
        return iso_to_epoch(snap.created)
    except (TypeError, ValueError):
        return time.time()


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
    state.placement = snap.guest_hosts()
    horizon = now - 7 * 86400
    state.moved = {v: t for v, t in state.moved.items() if t >= horizon}
    state.left = {v: x for v, x in state.left.items() if x[1] >= now - 86400}


def recently_left(state: State, now: float, minutes: float) -> dict[str, str]:
    """Guest -> the host it was seen to leave less than ``minutes`` ago."""
    return {v: x[0] for v, x in state.left.items() if now - x[1] < minutes * 60}




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
    # A host of a domain whose source did not answer (an unavailable-source problem naming
    # that domain, or none of the domain's hosts in the snapshot while a source was lost) is
    # out of this run, not vanished: nothing is planned for it, and it freezes nothing.
    silent = set(unanswered_hosts(state, snap))
    for name, seen in sorted(state.hosts.items()):
        if name in here or name in switched_off or name in silent or now - seen > FORGET_AFTER:
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
        if name in listed or name in named or host in silent or \
                (size is not None and now - size[1] > FORGET_AFTER):
            continue
        if host in gone or host in frozen or (host not in here and host not in switched_off):
            mib = f", {size[0]} MiB when last seen" if size is not None else ""
            problems.append(Problem("vanished-guest", f"guest {name} was on host {host} at "
                                    f"the last run and no host lists it now{mib}", host=host,
                                    vm=name))
            keep[name] = host
    for h in snap.hosts:
        state.hosts[h.name] = now
        if h.domain:
            state.domains[h.name] = h.domain
        else:
            state.domains.pop(h.name, None)
    state.hosts = {h: t for h, t in state.hosts.items() if now - t <= FORGET_AFTER}
    state.domains = {h: d for h, d in state.domains.items() if h in state.hosts}
    for v in snap.vms:
        state.sizes[v.name] = [v.mem_mib, now]
    state.sizes = {v: x for v, x in state.sizes.items() if now - x[1] <= FORGET_AFTER}
    return problems, keep
