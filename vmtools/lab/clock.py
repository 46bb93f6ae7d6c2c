"""The scenario's clock: how far into its scenario a lab is, which the guests' load follows
(:func:`vmtools.lab.scenario.guest_loads`).

It runs with the wall clock from :meth:`ScenarioClock.start`. A test that asks what cron
runs make of load over time (a pulse seen by how many runs, a hotspot that lasts) holds it
instead: :meth:`~ScenarioClock.hold` stops it at a chosen second, :meth:`~ScenarioClock.advance`
moves it on, and the guests' load is the scenario's at that second until the test moves it
again, however slowly the machine runs the pipeline. Only the load follows it: migrations,
the guests' CPU counters and power keep to the wall clock.
"""

from __future__ import annotations

import threading
import time
from typing import Callable


class ScenarioClock:
    """Seconds into the scenario. ``on_change`` (the lab's load update) is called, outside
    any lock of this clock, whenever the clock is held at a new second or released."""

    def __init__(self, on_change: Callable[[], None] = lambda: None,
                 wall: Callable[[], float] = time.time):
        self._on_change = on_change
        self._wall = wall
        self._lock = threading.Lock()
        self._started = 0.0
        self._held: float | None = None

    def start(self) -> None:
        """Second 0 is now (a held clock stays held)."""
        with self._lock:
            self._started = self._wall()

    @property
    def held(self) -> bool:
        return self._held is not None

    def now(self) -> float:
        with self._lock:
            return self._wall() - self._started if self._held is None else self._held

    def hold(self, t: float) -> float:
        """Stop the clock at second ``t`` (the guests' load is set before this returns)."""
        if not t >= 0:
            raise ValueError(f"scenario second {t!r}: expected a number >= 0")
        with self._lock:
            self._held = float(t)
        self._on_change()
        return float(t)

    def advance(self, seconds: float) -> float:
        """Hold the clock ``seconds`` after where it is now; returns the new second."""
        if not seconds >= 0:
            raise ValueError(f"advance by {seconds!r} s: the scenario's clock never goes back")
        return self.hold(self.now() + seconds)

    def release(self) -> None:
        """Run with the wall clock again, on from where the clock was held."""
        with self._lock:
            if self._held is None:
                return
            self._started = self._wall() - self._held
            self._held = None
        self._on_change()
