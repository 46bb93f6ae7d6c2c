"""Auto's hosts in the order its destinations are chosen in, kept as guests move.

Auto (:mod:`vmtools.planner.policy`) sends a guest to the fullest host that takes it: the
least of ``(empty, -max(CPU, memory use), name)``. Trying every host for every guest it
places cost a pass over the cluster each time (at 20,000 hosts, relieving the hotspots of a
consolidated placement took 27 s of a 45 s run, nearly all of it hosts that could never
fit). :class:`FullestFirst` keeps the hosts sorted by that key in blocks of about
:data:`BLOCK`, each block with the most memory and CPU any of its hosts has left under
auto's targets, and re-sorts only the hosts a move changed (``touch``). A search walks the
hosts in order, skips a block in which no host has the room the guests need, and stops at
the first host that fits: the host the full pass chose, since it is the least key among
those that fit, and a skipped block holds none that fits.
"""

from __future__ import annotations

import bisect
import heapq
import math
from typing import Callable, Iterator

from vmtools.rules.capacity import EPS

Key = tuple[bool, float, str, int]
BLOCK = 64
_NONE = (math.inf, math.inf)


class FullestFirst:
    """Hosts ``0..n-1`` sorted by ``key(h)`` (its last element ``h``); ``room(h)`` is (MiB,
    CPUs now) host ``h`` has left under the targets (an upper bound is enough). ``touch(h)``
    after anything that changes either, before the next walk."""

    def __init__(self, n: int, key: Callable[[int], Key],
                 room: Callable[[int], tuple[float, float]]):
        self.n, self.key, self.room = n, key, room
        self.blocks: list[list[Key]] = []
        self.firsts: list[Key] = []             # each block's first key, to find a block
        self.most: list[tuple[float, float]] = []    # each block's most room
        self.at: list[Key] = []
        self.rooms: list[tuple[float, float]] = []
        self.built = False
        self.dirty: set[int] = set()

    def touch(self, h: int) -> None:
        if self.built:
            self.dirty.add(h)

    def _most(self, block: list[Key]) -> tuple[float, float]:
        rooms = self.rooms
        return (max([rooms[k[3]][0] for k in block]), max([rooms[k[3]][1] for k in block]))

    def _build(self) -> None:
        self.at = [self.key(h) for h in range(self.n)]
        self.rooms = [self.room(h) for h in range(self.n)]
        order = sorted(self.at)
        self.blocks = [order[i:i + BLOCK] for i in range(0, len(order), BLOCK)]
        self.firsts = [b[0] for b in self.blocks]
        self.most = [self._most(b) for b in self.blocks]
        self.built = True

    def _block_of(self, k: Key) -> int:
        return max(0, bisect.bisect_right(self.firsts, k) - 1)

    def _refresh(self, h: int) -> None:
        old, new, gone = self.at[h], self.key(h), self.rooms[h]
        i = self._block_of(old)
        block = self.blocks[i]
        del block[bisect.bisect_left(block, old)]
        if not block:
            del self.blocks[i], self.firsts[i], self.most[i]
        else:
            self.firsts[i] = block[0]
            if gone[0] >= self.most[i][0] or gone[1] >= self.most[i][1]:
                self.most[i] = self._most(block)     # it was the block's most
        self.at[h], self.rooms[h] = new, room = new, self.room(h)
        if not self.blocks:
            self.blocks, self.firsts, self.most = [[new]], [new], [room]
            return
        i = self._block_of(new)
        block = self.blocks[i]
        bisect.insort(block, new)
        if len(block) > 2 * BLOCK:
            self.blocks[i:i + 1] = [block[:BLOCK], block[BLOCK:]]
            self.firsts[i:i + 1] = [block[0], block[BLOCK]]
            self.most[i:i + 1] = [self._most(block[:BLOCK]), self._most(block[BLOCK:])]
        else:
            most = self.most[i]
            self.firsts[i], self.most[i] = block[0], (max(most[0], room[0]),
                                                      max(most[1], room[1]))

    def walk(self, mem: float = -math.inf, cpu: float = -math.inf, active_only: bool = False,
             empty_only: bool = False) -> Iterator[int]:
        """The hosts in key order, but those of a block where no host has ``mem`` MiB and
        ``cpu`` CPUs left: only those holding guests (``active_only``: the key's first element
        False), or only the empty ones (``empty_only``). Nothing may be touched during a
        walk (it reads the order as it was)."""
        if not self.built:
            self._build()
        for h in self.dirty:
            self._refresh(h)
        self.dirty.clear()
        first = self._block_of((True,)) if empty_only else 0
        for i in range(first, len(self.blocks)):
            if active_only and self.firsts[i][0]:
                return
            most = self.most[i]
            if most[0] < mem - 2 * EPS or most[1] < cpu - 2 * EPS:
                continue        # no host of this block has the room: none of it fits
            for k in self.blocks[i]:
                if k[0]:                # an empty host: after every active one
                    if active_only:
                        return
                elif empty_only:
                    continue
                yield k[3]


class MostLeft:
    """The host with the most of one figure left (``free(h)``) among the eligible ones, kept
    as guests move: a heap of (-free, host) updated lazily (``touch(h)`` after anything that
    changes ``free(h)``; an entry whose figure is no longer the host's is dropped). The same
    host a pass over every host in order keeps (the first of the largest), without the pass
    (auto's consolidation explained each host it could not empty by one: 841 hosts x 20,000
    took 38 s of a 45 s run)."""

    def __init__(self, n: int, free: Callable[[int], float]):
        self.free = free
        self.heap = [(-free(h), h) for h in range(n)]
        heapq.heapify(self.heap)
        self.dirty: set[int] = set()

    def touch(self, h: int) -> None:
        self.dirty.add(h)

    def best(self, gone: Callable[[int], bool], skip: int) -> tuple[float, int] | None:
        """(free, host) of the most among the hosts neither ``gone`` (for good: until
        touched again) nor ``skip`` (this time only), or None."""
        heap, free = self.heap, self.free
        for h in self.dirty:
            heapq.heappush(heap, (-free(h), h))
        self.dirty.clear()
        out, held = None, []
        while heap:
            neg, h = heap[0]
            if free(h) != -neg or (h != skip and gone(h)):
                heapq.heappop(heap)          # stale, or out for good
            elif h == skip:
                held.append(heapq.heappop(heap))       # put back below
            else:
                out = (-neg, h)
                break
        for entry in held:
            heapq.heappush(heap, entry)
        return out


def target_room(load, h: int) -> tuple[float, float]:
    """What host ``h`` has left under auto's targets (``load.fracs``: CPU, memory), by the
    first tests of :meth:`vmtools.planner.hostload.Load.fits`: memory, and CPU in use now.
    Without targets: no bound."""
    if load.fracs is None:
        return _NONE
    cpu_frac, mem_frac = load.fracs
    inst = load.inst
    return (min(mem_frac * inst.hard_cap["mem"][h], inst.cap["mem"][h]) - load.use["mem"][h],
            cpu_frac * inst.hard_cap["cpu"][h] - load.last_use[h])
