"""Prometheus as a source of snapshots (:mod:`vmtools.sources`): the kind ``prometheus``.

:class:`PrometheusSource` asks one Prometheus server the instant queries of a mapping profile
(:mod:`vmtools.prometheus.profiles`) at one moment, and the range query of the guests' CPU
over the demand window, and hands back a :class:`~vmtools.sources.Reading`: hosts, guests,
problems and, per guest, the recent CPU samples vm-plan's ``--demand`` reads.

What the answers hold is judged here (the query client only checks their shape):

- a value that is NaN or infinite is ``not-a-number``; one outside what a host or guest can
  have (10^308 bytes, -1 CPUs) is ``bad-value``; either way the figure is not used;
- a host whose ``host_last_seen`` is older than ``stale_after`` seconds is ``stale-host`` (kept
  at its last figures: the planners freeze it); one seen in the last hour with no current
  figures at all (Prometheus marks a target it cannot scrape stale at once) is named in a
  ``vanished-host`` problem;
- a host whose ``host_complete`` is 0 is ``incomplete-host`` (its guest list is unknown: the
  guests it serves are not a list to believe); one whose ``host_guests`` says more guests than
  have figures is ``no-data``; a host without memory or CPUs is ``partial-container`` and is
  left out;
- two series for the same host (or guest) in one answer, typically one exporter scraped by two
  jobs, are ``duplicate-series``: their figure is used only when the copies agree;
- a guest without CPU, memory or vCPUs is ``no-data`` and left out; one listed by two hosts is
  a ``duplicate-guest`` (the first host by name keeps it);
- a historic CPU sample that is not a plausible figure is dropped from the samples (logged);
- a server with no series of the profile at all is :class:`Unavailable` (exit 69, or an
  ``unavailable-source`` problem beside other sources): unknown, never an empty cluster.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Any, Mapping

from vmtools.errors import Unavailable
from vmtools.model import VM, Host, Problem, epoch_to_iso, is_safe_name
from vmtools.prometheus.profiles import Profile, load_profile
from vmtools.prometheus.query import Auth, Client
from vmtools.sources.base import Reading, SourceKind
from vmtools.sources.check import show

log = logging.getLogger("vmtools.snapshot")

DEFAULT_STALE_AFTER = 120.0
DEFAULT_STEP = 60.0
DEFAULT_WINDOW_MINUTES = 120.0
MIB = 2**20
MAX_BYTES = float(2**62)
MAX_CPUS = 65535.0
CPU_SLACK = 1.5
MAX_NET_BYTES = 2.5e12


@dataclass
class Settings:
    url: str
    profile: Profile
    timeout: float = 10.0
    auth: Auth | None = None
    ca_file: str | None = None
    at: float | None = None                 # evaluate at this Unix time (default: now)
    stale_after: float = DEFAULT_STALE_AFTER
    window_minutes: float = DEFAULT_WINDOW_MINUTES   # 0: no samples
    step: float = DEFAULT_STEP


class _Judge:
    """Turns answers into figures, collecting the problems met."""

    def __init__(self, source: str, profile: Profile):
        self.source = source
        self.profile = profile
        self.problems: list[Problem] = []
        self.unsafe: set[str] = set()

    def problem(self, kind: str, message: str, host: str | None = None,
                vm: str | None = None) -> None:
        self.problems.append(Problem(kind, message, host=host, vm=vm))

    def keyed(self, name: str, rows, with_vm: bool) -> dict[tuple, str]:
        """{(host,) or (host, vm): value string} of one query's answer; series without the
        labels are ignored, repeated series are ``duplicate-series``, a name that is not a
        safe name is ``unsafe-name`` (once) and goes no further."""
        hl, vl = self.profile.host_label, self.profile.vm_label
        out: dict[tuple, str] = {}
        twice: dict[tuple, set[str]] = {}
        for labels, value in rows:
            host = labels.get(hl)
            vm = labels.get(vl) if with_vm else None
            if host is None or (with_vm and vm is None):
                continue
            bad = [n for n in (host, vm) if n is not None and not is_safe_name(n)]
            if bad:
                if bad[0] not in self.unsafe:
                    self.unsafe.add(bad[0])
                    self.problem("unsafe-name", f"{self.source} names a "
                                 f"{'host' if bad[0] == host else 'guest'} {show(bad[0])}: not "
                                 "a safe name, left out",
                                 host=host if is_safe_name(host) else None)
                continue
            key = (host, vm) if with_vm else (host,)
            if key in out:
                twice.setdefault(key, {out[key]}).add(value)
            else:
                out[key] = value
        for key, values in twice.items():
            who = f"guest {key[1]} on host {key[0]}" if with_vm else f"host {key[0]}"
            agree = len(values) == 1
            self.problem("duplicate-series", f"{name} has more than one series for {who} "
                         f"(the same exporter scraped twice?); "
                         + ("the copies agree and the figure is used" if agree else
                            "the copies disagree and the figure is not used"),
                         host=key[0], vm=key[1] if with_vm else None)
            if not agree:
                del out[key]
        return out

    def number(self, name: str, text: str | None, lo: float, hi: float, host: str,
               vm: str | None = None) -> float | None:
        if text is None:
            return None
        who = f"guest {vm} on host {host}" if vm else f"host {host}"
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not math.isfinite(value):
            self.problem("not-a-number", f"{name} of {who} is {text[:40]!r}, not a finite "
                         "number; it is not used", host=host, vm=vm)
            return None
        if not lo <= value <= hi:
            self.problem("bad-value", f"{name} of {who} is {text[:40]}, outside {lo:g} to "
                         f"{hi:g}; it is not used", host=host, vm=vm)
            return None
        return value


class PrometheusSource:
    """One Prometheus server read through one mapping profile."""

    def __init__(self, settings: Settings):
        self.s = settings
        self.name = f"prometheus {settings.url.rstrip('/')} ({settings.profile.name})"
        self.evaluated_at: float | None = None

    def read(self, deadline: float | None = None) -> Reading:
        s = self.s
        own = time.monotonic() + s.timeout
        client = Client(s.url, min(deadline, own) if deadline is not None else own,
                        s.auth, s.ca_file)
        # whole seconds: the snapshot's "created" says the moment, and the samples end there
        at = float(math.floor(s.at if s.at is not None else time.time()))
        self.evaluated_at = at
        q = s.profile.queries
        answers = {key: client.instant(text, at) for key, text in q.items()}
        judge = _Judge(self.name, s.profile)
        reading = self._build(judge, answers, at)
        if not reading.hosts and not reading.problems:
            # Unknown is not empty: a server that has no series of the profile at all (a
            # profile that does not match what is scraped, nothing scraped yet, the wrong
            # server) says nothing about the cluster; it is not a cluster without hosts.
            raise Unavailable(f"{self.name} has no series of the {s.profile.name!r} profile "
                              f"({q['host_last_seen']!r} answers nothing): nothing is "
                              "scraped there, or the profile does not match what is")
        if s.window_minutes > 0:
            rows = client.range(q["guest_cpu"], at - s.window_minutes * 60, at, s.step)
            reading.samples = self._samples(rows, {v.name for v in reading.vms})
        return reading

    # ------------------------------------------------------------------ instant figures

    def _build(self, j: _Judge, answers: dict[str, list], at: float) -> Reading:
        s = self.s
        hosts_ = {k: j.keyed(k, answers[k], False) for k in answers if k.startswith("host_")
                  and k != "host_info"}
        guests_ = {k: j.keyed(k, answers[k], True) for k in answers if k.startswith("guest_")}
        info: dict[str, dict[str, str]] = {}
        for labels, _ in answers.get("host_info", []):
            host = labels.get(s.profile.host_label)
            if host is not None and is_safe_name(host):
                info.setdefault(host, labels)
        hosts = self._hosts(j, hosts_, info, at)
        vms = self._guests(j, hosts_, guests_, hosts)
        return Reading(source=self.name, hosts=hosts, vms=vms, problems=j.problems)

    def _hosts(self, j: _Judge, hosts_: dict, info: dict[str, dict[str, str]], at: float
               ) -> list[Host]:
        """Every host any host query names, with its figures; one without them (vanished,
        not read yet, partial) is a problem, never silently left out."""
        s = self.s
        seen = hosts_["host_last_seen"]
        names = sorted({k[0] for answer in hosts_.values() for k in answer} |
                       set(info))
        hosts: list[Host] = []
        for name in names:
            last = j.number("host_last_seen", seen.get((name,)), 0, at + 86400, name)
            mem = j.number("host_memory_bytes", hosts_["host_memory_bytes"].get((name,)), 0,
                           MAX_BYTES, name)
            cpus = j.number("host_cpus", hosts_["host_cpus"].get((name,)), 0, MAX_CPUS, name)
            age = at - last if last is not None else None
            stale = age is not None and age > s.stale_after
            if mem is None or cpus is None:
                current = name in info or any((name,) in answer for key, answer in
                                              hosts_.items() if key != "host_last_seen")
                if not current:
                    when = f"{age:.0f} s ago" if age is not None else "in the last hour"
                    j.problem("vanished-host", f"host {name} last reported {when} and has no "
                              "current figures (its exporter is not scraped, or is gone); its "
                              "guests are unknown", host=name)
                elif hosts_.get("host_complete", {}).get((name,)) == "0":
                    j.problem("incomplete-host", f"host {name}'s exporter has not read its "
                              "toolstack yet (or cannot): no figures, no guest list",
                              host=name)
                else:
                    j.problem("partial-container", f"host {name} has "
                              f"{'no memory figure' if mem is None else 'no CPU figure'} "
                              "(host_memory_bytes, host_cpus); it is left out", host=name)
                continue
            labels = info.get(name, {})
            host = Host(name=name, cpu=cpus, mem_mib=int(mem // MIB),
                        hypervisor=labels.get("hypervisor", s.profile.hypervisor),
                        migration=labels.get("migration", s.profile.migration),
                        domain=labels.get(s.profile.domain_label, ""),
                        reported=epoch_to_iso(last) if last is not None else None)
            if stale:
                j.problem("stale-host", f"host {name} last reported {age:.0f} s ago (more "
                          "than the stale-after time); it is kept at its last figures",
                          host=name)
            if "host_complete" in hosts_:
                complete = j.number("host_complete", hosts_["host_complete"].get((name,)), 0,
                                    1, name)
                if complete != 1:
                    j.problem("incomplete-host", f"host {name}'s guest list is unknown (its "
                              "exporter says the toolstack read failed or was incomplete); "
                              "none of its guests is believed", host=name)
            hosts.append(host)
        return hosts

    def _guests(self, j: _Judge, hosts_: dict, guests_: dict, hosts: list[Host]) -> list[VM]:
        """The guests of the hosts kept whose guest list is believed, with their figures; a
        host that runs more guests than have figures is a problem."""
        seen = hosts_["host_last_seen"]
        by_host = {h.name: h for h in hosts}
        incomplete = {p.host for p in j.problems if p.kind == "incomplete-host"}
        vms: dict[str, VM] = {}
        counted: dict[str, int] = {}
        for host, vm in sorted(guests_["guest_memory_bytes"]):
            h = by_host.get(host)
            if h is None or host in incomplete:
                if h is None and (host,) not in seen:
                    j.problem("no-data", f"guest {vm} is on host {host}, which has no host "
                              "figures; it is left out", host=host, vm=vm)
                continue
            key = (host, vm)
            mem = j.number("guest_memory_bytes", guests_["guest_memory_bytes"][key], 1,
                           MAX_BYTES, host, vm)
            vcpus = j.number("guest_vcpus", guests_["guest_vcpus"].get(key), 1, MAX_CPUS,
                             host, vm)
            cpu = j.number("guest_cpu", guests_["guest_cpu"].get(key), 0,
                           max(h.cpu, 1) * CPU_SLACK, host, vm)
            net = None
            if "guest_net_bytes_per_second" in guests_:
                net = j.number("guest_net_bytes_per_second",
                               guests_["guest_net_bytes_per_second"].get(key), 0,
                               MAX_NET_BYTES, host, vm)
            counted[host] = counted.get(host, 0) + 1
            if mem is None or cpu is None or vcpus is None:
                missing = [n for n, v in (("memory", mem), ("CPU", cpu), ("vCPUs", vcpus))
                           if v is None]
                j.problem("no-data", f"guest {vm} on host {host} has no usable "
                          f"{' or '.join(missing)} figure; it is left out", host=host, vm=vm)
                continue
            if vm in vms:
                j.problem("duplicate-guest", f"guest {vm} is listed by both {vms[vm].host} and "
                          f"{host}; it is kept on {vms[vm].host}", host=host, vm=vm)
                continue
            vms[vm] = VM(name=vm, host=host, vcpus=int(vcpus), cpu=round(cpu, 4),
                         mem_mib=max(1, int(mem // MIB)),
                         net_mbps=None if net is None else round(net * 8 / 1e6, 4),
                         state="running")
        for name, listed in hosts_.get("host_guests", {}).items():
            host = name[0]
            n = j.number("host_guests", listed, 0, 1e6, host)
            if n is not None and host in by_host and host not in incomplete and \
                    counted.get(host, 0) < n:
                j.problem("no-data", f"host {host} runs {n:.0f} guests but "
                          f"{counted.get(host, 0)} have figures; the others are unknown",
                          host=host)
        return list(vms.values())

    # ------------------------------------------------------------------ samples

    def _samples(self, rows, guests: set[str]) -> dict[str, list[tuple[float, float]]]:
        """Each guest's CPU at every step of the window (a guest that moved in the window has
        a series per host: merged by time, the larger figure where both have one)."""
        vl = self.s.profile.vm_label
        merged: dict[str, dict[float, float]] = {}
        dropped = 0
        for labels, values in rows:
            vm = labels.get(vl)
            if vm not in guests:
                continue
            series = merged.setdefault(vm, {})
            for t, text in values:
                try:
                    value = float(text)
                except ValueError:
                    value = math.nan
                if not (math.isfinite(value) and 0 <= value <= MAX_CPUS * CPU_SLACK):
                    dropped += 1
                    continue
                series[t] = max(series.get(t, 0.0), value)
        if dropped:
            log.warning("%s: %d CPU sample(s) of the demand window were not plausible figures "
                        "(NaN, infinite, negative or beyond any host) and were dropped",
                        self.name, dropped)
        return {vm: sorted(series.items()) for vm, series in merged.items() if series}


def make(settings: Mapping[str, Any]) -> list[PrometheusSource]:
    """The Prometheus sources of vm-snapshot's settings: ``prometheus`` (URLs),
    ``profile``, ``timeout``, ``auth``, ``ca_file``, ``at``, ``stale_after``,
    ``window_minutes``, ``step``."""
    profile = load_profile(settings.get("profile") or "vmtools")
    return [PrometheusSource(Settings(
        url=url, profile=profile, timeout=settings.get("timeout", 10.0),
        auth=settings.get("auth"), ca_file=settings.get("ca_file"), at=settings.get("at"),
        stale_after=settings.get("stale_after", DEFAULT_STALE_AFTER),
        window_minutes=settings.get("window_minutes", DEFAULT_WINDOW_MINUTES),
        step=settings.get("step", DEFAULT_STEP))) for url in settings.get("prometheus") or []]


KIND = SourceKind("prometheus", "a Prometheus server's HTTP API, through a mapping profile",
                  make)

__all__ = ["PrometheusSource", "Settings", "make", "KIND"]
