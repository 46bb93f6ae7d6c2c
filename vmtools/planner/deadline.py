"""One deadline for a whole vm-plan run, handing out shares of the time that is left.

``--time-limit`` bounds the run: :meth:`Deadline.for_run` keeps back a reserve for what
follows the search (ordering the moves, the replay checker, writing the plan), and every
stage asks the same object for its share instead of turning the deadline back into a
relative budget with a floor of its own.

A share never falls below :data:`MIN_SOLVE_SECONDS`: a solver given less returns nothing
useful, and the heuristic result is kept anyway. That floor is the one place a run may
overstep its deadline.
"""

from __future__ import annotations

import math
import time

# The least a solver call is given, even when the deadline has passed (CBC's time limit is
# whole seconds).
MIN_SOLVE_SECONDS = 1.0
# What --time-limit keeps back for ordering, checking and writing the plan: 30 % of the
# limit at most, else 1 s plus 1 s per 1,000 guests (measured at 10,000 guests). At 100,000
# guests that work takes about 3 s: a fifth of a 10 s limit overran it by 0.9 s.
RESERVE_FRACTION = 0.3
RESERVE_SECONDS = 1.0
RESERVE_SECONDS_PER_GUEST = 1.0 / 1000


class Deadline:
    """A point in ``time.monotonic()`` time; ``Deadline(math.inf)`` never passes."""

    __slots__ = ("at",)

    def __init__(self, at: float):
        self.at = at

    @classmethod
    def of(cls, when: "Deadline | float") -> "Deadline":
        """A deadline from a Deadline or an absolute ``time.monotonic()`` value."""
        return when if isinstance(when, Deadline) else cls(float(when))

    @classmethod
    def after(cls, seconds: float) -> "Deadline":
        return cls(time.monotonic() + seconds)

    @classmethod
    def for_run(cls, time_limit: float, n_guests: int,
                started: float | None = None) -> "Deadline":
        """The search's deadline in a run bounded by ``time_limit`` seconds from ``started``
        (a ``time.monotonic()`` value: when the command began, so reading the snapshot counts
        too; None: now)."""
        reserve = min(RESERVE_FRACTION * time_limit,
                      RESERVE_SECONDS + n_guests * RESERVE_SECONDS_PER_GUEST)
        begin = time.monotonic() if started is None else min(started, time.monotonic())
        return cls(begin + time_limit - reserve)

    def left(self) -> float:
        """Seconds until the deadline, 0 once it has passed."""
        return max(0.0, self.at - time.monotonic()) if math.isfinite(self.at) else math.inf

    def passed(self) -> bool:
        return time.monotonic() > self.at

    def share(self, fraction: float = 1.0, floor: float = MIN_SOLVE_SECONDS) -> float:
        """Seconds for one stage: ``fraction`` of the time left, at least ``floor`` (a
        solver's :data:`MIN_SOLVE_SECONDS` unless the stage can stop at any moment, 0)."""
        return max(floor, self.left() * fraction)

    def part(self, fraction: float, floor: float = MIN_SOLVE_SECONDS) -> "Deadline":
        """A deadline for a stage that may use ``fraction`` of the time left (at least
        ``floor`` seconds), so later stages keep the rest."""
        if not math.isfinite(self.at):
            return self
        return Deadline.after(self.share(fraction, floor))

    def __repr__(self) -> str:
        return f"Deadline(in {self.left():.3f}s)"
