"""vm-apply's journal: JSON lines, one per event (begin, check, start, end, signal, resume,
finish), flushed and synced as written, so a run can be audited and resumed.

A journal that cannot be written (a full disk, a file-size limit, an unwritable directory) is
the machine's failure, not a bug: :class:`Journal` opens with a :class:`LocalFailure` naming
the path, and a write that fails mid-run marks the journal ``broken`` (the run starts nothing
new; the report still comes out) instead of raising into a migration's thread. A last line cut
short by a crash or a full disk is ended before the next run appends, and a reader skips it
(at the end, or followed by the ``resume`` event of the run that ended it).
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Callable

from vmtools.errors import DataError, LocalFailure, OptionError
from vmtools.inputs import MAX_DOCUMENT_BYTES, read_limited
from vmtools.model import Plan


class Journal:
    """JSON lines, one per event, flushed and synced as written."""

    def __init__(self, path: Path, on_broken: Callable[[str], None] | None = None):
        self.path = path
        self.lock = threading.Lock()
        self.broken: str | None = None
        self.on_broken = on_broken
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.fh = open(path, "a+", encoding="utf-8")
            # A line a crash or a full disk cut short: end it, so the next event is a line
            # of its own (appended to the cut one, it would make both unreadable).
            self.fh.seek(0, os.SEEK_END)
            if self.fh.tell() > 0:
                self.fh.seek(self.fh.tell() - 1)
                if self.fh.read(1) != "\n":
                    self.fh.write("\n")
                    self.fh.flush()
        except OSError as exc:
            raise LocalFailure(f"cannot write the journal {path}: {exc.strerror} (free space, "
                               "fix the directory's permissions, or choose another "
                               "--state-dir or --journal); nothing was moved") from None

    def write(self, event: str, **fields: object) -> None:
        record = {"event": event, "time": iso(time.time()), **fields}
        line = json.dumps(record, ensure_ascii=True, sort_keys=False)
        with self.lock:
            if self.broken:
                return
            try:
                self.fh.write(line + "\n")
                self.fh.flush()
                os.fsync(self.fh.fileno())
            except OSError as exc:
                self.broken = (f"the journal {self.path} cannot be written ({exc.strerror}): "
                               "nothing new is started (free space and --resume it)")
                callback = self.on_broken
            else:
                return
        if callback is not None:
            callback(self.broken)

    def close(self) -> None:
        try:
            self.fh.close()
        except OSError:
            pass


def _parse_line(line: str) -> object | None:
    """One journal line; a line whose start was cut (a crash, then a run that appended to
    it) is read from the last record start in it. None when nothing in it parses."""
    try:
        return json.loads(line)
    except ValueError:
        pass
    at = line.rfind('{"event": ')
    while at > 0:
        try:
            return json.loads(line[at:])
        except ValueError:
            at = line.rfind('{"event": ', 0, at)
    return None


def read_journal(path: str) -> tuple[Plan, dict[int, dict], set[int]]:
    """(plan, {id: end event of a done action}, ids started but never ended) of a journal."""
    try:
        with open(path, "rb") as fh:
            lines = read_limited(fh, path, "journal", MAX_DOCUMENT_BYTES).decode(
                "utf-8", "replace").splitlines()
    except FileNotFoundError:
        raise OptionError("resume", f"{path}: no such file") from None
    except OSError as exc:
        raise OptionError("resume", f"{path}: {exc.strerror}") from None
    plan = None
    ended: dict[int, dict] = {}
    started: dict[int, dict] = {}
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        ev = _parse_line(line)
        if ev is None:
            if n == len(lines):
                break           # a last line cut short by a crash or a full disk
            following = next((_parse_line(ln) for ln in lines[n:] if ln.strip()), None)
            if isinstance(following, dict) and following.get("event") == "resume":
                continue        # cut short, then ended by the --resume that followed
            raise DataError("not a vm-apply journal line", f"{path}:{n}")
        if not isinstance(ev, dict):
            raise DataError("not a vm-apply journal line", f"{path}:{n}")
        kind = ev.get("event")
        if kind == "begin" and plan is None:
            plan = Plan.from_dict(ev.get("plan"), "plan")
        elif kind in ("start", "end"):
            aid = ev.get("id")
            if isinstance(aid, bool) or not isinstance(aid, int):
                raise DataError("a start or end event without an action id", f"{path}:{n}")
            (started if kind == "start" else ended)[aid] = ev
    if plan is None:
        raise DataError("no begin event with the plan: not a vm-apply journal", path)
    known = {a.id for a in plan.actions}
    done = {i: ev for i, ev in ended.items() if ev.get("outcome") == "done" and i in known}
    in_flight = {i for i in started if i not in ended and i in known}
    return plan, done, in_flight


def iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1000):03d}Z"
