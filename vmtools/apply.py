"""Execute a plan: check it, lock the cluster, migrate in parallel, verify, report.

:func:`apply_plan` is vm-apply without its command line. In order:

1. refuse hostile names, hosts the snapshot does not know, Domain-0, ops other than
   ``migrate`` (DataError, 65), and any plan the replay checker refuses (65);
2. take the cluster's lock under the state directory (a second run: TemporaryFailure, 75);
3. ask every host the plan touches, through its transport, what it runs: each guest to move
   must be where the plan's origin says and every host must answer, else TemporaryFailure
   (75) before anything moved -- unless ``force``; an unknown SSH host key is 69;
4. run the actions with a streaming scheduler: the moment a slot frees, the best ready
   action starts (``parallel`` in all, ``per_host`` per host, its ``after`` actions done);
5. after each migration, ask both hosts where the guest runs; when the client gave up (timeout,
   dropped connection) keep asking until the hosts agree, never assume;
6. a failed action makes its dependents ``not-run``; independent ones go on unless
   ``stop_on_failure``; SIGINT/SIGTERM launch nothing new and let running ones end;
7. ask the hosts once more where every touched guest is, and return the Report.

Every event goes to a journal (JSON lines, flushed and synced per event) so a run can be
audited and resumed (``resume``): done actions are not run again, an action that was running
when the run died is settled by asking the hosts.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import signal
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from vmtools.drivers import DEFAULT_PORTS, TRANSPORTS, Driver, Endpoint, make_driver
from vmtools.drivers.base import HostKeyError, MigrationRefused, MigrationUncertain
from vmtools.errors import DataError, OperationFailed, TemporaryFailure, Unavailable, UsageError
from vmtools.hostmap import HostEntry
from vmtools.model import (DOM0_NAMES, Action, Plan, Report, document_digest, epoch_to_iso,
                           is_safe_name)

log = logging.getLogger("vmtools.apply")

DEFAULT_STATE_DIR = "/var/lib/vmtools"
# Names the toolstacks give a guest while it is in flight (xl: ``--incoming`` on the target,
# ``--migratedaway`` on the sender; xend: ``migrating-`` on the sender).
IN_FLIGHT_SUFFIXES = ("--incoming", "--migratedaway")
IN_FLIGHT_PREFIXES = ("migrating-",)


def default_state_dir() -> str:
    return os.environ.get("VMTOOLS_STATE_DIR") or DEFAULT_STATE_DIR


@dataclass
class ApplyOptions:
    parallel: int = 2
    per_host: int = 1
    dry_run: bool = False
    force: bool = False
    stop_on_failure: bool = False
    driver: str | None = None                  # one transport for every host
    hosts: dict[str, HostEntry] = field(default_factory=dict)
    ssh: object | None = None                  # vmtools.drivers.ssh.SshOptions
    timeout: float = 600.0                     # client timeout of one migration call
    verify_timeout: float = 600.0              # how long to ask the hosts after an unknown end
    connect_timeout: float = 10.0
    state_dir: str | None = None
    journal: str | None = None
    resume: str | None = None                  # journal of the run to continue
    poll: float = 0.25                         # first interval between two verifications

    def validate(self) -> None:
        if self.parallel < 1:
            raise UsageError("--parallel must be at least 1")
        if self.per_host < 1:
            raise UsageError("--per-host must be at least 1")
        if self.driver is not None and self.driver not in TRANSPORTS:
            raise UsageError(f"--driver {self.driver}: expected one of {', '.join(TRANSPORTS)}")
        for name in ("timeout", "verify_timeout", "connect_timeout"):
            if getattr(self, name) <= 0:
                raise UsageError(f"--{name.replace('_', '-')} must be positive")


Progress = Callable[[str], None]


# --------------------------------------------------------------------------- checks

def refuse_bad_input(plan: Plan) -> None:
    """Hostile names, unknown hosts, Domain-0, unsupported ops: DataError naming them."""
    bad: list[str] = []

    def check(name: object, where: str) -> None:
        if not is_safe_name(name):
            bad.append(f"{json.dumps(name) if isinstance(name, str) else repr(name)} ({where})")

    for i, h in enumerate(plan.origin.hosts):
        check(h.name, f"origin.hosts[{i}].name")
    for i, v in enumerate(plan.origin.vms):
        check(v.name, f"origin.vms[{i}].name")
        check(v.host, f"origin.vms[{i}].host")
    for i, a in enumerate(plan.actions):
        for key in ("vm", "src", "dst"):
            check(getattr(a, key), f"actions[{i}].{key}")
    for vm, host in plan.placement.items():
        check(vm, "placement")
        check(host, f"placement.{vm}" if is_safe_name(vm) else "placement")
    if bad:
        raise DataError("unsafe names refused (names may hold only letters, digits, '.', '_' "
                        "and '-'): " + ", ".join(bad[:10]) + (" ..." if len(bad) > 10 else ""),
                        "plan")
    hosts = {h.name for h in plan.origin.hosts}
    for i, a in enumerate(plan.actions):
        if a.op != "migrate":
            raise DataError(f"op {a.op!r} is not supported by this vm-apply (only migrate)",
                            f"plan.actions[{i}].op")
        if a.vm in DOM0_NAMES:
            raise DataError(f"action {a.id} moves {a.vm}: Domain-0 never migrates",
                            f"plan.actions[{i}].vm")
        for key in ("src", "dst"):
            if getattr(a, key) not in hosts:
                raise DataError(f"action {a.id}: host {getattr(a, key)} is not in the plan's "
                                "snapshot", f"plan.actions[{i}].{key}")


def check(plan: Plan) -> None:
    """Everything that makes a plan unfit to run, as DataError (65)."""
    refuse_bad_input(plan)
    from vmtools.planner.check import check_plan
    check_plan(plan)


# --------------------------------------------------------------------------- lock

class ClusterLock:
    """One vm-apply at a time per cluster: an ``flock`` on ``<state_dir>/apply-<cluster>.lock``."""

    def __init__(self, state_dir: Path, clusters: list[str]):
        self.paths = [state_dir / f"apply-{_file_part(c)}.lock" for c in sorted(set(clusters))]
        self.files: list = []

    def acquire(self) -> None:
        for path in self.paths:
            fh = open(path, "a+")
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                fh.seek(0)
                holder = fh.read().strip() or "another process"
                fh.close()
                self.release()
                raise TemporaryFailure(f"{path}: another vm-apply is running on this cluster "
                                       f"({holder}); try again when it has finished") from None
            fh.seek(0)
            fh.truncate()
            fh.write(f"pid {os.getpid()} since {epoch_to_iso(time.time())}\n")
            fh.flush()
            self.files.append(fh)

    def release(self) -> None:
        for fh in self.files:
            with contextlib.suppress(OSError):
                fh.seek(0)
                fh.truncate()
                fcntl.flock(fh, fcntl.LOCK_UN)
            fh.close()
        self.files.clear()


def _file_part(text: str) -> str:
    text = text or "default"
    return text if is_safe_name(text) else "c-" + hashlib.sha256(text.encode()).hexdigest()[:16]


# --------------------------------------------------------------------------- journal

class Journal:
    """JSON lines, one per event, flushed and synced as written."""

    def __init__(self, path: Path):
        self.path = path
        self.lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)
        self.fh = open(path, "a", encoding="utf-8")

    def write(self, event: str, **fields: object) -> None:
        record = {"event": event, "time": _iso(time.time()), **fields}
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
        raise UsageError(f"--resume {path}: no such file") from None
    except OSError as exc:
        raise UsageError(f"--resume {path}: {exc.strerror}") from None
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


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1000):03d}Z"


# --------------------------------------------------------------------------- the run

@dataclass
class _Outcome:
    action: Action
    outcome: str
    started: float | None = None
    ended: float | None = None
    error: str | None = None
    where: str | None = None
    transport: str = ""
    from_journal: bool = False

    def to_dict(self) -> dict:
        a = self.action
        d = {"id": a.id, "op": a.op, "vm": a.vm, "src": a.src, "dst": a.dst,
             "mem_mib": a.mem_mib, "outcome": self.outcome,
             "started": _iso(self.started) if self.started else None,
             "ended": _iso(self.ended) if self.ended else None,
             "seconds": round(self.ended - self.started, 3)
             if self.started and self.ended else None,
             "transport": self.transport, "error": self.error, "where": self.where}
        if self.from_journal:
            d["from_journal"] = True
        return d


class Run:
    """One execution of one plan (the state :func:`apply_plan` needs while it runs)."""

    def __init__(self, plan: Plan, options: ApplyOptions, progress: Progress | None,
                 drivers: dict[str, Driver] | None):
        self.plan = plan
        self.opts = options
        self.progress = progress or (lambda line: None)
        self.actions = {a.id: a for a in plan.actions}
        self.hosts = {h.name: h for h in plan.origin.hosts}
        self.touched_hosts = sorted({a.src for a in plan.actions} | {a.dst for a in plan.actions})
        self.touched_vms = sorted({a.vm for a in plan.actions})
        self.endpoints = {h: self._endpoint(h) for h in self.touched_hosts}
        self.drivers = drivers if drivers is not None else {
            h: make_driver(ep, options.ssh, options.connect_timeout)
            for h, ep in self.endpoints.items()}
        self.outcomes: dict[int, _Outcome] = {}
        self.cond = threading.Condition()
        self.stopping: str | None = None
        self.journal: Journal | None = None
        self.problems: list[str] = []
        self.t0 = time.time()
        self.mib_done = 0
        self.busy_seconds = 0.0

    def _endpoint(self, host: str) -> Endpoint:
        entry = self.opts.hosts.get(host, HostEntry(host))
        transport = self.opts.driver or self.hosts[host].migration
        if transport not in TRANSPORTS:
            raise DataError(f"host {host}: migration transport {transport!r} is unknown "
                            f"(expected one of {', '.join(TRANSPORTS)}; or pass --driver)",
                            f"plan.origin.hosts[{host}].migration")
        return Endpoint(host, transport, entry.address or host,
                        entry.port or DEFAULT_PORTS[transport], entry.migrate or host)

    # ---- asking the hosts
    def survey(self, hosts: list[str]) -> dict[str, set[str] | Exception]:
        """What each host runs, asked in parallel; an exception for a host that did not answer."""
        def ask(h: str) -> set[str] | Exception:
            try:
                return self.drivers[h].list_guests()
            except (Unavailable, OperationFailed) as exc:
                return exc
        if not hosts:
            return {}
        with ThreadPoolExecutor(max_workers=min(16, len(hosts))) as pool:
            return dict(zip(hosts, pool.map(ask, hosts)))

    def where_is(self, vm: str, src: str, dst: str, wait: float, settled_answer: bool = False
                 ) -> tuple[str | None, str | None]:
        """Ask ``src`` and ``dst`` until they agree where ``vm`` runs, for up to ``wait``
        seconds: (host or None, a note on what could not be verified)."""
        deadline = time.monotonic() + wait
        interval = self.opts.poll
        note = None
        polls = 0
        while True:
            polls += 1
            seen = self.survey([src, dst])
            s, d = seen[src], seen[dst]
            s_ok, d_ok = isinstance(s, set), isinstance(d, set)
            in_flight = any(isinstance(x, set) and _in_flight(vm, x) for x in (s, d))
            on_src, on_dst = s_ok and vm in s, d_ok and vm in d
            if not in_flight:
                if s_ok and d_ok and on_src != on_dst:
                    return (dst if on_dst else src), None
                # one host silent: believe the other only once it has said so a few times
                if on_src and not d_ok and polls >= 3:
                    note = f"{dst} did not answer ({d}); {vm} verified on {src}"
                    return src, note
                if on_dst and not s_ok and polls >= 3:
                    note = f"{src} did not answer ({s}); {vm} verified on {dst}"
                    return dst, note
                # the hypervisor answered and neither host runs the guest: no use waiting
                if settled_answer and s_ok and d_ok and not on_src and not on_dst \
                        and polls >= 3:
                    return None, f"{vm} runs neither on {src} nor on {dst}"
            if time.monotonic() >= deadline:
                if on_src and on_dst:
                    return None, f"{vm} runs on both {src} and {dst}"
                if in_flight:
                    return None, f"{vm} is still migrating after {wait:g}s"
                if s_ok and d_ok:
                    return None, f"{vm} runs neither on {src} nor on {dst}"
                return None, f"could not ask the hosts: {s if not s_ok else d}"
            time.sleep(max(0.0, min(interval, deadline - time.monotonic())))
            interval = min(interval * 2, 2.0)

    def check_fresh(self, expected: dict[str, str]) -> None:
        """Each guest to move is where ``expected`` says and every touched host answers."""
        seen = self.survey(self.touched_hosts)
        # A host that missed one question (a dropped SSH handshake, a busy xend) is asked
        # again before the whole run is called off.
        for delay in (1.0, 2.0):
            silent = [h for h, res in seen.items()
                      if isinstance(res, Exception) and not isinstance(res, HostKeyError)]
            if not silent:
                break
            self.progress(f"no answer from {', '.join(silent)}; asking again in {delay:g}s")
            time.sleep(delay)
            seen.update(self.survey(silent))
        reasons = []
        for h, res in seen.items():
            if isinstance(res, HostKeyError):
                raise res
            if isinstance(res, Exception):
                reasons.append(f"host {h} does not answer: {res}")
        found: dict[str, list[str]] = {}
        for h, res in seen.items():
            if isinstance(res, set):
                for vm in res:
                    found.setdefault(vm, []).append(h)
        for vm in self.touched_vms:
            want = expected[vm]
            got = sorted(found.get(vm, []))
            if got == [want] or (not got and isinstance(seen.get(want), Exception)):
                continue
            reasons.append(f"{vm} is on {', '.join(got) or 'no host the plan touches'}, not "
                           f"on {want} as the plan expects")
        if self.journal:
            self.journal.write("check", stale=reasons, forced=bool(reasons and self.opts.force))
        if reasons:
            text = "; ".join(reasons[:5]) + (f"; and {len(reasons) - 5} more"
                                             if len(reasons) > 5 else "")
            if not self.opts.force:
                raise TemporaryFailure(f"the plan is stale, nothing was moved: {text} "
                                       "(make a new snapshot and plan, or pass --force)")
            self.problems.append(f"ran with --force although stale: {text}")
            self.progress(f"warning: --force: running a stale plan: {text}")

    # ---- the scheduler
    def priorities(self) -> dict[int, tuple]:
        """Higher first: the longest chain of work still behind an action, then the most
        loaded of its two hosts (both in MiB, proportional to migration time)."""
        succ: dict[int, list[int]] = {i: [] for i in self.actions}
        for a in self.actions.values():
            for p in a.after:
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
                    tail[j] = self.actions[j].mem_mib + max((tail[s] for s in succ[j]),
                                                            default=0)
            return tail[i]

        load: Counter = Counter()
        for a in self.actions.values():
            load[a.src] += a.mem_mib
            load[a.dst] += a.mem_mib
        return {i: (max(load[a.src], load[a.dst]), chain(i), -i)
                for i, a in self.actions.items()}

    def execute(self, todo: list[int]) -> None:
        prio = self.priorities()
        pending = sorted(todo, key=lambda i: prio[i], reverse=True)
        running: set[int] = set()
        busy: Counter = Counter()
        self.remaining_mib = sum(self.actions[i].mem_mib for i in pending)
        total = len(self.actions)
        threads: list[threading.Thread] = []

        def finished(i: int) -> bool:
            return i in self.outcomes and self.outcomes[i].outcome == "done"

        with self.cond:
            while True:
                # dependents of failed actions will never run
                for i in list(pending):
                    bad = [p for p in self.actions[i].after
                           if p in self.outcomes and self.outcomes[p].outcome != "done"]
                    if bad:
                        pending.remove(i)
                        self._not_run(i, f"after action {bad[0]}, which did not succeed")
                if not self.stopping:
                    for i in list(pending):
                        if len(running) >= self.opts.parallel:
                            break
                        a = self.actions[i]
                        if not all(finished(p) for p in a.after):
                            continue
                        if busy[a.src] >= self.opts.per_host or busy[a.dst] >= self.opts.per_host:
                            continue
                        pending.remove(i)
                        running.add(i)
                        busy[a.src] += 1
                        busy[a.dst] += 1
                        self._announce_start(a, len(running), total)
                        t = threading.Thread(target=self._worker, args=(a, running, busy),
                                             name=f"action-{i}", daemon=True)
                        t.start()
                        threads.append(t)
                if not running:
                    break
                self.cond.wait(timeout=0.5)
            for i in pending:
                self._not_run(i, self.stopping or "not runnable")
        for t in threads:
            t.join()

    def _announce_start(self, a: Action, nrunning: int, total: int) -> None:
        started = sum(1 for o in self.outcomes.values() if not o.from_journal) + nrunning
        self.progress(f"[{started}/{total}] start #{a.id} {a.vm} {a.src} -> {a.dst} "
                      f"({a.mem_mib} MiB, {self.endpoints[a.src].transport}); "
                      f"{nrunning} running; {self._eta()}")

    def _eta(self) -> str:
        elapsed = time.time() - self.t0
        if self.mib_done <= 0 or elapsed <= 0:
            return "time left unknown"
        left = self.remaining_mib / (self.mib_done / elapsed)
        return f"~{left:.0f}s left"

    def _not_run(self, i: int, why: str) -> None:
        a = self.actions[i]
        self.outcomes[i] = _Outcome(a, "not-run", error=why,
                                    transport=self.endpoints[a.src].transport)
        if self.journal:
            self.journal.write("end", id=i, vm=a.vm, outcome="not-run", error=why)

    def _worker(self, a: Action, running: set[int], busy: Counter) -> None:
        try:
            out = self.migrate_one(a)
        except Exception as exc:  # noqa: BLE001 - a bug must not leave the run hanging
            log.exception("internal error in action %s", a.id)
            out = _Outcome(a, "failed", error=f"internal error: {exc}",
                           transport=self.endpoints[a.src].transport)
        with self.cond:
            self.outcomes[a.id] = out
            running.discard(a.id)
            busy[a.src] -= 1
            busy[a.dst] -= 1
            self.remaining_mib -= a.mem_mib
            if out.outcome == "done":
                self.mib_done += a.mem_mib
            if out.outcome == "failed" and self.opts.stop_on_failure and not self.stopping:
                self.stopping = f"stopped after action {a.id} failed (--stop-on-failure)"
            counts = Counter(o.outcome for o in self.outcomes.values())
            took = f" in {out.ended - out.started:.1f}s" if out.started and out.ended else ""
            self.progress(f"[{counts['done'] + counts['failed']}/{len(self.actions)}] "
                          f"{out.outcome} #{a.id} {a.vm} {a.src} -> {a.dst}{took}"
                          f"{': ' + out.error if out.error else ''}; {len(running)} running, "
                          f"{counts['failed']} failed; {self._eta()}")
            self.cond.notify_all()

    def migrate_one(self, a: Action) -> _Outcome:
        src, dst = self.endpoints[a.src], self.endpoints[a.dst]
        start = time.time()
        if self.journal:
            self.journal.write("start", id=a.id, vm=a.vm, src=a.src, dst=a.dst,
                               transport=src.transport, destination=dst.migrate)
        error = None
        uncertain = False
        try:
            self.drivers[a.src].migrate(a.vm, dst.migrate, self.opts.timeout)
        except MigrationUncertain as exc:
            error, uncertain = str(exc), True
        except (MigrationRefused, Unavailable, OperationFailed) as exc:
            error = str(exc)
        # On a clear answer the hosts agree at once; after a timeout or a dropped connection
        # the migration may still be running: keep asking, for up to --verify-timeout.
        wait = self.opts.verify_timeout if uncertain else min(self.opts.verify_timeout,
                                                              max(5.0, self.opts.connect_timeout))
        where, note = self.where_is(a.vm, a.src, a.dst, wait, settled_answer=not uncertain)
        end = time.time()
        if where == a.dst:
            outcome = "done"
            if error:
                error = f"{error}; but {a.vm} verified running on {a.dst}"
        else:
            outcome = "failed"
            if where == a.src:
                error = f"{error or 'the hypervisor reported success'}; {a.vm} verified " \
                        f"still on {a.src}"
            else:
                error = f"{error + '; ' if error else ''}{note}"
                note = None
        if note:
            error = f"{error + '; ' if error else ''}{note}"
        out = _Outcome(a, outcome, start, end, error, where, src.transport)
        if self.journal:
            self.journal.write("end", id=a.id, vm=a.vm, outcome=outcome, where=where,
                               error=error, seconds=round(end - start, 3))
        if outcome == "done":
            self.busy_seconds += end - start
        return out

    # ---- the end
    def final_placement(self) -> dict[str, str | None]:
        seen = self.survey(self.touched_hosts)
        placement: dict[str, str | None] = {}
        last_known = {o.action.vm: o.where for o in sorted(
            (o for o in self.outcomes.values() if o.where), key=lambda o: o.ended or 0)}
        for vm in self.touched_vms:
            hosts = sorted(h for h, res in seen.items() if isinstance(res, set) and vm in res)
            silent = [h for h, res in seen.items() if not isinstance(res, set)]
            if len(hosts) == 1:
                placement[vm] = hosts[0]
            elif len(hosts) > 1:
                placement[vm] = None
                self.problems.append(f"{vm} runs on {' and '.join(hosts)}")
            else:
                placement[vm] = None
                where = (f"; hosts that did not answer: {', '.join(silent)}" if silent else "")
                self.problems.append(f"{vm} was not found on any host the plan touches{where}"
                                     + (f" (last verified on {last_known[vm]})"
                                        if last_known.get(vm) else ""))
        return placement

    def report(self, placement: dict[str, str | None], dry_run: bool) -> Report:
        entries = [self.outcomes[a.id].to_dict() for a in self.plan.actions]
        counts = Counter(e["outcome"] for e in entries)
        done_mib = sum(e["mem_mib"] for e in entries if e["outcome"] == "done")
        end = time.time()
        summary = {"actions": len(entries), "done": counts["done"], "failed": counts["failed"],
                   "skipped": counts["skipped"], "not-run": counts["not-run"],
                   "migrated_mib": done_mib, "started": _iso(self.t0), "ended": _iso(end),
                   "seconds": round(end - self.t0, 3), "parallel": self.opts.parallel,
                   "per_host": self.opts.per_host, "interrupted": self.stopping
                   if self.stopping and "SIG" in self.stopping else None,
                   "problems": list(self.problems)}
        return Report(plan_digest=document_digest(self.plan.to_dict()), actions=entries,
                      placement=placement, summary=summary, dry_run=dry_run)


def _in_flight(vm: str, names: set[str]) -> bool:
    return any(vm + s in names for s in IN_FLIGHT_SUFFIXES) or \
        any(p + vm in names for p in IN_FLIGHT_PREFIXES)


@contextlib.contextmanager
def _signals(run: Run):
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


def apply_plan(plan: Plan, options: ApplyOptions, progress: Progress | None = None,
               drivers: dict[str, Driver] | None = None) -> Report:
    """Run ``plan`` (see the module docstring); returns the Report. Raises DataError (65),
    TemporaryFailure (75), Unavailable (69) before anything moved."""
    options.validate()
    done_before: dict[int, dict] = {}
    in_flight: set[int] = set()
    if options.resume:
        journal_plan, done_before, in_flight = read_journal(options.resume)
        if plan is not None and document_digest(plan.to_dict()) != \
                document_digest(journal_plan.to_dict()):
            raise DataError("the plan is not the one this journal ran", options.resume)
        plan = journal_plan
    check(plan)
    run = Run(plan, options, progress, drivers)
    state_dir = Path(options.state_dir or default_state_dir())
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"--state-dir {state_dir}: {exc.strerror}") from None
    lock = ClusterLock(state_dir, [run.hosts[h].cluster for h in run.touched_hosts] or [""])
    lock.acquire()
    try:
        if not options.dry_run:
            digest = document_digest(plan.to_dict())
            path = Path(options.resume or options.journal or state_dir / "journal" /
                        f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{digest[7:19]}.jsonl")
            run.journal = Journal(path)
            if options.resume:
                run.journal.write("resume", pid=os.getpid())
            else:
                run.journal.write("begin", pid=os.getpid(), plan_digest=digest,
                                  plan=plan.to_dict(), parallel=options.parallel,
                                  per_host=options.per_host, force=options.force)
            run.progress(f"journal: {path}")
        try:
            return _apply(run, done_before, in_flight)
        finally:
            if run.journal:
                run.journal.close()
            for d in run.drivers.values():
                d.close()
    finally:
        lock.release()


def _apply(run: Run, done_before: dict[int, dict], in_flight: set[int]) -> Report:
    plan, opts = run.plan, run.opts
    for i, ev in done_before.items():
        a = run.actions[i]
        run.outcomes[i] = _Outcome(a, "done", None, None, None, ev.get("where") or a.dst,
                                   run.endpoints[a.src].transport, from_journal=True)
    # an action that was running when the last run died: only the hosts know how it ended
    for i in sorted(in_flight):
        a = run.actions[i]
        where, note = run.where_is(a.vm, a.src, a.dst, opts.verify_timeout)
        if where == a.dst:
            run.outcomes[i] = _Outcome(a, "done", None, None, note, where,
                                       run.endpoints[a.src].transport, from_journal=True)
            if run.journal:
                run.journal.write("end", id=i, vm=a.vm, outcome="done", where=where,
                                  error=note, recovered=True)
    expected = {v.name: v.host for v in plan.origin.vms}
    for i in _topological(plan):
        if i in run.outcomes:
            expected[run.actions[i].vm] = run.actions[i].dst
    run.check_fresh(expected)
    todo = [a.id for a in plan.actions if a.id not in run.outcomes]
    if opts.dry_run:
        for i in todo:
            a = run.actions[i]
            run.progress(f"would migrate #{a.id} {a.vm} {a.src} -> {a.dst} ({a.mem_mib} MiB) "
                         f"via {run.endpoints[a.src].transport} to "
                         f"{run.endpoints[a.dst].migrate}")
            run.outcomes[i] = _Outcome(a, "skipped", error="dry run",
                                       transport=run.endpoints[a.src].transport)
        return run.report(run.final_placement(), dry_run=True)
    with _signals(run):
        run.execute(todo)
    placement = run.final_placement()
    report = run.report(placement, dry_run=False)
    if run.journal:
        run.journal.write("finish", summary=report.summary, placement=placement)
    return report


def _topological(plan: Plan) -> list[int]:
    from vmtools.planner.check import replay_plan
    return replay_plan(plan).order
