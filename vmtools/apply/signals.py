"""SIGINT and SIGTERM during a run: start nothing new, let the running migrations end."""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import TYPE_CHECKING, Iterator

if TYPE_CHECKING:
    from vmtools.apply.run import Run


@contextlib.contextmanager
def stop_on_signals(run: Run) -> Iterator[None]:
    """SIGINT/SIGTERM: launch nothing new, let running migrations end (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        name = signal.Signals(signum).name
        if not run.stopping or "SIG" not in run.stopping:
            run.stopping = f"interrupted by {name}"
        if run.journal:
            run.journal.write("signal", signal=name)
        run.progress(f"{name}: starting nothing new; waiting for the running migrations to "
                     "end (they cannot be cancelled safely)")

    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)
