"""SIGINT and SIGTERM during a run: the run is told, and the process is not killed."""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Callable, Iterator


@contextlib.contextmanager
def signals_to(interrupted: Callable[[str], None]) -> Iterator[None]:
    """While inside, SIGINT and SIGTERM call ``interrupted`` with the signal's name
    (``"SIGINT"``) instead of their default action; the old handlers come back on leaving.
    Signals reach only the main thread, so elsewhere this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        interrupted(signal.Signals(signum).name)

    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)
