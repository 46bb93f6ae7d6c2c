"""Execute a plan: check it, lock the cluster, migrate in parallel, verify, report.

:func:`apply_plan` is vm-apply without its command line. In order:

1. refuse hostile names, hosts the snapshot does not know, Domain-0, ops other than
   ``migrate``, ``power-off`` and ``power-on`` (DataError, 65), any plan the replay checker
   refuses (65), and a power action for a host without a power method in the host map;
2. take the lock of each migration domain the plan touches under the state directory (a
   second run on one of them: TemporaryFailure, 75; runs on other domains go on);
3. ask every host the plan touches, through its transport, what it runs: each guest to move
   must be where the plan's origin says and every host must answer, else TemporaryFailure
   (75) before anything moved -- unless ``force``; an unknown SSH host key is 69;
4. run the actions with a streaming scheduler: the moment a slot frees, the best ready
   action starts (``parallel`` in all, ``per_host`` per host, its ``after`` actions done);
5. after each migration, ask both hosts where the guest runs; when the client gave up (timeout,
   dropped connection) keep asking until the hosts agree, never assume;
   a ``power-off`` or ``power-on`` runs through :mod:`vmtools.power.execute` (SSH shutdown
   then the BMC or the silent transport confirms; IPMI or Wake-on-LAN then the transport
   answers within the boot timeout);
6. a failed action makes its dependents ``not-run`` (the migrations into a host that did not
   come up are not run); independent ones go on unless
   ``stop_on_failure``; SIGINT/SIGTERM launch nothing new and let running ones end;
7. ask the hosts once more where every touched guest is, and return the Report.

Every event goes to a journal (JSON lines, flushed and synced per event) so a run can be
audited and resumed (``resume``): done actions are not run again, an action that was running
when the run died is settled by asking the hosts.

Over 500 lines because the run (survey, scheduler, each action, verification, resume from
the journal) shares one lock, one journal and one set of outcomes; the pieces that stand
alone already left (ask, order, lifecycle, journal, report).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import Counter
from pathlib import Path

from vmtools.apply.ask import survey, where_is
from vmtools.drivers.hostmap import HostEntry
from vmtools.apply.journal import Journal, read_journal
from vmtools.apply.lifecycle import label as lifecycle_label
from vmtools.apply.lifecycle import (after_done, missing_images, refuse_incapable,
                                     run_lifecycle, running_elsewhere, settle)
from vmtools.apply.lock import ClusterLock
from vmtools.apply.options import ApplyOptions, Progress, default_state_dir
from vmtools.apply.order import ends, may_start, priorities
from vmtools.apply.refuse import check
from vmtools.apply.report import Outcome, make_report
from vmtools.apply.signals import signals_to
from vmtools.drivers import Driver, Endpoint, close_shared, make_driver
from vmtools.drivers.base import HostKeyError, MigrationRefused, MigrationUncertain
from vmtools.errors import (DataError, LocalFailure, OperationFailed, OptionError,
                            TemporaryFailure, Unavailable)
from vmtools.model import Action, Plan, Report, document_digest
from vmtools.power.execute import PowerRunner, refuse_unpowered
from vmtools.rules.check import placement_after, runnable, stale_guests
from vmtools.drivers import registry
from vmtools.drivers.registry import XAPI_TRANSPORT
from vmtools.xen import is_migrating

log = logging.getLogger("vmtools.apply")


def _label(a: Action) -> str:
    if a.is_lifecycle:
        return lifecycle_label(a)
    return f"{a.op} {a.host}" if a.is_power else f"{a.vm} {a.src} -> {a.dst}"


class Run:
    """One execution of one plan (the state :func:`apply_plan` needs while it runs)."""

    def __init__(self, plan: Plan, options: ApplyOptions, progress: Progress | None,
                 drivers: dict[str, Driver] | None):
        self.plan = plan
        self.opts = options
        self.progress = progress or (lambda line: None)
        self.actions = {a.id: a for a in plan.actions}
        self.hosts = {h.name: h for h in plan.origin.hosts}
        self.touched_hosts = sorted({h for a in plan.actions for h in ends(a)})
        self.touched_vms = sorted({a.vm for a in plan.actions if not a.is_power})
        # hosts that cannot be asked: standby until their power-on, off after their power-off
        self.asleep = {h for h in self.touched_hosts if self.hosts[h].state == "standby"}
        self.endpoints = {h: self._endpoint(h) for h in self.touched_hosts}
        self.drivers = drivers if drivers is not None else {
            h: make_driver(ep, options.ssh, options.connect_timeout, xapi=options.xapi)
            for h, ep in self.endpoints.items()}
        self.injected = drivers is not None
        self.state_dir = Path(options.state_dir or default_state_dir())
        self.outcomes: dict[int, Outcome] = {}
        self.cond = threading.Condition()
        self.stopping: str | None = None          # nothing new starts, in any domain
        # the migration domain of each host; a domain whose action failed under
        # --stop-on-failure starts nothing new, the others go on
        self.domain = {h.name: h.domain for h in plan.origin.hosts}
        self.stopped: dict[str, str] = {}
        self.journal: Journal | None = None
        self.problems: list[str] = []
        self.asked_too: list[str] = []
        self.finished = 0
        self.t0 = time.time()
        self.mib_done = 0
        self.busy_seconds = 0.0
        powered = [a for a in plan.actions if a.is_power]
        self.power = PowerRunner(options.power, options.hosts, options.ssh, self.hosts,
                                 needs_ipmi=any(options.hosts[a.host].power == "ipmi"
                                                for a in powered)) if powered else None

    def domain_of(self, a: Action) -> str:
        """The migration domain an action runs in: its source's (or its host's)."""
        return self.domain.get(ends(a)[0], "")

    def awake(self) -> list[str]:
        return [h for h in self.touched_hosts if h not in self.asleep]

    def others(self) -> list[str]:
        """The cluster's online hosts the plan does not touch (asked only when a guest is not
        where the plan's hosts say), with a driver made for each on first use."""
        clusters = {self.hosts[h].cluster for h in self.touched_hosts}
        out = []
        for name, host in sorted(self.hosts.items()):
            if name in self.endpoints or host.state != "online" or host.cluster not in clusters:
                continue
            if self.injected and name not in self.drivers:
                continue
            try:
                self.endpoints[name] = self._endpoint(name)
            except DataError:
                continue
            if name not in self.drivers:
                self.drivers[name] = make_driver(self.endpoints[name], self.opts.ssh,
                                                 self.opts.connect_timeout, xapi=self.opts.xapi)
            out.append(name)
        return out + [h for h in self.asked_too if h not in out]

    def find_elsewhere(self, vm: str) -> tuple[str | None, list[str]]:
        """Ask every other host of the cluster whether it runs ``vm``: (the host, or None;
        the hosts that did not answer)."""
        extra = self.others()
        self.asked_too = sorted(set(self.asked_too) | set(extra))
        seen = self.survey(extra)
        found = sorted(h for h, res in seen.items() if isinstance(res, set) and vm in res)
        silent = sorted(h for h, res in seen.items() if not isinstance(res, set))
        return (found[0] if len(found) == 1 else None), silent

    def unexpected(self, vm: str, host: str, why: str) -> None:
        """A guest went where no action sent it: start nothing new."""
        with self.cond:
            if not self.stopping:
                self.stopping = (f"{vm} landed on {host}, which the plan did not name ({why}); "
                                 "nothing new is started")
                self.problems.append(self.stopping)
            self.cond.notify_all()

    def journal_broken(self, why: str) -> None:
        with self.cond:
            if not self.stopping:
                self.stopping = why
                self.problems.append(why)
            self.cond.notify_all()
        self.progress(f"error: {why}")

    def interrupted(self, signal_name: str) -> None:
        """SIGINT/SIGTERM (from :func:`~vmtools.apply.signals.signals_to`, in the main
        thread): launch nothing new, let running migrations end (they cannot be cancelled
        safely)."""
        if not self.stopping or "SIG" not in self.stopping:
            self.stopping = f"interrupted by {signal_name}"
        if self.journal:
            self.journal.write("signal", signal=signal_name)
        self.progress(f"{signal_name}: starting nothing new; waiting for the running "
                      "migrations to end (they cannot be cancelled safely)")

    def _endpoint(self, host: str) -> Endpoint:
        entry = self.opts.hosts.get(host, HostEntry(host))
        transport = self.opts.driver or entry.transport or self.hosts[host].migration
        if not registry.is_transport(transport):
            raise DataError(f"host {host}: migration transport {transport!r} is unknown "
                            f"(expected one of {', '.join(registry.names())}; or choose one driver "
                            "for every host)",
                            f"plan.origin.hosts[{host}].migration")
        return Endpoint(host, transport, entry.address or host,
                        entry.port or registry.default_port(transport), entry.migrate or host)

    # ---- asking the hosts (vmtools.apply.ask)
    def survey(self, hosts: list[str]) -> dict[str, set[str] | Exception]:
        return survey(self.drivers, hosts)

    def where_is(self, vm: str, src: str, dst: str, wait: float, settled_answer: bool = False
                 ) -> tuple[str | None, str | None]:
        return where_is(self.drivers, vm, src, dst, wait, self.opts.poll, settled_answer)

    def check_fresh(self, finished: set[int], only: str | None = None) -> None:
        """Each guest the plan moves is where the plan expects it once the ``finished``
        actions have landed, and every touched host answers (standby hosts excepted);
        ``only``: the actions of that migration domain and the hosts they touch."""
        mine = [a for a in self.plan.actions if only is None or self.domain_of(a) == only]
        touched_vms = self.touched_vms if only is None else \
            sorted({a.vm for a in mine if not a.is_power})
        if only is not None:           # the other domains' actions are not this check's
            finished = set(finished) | {a.id for a in self.plan.actions} - {a.id for a in mine}
        hosts = {h for a in mine for h in ends(a)}
        seen = self.survey([h for h in self.awake() if h in hosts])
        # A host that missed one question (a dropped SSH handshake, a busy xend) is asked
        # again before the whole run is called off.
        for delay in (1.0, 2.0):
            silent = [h for h, res in seen.items()
                      if isinstance(res, Exception) and not isinstance(res, HostKeyError)]
            if not silent:
                break
            self.progress(f"no answer from {', '.join(silent)}; asking again in {delay:g} s")
            time.sleep(delay)
            seen.update(self.survey(silent))
        reasons = []
        for h, res in seen.items():
            if isinstance(res, HostKeyError):
                raise res
        silent = {h: res for h, res in seen.items() if isinstance(res, Exception)}
        if silent and not self.opts.force:
            raise Unavailable("cannot reach " + "; ".join(
                unreachable_words(h, self.endpoints[h], res)
                for h, res in sorted(silent.items())) + "; nothing was moved (check that the "
                "host is up and its xend or sshd answers, and its address in --hosts)")
        for h, res in silent.items():
            reasons.append(f"host {h} does not answer: {res}")
        for h, res in seen.items():
            if isinstance(res, set):
                for vm in touched_vms:
                    if is_migrating(vm, res):
                        flying = sorted(n for n in res if n != vm and vm in n)
                        reasons.append(f"{vm} is in flight on {h} ({', '.join(flying)} exists): "
                                       "another run is moving it, or a killed one left it "
                                       "half-way")
        found: dict[str, list[str]] = {}
        for h, res in seen.items():
            if isinstance(res, set):
                for vm in res:
                    found.setdefault(vm, []).append(h)
        expected = placement_after(self.plan, finished)
        now = {vm: hosts[0] for vm, hosts in found.items() if len(hosts) == 1}
        for vm in touched_vms:
            # not seen because the host it should be on did not answer: not counted stale
            if vm not in found and vm in expected and \
                    isinstance(seen.get(expected[vm]), Exception):
                now[vm] = expected[vm]
        for vm in (v for v in stale_guests(self.plan, now, finished) if v in touched_vms):
            got = sorted(found.get(vm, []))
            if vm not in expected:
                reasons.append(f"{vm} already runs on {', '.join(got)}; the plan starts it")
                continue
            reasons.append(f"{vm} is on {', '.join(got) or 'no host the plan touches'}, not "
                           f"on {expected[vm]} as the plan expects")
        reasons += missing_images(self, finished)
        reasons += running_elsewhere(self, finished, found)
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
    def execute(self, todo: list[int]) -> None:
        prio = priorities(self.actions)
        pending = sorted(todo, key=lambda i: prio[i], reverse=True)
        running: set[int] = set()
        busy: Counter = Counter()
        self.remaining_mib = sum(self.actions[i].mem_mib for i in pending)
        total = len(self.actions)
        threads: list[threading.Thread] = []

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
                    done = [i for i, o in self.outcomes.items() if o.outcome == "done"]
                    ready = {a.id for a in runnable(self.plan, done, running)}
                    for i in list(pending):
                        if len(running) >= self.opts.parallel:
                            break
                        a = self.actions[i]
                        if self.domain_of(a) in self.stopped:
                            continue
                        if i not in ready or not may_start(a, len(running), busy,
                                                           self.opts.parallel,
                                                           self.opts.per_host):
                            continue
                        pending.remove(i)
                        running.add(i)
                        for h in ends(a):
                            busy[h] += 1
                        self._announce_start(a, len(running), total)
                        t = threading.Thread(target=self._worker, args=(a, running, busy),
                                             name=f"action-{i}", daemon=True)
                        t.start()
                        threads.append(t)
                if not running:
                    break
                self.cond.wait(timeout=0.5)
            for i in pending:
                self._not_run(i, self.stopping or self.stopped.get(
                    self.domain_of(self.actions[i])) or "not runnable")
        for t in threads:
            t.join()

    def _announce_start(self, a: Action, nrunning: int, total: int) -> None:
        self.started_count = getattr(self, "started_count", 0) + 1
        how = self.transport(a)
        size = "" if a.is_power else f"{a.mem_mib / 1024:.1f} GiB, "
        self.progress(f"start #{a.id} {_label(a)} ({size}{how}); {self.started_count} of "
                      f"{total} started, {nrunning} running; {self._eta()}")

    def transport(self, a: Action) -> str:
        if a.is_power:
            return self.power.describe(a.host) if self.power else "none"
        return self.endpoints[a.where if a.is_lifecycle else a.src].transport

    def _eta(self) -> str:
        elapsed = time.time() - self.t0
        if self.mib_done <= 0 or elapsed <= 0:
            return "time left unknown"
        left = self.remaining_mib / (self.mib_done / elapsed)
        return f"about {left:.0f} s left"

    def _not_run(self, i: int, why: str) -> None:
        a = self.actions[i]
        self.outcomes[i] = Outcome(a, "not-run", error=why, transport=self.transport(a))
        if self.journal:
            self.journal.write("end", id=i, vm=a.vm, host=a.host, outcome="not-run", error=why)

    def _worker(self, a: Action, running: set[int], busy: Counter) -> None:
        try:
            out = self.power_one(a) if a.is_power else run_lifecycle(self, a) \
                if a.is_lifecycle else self.migrate_one(a)
        except Exception as exc:  # noqa: BLE001 - a bug must not leave the run hanging
            log.exception("internal error in action %s", a.id)
            out = Outcome(a, "failed", error=f"internal error: {exc}",
                           transport=self.transport(a))
        with self.cond:
            self.outcomes[a.id] = out
            running.discard(a.id)
            for h in ends(a):
                busy[h] -= 1
            self.remaining_mib -= a.mem_mib
            if out.outcome == "done":
                self.mib_done += a.mem_mib
            if out.outcome == "failed" and self.opts.stop_on_failure:
                # only this action's domain: the others' actions do not depend on it
                domain = self.domain_of(a)
                self.stopped.setdefault(domain, f"stopped after action {a.id} failed "
                                        "(--stop-on-failure)" + (f" in migration domain "
                                                                 f"{domain}" if domain else ""))
            counts = Counter(o.outcome for o in self.outcomes.values())
            took = f" in {out.ended - out.started:.1f} s" if out.started and out.ended else ""
            self.finished += 1
            self.progress(f"{out.outcome} #{a.id} {_label(a)}{took}"
                          f"{': ' + out.error if out.error else ''}; {self.finished} of "
                          f"{len(self.actions)} ended, {len(running)} running, "
                          f"{counts['failed']} failed; {self._eta()}")
            self.cond.notify_all()

    def migrate_one(self, a: Action) -> Outcome:
        src, dst = self.endpoints[a.src], self.endpoints[a.dst]
        start = time.time()
        refused = self.refuse_start(a)
        if refused:
            out = Outcome(a, "failed", start, time.time(), refused, None, src.transport)
            if self.journal:
                self.journal.write("end", id=a.id, vm=a.vm, outcome="failed", where=None,
                                   error=refused, seconds=0.0)
            return out
        if self.journal:
            self.journal.write("start", id=a.id, vm=a.vm, src=a.src, dst=a.dst,
                               transport=src.transport, destination=dst.migrate)
            if self.journal.broken:     # a move the journal cannot record is not started
                return Outcome(a, "not-run", start, time.time(), self.journal.broken, None,
                               src.transport)
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
        if where is None:
            elsewhere, silent = self.find_elsewhere(a.vm)
            if elsewhere is not None:
                where = elsewhere
                note = (f"{a.vm} landed on {elsewhere}, not on {a.dst} (is {a.dst}'s migrate "
                        f"address {dst.migrate} in the host map right?)")
                self.unexpected(a.vm, elsewhere, f"migrated to {dst.migrate}")
            elif silent:
                note = f"{note}; not found elsewhere either ({', '.join(silent)} did not answer)"
        end = time.time()
        if where == a.dst:
            outcome = "done"
            if error:
                error = f"{error}; but {a.vm} verified running on {a.dst}"
        else:
            outcome = "failed"
            if where == a.src:
                # the note, when there is one, already says where it was verified
                error = f"{error or 'the hypervisor reported success'}; " + \
                        (note or f"{a.vm} verified still on {a.src}")
            else:
                error = f"{error + '; ' if error else ''}{note}"
            note = None
        if note:
            error = f"{error + '; ' if error else ''}{note}"
        out = Outcome(a, outcome, start, end, error, where, src.transport)
        if self.journal:
            self.journal.write("end", id=a.id, vm=a.vm, outcome=outcome, where=where,
                               error=error, seconds=round(end - start, 3))
        if outcome == "done":
            self.busy_seconds += end - start
        return out

    def refuse_start(self, a: Action) -> str | None:
        """Why a migration must not start now, asked of the hosts right before: the guest is in
        flight on any host the plan touches (another vm-apply, from another machine or state
        directory, or a killed one) or is not on its source any more. None when it may start.
        A migration by someone else to a host outside the plan is seen only once it lands."""
        # Every host the plan touches, not only these two: a migration started elsewhere
        # shows as <vm>--incoming on its destination, which may be any of them.
        seen = self.survey(sorted(set(self.awake()) | {a.src, a.dst}))
        for h in sorted(seen, key=lambda h: (h not in (a.src, a.dst), h)):
            res = seen[h]
            if isinstance(res, set) and is_migrating(a.vm, res):
                flying = sorted(n for n in res if n != a.vm and a.vm in n)
                return (f"not started: {a.vm} is already migrating ({', '.join(flying)} on "
                        f"{h}): another run is moving it, or a killed one left it half-way")
        s = seen[a.src]
        if isinstance(s, set) and a.vm not in s:
            d = seen[a.dst]
            if isinstance(d, set) and a.vm in d:
                return f"not started: {a.vm} already runs on {a.dst} (moved by someone else)"
            return f"not started: {a.vm} is no longer on {a.src}"
        return None

    def power_one(self, a: Action) -> Outcome:
        """Switch a host off or on (:class:`vmtools.power.execute.PowerRunner`)."""
        assert self.power is not None
        how = self.power.describe(a.host)
        start = time.time()
        if self.journal:
            self.journal.write("start", id=a.id, op=a.op, host=a.host, transport=how)
        error = None
        try:
            if a.op == "power-off":
                what = self.power.power_off(a.host, self.endpoints[a.host],
                                            self.drivers[a.host])
            else:
                what = self.power.power_on(a.host, self.endpoints[a.host],
                                           self.drivers[a.host])
        except (OperationFailed, Unavailable) as exc:
            error = str(exc)
        end = time.time()
        outcome = "failed" if error else "done"
        if not error:
            self.progress(f"{a.host}: {what}")
            if a.op == "power-off":
                self.asleep.add(a.host)
            else:
                self.asleep.discard(a.host)
        out = Outcome(a, outcome, start, end, error, None, how)
        if self.journal:
            self.journal.write("end", id=a.id, op=a.op, host=a.host, outcome=outcome,
                               error=error, seconds=round(end - start, 3))
        return out

    def disable_maintenance(self) -> None:
        """The plan's ``maintenance`` hosts managed through XAPI are disabled there first
        (``host.disable``), so XAPI itself starts or places nothing new on them either."""
        hosts = sorted({h for rule in self.plan.constraints if isinstance(rule, dict)
                        and rule.get("rule") == "maintenance"
                        for h in rule.get("hosts", ()) if h in self.hosts})
        for h in hosts:
            try:
                ep = self.endpoints.get(h) or self._endpoint(h)
            except DataError:
                continue
            if ep.transport != XAPI_TRANSPORT:
                continue
            driver = self.drivers.get(h) or make_driver(ep, self.opts.ssh,
                                                        self.opts.connect_timeout,
                                                        xapi=self.opts.xapi)
            self.drivers.setdefault(h, driver)
            try:
                driver.disable()
                self.progress(f"{h}: maintenance: host.disable (XAPI places nothing there)")
                if self.journal:
                    self.journal.write("maintenance", host=h, call="host.disable")
            except (OperationFailed, Unavailable) as exc:
                self.problems.append(f"{h}: maintenance: host.disable failed: {exc}")
                self.progress(f"warning: {h}: host.disable failed: {exc}")

    # ---- the end
    def final_placement(self) -> dict[str, str | None]:
        seen = self.survey(self.awake())
        placement: dict[str, str | None] = {}
        last_known = {o.action.vm: o.where for o in sorted(
            (o for o in self.outcomes.values() if o.where), key=lambda o: o.ended or 0)}
        for vm in self.touched_vms:
            hosts = sorted(h for h, res in seen.items() if isinstance(res, set) and vm in res)
            silent = [h for h, res in seen.items() if not isinstance(res, set)]
            flying = sorted(h for h, res in seen.items()
                            if isinstance(res, set) and is_migrating(vm, res))
            if flying:
                # moved by someone else right now: where it ends is not known yet
                placement[vm] = None
                self.problems.append(f"{vm} is in flight (seen on {', '.join(flying)}): "
                                     "another run is moving it; ask the hosts again later")
            elif len(hosts) == 1:
                placement[vm] = hosts[0]
            elif len(hosts) > 1:
                placement[vm] = None
                self.problems.append(f"{vm} runs on {' and '.join(hosts)}")
            elif vm not in placement_after(self.plan, [i for i, o in self.outcomes.items()
                                                       if o.outcome == "done"]):
                placement[vm] = None     # suspended, or not started (yet): on no host
            else:
                elsewhere, also_silent = self.find_elsewhere(vm)
                if elsewhere is not None:
                    placement[vm] = elsewhere
                    self.problems.append(f"{vm} runs on {elsewhere}, a host the plan does not "
                                         "touch")
                    continue
                placement[vm] = None
                silent = silent + also_silent
                where = (f"; hosts that did not answer: {', '.join(silent)}" if silent else "")
                self.problems.append(f"{vm} was not found on any host of the cluster{where}"
                                     + (f" (last verified on {last_known[vm]})"
                                        if last_known.get(vm) else ""))
        return placement

    def report(self, placement: dict[str, str | None], dry_run: bool) -> Report:
        interrupted = self.stopping if self.stopping and "SIG" in self.stopping else None
        report = make_report(self.plan, self.outcomes, placement, self.problems, self.t0,
                             self.opts.parallel, self.opts.per_host, interrupted, dry_run,
                             {i: self.domain_of(a) for i, a in self.actions.items()},
                             self.stopped)
        if self.journal is not None and self.journal.broken:
            # Never a silent success: the next --resume needs to know what this run did, and
            # the hosts (not this journal) will tell it.
            report.summary["journal_error"] = self.journal.broken
        return report


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
    check(plan, options.image_dir)
    refuse_unpowered(plan, options.hosts)
    if options.offline:
        run = Run(plan, options, progress, drivers={})
        refuse_incapable(run)
        return _offline(plan, options, progress)
    run = Run(plan, options, progress, drivers)
    refuse_incapable(run)
    if options.xapi is None and drivers is None:
        for h, ep in run.endpoints.items():
            if ep.transport == XAPI_TRANSPORT:
                from vmtools.drivers.xapi import require_settings
                require_settings(h, None)
    state_dir = Path(options.state_dir or default_state_dir())
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OptionError("state_dir", f"{state_dir}: {exc.strerror}") from None
    lock_domain = {h: run.hosts[h].domain or run.hosts[h].cluster for h in run.touched_hosts}
    lock = ClusterLock(state_dir, sorted(set(lock_domain.values())) or [""],
                       [run.endpoints[h] for h in run.touched_hosts], options.lock_dir,
                       host_domain=lock_domain,
                       pool_master=options.xapi.url if options.xapi is not None else None)
    lock.acquire()
    try:
        if not options.dry_run:
            digest = document_digest(plan.to_dict())
            path = Path(options.resume or options.journal or state_dir / "journal" /
                        f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{digest[7:19]}.jsonl")
            run.journal = Journal(path, on_broken=run.journal_broken)
            if options.resume:
                run.journal.write("resume", pid=os.getpid())
            else:
                run.journal.write("begin", pid=os.getpid(), plan_digest=digest,
                                  plan=plan.to_dict(), parallel=options.parallel,
                                  per_host=options.per_host, force=options.force)
            if run.journal.broken:
                raise LocalFailure(f"{run.journal.broken}; nothing was moved")
            run.progress(f"journal: {path}")
        try:
            return _apply(run, done_before, in_flight)
        finally:
            if run.journal:
                run.journal.close()
            for d in run.drivers.values():
                d.close()
            close_shared()
    finally:
        lock.release()


def _apply(run: Run, done_before: dict[int, dict], in_flight: set[int]) -> Report:
    plan, opts = run.plan, run.opts
    for i, ev in done_before.items():
        a = run.actions[i]
        if a.is_power:
            run.outcomes[i] = Outcome(a, "done", None, None, None, None, run.transport(a),
                                       from_journal=True)
            (run.asleep.add if a.op == "power-off" else run.asleep.discard)(a.host)
            continue
        run.outcomes[i] = Outcome(a, "done", None, None, None,
                                   ev.get("where") or (a.dst or None), run.transport(a),
                                   from_journal=True)
    if run.opts.resume:
        reconcile(run, in_flight)
    # an action that was running when the last run died: only the hosts know how it ended
    # (a power action is run again: switching on or off is idempotent)
    for i in sorted(in_flight):
        a = run.actions[i]
        if a.is_power:
            continue
        if a.is_lifecycle:
            done, where, note = settle(run, a, opts.verify_timeout)
            if done:
                after_done(run, a)
                run.outcomes[i] = Outcome(a, "done", None, None, note, where,
                                           run.transport(a), from_journal=True)
                if run.journal:
                    run.journal.write("end", id=i, vm=a.vm, outcome="done", where=where,
                                      error=note, recovered=True)
            continue
        where, note = run.where_is(a.vm, a.src, a.dst, opts.verify_timeout)
        if where == a.dst:
            run.outcomes[i] = Outcome(a, "done", None, None, note, where,
                                       run.endpoints[a.src].transport, from_journal=True)
            if run.journal:
                run.journal.write("end", id=i, vm=a.vm, outcome="done", where=where,
                                  error=note, recovered=True)
    check_domains(run, set(run.outcomes))
    todo = [a.id for a in plan.actions if a.id not in run.outcomes]
    if opts.dry_run:
        # Every touched host answered (check_fresh): each row says where its guest was
        # verified to run now; nothing is an error.
        placement = run.final_placement()
        for i in todo:
            a = run.actions[i]
            if run.domain_of(a) in run.stopped:
                run._not_run(i, run.stopped[run.domain_of(a)])
                continue
            if a.is_power:
                run.progress(f"would {a.op} #{a.id} {a.host} via {run.transport(a)}")
            elif a.is_lifecycle:
                run.progress(f"would {_label(a)} #{a.id} ({a.mem_mib / 1024:.1f} GiB) via "
                             f"{run.transport(a)}")
            else:
                run.progress(f"would migrate #{a.id} {a.vm} {a.src} -> {a.dst} "
                             f"({a.mem_mib / 1024:.1f} GiB) via "
                             f"{run.endpoints[a.src].transport} to "
                             f"{run.endpoints[a.dst].migrate}")
            run.outcomes[i] = Outcome(a, "skipped", where=placement.get(a.vm),
                                       transport=run.transport(a))
        return run.report(placement, dry_run=True)
    run.disable_maintenance()
    with signals_to(run.interrupted):
        run.execute(todo)
    placement = run.final_placement()
    report = run.report(placement, dry_run=False)
    if run.journal:
        run.journal.write("finish", summary=report.summary, placement=placement)
    return report


def check_domains(run: Run, finished: set[int]) -> None:
    """The freshness check (:meth:`Run.check_fresh`), per migration domain when the actions
    left run in several: a domain whose hosts do not answer or whose guests are not where the
    plan expects starts nothing (its actions end not-run, saying why) while the others go on;
    when every domain fails, the first one's error ends the run before anything moved, as a
    single domain's does. An SSH host key that does not match always ends the run."""
    domains = sorted({run.domain_of(a) for a in run.plan.actions if a.id not in finished})
    if len(domains) < 2:
        run.check_fresh(finished)
        return
    failed: dict[str, Exception] = {}
    for d in domains:
        try:
            run.check_fresh(finished, only=d)
        except HostKeyError:
            raise
        except (Unavailable, TemporaryFailure) as exc:
            failed[d] = exc
    if len(failed) == len(domains):
        raise failed[domains[0]]
    for d, exc in failed.items():
        why = f"migration domain {d}: nothing started: {exc}"
        run.stopped[d] = why
        run.problems.append(why)
        run.progress(f"warning: {why}; the other domains go on")


def reconcile(run: Run, in_flight: set[int]) -> None:
    """--resume: the hosts, not the journal, say which migrations happened. A journal that
    could not be written (a full disk) or a crash between a migration and its record leaves
    moves the journal does not know about. Per guest, its migrations not known to be done (in
    the plan's order): where the guest runs now is the destination of one of them, and that
    one and those before it are done; at the source of the first, all are still to do;
    anywhere else, the freshness check reports it."""
    chains: dict[str, list] = {}
    for a in run.plan.actions:
        if a.op == "migrate" and a.id not in run.outcomes and a.id not in in_flight:
            chains.setdefault(a.vm, []).append(a)
    if not chains:
        return
    hosts = sorted({h for chain in chains.values() for a in chain for h in (a.src, a.dst)}
                   & set(run.awake()))
    seen = run.survey(hosts)
    for vm, chain in chains.items():
        on = [h for h, res in seen.items() if isinstance(res, set) and vm in res]
        if len(on) != 1 or on[0] == chain[0].src:
            continue
        k = next((k for k, a in enumerate(chain) if a.dst == on[0]), None)
        if k is None:
            continue
        for a in chain[:k + 1]:
            note = f"found on {on[0]} by --resume (the journal did not record it)"
            run.outcomes[a.id] = Outcome(a, "done", None, None, note, on[0],
                                         run.endpoints[a.src].transport, from_journal=True)
            run.progress(f"#{a.id} {a.vm} {a.src} -> {a.dst}: {note}")
            if run.journal:
                run.journal.write("end", id=a.id, vm=a.vm, outcome="done", where=on[0],
                                  error=note, recovered=True)


def _offline(plan: Plan, options: ApplyOptions, progress: Progress | None) -> Report:
    """``--dry-run --offline``: what can be checked away from the cluster. The replay checker
    and the plan's rules have passed (:func:`check`); each touched host must resolve to a
    transport and, when a host map is given, be in it. No host is asked, no lock taken, no
    journal written."""
    run = Run(plan, options, progress, drivers={})
    if options.hosts:
        missing = [h for h in run.touched_hosts if h not in options.hosts]
        if missing:
            raise DataError(f"{', '.join(missing)}: not in the host map (add a line "
                            "NAME,ADDRESS[:PORT],MIGRATION-ADDRESS for each)", "--hosts")
    for a in plan.actions:
        if a.is_power:
            run.progress(f"would {a.op} #{a.id} {a.host} via {run.transport(a)} "
                         "(offline: no host asked)")
        elif a.is_lifecycle:
            run.progress(f"would {_label(a)} #{a.id} ({a.mem_mib / 1024:.1f} GiB) via "
                         f"{run.transport(a)} (offline: no host asked)")
        else:
            run.progress(f"would migrate #{a.id} {a.vm} {a.src} -> {a.dst} "
                         f"({a.mem_mib / 1024:.1f} GiB) "
                         f"via {run.endpoints[a.src].transport} to "
                         f"{run.endpoints[a.dst].migrate} (offline: no host asked)")
        run.outcomes[a.id] = Outcome(a, "skipped", transport=run.transport(a))
    report = run.report({}, dry_run=True)
    report.summary["offline"] = True
    return report


def unreachable_words(host: str, ep: Endpoint, exc: Exception) -> str:
    """A host that did not answer, in words an operator acts on."""
    text = str(exc)
    for pattern, words in (
            ("Error reading SSH protocol banner", "no SSH server answered there (nothing "
             "listens, a firewall drops it, or the host is overloaded)"),
            ("Unable to connect", "the connection was refused (is sshd running?)"),
            ("Connection refused", "the connection was refused (is the service running?)"),
            ("timed out", "no answer in time (the host is down or unreachable)"),
            ("Name or service not known", "the name does not resolve (check --hosts)"),
            ("No route to host", "no route to the host")):
        if pattern in text:
            return f"host {host} ({ep.transport} at {ep.address}:{ep.port}): {words}"
    return f"host {host} ({ep.transport} at {ep.address}:{ep.port}): {text}"
