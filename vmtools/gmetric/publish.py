"""vm-gmetric's publishing: sample the Domain-0 cycle after cycle, build the metrics
(:mod:`vmtools.gmetric.build`), encode them (:mod:`vmtools.ganglia.xdr`) and send them
(:mod:`vmtools.ganglia.send`). :func:`publish_metrics` runs the cycles (daemon, ``--once``
or dry run).
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
from vmtools.dom0.read import Dom0Reader, ToolstackError
from vmtools.errors import OptionError, Unavailable
from vmtools.ganglia import xdr
from vmtools.ganglia.names import HOST_METRICS, PROBLEM, VMS
from vmtools.gmetric.build import Built, Metric, Sample, build_metrics
from vmtools.model import is_safe_name, utc_now
from vmtools.drivers import registry

log = logging.getLogger("vmtools.gmetric")

INFO_REFRESH_SECONDS = 600    # total memory / CPUs / version rarely change: re-read now and then
GROUP = "xen"


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
    prometheus_listen: tuple[str, int] | None = None   # serve the exporter there
    ganglia: bool = True                               # send to gmond (the channels)

    def effective_tmax(self) -> int:
        return self.tmax if self.tmax is not None else max(60, int(math.ceil(2 * self.interval)))

    def effective_dmax(self) -> int:
        return self.dmax if self.dmax is not None else 3 * self.effective_tmax()


def parse_spoof(text: str) -> str:
    """``IP:hostname`` as gmetric ``-S`` takes it, validated (IP literal, safe name)."""
    import ipaddress
    ip, sep, name = text.rpartition(":")
    if not sep or not ip or not name:
        raise OptionError("spoof", f"{text!r}: expected IP:NAME, e.g. 10.0.0.1:node-1")
    try:
        ipaddress.ip_address(ip.strip("[]"))
    except ValueError:
        raise OptionError("spoof", f"{text!r}: {ip!r} is not an IP address") from None
    if not is_safe_name(name):
        raise OptionError("spoof", f"{text!r}: {name!r} is not a safe host name "
                         "([A-Za-z0-9._-])")
    return f"{ip.strip('[]')}:{name}"


def incomplete_reason(failed: bool, problems: list[str], skipped: list[dict], tool: str) -> str:
    """Why this cycle's guest list is incomplete, in a few fixed words (never the toolstack's
    own text: that goes to the log), or "" when it is whole."""
    if failed:
        return f"{tool} list failed"
    refused = sum(1 for p in problems if p.startswith(f"{tool} list:"))
    if refused:
        return f"{tool} list: {refused} line{'s' if refused > 1 else ''} not parsed"
    if skipped:
        return (f"{len(skipped)} running guest{'s' if len(skipped) > 1 else ''} not "
                "publishable (name or figures)")
    return ""


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
        # The last cycle as the exporter serves it, replaced in one assignment (the exporter
        # reads it from its own thread): (built, toolstack reading, the guest list is every
        # guest, wall-clock time of the cycle).
        self.view: tuple[Built, Sample | None, bool, float] | None = None

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
            # the toolstack reads the guests' CPU time somewhere within the call: its middle
            # is the best estimate of when, off by at most half of a slow call, not all of it
            began = time.monotonic()
            domains = self.reader.list(bad)
            when = (began + time.monotonic()) / 2
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
        cycle_at = time.time()
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
                    text = self.reader.xenstore_read("/local/domain/0/memory/target")
                    if not text.isdigit() or len(text) > 12:
                        raise ValueError(f"not a KiB count: {text[:30]!r}")
                    dom0_kib = int(text)
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
        # A running guest the list would hide (a line the parser refused, a guest skipped for
        # its name or figures) makes the list incomplete: it is never published, and
        # container.problem says why (vm-snapshot then freezes the host).
        why = incomplete_reason(current is None, problems, built.skipped, self.reader.tool)
        complete = why == ""
        if not complete:
            built.metrics = [m for m in built.metrics
                             if m.name != VMS and not m.name.startswith(VMS + ".")]
        built.metrics.append(Metric(PROBLEM, why, "string", "", "zero",
                                    self.s.effective_tmax(), 0))
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
        # A guest skipped (unsafe name, implausible figures) still holds memory on the host:
        # a list without it would hide it from the planner.
        self.view = (built, current, complete and not built.skipped, cycle_at)
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
    if settings.migration and not registry.is_transport(settings.migration):
        raise OptionError("migration", f"{settings.migration!r}: expected one of "
                         f"{', '.join(registry.names())}")
    if settings.interval <= 0:
        raise OptionError("interval", "must be positive")
    one_shot = settings.once or settings.dry_run
    if one_shot and not settings.dry_run:
        settings.cycles = 1
    window = settings.window if settings.window is not None else min(settings.interval, 5.0)
    stop = stop or threading.Event()
    sender = None
    if not settings.dry_run and settings.ganglia:
        if sender_factory is None:
            from vmtools.ganglia.send import Sender
            sender_factory = Sender
        sender = sender_factory(settings.channels)
    publisher = Publisher(settings, sender=sender)
    exporter = None
    if settings.prometheus_listen and not settings.dry_run:
        from vmtools.gmetric.exporter import start_exporter
        exporter = start_exporter(publisher, *settings.prometheus_listen)
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
            n = publisher.failures
            raise Unavailable(f"{n} problem{'' if n == 1 else 's'} reading the toolstack or "
                              "sending this run (see the warnings above); published what "
                              "was known")
        return None
    finally:
        for sig, handler in old_handlers.items():
            signal.signal(sig, handler)
        if exporter is not None:
            exporter.close()
        if sender is not None:
            sender.close()
