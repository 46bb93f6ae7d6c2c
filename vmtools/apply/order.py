"""The order vm-apply starts a plan's actions in: which hosts an action occupies, which
ready action goes first when a slot frees, and whether it may start now. vm-replay's
simulation asks the same questions here, so it runs a plan as vm-apply would."""

from __future__ import annotations

from collections import Counter

from vmtools.model import Action


def ends(a: Action) -> tuple[str, ...]:
    """The hosts an action occupies: its source and destination, the host it switches, or
    the one host a suspend, resume, create or checkpoint runs on."""
    if a.is_lifecycle:
        return (a.where,)
    return (a.host,) if a.is_power else (a.src, a.dst)


def may_start(a: Action, running: int, busy: Counter, parallel: int, per_host: int) -> bool:
    """Whether ready action ``a`` may start now: fewer than ``parallel`` actions of any kind
    run, and each host it occupies (:func:`ends`) has fewer than ``per_host`` running on it
    (a power action and a suspend count as a migration does)."""
    return running < parallel and all(busy[h] < per_host for h in ends(a))


def priorities(actions: dict[int, Action]) -> dict[int, tuple]:
    """Higher first: the plan's ``priority`` of the action (relief of a host whose demand is
    over its capacity before anything else), then the most loaded of its two hosts, then the
    longest chain of work still behind it (both in MiB, proportional to migration time)."""
    succ: dict[int, list[int]] = {i: [] for i in actions}
    for a in actions.values():
        for p in a.after:
            if p in succ:        # a plan's own actions only (vm-replay's baselines too)
                succ[p].append(a.id)
    tail: dict[int, float] = {}

    def chain(i: int) -> float:
        if i not in tail:
            stack = [i]
            while stack:
                j = stack[-1]
                todo = [s for s in succ[j] if s not in tail]
                if todo:
                    stack.extend(todo)
                    continue
                stack.pop()
                tail[j] = actions[j].mem_mib + max((tail[s] for s in succ[j]), default=0)
        return tail[i]

    load: Counter = Counter()
    for a in actions.values():
        for h in ends(a):
            load[h] += a.mem_mib
    return {i: (a.priority, max(load[h] for h in ends(a)), chain(i), -i)
            for i, a in actions.items()}
