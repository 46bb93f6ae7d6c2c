"""take_snapshot: read one or more sources and build the snapshot document.

Each source hands back a reading (:mod:`vmtools.sources`); their union is the snapshot: a
host seen by two sources is a ``duplicate-host`` problem (the first source wins). The kinds of
source are :data:`SOURCE_KINDS`; Ganglia (:mod:`vmtools.ganglia.reading`) reads all its
places as one grid.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Mapping

from vmtools.drivers import registry
from vmtools.errors import OptionError, Unavailable, UsageError
from vmtools.ganglia import reading as ganglia
from vmtools.prometheus import source as prometheus
from vmtools.xapi import reading as xapi
from vmtools.model import SNAPSHOT_FORMAT, Problem, Snapshot
from vmtools.sources import Reading, Source, SourceKind, merge_readings, sort_problems

# The kinds of source, by name: a new platform is one module defining a SourceKind, and one
# entry here (ARCHITECTURE.md, "A source").
SOURCE_KINDS: dict[str, SourceKind] = {kind.name: kind for kind in (ganglia.KIND,
                                                                    prometheus.KIND,
                                                                    xapi.KIND)}


def make_sources(kind: str, settings: Mapping[str, Any]) -> list[Source]:
    """The sources of ``kind`` that ``settings`` (the command's settings for that kind) ask
    for; UsageError for a kind not in :data:`SOURCE_KINDS`."""
    try:
        return SOURCE_KINDS[kind].make(settings)
    except KeyError:
        raise UsageError(f"unknown kind of source {kind!r} (expected one of "
                         f"{', '.join(SOURCE_KINDS)})") from None


def take_snapshot(sources: Iterable[Source], *, timeout: float | None = None) -> Snapshot:
    """Read every source at once (threads: the sources wait on the network, not the CPU), all
    within ``timeout`` seconds when given, and return their union as a snapshot
    (:func:`vmtools.sources.merge_readings`).

    A source that does not answer (:class:`Unavailable`, or still reading at the deadline)
    is an ``unavailable-source`` problem when another source answered: its hosts are not in
    the snapshot and nothing is planned for them, the others are. When no source answers,
    the first one's :class:`Unavailable` (exit 69). A malformed answer (DataError) still ends
    the run: bad input is never half read."""
    sources = list(sources)
    deadline = time.monotonic() + timeout if timeout is not None else None
    if len(sources) == 1:
        return merge_readings([sources[0].read(deadline)], registry.names())
    results: list = [None] * len(sources)

    def run(i: int, source: Source) -> None:
        try:
            results[i] = source.read(deadline)
        except BaseException as exc:            # handed to the main thread, raised there
            results[i] = exc

    # Daemon threads: one still waiting on a peer past the deadline must not hold the
    # command's exit (its own socket timeouts end it).
    threads = [threading.Thread(target=run, args=(i, s), daemon=True,
                                name=f"source-{i}") for i, s in enumerate(sources)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
    readings: list[Reading] = []
    lost: list[Problem] = []
    first: Unavailable | None = None
    for source, t, got in zip(sources, threads, results):
        if t.is_alive():
            got = Unavailable(f"{source.name}: no answer within the {timeout:g} s deadline")
        if isinstance(got, Unavailable):
            first = first or got
            lost.append(Problem("unavailable-source", f"{got}; its hosts are not in this "
                                "snapshot (nothing is planned for them)",
                                domain=getattr(source, "domain", None)))
        elif isinstance(got, BaseException):
            raise got
        else:
            readings.append(got)
    if not readings:
        assert first is not None
        raise first
    snap = merge_readings(readings, registry.names())
    snap.problems = sort_problems(snap.problems + lost)
    return snap


@dataclass
class SourceSettings:
    """What a command reading the cluster is told about its sources: vm-snapshot's and
    vm-web's options, one field each (the same names). Ganglia when nothing else is given."""

    gmetad: list[str] = field(default_factory=list)
    cluster: list[str] = field(default_factory=list)
    gmond: list[str] = field(default_factory=list)
    input: list[str] = field(default_factory=list)
    example: str | None = None
    prometheus: list[str] = field(default_factory=list)
    prometheus_profile: str = "vmtools"
    prometheus_user: str | None = None
    prometheus_password_file: str | None = None
    prometheus_token_file: str | None = None
    prometheus_ca_file: str | None = None
    at: str | None = None
    samples_window: float = 120.0
    samples_step: float = 60.0
    timeout: float = 10.0
    recover: bool = False
    stale_after: float = 60.0
    xapi: list[str] = field(default_factory=list)
    xapi_credentials: str | None = None
    xapi_ca: str | None = None
    xapi_fingerprint: list[str] = field(default_factory=list)
    xapi_insecure: bool = False
    xapi_window: float = 60.0

    @property
    def ganglia(self) -> bool:
        return bool(self.gmetad or self.cluster or self.gmond or self.input or self.example)


def sources_from(s: SourceSettings) -> list[Source]:
    """The sources ``s`` asks for, of every kind: the pools of ``xapi``, the servers of
    ``prometheus``, and Ganglia's places (gmetad on localhost when no source is given).
    OptionError naming the setting when one is out of range or goes with another."""
    if not s.timeout > 0:
        raise OptionError("timeout", f"{s.timeout:g}: must be more than 0 seconds")
    if not s.stale_after >= 0:
        raise OptionError("stale_after", f"{s.stale_after:g}: must be 0 or more seconds")
    sources: list[Source] = []
    if s.xapi:
        if not s.xapi_window > 0:
            raise OptionError("xapi_window", f"{s.xapi_window:g}: must be more than 0 seconds")
        for url in s.xapi:
            sources += make_sources("xapi", dict(
                url=url, credentials=s.xapi_credentials, ca_file=s.xapi_ca,
                fingerprints=list(s.xapi_fingerprint), insecure=s.xapi_insecure,
                timeout=s.timeout, window=s.xapi_window))
    if s.prometheus:
        sources += make_sources("prometheus", _prometheus_settings(s))
    elif s.at is not None:
        raise OptionError("at", "needs {prometheus} (Ganglia only knows now)",
                          settings=("prometheus",))
    if s.ganglia or not sources:
        sources += make_sources("ganglia", dict(
            gmetad=list(s.gmetad), cluster=list(s.cluster), gmond=list(s.gmond),
            inputs=list(s.input), example=s.example, timeout=s.timeout, recover=s.recover,
            stale_after=s.stale_after))
    return sources


def _prometheus_settings(s: SourceSettings) -> dict:
    from vmtools.model import iso_to_epoch
    from vmtools.prometheus.query import Auth, read_secret
    if s.prometheus_token_file and (s.prometheus_user or s.prometheus_password_file):
        raise OptionError("prometheus_token_file", "or {prometheus_user} with "
                          "{prometheus_password_file}, not both",
                          settings=("prometheus_user", "prometheus_password_file"))
    if bool(s.prometheus_user) != bool(s.prometheus_password_file):
        raise OptionError("prometheus_user", "and {prometheus_password_file} go together",
                          settings=("prometheus_password_file",))
    window, step = s.samples_window, s.samples_step
    if not window >= 0 or not step > 0 or (window and window * 60 / step > 11000):
        raise OptionError("samples_window", "must be 0 or more minutes and {samples_step} "
                          "more than 0 seconds, with at most 11,000 samples in the window",
                          settings=("samples_step",))
    auth = None
    if s.prometheus_token_file:
        auth = Auth(token=read_secret(s.prometheus_token_file, "prometheus-token-file"))
    elif s.prometheus_user:
        auth = Auth(user=s.prometheus_user, password=read_secret(
            s.prometheus_password_file, "prometheus-password-file"))
    when = None
    if s.at is not None:
        try:
            when = float(s.at) if s.at.replace(".", "", 1).isdigit() else iso_to_epoch(s.at)
        except (TypeError, ValueError):
            raise OptionError("at", f"{s.at!r}: expected Unix seconds or "
                              "YYYY-MM-DDTHH:MM:SSZ") from None
    return dict(prometheus=list(s.prometheus), profile=s.prometheus_profile, auth=auth,
                ca_file=s.prometheus_ca_file, at=when, window_minutes=window, step=step,
                timeout=s.timeout, stale_after=s.stale_after)


def choose_sources(**settings: Any) -> list[Source]:
    """The Ganglia source of vm-snapshot's Ganglia options (see
    :func:`vmtools.ganglia.reading.make`)."""
    return make_sources("ganglia", settings)


__all__ = ["take_snapshot", "make_sources", "choose_sources", "SOURCE_KINDS", "SourceSettings",
           "sources_from",
           "snapshot_json", "snapshot_json_chunks"]


def snapshot_json_chunks(snapshot: Snapshot) -> Iterator[str]:
    """The canonical text of a snapshot, exactly as ``model.dumps(snapshot.to_dict())``, one
    host or guest at a time (a 40,000-guest snapshot as one dict tree and one pure-Python
    indenting encoder costs several times the memory of the text)."""
    head = {"format": SNAPSHOT_FORMAT, "version": snapshot.version,
            "generator": snapshot.generator, "created": snapshot.created,
            "source": snapshot.source}
    lists = {"hosts": sorted(snapshot.hosts, key=lambda h: h.name),
             "vms": sorted(snapshot.vms, key=lambda v: v.name),
             "problems": snapshot.problems}
    if snapshot.rules:
        lists["rules"] = snapshot.rules
    if snapshot.stopped:
        lists["stopped"] = snapshot.stopped

    def enc(value) -> str:
        return json.dumps(value, indent=2, ensure_ascii=True, allow_nan=False)

    yield "{\n" + ",\n".join(f"  {enc(k)}: {enc(v)}" for k, v in head.items())
    for key, items in lists.items():
        if not items:
            yield f",\n  {enc(key)}: []"
            continue
        sep = f",\n  {enc(key)}: [\n    "
        for item in items:
            yield sep + enc(item if isinstance(item, dict) else item.to_dict()
                            ).replace("\n", "\n    ")
            sep = ",\n    "
        yield "\n  ]"
    if snapshot.samples is not None:
        from vmtools.model import samples_to_dict
        yield f",\n  {enc('samples')}: " + enc(samples_to_dict(snapshot.samples)).replace(
            "\n", "\n  ")
    yield "\n}\n"


def snapshot_json(snapshot: Snapshot) -> str:
    """The canonical text of a snapshot (see :func:`snapshot_json_chunks`)."""
    return "".join(snapshot_json_chunks(snapshot))
