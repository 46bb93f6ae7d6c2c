"""A plan's actions as a partial order: what the replay checker learns first and every later
check reads (:class:`Replay`), and how checker messages name an action.

:func:`replay_plan` checks the structure (ids unique, ``after`` names existing actions and
forms no cycle, the actions of one guest are totally ordered) and returns a topological order
with each action's ancestors, so "must ``a`` finish before ``b`` starts?" is one bit test.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from vmtools.errors import DataError
from vmtools.model import Action, Plan


def action_label(a: Action) -> str:
    """How the checker's messages name an action: ``action 3 (web1 h1 -> h2)``."""
    if a.is_power:
        return f"action {a.id} ({a.op} {a.host})"
    if a.is_lifecycle:
        return f"action {a.id} ({a.op} {a.vm} on {a.where})"
    return f"action {a.id} ({a.vm} {a.src} -> {a.dst})"


@dataclass
class Replay:
    """What the checker learnt about a plan; reusable by vm-apply."""

    actions: dict[int, Action]
    order: list[int]                   # a topological order of the action ids
    ancestors: dict[int, int]          # id -> bitset of indices in ``order`` of its ancestors
    index: dict[int, int]              # id -> its index in ``order``
    by_vm: dict[str, list[Action]]     # each guest's actions, in execution order
    start: dict[str, str] = field(default_factory=dict)   # each guest's host in the origin

    def precedes(self, a: int, b: int) -> bool:
        """True when action ``a`` must have finished before action ``b`` may start."""
        return bool(self.ancestors[b] >> self.index[a] & 1)


def replay_plan(plan: Plan) -> Replay:
    """Check the structure of the actions (ids, links, cycles, per-guest chains)."""
    actions: dict[int, Action] = {}
    for a in plan.actions:
        if a.id in actions:
            raise DataError(f"duplicate action id {a.id}", "plan.actions")
        actions[a.id] = a
    for a in plan.actions:
        for p in a.after:
            if p not in actions:
                raise DataError(f"{action_label(a)}: after names action {p}, which does not "
                                "exist", "plan.actions")
            if p == a.id:
                raise DataError(f"{action_label(a)}: after names the action itself",
                                "plan.actions")
    # Kahn's algorithm; what is left over sits on a cycle.
    indeg = {aid: len(set(a.after)) for aid, a in actions.items()}
    succ: dict[int, list[int]] = {aid: [] for aid in actions}
    for a in plan.actions:
        for p in set(a.after):
            succ[p].append(a.id)
    queue = deque(sorted(aid for aid, d in indeg.items() if d == 0))
    order: list[int] = []
    while queue:
        aid = queue.popleft()
        order.append(aid)
        for s in succ[aid]:
            indeg[s] -= 1
            if indeg[s] == 0:
                queue.append(s)
    if len(order) != len(actions):
        stuck = sorted(aid for aid, d in indeg.items() if d > 0)
        raise DataError(f"the after links form a cycle through actions "
                        f"{', '.join(map(str, stuck[:10]))}", "plan.actions")
    index = {aid: i for i, aid in enumerate(order)}
    ancestors: dict[int, int] = {}
    for aid in order:
        bits = 0
        for p in actions[aid].after:
            bits |= ancestors[p] | (1 << index[p])
        ancestors[aid] = bits
    by_vm: dict[str, list[Action]] = {}
    for aid in order:
        if not actions[aid].is_power:
            by_vm.setdefault(actions[aid].vm, []).append(actions[aid])
    replay = Replay(actions, order, ancestors, index, by_vm,
                    plan.origin.guest_hosts())
    for vm, acts in by_vm.items():
        for first, second in zip(acts, acts[1:]):
            if not replay.precedes(first.id, second.id):
                raise DataError(f"{action_label(second)} may run at the same time as "
                                f"{action_label(first)}: the actions of {vm} must be ordered "
                                "by after", "plan.actions")
    return replay
