"""vm-apply's journal: JSON lines, one per event (begin, check, start, end, signal, resume,
finish), flushed and synced as written, so a run can be audited and resumed."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

from vmtools.errors import DataError, OptionError
from vmtools.model import Plan


class Journal:
    """JSON lines, one per event, flushed and synced as written."""

    def __init__(self, path: Path):
        self.path = path
        self.lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)
        self.fh = open(path, "a", encoding="utf-8")

    def write(self, event: str, **fields: object) -> None:
        record = {"event": event, "time": iso(time.time()), **fields}
        line = json.dumps(record, ensure_ascii=True, sort_keys=False)
        with self.lock:
            self.fh.write(line + "\n")
            self.fh.flush()
            os.fsync(self.fh.fileno())

    def close(self) -> None:
        self.fh.close()


def read_journal(path: str) -> tuple[Plan, dict[int, dict], set[int]]:
    """(plan, {id: end event of a done action}, ids started but never ended) of a journal."""
    try:
        with open(path, encoding="utf-8") as fh:
            lines = fh.read().splitlines()
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
        try:
            ev = json.loads(line)
        except json.JSONDecodeError:
            if n == len(lines):
                break           # a last line cut short by a crash
            raise DataError("not a vm-apply journal line", f"{path}:{n}") from None
        kind = ev.get("event") if isinstance(ev, dict) else None
        if kind == "begin" and plan is None:
            plan = Plan.from_dict(ev.get("plan"), "plan")
        elif kind == "start":
            started[ev["id"]] = ev
        elif kind == "end":
            ended[ev["id"]] = ev
    if plan is None:
        raise DataError("no begin event with the plan: not a vm-apply journal", path)
    done = {i: ev for i, ev in ended.items() if ev.get("outcome") == "done"}
    in_flight = {i for i in started if i not in ended}
    return plan, done, in_flight


def iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1000):03d}Z"
