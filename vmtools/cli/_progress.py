"""Progress on long work, for people: one live line on stderr when it is a terminal.

``Progress(prog, quiet, verbose)``: :meth:`stage` names what runs now; the line shows it with
the time elapsed, redrawn every second, and the core's own INFO log lines (``follow``) replace
the stage text as they come (the planner says its best placement so far and the bound). Not
on a terminal (cron, a pipe into a file) nothing is drawn; with ``-v`` every stage and log
line is logged instead, one line each, so a cron log says what each stage did.
"""

from __future__ import annotations

import logging
import shutil
import sys
import threading
import time

from vmtools.text import printable

log = logging.getLogger("vmtools.progress")


class _Follow(logging.Handler):
    def __init__(self, progress: "Progress"):
        super().__init__(logging.INFO)
        self.progress = progress

    def emit(self, record: logging.LogRecord) -> None:
        self.progress.update(record.getMessage())


class Progress:
    def __init__(self, prog: str, quiet: bool = False, verbose: int = 0, stream=None):
        self.prog = prog
        self.stream = stream or sys.stderr
        try:
            tty = self.stream.isatty()
        except (AttributeError, ValueError):
            tty = False
        self.live = tty and not quiet and verbose == 0
        self.t0 = time.monotonic()
        self.text = ""
        self.detail = ""
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._followed: list[tuple[logging.Logger, logging.Handler, int]] = []

    def stage(self, text: str) -> None:
        """A new stage: logged (``-v``) and, on a terminal, drawn."""
        log.info("%s", text)
        with self._lock:
            self.text, self.detail = text, ""
        if self.live:
            self._draw()
            if self._thread is None:
                self._thread = threading.Thread(target=self._tick, daemon=True)
                self._thread.start()

    def update(self, detail: str) -> None:
        """What the current stage reached (best so far, bound): drawn on a terminal."""
        detail = printable(detail)
        with self._lock:
            self.detail = detail
        if self.live:
            self._draw()

    def follow(self, logger_name: str) -> None:
        """Show ``logger_name``'s INFO lines in the live line (they are logged as usual with
        ``-v``, when the live line is off)."""
        if not self.live:
            return
        logger = logging.getLogger(logger_name)
        handler = _Follow(self)
        self._followed.append((logger, handler, logger.level))
        logger.addHandler(handler)
        if logger.getEffectiveLevel() > logging.INFO:
            logger.setLevel(logging.INFO)
        logger.propagate = False          # not twice: the live line shows it

    def _draw(self) -> None:
        with self._lock:
            elapsed = time.monotonic() - self.t0
            text = self.detail or self.text        # the newest news, self-describing
            line = f"{self.prog}: [{elapsed:4.0f} s] {text}"
            width = shutil.get_terminal_size((80, 24)).columns - 1    # one line, never wrapped
            try:
                self.stream.write("\r\x1b[K" + line[:max(width, 20)])
                self.stream.flush()
            except (OSError, ValueError):
                self.live = False

    def _tick(self) -> None:
        while not self._stop.wait(1.0):
            if self.live:
                self._draw()

    def done(self) -> None:
        """Clear the live line (the command's own output follows)."""
        self._stop.set()
        for logger, handler, level in self._followed:
            logger.removeHandler(handler)
            logger.setLevel(level)
            logger.propagate = True
        self._followed.clear()
        if self.live:
            try:
                self.stream.write("\r\x1b[K")
                self.stream.flush()
            except (OSError, ValueError):
                pass
            self.live = False

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc: object) -> None:
        self.done()
