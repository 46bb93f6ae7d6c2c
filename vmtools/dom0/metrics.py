"""The metrics a Domain-0 publishes (SPEC.md, "Ganglia metrics") and the publishing loop.

:func:`build_metrics` is pure: from ``xl/xm info``, two samples of ``xl/xm list`` + vif
counters, it returns the metric set:

- host (Entropy 1.0): ``container.mem_total`` (uint32 KB = total - Domain-0's memory),
  ``container.cpu_num`` (uint16), ``container.vms`` (string, Domain-0 excluded; split into
  ``container.vms.1``, ``.2``... past :data:`VMS_PART_CHARS` characters),
  ``container.driver.migration`` (string), ``container.type`` (``xen-<major>.<minor>``);
- per guest: ``container.vm.<name>.cpu`` (float %, of one CPU, from CPU-time deltas),
  ``.mem`` (uint32 KB), ``.vcpus`` (uint16), ``.net`` (float bytes/s, vif rx+tx deltas).

Every name and value is printable ASCII without ``< > & " '`` (gmetad re-emits values
unescaped: one bad name breaks the whole grid's XML); a guest whose name is not a safe name
is skipped and reported. :func:`publish_metrics` runs the cycles (daemon, ``--once`` or
dry run) and sends with :mod:`vmtools.ganglia.xdr` / :mod:`vmtools.ganglia.send`.
"""

from __future__ import annotations

import logging
import math
import signal
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from vmtools import __version__
from vmtools.dom0.parse import Domain, info_int
from vmtools.dom0.read import Dom0Reader, ToolstackError
from vmtools.errors import DataError, Unavailable, UsageError
from vmtools.ganglia import xdr
from vmtools.ganglia.names import (CPU_NUM, DRIVER_MIGRATION, HOST_METRICS, MEM_TOTAL, TYPE, VMS,
                                    guest_metric, vms_part)
from vmtools.model import is_safe_name, utc_now
from vmtools.xen import DOM0, TRANSPORTS, is_in_flight_name

log = logging.getLogger("vmtools.gmetric")

VMS_PART_CHARS = 850          # gmond cuts XML lines at 1 KB (reference §0.3: 925 still fit)
INFO_REFRESH_SECONDS = 600    # total memory / CPUs / version rarely change: re-read now and then
GROUP = "xen"
_UNSAFE_CHARS = set("<>&\"'")


@dataclass
class Metric:
    name: str
    value: str
    type: str
    units: str = ""
    slope: str = "both"
    tmax: int = 60
    dmax: int = 0

    def to_dict(self) -> dict:
        return {"name": self.name, "value": self.value, "type": self.type,
                "units": self.units, "slope": self.slope, "tmax": self.tmax, "dmax": self.dmax}


@dataclass
class Sample:
    """One reading of the Domain-0: ``when`` is ``time.monotonic()`` right after ``list``."""
    when: float
    domains: list[Domain]
    vif: dict[int, int] = field(default_factory=dict)


@dataclass
class Built:
    metrics: list[Metric]
    skipped: list[dict]
    problems: list[str]


def safe_text(text: str) -> bool:
    """Printable ASCII without the characters gmetad would re-emit unescaped."""
    return all(32 <= ord(ch) < 127 for ch in text) and not (_UNSAFE_CHARS & set(text))


def split_guest_list(names: list[str], limit: int = VMS_PART_CHARS) -> list[str]:
    """Space-separated parts of at most ``limit`` characters, never splitting a name."""
    parts, current = [], ""
    for name in names:
        candidate = f"{current} {name}" if current else name
        if current and len(candidate) > limit:
            parts.append(current)
            current = name
        else:
            current = candidate
    parts.append(current)
    return parts


def build_metrics(info: dict[str, str] | None, current: Sample, previous: Sample | None,
                  migration: str, tmax: int = 60, guest_dmax: int = 180,
                  dom0_kib: int | None = None, part_chars: int = VMS_PART_CHARS,
                  min_parts: int = 1) -> Built:
    """The metric set for one cycle. ``info`` may be None (not known yet): the host metrics
    that need it are then left out and a problem says so. ``min_parts`` keeps publishing
    (empty) ``container.vms.N`` parts a previous cycle used, so no stale part survives."""
    metrics: list[Metric] = []
    skipped: list[dict] = []
    problems: list[str] = []

    def host(name: str, value: object, type: str, units: str = "", slope: str = "zero") -> None:
        metrics.append(Metric(name, str(value), type, units, slope, tmax, 0))

    def guest(name: str, value: object, type: str, units: str) -> None:
        metrics.append(Metric(name, str(value), type, units, "both", tmax, guest_dmax))

    dom0 = next((d for d in current.domains if d.name == DOM0 or d.domid == 0), None)
    guests: list[Domain] = []
    seen: set[str] = set()
    for dom in current.domains:
        if dom is dom0 or dom.domid == 0:
            continue
        if is_in_flight_name(dom.name):
            log.info("guest %r is migrating: left out of this cycle", dom.name)
            continue
        if not is_safe_name(dom.name) or not safe_text(dom.name):
            skipped.append({"name": dom.name, "domid": dom.domid,
                            "reason": "unsafe name: publish only [A-Za-z0-9._-], starting "
                                      "with a letter or digit"})
            continue
        if dom.name in seen:
            skipped.append({"name": dom.name, "domid": dom.domid,
                            "reason": "listed twice by the toolstack"})
            continue
        seen.add(dom.name)
        guests.append(dom)

    if info is not None:
        try:
            total_mib = info_int(info, "total_memory")
            if dom0 is not None:
                dom0_mib = dom0.mem_mib
            elif dom0_kib is not None:
                dom0_mib = dom0_kib // 1024
            else:
                raise DataError("Domain-0 is not in the list and its memory is unknown",
                                "Domain-0")
            host(MEM_TOTAL, max(0, total_mib - dom0_mib) * 1024, "uint32", "KB")
        except DataError as exc:
            problems.append(f"{MEM_TOTAL} not published: {exc}")
        try:
            host(CPU_NUM, info_int(info, "nr_cpus"), "uint16", "CPUs")
        except DataError as exc:
            problems.append(f"{CPU_NUM} not published: {exc}")
    else:
        problems.append("toolstack info unknown: container.mem_total, container.cpu_num and "
                        "container.type not published")

    names = [g.name for g in guests]
    parts = split_guest_list(names, part_chars)
    while len(parts) < min_parts:
        parts.append("")
    for i, part in enumerate(parts):
        if i == 0:
            host(VMS, part, "string")
        else:
            metrics.append(Metric(vms_part(i), part, "string", "", "zero", tmax,
                                  guest_dmax))
    host(DRIVER_MIGRATION, migration, "string")
    if info is not None:
        try:
            host(TYPE, f"xen-{info_int(info, 'xen_major')}."
                                   f"{info_int(info, 'xen_minor')}", "string")
        except DataError as exc:
            problems.append(f"{TYPE} not published: {exc}")

    before = {(d.name, d.domid): d for d in previous.domains} if previous else {}
    elapsed = current.when - previous.when if previous else 0.0
    for dom in guests:
        old = before.get((dom.name, dom.domid))
        if old is not None and elapsed > 0 and dom.cpu_time >= old.cpu_time:
            cpu = (dom.cpu_time - old.cpu_time) / elapsed * 100.0
            guest(guest_metric(dom.name, "cpu"), f"{cpu:.1f}", "float", "%")
        else:
            log.info("%s: no earlier CPU time to compare with yet", dom.name)
        guest(guest_metric(dom.name, "mem"), dom.mem_mib * 1024, "uint32", "KB")
        guest(guest_metric(dom.name, "vcpus"), dom.vcpus, "uint16", "CPUs")
        now_b, then_b = current.vif.get(dom.domid), previous.vif.get(dom.domid) if previous \
            else None
        if old is not None and elapsed > 0 and now_b is not None and then_b is not None \
                and now_b >= then_b:
            guest(guest_metric(dom.name, "net"), f"{(now_b - then_b) / elapsed:.1f}", "float", "bytes/s")
    for m in metrics:
        if not safe_text(m.value):  # names are safe by construction; values come from xl
            problems.append(f"{m.name}: unsafe value left out")
    metrics = [m for m in metrics if safe_text(m.value)]
    return Built(metrics, skipped, problems)


# ----------------------------------------------------------------------------- publishing

@dataclass
class Settings:
    toolstack: str = "auto"
    channels: list = field(default_factory=list)
    spoof: str | None = None          # "IP:hostname"
    interval: float = 15.0
    once: bool = False
    dry_run: bool = False
    migration: str | None = None
    tmax: int | None = None
    dmax: int | None = None
    metadata_interval: float = 60.0
    sysfs_root: str = "/"
    timeout: float = 10.0
    window: float | None = None
    cycles: int | None = None

    def effective_tmax(self) -> int:
        return self.tmax if self.tmax is not None else max(60, int(math.ceil(2 * self.interval)))

    def effective_dmax(self) -> int:
        return self.dmax if self.dmax is not None else 3 * self.effective_tmax()


def parse_spoof(text: str) -> str:
    """``IP:hostname`` as gmetric ``-S`` takes it, validated (IP literal, safe name)."""
    import ipaddress
    ip, sep, name = text.rpartition(":")
    if not sep or not ip or not name:
        raise UsageError(f"--spoof {text!r}: expected IP:NAME, e.g. 10.0.0.1:node-1")
    try:
        ipaddress.ip_address(ip.strip("[]"))
    except ValueError:
        raise UsageError(f"--spoof {text!r}: {ip!r} is not an IP address") from None
    if not is_safe_name(name):
        raise UsageError(f"--spoof {text!r}: {name!r} is not a safe host name "
                         "([A-Za-z0-9._-])")
    return f"{ip.strip('[]')}:{name}"


class Publisher:
    """One Domain-0's publisher: samples, builds, encodes and sends, cycle after cycle."""

    def __init__(self, settings: Settings, reader: Dom0Reader | None = None, sender=None):
        self.s = settings
        self.reader = reader or Dom0Reader(settings.toolstack, settings.timeout,
                                           settings.sysfs_root)
        self.sender = sender
        self.ident = settings.spoof or socket.gethostname()
        self.started = int(time.time())
        self.info: dict[str, str] | None = None
        self.info_at = -math.inf
        self.previous: Sample | None = None
        self.meta_sent: dict[str, tuple[bytes, float]] = {}
        self.parts_used = 1
        self.warned: set[str] = set()
        self.failures = 0             # toolstack failures and unexpected output, all cycles
        self.cycles = 0
        self.last: Built | None = None

    # -- reading
    def _refresh_info(self, problems: list[str]) -> None:
        if self.info is not None and time.monotonic() - self.info_at < INFO_REFRESH_SECONDS:
            return
        try:
            bad: list[str] = []
            info = self.reader.info(bad)
            for line in bad:
                problems.append(f"{self.reader.tool} info: {line}")
            self.info, self.info_at = info, time.monotonic()
        except ToolstackError as exc:
            problems.append(str(exc))

    def sample(self, problems: list[str]) -> Sample | None:
        try:
            bad: list[str] = []
            domains = self.reader.list(bad)
            when = time.monotonic()
            for line in bad:
                problems.append(f"{self.reader.tool} list: {line}")
        except ToolstackError as exc:
            problems.append(str(exc))
            return None
        return Sample(when, domains, self.reader.vif_bytes())

    def migration(self) -> str:
        if self.s.migration:
            return self.s.migration
        return "xm-ssh" if self.reader.tool == "xm" else "xl-ssh"

    def warm_up(self) -> None:
        """A first sample, so the first published cycle already has CPU and net rates."""
        problems: list[str] = []
        self._refresh_info(problems)
        self.previous = self.sample(problems)
        for p in problems:
            log.warning("%s", p)
        self.failures += len(problems)

    def build(self) -> Built:
        problems: list[str] = []
        self._refresh_info(problems)
        current = self.sample(problems)
        if current is None:
            built = Built([], [], problems)
            if self.info is not None:  # publish what is known: the host's static metrics
                known = build_metrics(self.info, Sample(time.monotonic(), []), None,
                                      self.migration(), self.s.effective_tmax(),
                                      self.s.effective_dmax())
                built.metrics = [m for m in known.metrics
                                 if m.name in HOST_METRICS and m.name != VMS]
        else:
            dom0_kib = None
            if not any(d.domid == 0 for d in current.domains):
                try:
                    dom0_kib = int(self.reader.xenstore_read("/local/domain/0/memory/target"))
                except (ToolstackError, ValueError) as exc:
                    problems.append(f"Domain-0 memory: {exc}")
            built = build_metrics(self.info, current, self.previous, self.migration(),
                                  self.s.effective_tmax(), self.s.effective_dmax(), dom0_kib,
                                  min_parts=self.parts_used)
            built.problems[:0] = problems
            self.parts_used = max(self.parts_used,
                                  sum(1 for m in built.metrics
                                      if m.name.startswith(VMS + ".")) + 1)
            self.previous = current
        for skip in built.skipped:
            key = f"skip:{skip['name']}"
            level = logging.DEBUG if key in self.warned else logging.WARNING
            self.warned.add(key)
            log.log(level, "guest %r (domid %s) skipped: %s", skip["name"], skip["domid"],
                    skip["reason"])
        for problem in built.problems:
            log.warning("%s", problem)
        self.failures += sum(1 for p in built.problems)
        self.last = built
        return built

    # -- encoding
    def packets(self, metrics: list[Metric], now: float | None = None) -> list[bytes]:
        now = time.monotonic() if now is None else now
        spoof = bool(self.s.spoof)
        extra = [("SPOOF_HOST", self.s.spoof)] if spoof else []
        extra.append(("GROUP", GROUP))
        out: list[bytes] = []
        if spoof:  # a uint32 heartbeat: gmetad then shows the daemon's real start time
            out.append(xdr.encode_metadata(self.ident, "heartbeat", "uint32", "", "zero", 0, 0,
                                           True, [("SPOOF_HOST", self.s.spoof),
                                                  ("SPOOF_HEARTBEAT", "yes")]))
            out.append(xdr.encode_value(self.ident, "heartbeat", self.started, xdr.UINT,
                                        True, "%u"))
        for m in metrics:
            meta = xdr.encode_metadata(self.ident, m.name, m.type, m.units, m.slope, m.tmax,
                                       m.dmax, spoof, extra)
            sent = self.meta_sent.get(m.name)
            if sent is None or sent[0] != meta or now - sent[1] >= self.s.metadata_interval:
                out.append(meta)
                self.meta_sent[m.name] = (meta, now)
            out.append(xdr.encode_value(self.ident, m.name, m.value, xdr.STRING, spoof, "%s"))
        return out

    def cycle(self) -> Built:
        built = self.build()
        if self.sender is not None:
            failed = self.sender.send(self.packets(built.metrics))
            if failed:
                built.problems.append(f"{failed} sends to gmond failed")
                self.failures += 1
        self.cycles += 1
        return built

    def document(self, built: Built) -> dict:
        packets = self.packets(built.metrics, now=math.inf)
        return {"format": "vmtools.gmetric", "version": "1.0",
                "generator": f"vm-gmetric {__version__}", "created": utc_now(),
                "host": self.ident, "spoof": bool(self.s.spoof),
                "toolstack": self.reader.tool,
                "destinations": [str(c) for c in self.s.channels],
                "metrics": [m.to_dict() for m in built.metrics],
                "skipped": built.skipped, "problems": built.problems,
                "packets": len(packets), "bytes": sum(len(p) for p in packets)}


def publish_metrics(settings: Settings, sender_factory: Callable | None = None,
                    stop: threading.Event | None = None) -> dict | None:
    """Run vm-gmetric: a dry run (returns the document of what would be sent), ``--once``
    (one measured cycle; raises Unavailable when the toolstack failed) or the daemon loop
    (until SIGTERM/SIGINT or ``settings.cycles``; never dies on one bad sample)."""
    if settings.migration and settings.migration not in TRANSPORTS:
        raise UsageError(f"--migration {settings.migration!r}: expected one of "
                         f"{', '.join(TRANSPORTS)}")
    if settings.interval <= 0:
        raise UsageError("--interval must be positive")
    one_shot = settings.once or settings.dry_run
    if one_shot and not settings.dry_run:
        settings.cycles = 1
    window = settings.window if settings.window is not None else min(settings.interval, 5.0)
    stop = stop or threading.Event()
    sender = None
    if not settings.dry_run:
        if sender_factory is None:
            from vmtools.ganglia.send import Sender
            sender_factory = Sender
        sender = sender_factory(settings.channels)
    publisher = Publisher(settings, sender=sender)
    old_handlers = {}
    if not one_shot and threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            old_handlers[sig] = signal.signal(sig, lambda *_: stop.set())
    try:
        try:
            publisher.reader.detect()
        except ToolstackError as exc:
            if one_shot:
                raise
            log.error("%s (will retry every cycle)", exc)
            publisher.failures += 1
        publisher.warm_up()
        if window > 0:
            stop.wait(window)
        if settings.dry_run:
            built = publisher.build()
            doc = publisher.document(built)
            doc["ok"] = publisher.failures == 0
            return doc
        next_at = time.monotonic()
        while not stop.is_set():
            started_cpu = time.process_time()
            try:
                built = publisher.cycle()
            except Exception as exc:  # noqa: BLE001 - one bad sample never ends the daemon
                if settings.once:
                    raise
                publisher.cycles += 1
                publisher.failures += 1
                log.error("cycle %d failed: %s: %s (continuing)", publisher.cycles,
                          type(exc).__name__, exc, exc_info=log.isEnabledFor(logging.DEBUG))
            else:
                log.info("cycle %d: %d metrics, %d problems, %.1f ms CPU", publisher.cycles,
                         len(built.metrics), len(built.problems),
                         (time.process_time() - started_cpu) * 1000)
            if settings.cycles is not None and publisher.cycles >= settings.cycles:
                break
            next_at += settings.interval
            stop.wait(max(0.0, next_at - time.monotonic()))
        if settings.once and publisher.failures:
            raise Unavailable(f"{publisher.failures} problem(s) reading the toolstack or "
                              "sending this run (see the warnings above); published what "
                              "was known")
        return None
    finally:
        for sig, handler in old_handlers.items():
            signal.signal(sig, handler)
        if sender is not None:
            sender.close()
